"""Image loading: the one function every path in pneumoscan uses to read an X-ray.

Pixel convention (written down once, used everywhere): a decoded image is a 2-D
``numpy.uint8`` array ``(H, W)``, grayscale, where **bright means dense** (bone is white),
as on a conventionally displayed MONOCHROME2 radiograph.

JPEG is read with libjpeg-turbo through simplejpeg (the luminance only, plus a 1/8-scale
colour probe: half of Pillow's time for the same pixels); PNG, and the JPEGs simplejpeg
cannot read (CMYK, corrupt data: Pillow words the error), with Pillow; DICOM (recognised by
the ``DICM`` magic at offset 128, or a ``.dcm`` name) with pydicom and the pylibjpeg
plugins, imported only when a DICOM arrives. DICOM tags other than those needed to render
the pixels are never read into logs.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from pneumoscan.errors import (
    ImageDecodeError,
    ImageTooLargeError,
    ImageTooSmallError,
    PneumoscanError,
    UnsupportedImageError,
)

logger = logging.getLogger(__name__)

#: Default limit on decoded pixels (H * W). 50 MP covers any real radiograph (a 43 cm
#: detector at 100 µm is ~4300 x 4300 = 18.5 MP) while refusing decompression bombs.
DEFAULT_MAX_PIXELS = 50_000_000

#: Smallest side of an image worth scoring: below it there is too little anatomy to judge,
#: and the Predictor refuses the image (ImageTooSmallError) instead of scoring it.
MIN_SIDE = 64

#: Bytes a decoded pixel may take before the pixel limit applies (16-bit grayscale): a
#: Deflated Explicit VR Little Endian dataset is inflated to at most
#: ``max_pixels * INFLATED_BYTES_PER_PIXEL + INFLATED_HEADER_BYTES`` bytes, never unbounded.
INFLATED_BYTES_PER_PIXEL = 2
#: Room for the header elements beside the pixels in an inflated dataset.
INFLATED_HEADER_BYTES = 1024 * 1024

#: Pixels converted to uint8 per block: the float intermediates of a rescale stay a few MB
#: whatever the image's size (a whole-image float64 copy of a 50 MP film is 400 MB).
RESCALE_BLOCK_PIXELS = 1 << 20
#: Integer images whose values span at most this many levels are mapped through a table of
#: those levels: the display expression once per level, then one lookup per pixel (a 16-bit
#: 2,000 px radiograph: a few thousand levels against four million pixels).
TABLE_MAX_LEVELS = 1 << 16

#: Side of the pixel grid on which an RGB file is checked for colour.
COLOUR_SAMPLE_SIDE = 128

#: A JPEG whose sides are both at least twice this is decoded at half scale (libjpeg scales
#: in the DCT, nearly for free): far larger than any model input still, and twice as fast.
DRAFT_MIN_SIDE = 512

#: The first bytes of every JPEG and PNG file.
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: JPEG colour spaces decoded through simplejpeg; the others (CMYK, YCCK) go through Pillow.
JPEG_FAST_COLOURSPACES = frozenset({"Gray", "YCbCr"})

#: File name suffixes pneumoscan reads; anything else is skipped when scanning folders.
IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png", ".dcm"})

ImageSource = str | Path | bytes | bytearray | Image.Image | np.ndarray


@dataclass(frozen=True)
class DicomInfo:
    """The few DICOM header facts used by the scope and population checks.

    The age and dates are patient data: they are kept out of ``repr`` (so out of any log
    line that formats this object) and only :mod:`pneumoscan.population` reads them.
    """

    modality: str
    body_part: str
    photometric: str
    view_position: str
    patient_age: str = field(default="", repr=False)  # DICOM AS, e.g. "062Y"
    birth_date: str = field(default="", repr=False)  # DICOM DA, YYYYMMDD
    study_date: str = field(default="", repr=False)
    acquisition_date: str = field(default="", repr=False)


@dataclass(frozen=True)
class DecodedImage:
    """A decoded X-ray: pixels in the project's convention plus where they came from."""

    pixels: np.ndarray  # (H, W) uint8, bright = dense
    source_format: str  # "jpeg", "png", "dicom", "array", ...
    was_color: bool  # True when the source had distinct colour channels
    dicom: DicomInfo | None = None


def is_dicom(data: bytes) -> bool:
    """Tell whether ``data`` starts like a DICOM Part 10 file (``DICM`` at offset 128)."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an X-ray into a ``(H, W)`` uint8 grayscale array (bright = dense).

    Args:
        source: a path, raw file bytes, a PIL image, or a numpy array (``(H, W)`` or
            ``(H, W, C)``; float arrays are min-max scaled).
        max_pixels: refuse images with more pixels than this.

    Raises:
        ImageDecodeError: unreadable, empty, truncated or unsupported data.
        ImageTooLargeError: more than ``max_pixels`` pixels.
    """
    return decode_image(source, max_pixels=max_pixels).pixels


def decode_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 min_side: int = 1, reduce_to: int | None = None) -> DecodedImage:
    """Like :func:`load_image`, but also report the format, colour and DICOM facts.

    ``reduce_to``: a DICOM compressed as JPEG 2000 or JPEG is decoded at a reduced
    resolution whose smaller side is still at least this many pixels
    (:mod:`pneumoscan.dicom_pixels`); None decodes every image whole.

    Raises:
        ImageTooSmallError: a side is shorter than ``min_side`` pixels (the Predictor
            passes :data:`MIN_SIDE`).
    """
    decoded = _decode(source, max_pixels, reduce_to)
    height, width = decoded.pixels.shape
    if min(height, width) < min_side:
        name = (Path(source).name if isinstance(source, (str, Path))
                else "<bytes>" if isinstance(source, (bytes, bytearray)) else "<image>")
        raise ImageTooSmallError(f"{name}: {width}x{height} pixels is far too small to be a chest "
                                 f"radiograph; send an image at least {min_side} pixels on "
                                 "each side")
    return decoded


def _decode(source: ImageSource, max_pixels: int,
            reduce_to: int | None = None) -> DecodedImage:
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    if isinstance(source, Image.Image):
        return _from_pil(source, "pil", max_pixels)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ImageDecodeError(f"{path}: no such file")
        data = path.read_bytes()
        name = path.name
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        name = "<bytes>"
    else:
        raise TypeError(f"cannot read an image from {type(source).__name__}")
    if not data:
        raise ImageDecodeError(f"{name}: the file is empty (0 bytes)")
    if is_dicom(data) or name.lower().endswith(".dcm"):
        return _from_dicom(data, name, max_pixels, reduce_to)
    return _from_encoded(data, name, max_pixels)


def _check_size(width: int, height: int, max_pixels: int, name: str) -> None:
    if width < 1 or height < 1:
        raise ImageDecodeError(f"{name}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width}x{height} = {width * height:,} pixels is over the limit of "
            f"{max_pixels:,}; downscale the image first"
        )


def _from_encoded(data: bytes, name: str, max_pixels: int) -> DecodedImage:
    decoded = _from_jpeg(data, name, max_pixels) if data.startswith(JPEG_MAGIC) else None
    if decoded is not None:
        return decoded
    try:
        # Pillow's own bomb check raises on >2x its limit and only warns between; we check
        # the header size ourselves, before decoding, against our limit instead.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image_format = (image.format or "unknown").lower()
            if image_format not in {"jpeg", "png"}:
                raise UnsupportedImageError(
                    f"{name}: {image_format.upper()} images are not supported; "
                    "use JPEG, PNG or DICOM"
                )
            _check_size(image.width, image.height, max_pixels, name)
            was_color: bool | None = None  # None: judge from the decoded pixels
            if image_format == "jpeg":
                was_color = image.mode != "L" and _jpeg_has_colour(data)
                # JPEG draft mode: decode the luminance only (libjpeg skips the colour
                # planes; for a grey image saved as RGB the pixels are the same), and at a
                # reduced scale when the image is far larger than any model input (a
                # 2000 px radiograph -> 1000 px).
                scale = _jpeg_scale(image.width, image.height)
                image.draft("L", (image.width // scale, image.height // scale))
            image.load()
    except Image.DecompressionBombError as exc:  # header claims > 2x Pillow's own limit
        raise ImageTooLargeError(
            f"{name}: the header claims too many pixels ({exc}); the limit is "
            f"{max_pixels:,} pixels"
        ) from exc
    except UnidentifiedImageError as exc:
        raise UnsupportedImageError(
            f"{name}: not a readable image (expected JPEG, PNG or DICOM)"
        ) from exc
    except PneumoscanError:
        raise
    except OSError as exc:  # truncated or corrupt stream
        raise ImageDecodeError(f"{name}: the image data is truncated or corrupt ({exc})") from exc
    except (ValueError, SyntaxError, IndexError, TypeError, struct.error) as exc:
        # Pillow's parsers raise these on malformed headers (found by fuzzing the API).
        raise ImageDecodeError(f"{name}: the image data is corrupt ({exc})") from exc
    return _from_pil(image, image_format, max_pixels, was_color)


def _from_jpeg(data: bytes, name: str, max_pixels: int) -> DecodedImage | None:
    """A grey or YCbCr JPEG through simplejpeg: the luminance plane (the same pixels as
    Pillow's draft mode "L") and the colour probe, each one libjpeg-turbo call. None when
    simplejpeg cannot read it (CMYK, 12-bit, corrupt): the Pillow path then decides."""
    try:
        height, width, colourspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colourspace not in JPEG_FAST_COLOURSPACES:
        return None
    _check_size(width, height, max_pixels, name)
    scale = _jpeg_scale(width, height)
    try:
        gray = simplejpeg.decode_jpeg(data, colorspace="GRAY", min_factor=scale,
                                      min_width=-(-width // scale),
                                      min_height=-(-height // scale))
        was_color = colourspace != "Gray" and _has_colour(simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_factor=8, min_width=1, min_height=1))
    except ValueError:  # truncated or corrupt: Pillow words the error
        return None
    return DecodedImage(gray.reshape(gray.shape[:2]), "jpeg", was_color)  # (H, W, 1) -> (H, W)


def _jpeg_scale(width: int, height: int) -> int:
    """The JPEG draft reduction: 2 when both sides are at least 2 x DRAFT_MIN_SIDE, else 1."""
    return 2 if min(width, height) >= 2 * DRAFT_MIN_SIDE else 1


def _jpeg_has_colour(data: bytes) -> bool:
    """Whether a colour-mode JPEG holds a colour picture, judged on a 1/8-scale decode (libjpeg
    computes only each 8 x 8 block's mean: cheap, and colour lives in those means)."""
    small = Image.open(io.BytesIO(data))
    small.draft("RGB", (max(1, small.width // 8), max(1, small.height // 8)))
    return _has_colour(np.asarray(small.convert("RGB")))


def _has_colour(rgb: np.ndarray) -> bool:
    """A grayscale radiograph saved as RGB ``(H, W, 3)`` has equal channels; a photograph
    does not. A grid of about 128 x 128 pixels tells them apart as well as every pixel."""
    step = max(1, max(rgb.shape[:2]) // COLOUR_SAMPLE_SIDE)
    sample = rgb[::step, ::step].astype(np.int16)
    # Mean |R - G| or mean |G - B| over 3 grey levels, in few numpy calls (each costs
    # tens of microseconds in a server, right after the model has flushed the caches).
    differences = np.abs(sample[..., 1:] - sample[..., :2]).sum(axis=(0, 1))
    return bool(differences.max() > 3.0 * sample.shape[0] * sample.shape[1])


def _from_pil(image: Image.Image, image_format: str, max_pixels: int,
              was_color: bool | None = None) -> DecodedImage:
    _check_size(image.width, image.height, max_pixels, "image")
    if was_color is None:
        was_color = image.mode in {"RGB", "RGBA", "P", "CMYK", "YCbCr", "LA", "PA"} and \
            _has_colour(np.asarray(image if image.mode == "RGB" else image.convert("RGB")))
    if image.mode in {"I;16", "I;16B", "I;16L", "I", "F"}:
        return DecodedImage(_scale_to_uint8(np.asarray(image)), image_format, False)
    gray = np.asarray(image if image.mode == "L" else image.convert("L"), dtype=np.uint8)
    return DecodedImage(np.ascontiguousarray(gray), image_format, was_color)


def _from_array(array: np.ndarray, max_pixels: int) -> DecodedImage:
    from_uint8 = array.dtype == np.uint8  # its channel mean is still on the 0..255 scale
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        channels = array[..., :3].astype(np.float64)
        was_color = array.shape[2] >= 3 and float(np.ptp(channels, axis=2).mean()) > 3.0
        array = channels.mean(axis=2)
    elif array.ndim == 2:
        was_color = False
    else:
        raise ImageDecodeError(f"expected an (H, W) or (H, W, C) array, got shape {array.shape}")
    _check_size(array.shape[1], array.shape[0], max_pixels, "array")
    if array.dtype == np.uint8:
        pixels = array
    elif from_uint8:
        pixels = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    else:
        pixels = _scale_to_uint8(array)
    return DecodedImage(np.ascontiguousarray(pixels), "array", was_color)


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return _rescale(values, low, high)


def _row_blocks(values: np.ndarray) -> Iterator[slice]:
    """Slices of ``values``' rows holding about :data:`RESCALE_BLOCK_PIXELS` each."""
    row_pixels = max(1, int(np.prod(values.shape[1:], dtype=np.int64)))
    step = max(1, RESCALE_BLOCK_PIXELS // row_pixels)
    for start in range(0, values.shape[0], step):
        yield slice(start, start + step)


def _level_range(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """For an integer image spanning at most :data:`TABLE_MAX_LEVELS` levels: every level
    from its lowest to its highest value (in its dtype) and whether each occurs; None for
    other images. ``transform(levels)`` holds every value that ``transform(values)`` can
    take when ``transform`` acts on each value alone (windowing and VOI LUTs do)."""
    if values.dtype.kind not in "iu" or values.size == 0:
        return None
    first, last = int(values.min()), int(values.max())
    if last - first >= TABLE_MAX_LEVELS:
        return None
    levels = np.arange(first, last + 1).astype(values.dtype)
    present = np.zeros(len(levels), dtype=bool)
    for rows in _row_blocks(values):  # bincount works in int64: a block at a time
        present |= np.bincount(_level_index(values[rows], levels).ravel(),
                               minlength=len(levels)) > 0
    return levels, present


def _level_index(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Each value's index into ``levels`` (its first level and up)."""
    if values.dtype.kind == "u":  # no value is below the first level: the difference fits
        return values - levels[0]
    return values.astype(np.int64) - int(levels[0])  # signed: it may not fit the dtype


def _rescale(values: np.ndarray, low: float, high: float,
             transform: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """``clip(rint((transform(values) - low) / (high - low) * 255), 0, 255)`` as uint8, a
    block of rows at a time: the intermediates stay a few MB, where the whole-image
    expression held five full-size float64 copies (1.5 GB for a 50 MP 16-bit PNG).

    ``transform`` acts on each value alone. An integer image of at most
    :data:`TABLE_MAX_LEVELS` levels goes through a table of its levels: the expression once
    per level, then a lookup per pixel (the same values, bit for bit)."""
    return _rescale_levels(values, _level_range(values), low, high, transform)


def _rescale_levels(values: np.ndarray, level_range: tuple[np.ndarray, np.ndarray] | None,
                    low: float, high: float,
                    transform: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """:func:`_rescale` with ``values``' :func:`_level_range` already known."""
    if level_range is None:
        return _rescale_rows(values, low, high, transform)
    levels, _ = level_range
    table = _rescale_rows(levels, low, high, transform)
    out = np.empty(values.shape, dtype=np.uint8)
    for rows in _row_blocks(values):
        out[rows] = np.take(table, _level_index(values[rows], levels))
    return out


def _rescale_rows(values: np.ndarray, low: float, high: float,
                  transform: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """:func:`_rescale`'s expression on every value, a block of rows at a time."""
    out = np.empty(values.shape, dtype=np.uint8)
    for rows in _row_blocks(values):
        block = values[rows].astype(np.float64) if transform is None \
            else np.array(transform(values[rows]), dtype=np.float64)
        block -= low
        block /= high - low
        block *= 255.0
        np.rint(block, out=block)
        np.clip(block, 0, 255, out=block)
        out[rows] = block
    return out


def _from_dicom(data: bytes, name: str, max_pixels: int,
                reduce_to: int | None = None) -> DecodedImage:
    import pydicom  # imported only when a DICOM arrives
    from pydicom.errors import InvalidDicomError

    from pneumoscan.dicom_pixels import read_dicom_pixels

    try:
        data = _inflated(data, name, max_pixels)
        dataset = pydicom.dcmread(io.BytesIO(data), force=not is_dicom(data))
    except PneumoscanError:
        raise
    except (InvalidDicomError, EOFError, OSError, ValueError, AttributeError, KeyError,
            NotImplementedError, TypeError, IndexError, struct.error) as exc:
        raise ImageDecodeError(f"{name}: not a readable DICOM file ({exc.__class__.__name__})") \
            from exc
    if "PixelData" not in dataset:
        raise ImageDecodeError(f"{name}: the DICOM file holds no image (no PixelData)")
    rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
    _check_size(columns, rows, max_pixels, name)
    _check_frames(dataset, columns * rows, max_pixels, name)
    try:
        # The first frame only (dicom_pixels): a radiograph is one image, and decoding every
        # frame of a multi-frame file would cost memory and time for pixels nobody uses.
        pixels: np.ndarray[Any, Any] = read_dicom_pixels(dataset, reduce_to)
    except Exception as exc:  # decoders raise many types; all mean "cannot decode"
        raise ImageDecodeError(
            f"{name}: the DICOM pixel data cannot be decoded ({exc.__class__.__name__}); "
            "is it truncated, or compressed with a codec that is not installed?"
        ) from exc
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    was_color = False
    if pixels.ndim == 3:  # (H, W, samples): RGB (pydicom converts YBR to RGB)
        was_color = _has_colour(pixels[..., :3] if pixels.dtype == np.uint8
                                else _scale_to_uint8(pixels[..., :3]))
        gray = _scale_to_uint8(pixels.mean(axis=2))
    else:
        gray = _dicom_gray_to_uint8(pixels, dataset)
    if photometric == "MONOCHROME1":
        gray = 255 - gray  # MONOCHROME1: low values are bright; flip to bright = dense
    info = DicomInfo(
        modality=str(dataset.get("Modality", "")),
        body_part=str(dataset.get("BodyPartExamined", "")),
        photometric=photometric,
        view_position=str(dataset.get("ViewPosition", "")),
        patient_age=_text(dataset, "PatientAge"),
        birth_date=_text(dataset, "PatientBirthDate"),
        study_date=_text(dataset, "StudyDate"),
        acquisition_date=_text(dataset, "AcquisitionDate"),
    )
    logger.debug("decoded a DICOM: %sx%s %s", columns, rows, photometric)
    return DecodedImage(gray, "dicom", was_color, info)


def _inflated(data: bytes, name: str, max_pixels: int) -> bytes:
    """``data``, or for a Deflated Explicit VR Little Endian file the same file inflated
    (rewritten as Explicit VR Little Endian), inflated to a bounded size.

    pydicom inflates such a file whole, with no limit, before any size can be checked: a
    few MB of zeros become tens of GB. Here at most what ``max_pixels`` 16-bit pixels and
    a header need is inflated; a dataset that inflates beyond it is refused.

    Raises:
        ImageTooLargeError: the dataset inflates beyond that bound.
        ImageDecodeError: the deflated stream is corrupt.
    """
    if not is_dicom(data):
        return data  # no file meta: nothing says the rest is deflated
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

    stream = io.BytesIO(data)
    stream.seek(132)
    meta = read_dataset(stream, is_implicit_VR=False, is_little_endian=True,
                        stop_when=lambda tag, vr, length: tag.group != 2)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return data
    limit = max_pixels * INFLATED_BYTES_PER_PIXEL + INFLATED_HEADER_BYTES
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(memoryview(data)[stream.tell():], limit + 1)
    except zlib.error as exc:
        raise ImageDecodeError(f"{name}: the deflated DICOM data is corrupt") from exc
    if len(inflated) > limit:
        del inflated  # the traceback keeps this frame (and 100 MB) alive otherwise
        raise ImageTooLargeError(
            f"{name}: the deflated DICOM dataset inflates to more than {limit:,} bytes, more "
            f"than an image within the limit of {max_pixels:,} pixels needs; refused as a "
            "decompression bomb")
    from pydicom.dataset import FileMetaDataset

    meta = FileMetaDataset(meta)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    rewritten = DicomBytesIO()
    rewritten.write(data[:132])
    write_file_meta_info(rewritten, meta, enforce_standard=False)
    rewritten.write(inflated)
    return rewritten.getvalue()


def _check_frames(dataset: Any, frame_pixels: int, max_pixels: int, name: str) -> None:
    """Count every frame of a multi-frame file into the pixel limit (only the first is
    decoded, but a file of forty full-size frames is no radiograph and is refused)."""
    try:
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise ImageDecodeError(f"{name}: the DICOM Number of Frames is not a number") from exc
    if frames < 1:
        raise ImageDecodeError(f"{name}: the DICOM file claims {frames} frames")
    if frames * frame_pixels > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {frames} frames of {frame_pixels:,} pixels = {frames * frame_pixels:,} "
            f"pixels is over the limit of {max_pixels:,}; send the radiograph as one frame")


def _text(dataset: Any, keyword: str) -> str:
    """A header element's raw text; "" when absent or empty.

    Read without pydicom's value conversion: that validates the value and logs an invalid
    one verbatim, which for these elements (age, dates) would put patient data in a log.
    """
    element = dataset.get_item(keyword)
    value = None if element is None else element.value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return "" if value is None else str(value).strip(" \x00")


def _dicom_gray_to_uint8(pixels: np.ndarray, dataset: Any) -> np.ndarray:
    """Map stored DICOM values to 0..255 with the file's own display rules.

    - a VOI LUT or window in the header is applied (it is what a viewer shows), and its
      output range ``0 .. 2**BitsStored - 1`` is mapped to 0..255;
    - 8-bit data with no window is used as it is;
    - deeper data with no window is clipped to ``2**BitsStored - 1`` and auto-windowed on
      its 0.5th..99.5th percentiles, so a few hot pixels cannot flatten the contrast.
    """
    from pydicom.pixels import apply_voi_lut

    bits_stored = int(dataset.get("BitsStored", 8) or 8)
    top = float(2**bits_stored - 1)
    if "WindowCenter" in dataset or "VOILUTSequence" in dataset:
        def window(block: np.ndarray) -> np.ndarray:
            return np.asarray(apply_voi_lut(block, dataset), dtype=np.float64)

        low, high = 0.0, top  # the output range, widened to what the window yields
        level_range = _level_range(pixels)
        if level_range is not None:  # the levels that occur hold every windowed value
            levels, present = level_range
            blocks: Iterable[np.ndarray] = [window(levels)[present]]
        else:
            blocks = (window(pixels[rows]) for rows in _row_blocks(pixels))
        for windowed in blocks:
            low, high = min(low, float(windowed.min())), max(high, float(windowed.max()))
        return _rescale_levels(pixels, level_range, low, high, window)
    minimum, maximum = float(pixels.min()), float(pixels.max())
    if bits_stored <= 8 and minimum >= 0 and maximum <= 255:
        return pixels.astype(np.uint8)
    values = np.clip(pixels, 0, top) if minimum >= 0 and maximum > top else pixels
    low, high = np.percentile(values, [0.5, 99.5])
    if high <= low:
        return _scale_to_uint8(values)
    return _rescale(values, float(low), float(high))
