"""The two result objects of one prediction, paired once for the node and ``--dicom-out``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pneumoscan.dicom_node.heatmap_capture import build_heatmap_capture
from pneumoscan.dicom_node.structured_report import build_structured_report

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from pneumoscan.predictor import Prediction


def build_results(source: Dataset, prediction: Prediction) -> list[Dataset]:
    """The Comprehensive SR and the heat-map Secondary Capture of ``prediction`` for the
    radiograph ``source`` (its header is enough), in that order."""
    return [build_structured_report(source, prediction),
            build_heatmap_capture(source, prediction)]
