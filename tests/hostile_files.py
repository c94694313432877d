"""Hostile files for the hardening tests and ``benchmarks/attack.py``: small on disk, huge
once decoded. Each builder returns the bytes of a complete file; none of them holds the
decoded size in memory while building it.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.pixels.encoders import JPEG2000LosslessEncoder
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    generate_uid,
)

#: Zeros deflated per repeated block (a full flush makes each block's bytes identical).
_ZERO_BLOCK = 16 * 1024 * 1024


def radiograph_header(rows: int, columns: int, *, bits: int = 16, frames: int = 1,
                      samples: int = 1) -> Dataset:
    """The header of a CR image (UIDs, patient, study, pixel description), no pixels."""
    dataset = Dataset()
    dataset.SOPClassUID = ComputedRadiographyImageStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.StudyInstanceUID = generate_uid()
    dataset.SeriesInstanceUID = generate_uid()
    dataset.PatientName = "Hostile^File"
    dataset.PatientID = "ATTACK-1"
    dataset.Modality = "CR"
    dataset.BodyPartExamined = "CHEST"
    dataset.ViewPosition = "PA"
    dataset.Rows, dataset.Columns = rows, columns
    dataset.SamplesPerPixel = samples
    dataset.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if samples > 1:
        dataset.PlanarConfiguration = 0
    dataset.BitsAllocated = bits
    dataset.BitsStored = bits
    dataset.HighBit = bits - 1
    dataset.PixelRepresentation = 0
    if frames > 1:
        dataset.NumberOfFrames = frames
    return dataset


def part10(dataset: Dataset, transfer_syntax: str, body: bytes | None = None) -> bytes:
    """``dataset`` as a DICOM file: preamble, file meta, then ``body`` when given (already
    encoded in ``transfer_syntax``), else the dataset itself in Explicit VR LE."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = generate_uid()
    out = DicomBytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, meta)
    if body is None:
        out.is_little_endian, out.is_implicit_VR = True, False
        write_dataset(out, dataset)
    else:
        out.write(body)
    return out.getvalue()


def deflate_bomb(inflated_bytes: int) -> bytes:
    """A Deflated Explicit VR Little Endian CR whose dataset inflates to about
    ``inflated_bytes`` (all but the header is a zero-filled Pixel Data element): about
    1,000 times smaller on disk."""
    blocks = max(1, inflated_bytes // _ZERO_BLOCK)
    header = DicomBytesIO()
    header.is_little_endian, header.is_implicit_VR = True, False
    write_dataset(header, radiograph_header(512, 512))
    # Pixel Data, OW, 4-byte length: the zeros follow in the deflated stream.
    header.write(b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", blocks * _ZERO_BLOCK))
    pieces = [_full_flush(header.getvalue())]
    pieces += [_full_flush(bytes(_ZERO_BLOCK))] * blocks
    closing = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    pieces.append(closing.flush())  # the final (empty) block
    return part10(radiograph_header(512, 512), DeflatedExplicitVRLittleEndian,
                  b"".join(pieces))


def _full_flush(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_FULL_FLUSH)


def deflated_dicom(pixels: np.ndarray) -> bytes:
    """A small, honest Deflated Explicit VR Little Endian CR of ``pixels`` (uint16)."""
    dataset = radiograph_header(*pixels.shape)
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    plain = DicomBytesIO()
    plain.is_little_endian, plain.is_implicit_VR = True, False
    write_dataset(plain, dataset)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return part10(dataset, DeflatedExplicitVRLittleEndian,
                  compressor.compress(plain.getvalue()) + compressor.flush())


def frame_bomb(frames: int, side: int) -> bytes:
    """A JPEG 2000 CR of ``frames`` blank ``side`` x ``side`` frames (a few hundred bytes a
    frame): each frame alone is within the pixel limit, all of them together are not."""
    frame = JPEG2000LosslessEncoder.encode(
        np.zeros((side, side), np.uint8), rows=side, columns=side, samples_per_pixel=1,
        bits_allocated=8, bits_stored=8, pixel_representation=0,
        photometric_interpretation="MONOCHROME2", number_of_frames=1)
    dataset = radiograph_header(side, side, bits=8, frames=frames)
    dataset.PixelData = encapsulate([frame] * frames)
    dataset["PixelData"].VR = "OB"
    return part10(dataset, JPEG2000Lossless)


def multiframe_dicom(frames: list[np.ndarray]) -> bytes:
    """An uncompressed 8-bit CR of several frames (Explicit VR Little Endian)."""
    dataset = radiograph_header(*frames[0].shape, bits=8, frames=len(frames))
    dataset.PixelData = np.stack(frames).astype(np.uint8).tobytes()
    return part10(dataset, ExplicitVRLittleEndian)


def rgb_dicom(rgb: np.ndarray) -> bytes:
    """An uncompressed 8-bit RGB image ``(H, W, 3)`` as a DICOM file."""
    dataset = radiograph_header(rgb.shape[0], rgb.shape[1], bits=8, samples=3)
    dataset.PixelData = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return part10(dataset, ExplicitVRLittleEndian)


def png16(side: int) -> bytes:
    """A ``side`` x ``side`` 16-bit grayscale PNG of a smooth ramp: ~100 KB at 7,000 px,
    ~100 MB of pixels once decoded."""
    ramp = (np.arange(side, dtype=np.uint32) * 65535 // max(1, side - 1)).astype(np.uint16)
    image = Image.new("I;16", (side, side))
    row = Image.frombytes("I;16", (side, 1), ramp.tobytes())
    for top in range(side):
        image.paste(row, (0, top))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=9)
    return buffer.getvalue()
