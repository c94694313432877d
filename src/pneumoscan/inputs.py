"""Input files: the X-rays under a folder, and the files a command was given.

``predict``, ``export --check-data`` and ``fit-population`` find their images here, with one
rule for what counts as an image file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from pneumoscan.imaging import IMAGE_SUFFIXES, is_dicom


def find_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, sorted; hidden files and folders skipped.

    A file counts when its suffix is one pneumoscan reads (``.jpeg .jpg .png .dcm``) or when
    it has no suffix and starts like a DICOM file (scanners often write such names).
    Symbolic links to folders are not followed, so a link cannot make the walk loop.
    """
    found: list[Path] = []
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(directory) / name
            if name.startswith("."):
                continue
            suffix = path.suffix.lower()
            if suffix in IMAGE_SUFFIXES or (not suffix and _starts_like_dicom(path)):
                found.append(path)
    return found


def _starts_like_dicom(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return is_dicom(handle.read(132))
    except OSError:
        return False


def expand_inputs(inputs: Iterable[Path]) -> Iterator[tuple[Path, str]]:
    """``(path, name)`` of every file to predict: files as given, folders expanded.

    ``name`` is the file's name for a file given directly, and its path relative to the
    folder (``sub/x.png``) for a file found under a folder: what overlay names derive from.

    Raises:
        FileNotFoundError: an input does not exist.
    """
    for path in inputs:
        if path.is_dir():
            for found in find_images(path):
                yield found, found.relative_to(path).as_posix()
        elif path.exists():
            yield path, path.name
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
