"""The decoder against files that are small on disk and huge once decoded: each is refused
(or decoded) within a stated bound on the process's peak memory, measured in a fresh
interpreter (``ru_maxrss`` before and after the one call)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hostile_files import (
    deflate_bomb,
    deflated_dicom,
    frame_bomb,
    multiframe_dicom,
    part10,
    png16,
    radiograph_header,
    rgb_dicom,
)
from pneumoscan.errors import ImageTooLargeError
from pneumoscan.imaging import decode_image

#: Decoding in a child: what its peak resident memory grew by during the call alone.
_MEASURE = """
import json, resource, sys
from pathlib import Path
import numpy, pydicom, PIL.Image
from pneumoscan.imaging import decode_image
data = Path(sys.argv[1]).read_bytes()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decoded = decode_image(data)
    outcome = f"decoded {decoded.pixels.shape[1]}x{decoded.pixels.shape[0]}"
except Exception as exc:
    outcome = type(exc).__name__
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"outcome": outcome, "growth_mb": growth}))
"""


def decode_measured(tmp_path: Path, data: bytes) -> tuple[str, float]:
    """``(outcome, MB)``: what decoding ``data`` in a fresh process gave, and how much its
    peak resident memory grew meanwhile."""
    path = tmp_path / "input.bin"
    path.write_bytes(data)
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True,
                          text=True, timeout=300, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["outcome"], result["growth_mb"]


def test_deflate_bomb_is_refused_within_bounded_memory(tmp_path: Path) -> None:
    """1 MB that inflates to 1 GiB: pydicom alone inflates all of it before any check.
    Bound: the inflate stops at 2 bytes a pixel of the 50 MP limit (~101 MB), so the peak
    grows by under 250 MB."""
    bomb = deflate_bomb(1 << 30)
    assert len(bomb) < 2_000_000
    outcome, growth = decode_measured(tmp_path, bomb)
    assert outcome == "ImageTooLargeError"
    assert growth < 250, f"peak memory grew by {growth:.0f} MB"


def test_frame_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    """40 JPEG 2000 frames of 4,000 x 4,000 (9 KB; 640 MB decoded): every frame counts
    into the pixel limit. Bound: under 50 MB of growth (nothing is decoded)."""
    outcome, growth = decode_measured(tmp_path, frame_bomb(40, 4000))
    assert outcome == "ImageTooLargeError"
    assert growth < 50, f"peak memory grew by {growth:.0f} MB"


def test_16_bit_png_decodes_within_bounded_memory(tmp_path: Path) -> None:
    """A 111 KB 16-bit PNG of 7,000 x 7,000 (49 MP, under the limit) took RSS to 1.48 GB
    through whole-image float64 copies. Bound: Pillow's 16-bit image (98 MB), its numpy
    copy (98 MB) and the uint8 result (49 MB) are the floor; under 400 MB of growth."""
    outcome, growth = decode_measured(tmp_path, png16(7000))
    assert outcome == "decoded 7000x7000"
    assert growth < 400, f"peak memory grew by {growth:.0f} MB"


def test_16_bit_dicom_decodes_within_bounded_memory(tmp_path: Path) -> None:
    """A 7,000 x 7,000 16-bit uncompressed DICOM with a window (auto-window and VOI paths).
    Bound: the 98 MB pixel data, pydicom's array of it and the uint8 result; under 450 MB
    of growth (whole-image float64 copies took it past 1 GB)."""
    dataset = radiograph_header(7000, 7000)
    ramp = (np.arange(7000, dtype=np.uint32) * 65535 // 6999).astype(np.uint16)
    dataset.PixelData = np.broadcast_to(ramp, (7000, 7000)).tobytes()
    from pydicom.uid import ExplicitVRLittleEndian

    plain = part10(dataset, ExplicitVRLittleEndian)
    outcome, growth = decode_measured(tmp_path, plain)
    assert outcome == "decoded 7000x7000"
    assert growth < 450, f"peak memory grew by {growth:.0f} MB"
    dataset.WindowCenter, dataset.WindowWidth = 32768, 40000
    outcome, growth = decode_measured(tmp_path, part10(dataset, ExplicitVRLittleEndian))
    assert outcome == "decoded 7000x7000"
    assert growth < 450, f"peak memory grew by {growth:.0f} MB (windowed)"


def test_honest_deflated_dicom_decodes_like_the_plain_one() -> None:
    yy, xx = np.mgrid[0:300, 0:200]
    pixels = ((xx * 7 + yy * 3) % 4096).astype(np.uint16)
    deflated = decode_image(deflated_dicom(pixels))
    dataset = radiograph_header(300, 200)
    dataset.PixelData = pixels.tobytes()
    from pydicom.uid import ExplicitVRLittleEndian

    plain = decode_image(part10(dataset, ExplicitVRLittleEndian))
    assert deflated.source_format == "dicom"
    np.testing.assert_array_equal(deflated.pixels, plain.pixels)
    assert deflated.dicom is not None and deflated.dicom.modality == "CR"


def test_deflate_bound_follows_the_pixel_limit() -> None:
    """The inflate bound is the pixel limit's: a dataset needing more bytes than
    ``max_pixels`` 16-bit pixels is refused even when its own header claims little."""
    pixels = np.zeros((300, 300), np.uint16)
    data = deflated_dicom(pixels)
    assert decode_image(data).pixels.shape == (300, 300)
    with pytest.raises(ImageTooLargeError, match="inflates to more than"):
        # 90,000 pixels of 2 bytes; this limit allows 10,000 pixels + 1 MiB of header.
        decode_image(deflate_bomb(8 << 20), max_pixels=10_000)


def test_only_the_first_frame_is_used() -> None:
    first = np.full((100, 120), 40, np.uint8)
    first[20:60, 30:90] = 200
    second = np.full((100, 120), 250, np.uint8)
    decoded = decode_image(multiframe_dicom([first, second, second]))
    np.testing.assert_array_equal(decoded.pixels, first)


def test_frames_count_into_the_pixel_limit() -> None:
    frames = [np.zeros((100, 100), np.uint8)] * 3
    assert decode_image(multiframe_dicom(frames), max_pixels=30_000).pixels.shape == (100, 100)
    with pytest.raises(ImageTooLargeError, match="3 frames"):
        decode_image(multiframe_dicom(frames), max_pixels=29_999)


def test_colour_dicom_is_reported_as_colour() -> None:
    """A false-colour picture as an RGB DICOM is colour, as the same picture as PNG is; a
    grey picture stored as RGB is not."""
    yy, xx = np.mgrid[0:128, 0:128]
    colour = np.stack([xx * 2, yy * 2, 255 - xx * 2], axis=2).astype(np.uint8)
    assert decode_image(rgb_dicom(colour)).was_color
    grey = np.repeat((xx * 2).astype(np.uint8)[..., None], 3, axis=2)
    assert not decode_image(rgb_dicom(grey)).was_color


def test_colour_dicom_is_out_of_scope_like_the_same_png() -> None:
    from pneumoscan.scope import check_image

    yy, xx = np.mgrid[0:256, 0:256]
    colour = np.stack([xx, yy, 255 - xx], axis=2).astype(np.uint8)
    verdict = check_image(decode_image(rgb_dicom(colour)))
    assert not verdict.in_scope and "colour" in verdict.reason
