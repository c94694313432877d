"""A DICOM's stored pixel values, decoded at no more resolution than the caller needs.

A compressed radiograph of ~2,000 px is read by a model whose input is a few hundred
pixels. JPEG (baseline, 8-bit) scales in the DCT: libjpeg-turbo computes each 8 x 8 block
at 1/2, 1/4 or 1/8 of its size directly from the coefficients, for a fraction of the work.
:func:`read_dicom_pixels` uses it when asked for a minimum side (``min_side``), choosing the
largest scale whose smaller side is still at least ``min_side``; everything else
(uncompressed, JPEG 2000, JPEG-LS, RLE, multi-sample, signed or multi-frame data) is
decoded whole by pydicom, as it would be without ``min_side``.

JPEG 2000's resolution levels were measured and are not used: the level-1 image of the
shared 1,955 px film moves P(pneumonia) by 0.05 (0.02 to 0.09 with the sub-pixel grid
corrected, depending on the resize filter), because that film's answer moves as much under
a one-pixel shift; docs/benchmarks.md has the figures. The values are the stored values of the
first frame, as ``Dataset.pixel_array`` gives them: the modality and VOI transforms come
after, in :mod:`pneumoscan.imaging`.

JPEG-LS has no reduced decode; pydicom is asked to decode it with CharLS (pyjpegls, four
times faster than libjpeg here) whenever pyjpegls is installed.
"""

from __future__ import annotations

import logging

import numpy as np
import simplejpeg
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame

logger = logging.getLogger(__name__)

#: JPEG DCT scale factors libjpeg-turbo computes in the transform (M/8 with M = 4, 2, 1).
JPEG_SCALES = (8, 4, 2)

JPEG_SCALED_SYNTAXES = frozenset({uid.JPEGBaseline8Bit})
JPEG_LS_SYNTAXES = frozenset({uid.JPEGLSLossless, uid.JPEGLSNearLossless})


def read_dicom_pixels(dataset: Dataset, min_side: int | None = None) -> np.ndarray:
    """The first frame's stored values, at least ``min_side`` pixels on the smaller side
    when the codec can decode less than the whole image; the whole image otherwise.

    Args:
        dataset: a dataset with Pixel Data (and its file meta transfer syntax).
        min_side: the smallest side the caller needs; None decodes full size.

    Returns:
        ``(H, W)`` for one sample per pixel (a reduced decode is always this), otherwise
        what ``Dataset.pixel_array`` gives.

    Raises:
        whatever pydicom or the codecs raise on undecodable data (the caller words it).
    """
    if min_side is not None and _reducible(dataset):
        frame = get_frame(dataset.PixelData, 0, number_of_frames=1)
        reduced = _jpeg_reduced(frame, int(dataset.Rows), int(dataset.Columns), min_side)
        if reduced is not None:
            return reduced
    return _pixel_array(dataset)


def _reducible(dataset: Dataset) -> bool:
    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return syntax in JPEG_SCALED_SYNTAXES \
        and int(dataset.get("SamplesPerPixel", 1)) == 1 \
        and int(dataset.get("PixelRepresentation", 0)) == 0 \
        and int(dataset.get("NumberOfFrames", 1) or 1) == 1


def jpeg_scale(rows: int, columns: int, min_side: int) -> int:
    """The largest DCT scale-down (8, 4, 2 or 1) keeping the smaller side >= ``min_side``."""
    return next((s for s in JPEG_SCALES if -(-min(rows, columns) // s) >= min_side), 1)


def _jpeg_reduced(frame: bytes, rows: int, columns: int, min_side: int) -> np.ndarray | None:
    """An 8-bit grey JPEG decoded scaled in the DCT by libjpeg-turbo; None when no scale
    applies or the stream is not 8-bit grey."""
    scale = jpeg_scale(rows, columns, min_side)
    if scale == 1:
        return None
    try:
        height, width, colourspace, _ = simplejpeg.decode_jpeg_header(frame)
    except ValueError:
        return None
    if colourspace != "Gray" or (height, width) != (rows, columns):
        return None
    gray = simplejpeg.decode_jpeg(frame, colorspace="GRAY", min_factor=scale,
                                  min_width=-(-width // scale), min_height=-(-height // scale))
    return np.ascontiguousarray(gray.reshape(gray.shape[:2]))


def _pixel_array(dataset: Dataset) -> np.ndarray:
    """``Dataset.pixel_array`` of the first frame only, decoding JPEG-LS with CharLS when it
    is installed. (Each ``pixel_array_options`` call sets every option anew: the frame index
    goes in the same call as the plugin.)"""
    if dataset.file_meta.get("TransferSyntaxUID") in JPEG_LS_SYNTAXES and _has_charls():
        dataset.pixel_array_options(index=0, decoding_plugin="pyjpegls")
    else:
        dataset.pixel_array_options(index=0)
    pixels: np.ndarray = dataset.pixel_array
    return pixels


def _has_charls() -> bool:
    from pydicom.pixels import get_decoder

    decoder = get_decoder(uid.JPEGLSLossless)
    return "pyjpegls" in decoder.available_plugins
