"""Reduced-resolution DICOM decoding: the JPEG DCT scale chosen, pixels that agree with the
full decode, and the model's answer within 0.02 of the full decode's on every shared film."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from pneumoscan.dicom_pixels import jpeg_scale, read_dicom_pixels

#: The decode size of every face (predictor.DECODE_MIN_SIDE: twice the training images' side).
NODE_SIDE = 448


@pytest.mark.parametrize(("rows", "columns", "scale"), [
    (1024, 1024, 2), (2048, 1800, 4), (4000, 3600, 8), (600, 2000, 1), (448, 448, 1),
    (896, 2000, 2), (895, 2000, 2), (894, 2000, 1)])
def test_the_largest_dct_scale_that_keeps_the_side(rows: int, columns: int,
                                                   scale: int) -> None:
    assert jpeg_scale(rows, columns, NODE_SIDE) == scale
    assert -(-min(rows, columns) // scale) >= NODE_SIDE


def test_a_jpeg_film_is_decoded_scaled_and_agrees_with_the_full_decode(
        dicom_dir: Path) -> None:
    dataset = pydicom.dcmread(dicom_dir / "cr_siim_pa_jpeg_baseline.dcm")
    full = dataset.pixel_array.astype(np.float64)  # (1024, 1024)
    reduced = read_dicom_pixels(dataset, NODE_SIDE)
    assert reduced.shape == (512, 512) and reduced.dtype == np.uint8
    block_means = full.reshape(512, 2, 512, 2).mean(axis=(1, 3))
    assert np.abs(reduced - block_means).mean() < 1.0  # grey levels of 255
    assert read_dicom_pixels(dataset).shape == (1024, 1024)  # no min_side: whole


@pytest.mark.parametrize("name", ["cr_nema_pa_monochrome1_jpeg2000.dcm",
                                  "cr_nema_pa_monochrome1_jpegls.dcm",
                                  "dx_nih_no_finding.dcm", "cr_ap_256px_monochrome1.dcm"])
def test_other_syntaxes_are_decoded_whole(dicom_dir: Path, name: str) -> None:
    dataset = pydicom.dcmread(dicom_dir / name)
    pixels = read_dicom_pixels(dataset, NODE_SIDE)
    assert pixels.shape == (dataset.Rows, dataset.Columns)
    assert np.array_equal(pixels, pydicom.dcmread(dicom_dir / name).pixel_array)


@pytest.mark.slow
def test_the_answer_does_not_depend_on_the_decode_resolution(
        dicom_dir: Path, shipped_model: Path) -> None:
    from pneumoscan.imaging import decode_image
    from pneumoscan.predictor import DECODE_MIN_SIDE, Predictor

    assert DECODE_MIN_SIDE == NODE_SIDE
    predictor = Predictor.load(shipped_model, backend="onnx")
    differences = {}
    for path in sorted(dicom_dir.glob("*.dcm")):
        data = path.read_bytes()
        full, reduced = (predictor.predict_decoded([image], heatmap=False)[0].probability
                         for image in (decode_image(data), predictor.decode(data)))
        differences[path.name] = abs(full - reduced)
    assert max(differences.values()) <= 0.02, differences
