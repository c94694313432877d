"""Keeping DICOM header values (patient names, UIDs) out of logs and warnings."""

from __future__ import annotations

import logging
import warnings


def silence_identity_warnings() -> None:
    """Silence the libraries whose messages quote header values: pydicom's warnings on odd
    values, highdicom's on person names copied into results and its INFO lines naming the
    source's UIDs, pynetdicom's INFO line per DIMSE message. For the CLI commands only."""
    logging.getLogger("pydicom").setLevel(logging.CRITICAL + 1)
    logging.getLogger("highdicom").setLevel(logging.WARNING)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    warnings.filterwarnings("ignore", module=r"highdicom(\.|$)")
