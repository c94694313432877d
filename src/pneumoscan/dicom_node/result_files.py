"""``pneumoscan predict --dicom-out``: the SR and heat map of each DICOM input, as files.

Each DICOM input goes through the node's intake (:mod:`pneumoscan.dicom_node.intake`): a
file the node would refuse (not an accepted SOP class, no pixel data, no UIDs) or store
without a result (its header says lateral, not a chest, not a radiograph) gets no files,
and the log says why in the node's words. Every other one gets ``NAME.sr.dcm`` (the
Comprehensive SR) and ``NAME.heatmap.dcm`` (the Secondary Capture), built by the node's
:func:`~pneumoscan.dicom_node.results.build_results`, in the input's study. Other inputs
(JPEG, PNG) have no study to join and get none.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom
from pydicom.errors import InvalidDicomError

from pneumoscan.dicom_node import intake
from pneumoscan.dicom_node.result_identity import SourceDatasetError
from pneumoscan.dicom_node.results import build_results
from pneumoscan.imaging import is_dicom
from pneumoscan.reports.prediction_output import OverlayNamer, write_file_inside

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from pneumoscan.predictor import FileResult

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
        self._bases: set[str] = set()  # result names handed out (lower case)
        self.written = 0  # inputs whose two files were written
        self.without_result: list[tuple[str, str]] = []  # (name, the node's reason)

    def write_or_warn(self, source: Path, name: str, result: FileResult) -> None:
        """:meth:`write`, logging a warning instead of raising (one file must not end a
        folder run)."""
        try:
            self.write(source, name, result)
        except (NotDicomError, SourceDatasetError) as exc:  # our words: no header values
            logger.warning("no DICOM result: %s", exc)
        except OSError as exc:
            logger.warning("could not write the DICOM results of %s: %s", name,
                           exc.strerror or exc.__class__.__name__)
        except ValueError as exc:  # a library's message may quote a header value: not logged
            logger.warning("could not write the DICOM results of %s (%s)", name,
                           exc.__class__.__name__)

    def write(self, source: Path, name: str, result: FileResult) -> list[Path]:
        """Write ``source``'s two result files when the node's intake would give it results;
        ``name`` is the input as the user gave it. Returns the paths ([] when none).

        Raises:
            NotDicomError: ``source`` is not a DICOM file.
            ValueError: the prediction has no heat map, or the file lacks its UIDs.
            OSError: a file could not be written.
        """
        if result.prediction is None:  # unreadable: its error row says why
            return []
        header = read_header(source)
        refusal = intake.check_received(header)
        reason = refusal.reason if refusal is not None else intake.skip_reason(result.dicom)
        if reason:
            logger.info("no DICOM result for %s: %s", name, reason)
            self.without_result.append((name, reason))
            return []
        base = self._distinct(re.sub(r"(\.dcm)?\.png$", "", self._namer.path_for(name).name,
                                     flags=re.IGNORECASE))
        paths = []
        for dataset, suffix in zip(build_results(header, result.prediction),
                                   (SR_SUFFIX, SC_SUFFIX), strict=True):
            path = self.folder / f"{base}{suffix}"
            write_file_inside(path, encode(dataset))
            paths.append(path)
        self.written += 1
        return paths


    def _distinct(self, base: str) -> str:
        """``base``, or ``base-2``, ``base-3``...: ``a`` and ``a.dcm`` both make ``a``, and
        the second must not overwrite the first's results."""
        candidate, n = base, 1
        while candidate.lower() in self._bases:
            n += 1
            candidate = f"{base}-{n}"
        self._bases.add(candidate.lower())
        return candidate


def read_header(source: Path) -> Dataset:
    """The DICOM dataset of ``source`` with its pixel data left unread (the element stays,
    as the node's checks expect), or :class:`NotDicomError`."""
    with source.open("rb") as stream:
        start = stream.read(132)
    if not is_dicom(start) and source.suffix.lower() != ".dcm":
        raise NotDicomError(f"{source.name} is not a DICOM file: DICOM results need the "
                            "source's study")
    try:
        return pydicom.dcmread(source, defer_size="4 KB", force=not is_dicom(start))
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise NotDicomError(f"{source.name}: not a readable DICOM file "
                            f"({exc.__class__.__name__})") from exc


def encode(dataset: Dataset) -> bytes:
    """``dataset`` as a DICOM Part 10 file."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
