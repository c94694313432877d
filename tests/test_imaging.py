"""Image decoding: JPEG/PNG/DICOM, the pixel convention, and every way bytes can be bad."""

from __future__ import annotations

import io
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumoscan import imaging
from pneumoscan.errors import ImageDecodeError, ImageTooLargeError, UnsupportedImageError
from pneumoscan.imaging import decode_image, is_dicom, load_image

# README of ../shared/data/dicom: (rows, columns) and photometric interpretation per file.
DICOM_FILES = {
    "dx_nih_no_finding.dcm": ((1024, 1024), "MONOCHROME2"),
    "cr_siim_pa_jpeg_baseline.dcm": ((1024, 1024), "MONOCHROME2"),
    "cr_siim_pa_header_says_monochrome1.dcm": ((1024, 1024), "MONOCHROME1"),
    "cr_nema_pa_monochrome1_jpeg2000.dcm": ((1955, 1841), "MONOCHROME1"),
    "cr_nema_pa_monochrome1_jpegls.dcm": ((1955, 1841), "MONOCHROME1"),
    "cr_ap_256px_monochrome1.dcm": ((256, 256), "MONOCHROME1"),
}


def _encode(pixels: np.ndarray, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, image_format, **options)
    return buffer.getvalue()


def _noise(size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` 8-bit gray pixels, with a tiny IDAT."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def decoded_dicoms(dicom_dir: Path) -> dict[str, object]:
    """Every shared DICOM decoded once (the JPEG 2000 one takes about a second)."""
    return {p.name: decode_image(p) for p in sorted(dicom_dir.glob("*.dcm"))}


# --- DICOM -------------------------------------------------------------------------------


def test_every_shared_dicom_decodes_to_uint8_with_contrast(decoded_dicoms: dict) -> None:
    assert set(DICOM_FILES) <= set(decoded_dicoms), "a README-listed DICOM is missing"
    for name, decoded in decoded_dicoms.items():
        pixels = decoded.pixels
        assert pixels.dtype == np.uint8 and pixels.ndim == 2, name
        assert decoded.source_format == "dicom" and not decoded.was_color, name
        assert int(pixels.max()) - int(pixels.min()) > 150, name  # not a flat or clipped image
        assert pixels.std() > 25, name
        if name in DICOM_FILES:
            shape, photometric = DICOM_FILES[name]
            assert pixels.shape == shape, name
            assert decoded.dicom is not None and decoded.dicom.photometric == photometric


@pytest.mark.parametrize("name", ["dx_nih_no_finding.dcm", "cr_siim_pa_jpeg_baseline.dcm",
                                  "cr_nema_pa_monochrome1_jpeg2000.dcm",
                                  "cr_nema_pa_monochrome1_jpegls.dcm"])
def test_dicom_comes_out_bright_is_dense(decoded_dicoms: dict, name: str) -> None:
    """On a PA chest film the mediastinum/spine (centre) is brighter than the lungs."""
    pixels = decoded_dicoms[name].pixels.astype(float)
    h, w = pixels.shape
    band = pixels[int(0.3 * h):int(0.6 * h)]
    centre = band[:, int(0.45 * w):int(0.55 * w)].mean()
    left, right = band[:, int(0.2 * w):int(0.35 * w)], band[:, int(0.65 * w):int(0.8 * w)]
    lungs = max(left.mean(), right.mean())
    assert centre > lungs + 30


def test_monochrome1_header_is_inverted_pixel_for_pixel(decoded_dicoms: dict) -> None:
    plain = decoded_dicoms["cr_siim_pa_jpeg_baseline.dcm"].pixels
    flagged = decoded_dicoms["cr_siim_pa_header_says_monochrome1.dcm"].pixels
    np.testing.assert_array_equal(flagged, 255 - plain)


def test_jpeg2000_and_jpegls_of_one_image_agree(decoded_dicoms: dict) -> None:
    j2k = decoded_dicoms["cr_nema_pa_monochrome1_jpeg2000.dcm"].pixels.astype(int)
    jls = decoded_dicoms["cr_nema_pa_monochrome1_jpegls.dcm"].pixels.astype(int)
    assert j2k.shape == jls.shape
    difference = np.abs(j2k - jls)
    assert difference.mean() < 1.0  # near-lossless JPEG-LS: a grey level at most on average
    assert difference.max() <= 8


def test_dicom_from_bytes_equals_from_path(dicom_dir: Path) -> None:
    path = dicom_dir / "cr_ap_256px_monochrome1.dcm"
    data = path.read_bytes()
    assert is_dicom(data)
    np.testing.assert_array_equal(load_image(data), load_image(path))
    info = decode_image(data).dicom
    assert info is not None and info.modality == "CR"


@pytest.mark.filterwarnings("ignore:End of file reached:UserWarning")  # pydicom, truncated
def test_dicom_pixel_limit_and_truncation(dicom_dir: Path) -> None:
    data = (dicom_dir / "cr_siim_pa_jpeg_baseline.dcm").read_bytes()
    with pytest.raises(ImageTooLargeError, match="1024x1024"):
        load_image(data, max_pixels=1024 * 1024 - 1)
    with pytest.raises(ImageDecodeError):
        load_image(data[: len(data) // 2])  # never a grey or partial image


# --- JPEG / PNG --------------------------------------------------------------------------


def test_png_round_trip_is_exact() -> None:
    pixels = _noise()
    decoded = decode_image(_encode(pixels, "PNG"))
    assert decoded.source_format == "png" and not decoded.was_color
    np.testing.assert_array_equal(decoded.pixels, pixels)


def test_grayscale_jpeg_saved_as_rgb_is_not_colour(tmp_path: Path) -> None:
    gray = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    path = tmp_path / "x.jpeg"
    path.write_bytes(_encode(np.stack([gray] * 3, axis=2), "JPEG", quality=95))
    decoded = decode_image(path)
    assert decoded.source_format == "jpeg" and not decoded.was_color
    assert decoded.pixels.shape == (64, 64)
    assert np.abs(decoded.pixels.astype(int) - gray).mean() < 2


@pytest.mark.parametrize("mode", ["RGB", "CMYK"])
def test_colour_jpeg_is_flagged_and_turned_gray(mode: str) -> None:
    rng = np.random.default_rng(0)
    rgb = np.zeros((96, 128, 3), np.uint8)
    rgb[..., 0] = np.linspace(30, 220, 128, dtype=np.uint8)  # a red ramp over a blue field
    rgb[..., 2] = 180
    rgb = np.clip(rgb + rng.integers(0, 10, rgb.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buffer, format="JPEG", quality=90)
    decoded = decode_image(buffer.getvalue())
    assert decoded.source_format == "jpeg" and decoded.was_color
    assert decoded.pixels.shape == (96, 128) and decoded.pixels.dtype == np.uint8
    luma = np.asarray(Image.fromarray(rgb).convert("L"), dtype=int)
    assert np.abs(decoded.pixels.astype(int) - luma).mean() < 4  # the same grey image


def test_colour_verdict_is_a_mean_channel_difference_over_three() -> None:
    """Colour: mean |R - G| or mean |G - B| over 3 grey levels, exactly at the boundary."""
    grey = np.full((10, 10, 3), 100, np.uint8)
    at_three, over_three = grey.copy(), grey.copy()
    at_three[..., 2] = 103  # mean |G - B| = 3.0: still grey
    over_three[..., 2] = 103
    over_three[0, 0, 2] = 104  # mean 3.01
    assert not imaging._has_colour(grey) and not imaging._has_colour(at_three)
    assert imaging._has_colour(over_three)
    red = grey.copy()
    red[:5, :, 0] = 107  # mean |R - G| = 3.5
    assert imaging._has_colour(red)


def test_colour_photo_is_flagged_and_turned_gray() -> None:
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 50
    decoded = decode_image(_encode(rgb, "PNG"))
    assert decoded.was_color
    assert decoded.pixels.shape == (32, 32)
    assert int(decoded.pixels[0, 0]) == 65  # ITU-R 601 luma: 0.299 * 200 + 0.114 * 50


def test_sixteen_bit_png_is_scaled_to_full_range() -> None:
    ramp = np.linspace(1000, 40000, 64 * 64).reshape(64, 64).astype(np.uint16)
    pixels = load_image(_encode(ramp, "PNG"))
    assert pixels.dtype == np.uint8
    assert pixels.min() == 0 and pixels.max() == 255
    assert np.all(np.diff(pixels.ravel().astype(int)) >= 0)  # order kept


def test_empty_bytes_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="empty"):
        load_image(b"")
    (tmp_path / "empty.jpeg").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty"):
        load_image(tmp_path / "empty.jpeg")
    with pytest.raises(ImageDecodeError, match="no such file"):
        load_image(tmp_path / "missing.jpeg")


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_truncated_jpeg_raises_instead_of_grey_fill(keep: float) -> None:
    data = _encode(_noise(), "JPEG", quality=90)
    with pytest.raises(ImageDecodeError, match="truncated"):
        load_image(data[: int(len(data) * keep)])


def test_truncated_png_raises() -> None:
    data = _encode(_noise(), "PNG")
    with pytest.raises(ImageDecodeError):
        load_image(data[: len(data) // 2])


@pytest.mark.parametrize("image_format", ["GIF", "BMP", "TIFF"])
def test_other_formats_are_unsupported(image_format: str) -> None:
    with pytest.raises(UnsupportedImageError, match=image_format):
        load_image(_encode(_noise(16), image_format))


def test_garbage_and_pickles_are_unsupported() -> None:
    with pytest.raises(UnsupportedImageError):
        load_image(b"not an image at all" * 20)
    with pytest.raises(UnsupportedImageError):
        load_image(pickle.dumps({"a": 1}))


def test_header_claiming_a_huge_png_is_refused_before_decoding() -> None:
    # 10,000^2 = 100 MP: over our 50 MP default, under Pillow's own bomb limit.
    with pytest.raises(ImageTooLargeError, match="10000x10000"):
        load_image(_png_header_only(10_000, 10_000))
    # 100,000^2 = 10 GP: Pillow's own guard fires first; still a size error, not "unreadable".
    with pytest.raises(ImageTooLargeError):
        load_image(_png_header_only(100_000, 100_000))


def test_max_pixels_applies_to_real_images() -> None:
    data = _encode(_noise(64), "JPEG")
    with pytest.raises(ImageTooLargeError, match="4,096"):
        load_image(data, max_pixels=64 * 64 - 1)
    assert load_image(data, max_pixels=64 * 64).shape == (64, 64)
    with pytest.raises(ImageTooLargeError):
        load_image(_noise(64), max_pixels=100)


# --- arrays and PIL images ---------------------------------------------------------------


def test_arrays_follow_the_pixel_convention() -> None:
    gray = _noise(8)
    np.testing.assert_array_equal(load_image(gray), gray)
    rgb = np.stack([gray] * 3, axis=2)
    decoded = decode_image(rgb)
    assert not decoded.was_color
    np.testing.assert_array_equal(decoded.pixels, gray)
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 0] = 90
    decoded = decode_image(colour)
    assert decoded.was_color and int(decoded.pixels[0, 0]) == 30  # channel mean
    with pytest.raises(ImageDecodeError, match="shape"):
        load_image(np.zeros((2, 3, 4, 5), np.uint8))


def test_float_and_deep_arrays_are_min_max_scaled() -> None:
    unit = np.linspace(0.0, 1.0, 100).reshape(10, 10)  # a float image in [0, 1]
    pixels = load_image(unit)
    assert pixels.min() == 0 and pixels.max() == 255
    deep = np.array([[0, 1024], [2048, 4095]], dtype=np.uint16)
    np.testing.assert_array_equal(load_image(deep), [[0, 64], [128, 255]])
    np.testing.assert_array_equal(load_image(np.full((3, 3), 7.0)), np.zeros((3, 3)))


def test_pil_image_input() -> None:
    gray = _noise(16)
    decoded = decode_image(Image.fromarray(gray))
    assert decoded.source_format == "pil"
    np.testing.assert_array_equal(decoded.pixels, gray)
    with pytest.raises(TypeError):
        load_image(12345)  # type: ignore[arg-type]


def _decode_with_pillow(data: bytes, monkeypatch: pytest.MonkeyPatch) -> object:
    """The Pillow path alone (what every JPEG went through before simplejpeg)."""
    with monkeypatch.context() as patch:
        patch.setattr(imaging, "_from_jpeg", lambda *args: None)
        return decode_image(data)


def test_jpeg_fast_path_gives_pillows_pixels_on_training_images(
        shared_normal_images: list[Path], shared_pneumonia_images: list[Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    for path in shared_normal_images[:40] + shared_pneumonia_images[:40]:
        data = path.read_bytes()
        fast, pillow = decode_image(data), _decode_with_pillow(data, monkeypatch)
        np.testing.assert_array_equal(fast.pixels, pillow.pixels, err_msg=path.name)
        assert fast.was_color == pillow.was_color is False


@pytest.mark.parametrize("size", [(2001, 1777), (1024, 1100), (1023, 2000), (100, 37), (7, 5)])
@pytest.mark.parametrize("mode", ["L", "RGB", "colour"])
def test_jpeg_fast_path_matches_pillow_at_every_scale(size: tuple[int, int], mode: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Same pixels, same draft scale (halved when both sides are >= 1,024) and same colour
    verdict as Pillow's draft mode, for grey, grey-as-RGB and colour JPEGs."""
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    gray = ((xx * 7 + yy * 3) % 256).astype(np.uint8)
    pixels = {"L": gray, "RGB": np.stack([gray] * 3, axis=2),
              "colour": np.stack([gray, 255 - gray, gray // 2], axis=2)}[mode]
    data = _encode(pixels, "JPEG", quality=90)
    fast, pillow = decode_image(data), _decode_with_pillow(data, monkeypatch)
    np.testing.assert_array_equal(fast.pixels, pillow.pixels)
    assert fast.was_color == pillow.was_color == (mode == "colour")
    halved = min(size) >= 2 * imaging.DRAFT_MIN_SIDE
    assert fast.pixels.shape == ((size[1] + 1) // 2, (size[0] + 1) // 2) if halved \
        else (size[1], size[0])


def test_shared_training_jpeg_decodes(shared_normal_images: list[Path]) -> None:
    decoded = decode_image(shared_normal_images[0])
    assert decoded.pixels.shape == (224, 224)
    assert decoded.source_format == "jpeg" and not decoded.was_color


@pytest.mark.parametrize(("dtype", "low", "high"), [
    (np.uint16, 0, 4095), (np.uint16, 900, 26500), (np.int16, -32768, 32767),
    (np.int16, -1000, 3000), (np.uint8, 3, 250)])
def test_the_level_table_gives_each_pixel_the_expression_s_own_value(
        dtype: type, low: int, high: int) -> None:
    """An integer image goes through a table of its levels: bit for bit what the display
    expression gives pixel by pixel, for a nonlinear transform, signed values and ranges
    that do not fit the dtype's difference."""
    values = np.random.default_rng(1).integers(low, high, (301, 203), endpoint=True)
    values = values.astype(dtype)

    def transform(block: np.ndarray) -> np.ndarray:
        return np.tanh((block.astype(np.float64) - (low + high) / 2) / (high - low + 1)) * 900

    assert imaging._level_range(values) is not None  # the table path is taken
    for window in (None, transform):
        np.testing.assert_array_equal(imaging._rescale(values, -700.0, 800.0, window),
                                      imaging._rescale_rows(values, -700.0, 800.0, window))


def test_floats_and_wide_integer_ranges_are_mapped_pixel_by_pixel() -> None:
    assert imaging._level_range(np.linspace(0, 1, 12).reshape(3, 4)) is None
    wide = np.array([[0, imaging.TABLE_MAX_LEVELS]], dtype=np.int32)
    assert imaging._level_range(wide) is None
    assert imaging._scale_to_uint8(wide).tolist() == [[0, 255]]
