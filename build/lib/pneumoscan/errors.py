"""The project's exception hierarchy.

Every error a user can cause derives from :class:`PneumoscanError`, so the CLI and the
server can turn it into a one-line message (or a 4xx answer) instead of a traceback.
"""

from __future__ import annotations


class PneumoscanError(Exception):
    """Base class of every error pneumoscan raises on purpose."""


class ImageDecodeError(PneumoscanError, ValueError):
    """The bytes are not a readable image: empty, truncated, corrupt or of an unknown kind."""


class UnsupportedImageError(ImageDecodeError):
    """The bytes are a file format pneumoscan does not read (not JPEG, PNG or DICOM)."""


class ImageTooSmallError(ImageDecodeError):
    """Far too few pixels to be a radiograph (under ``imaging.MIN_SIDE`` on a side)."""


class ImageTooLargeError(PneumoscanError, ValueError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


class DataLayoutError(PneumoscanError, FileNotFoundError):
    """A data folder is missing, empty, or not in the expected class-folder layout."""


class ModelFileError(PneumoscanError, ValueError):
    """A model folder or file is missing, incomplete, or does not match its description."""


class MissingDependencyError(PneumoscanError, ImportError):
    """An optional dependency a command needs is not installed; the message names the extra."""
