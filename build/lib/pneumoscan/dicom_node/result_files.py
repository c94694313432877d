"""``pneumoscan predict --dicom-out``: the node's result objects, written to files.

For each DICOM input, ``NAME.sr.dcm`` (the Comprehensive SR) and ``NAME.heatmap.dcm`` (the
Secondary Capture), the same objects :mod:`pneumoscan.dicom_node.node` sends to a PACS, in
the input's study. Other inputs (JPEG, PNG) have no study to join and get none.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
from pydicom.errors import InvalidDicomError

from pneumoscan.dicom_node.heatmap_capture import build_heatmap_capture
from pneumoscan.dicom_node.structured_report import build_structured_report
from pneumoscan.imaging import is_dicom
from pneumoscan.reports.prediction_output import OverlayNamer, write_file_inside

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from pneumoscan.predictor import Prediction

logger = logging.getLogger(__name__)

SR_SUFFIX = ".sr.dcm"
SC_SUFFIX = ".heatmap.dcm"


class NotDicomError(ValueError):
    """The input is not a DICOM file: its results have no study to be filed in."""


class DicomResultWriter:
    """Writes the SR and heat-map Secondary Capture of each DICOM input into ``folder``."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._namer = OverlayNamer(folder)  # distinct, safe names inside the folder
        self.written = 0  # inputs whose two files were written

    def write_or_warn(self, source: Path, name: str, prediction: Prediction) -> None:
        """:meth:`write`, logging a warning instead of raising (one file must not end a
        folder run)."""
        try:
            self.write(source, name, prediction)
        except NotDicomError as exc:
            logger.warning("no DICOM result: %s", exc)
        except (ValueError, OSError) as exc:
            logger.warning("could not write the DICOM results of %s: %s", name, exc)

    def write(self, source: Path, name: str, prediction: Prediction) -> list[Path]:
        """Write ``source``'s two result files; ``name`` is the input as the user gave it.

        Raises:
            NotDicomError: ``source`` is not a DICOM file.
            ValueError: the prediction has no heat map, or the file lacks its UIDs.
            OSError: a file could not be written.
        """
        header = read_header(source)
        base = re.sub(r"(\.dcm)?\.png$", "", self._namer.path_for(name).name,
                      flags=re.IGNORECASE)
        paths = []
        for dataset, suffix in ((build_structured_report(header, prediction), SR_SUFFIX),
                                (build_heatmap_capture(header, prediction), SC_SUFFIX)):
            path = self.folder / f"{base}{suffix}"
            write_file_inside(path, encode(dataset))
            paths.append(path)
        self.written += 1
        return paths


def read_header(source: Path) -> Dataset:
    """The DICOM header of ``source`` (no pixel data), or :class:`NotDicomError`."""
    with source.open("rb") as stream:
        start = stream.read(132)
    if not is_dicom(start) and source.suffix.lower() != ".dcm":
        raise NotDicomError(f"{source.name} is not a DICOM file: DICOM results need the "
                            "source's study")
    try:
        return pydicom.dcmread(source, stop_before_pixels=True, force=not is_dicom(start))
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise NotDicomError(f"{source.name}: not a readable DICOM file "
                            f"({exc.__class__.__name__})") from exc


def encode(dataset: Dataset) -> bytes:
    """``dataset`` as a DICOM Part 10 file."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
