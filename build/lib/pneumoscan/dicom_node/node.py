"""The Storage SCP: receive radiographs, predict, queue the SR and heat map for sending.

One C-STORE, one chain of plain functions (:mod:`intake`, the Predictor,
:mod:`structured_report`, :mod:`heatmap_capture`), run in the association's thread with at
most ``max_predictions`` predictions at once; the reply status says what became of the
image. Handlers never raise: every failure is a status and a log line that names no patient.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from pneumoscan.dicom_node import intake
from pneumoscan.dicom_node.heatmap_capture import build_heatmap_capture
from pneumoscan.dicom_node.sender import ResultBundle, ResultSender
from pneumoscan.dicom_node.settings import DicomNodeSettings
from pneumoscan.dicom_node.structured_report import build_structured_report

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from pneumoscan.predictor import Prediction, Predictor

logger = logging.getLogger(__name__)

#: The smallest side the node decodes a radiograph at: twice the training images' 224 px,
#: which every input is first resized to. A JPEG film is decoded scaled in the DCT down to
#: this (:mod:`pneumoscan.dicom_pixels`), a fraction of the full decode's work.
DECODE_MIN_SIDE = 448


@dataclass
class NodeCounts:
    received: int = 0  # C-STORE requests
    predicted: int = 0  # images with results queued
    skipped: int = 0  # stored with success but no result (header says: not for this model)
    refused: int = 0  # answered with a failure status


def build_results(source: Dataset, prediction: Prediction) -> list[Dataset]:
    """The SR and the heat-map Secondary Capture of ``prediction`` for ``source``."""
    return [build_structured_report(source, prediction),
            build_heatmap_capture(source, prediction)]


class DicomNode:
    """A running Storage SCP; :meth:`start` it, :meth:`stop` it (finishes received work)."""

    def __init__(self, settings: DicomNodeSettings, predictor: Predictor) -> None:
        self.settings = settings
        self.predictor = predictor
        self.counts = NodeCounts()
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._predictions = threading.Semaphore(settings.max_predictions)
        self._ae = AE(ae_title=settings.ae_title)
        self._ae.maximum_associations = settings.max_associations
        if settings.allow_ae:
            self._ae.require_calling_aet = list(settings.allow_ae)
        syntaxes = intake.accepted_transfer_syntaxes()
        for sop_class in intake.ACCEPTED_SOP_CLASSES:
            self._ae.add_supported_context(sop_class, syntaxes)
        self._ae.add_supported_context("1.2.840.10008.1.1")  # Verification: C-ECHO
        self.sender = ResultSender(settings.destination, calling_ae_title=settings.ae_title,
                                   spool_dir=settings.spool_dir,
                                   retries=settings.send_retries,
                                   retry_delay_s=settings.retry_delay_s,
                                   queue_size=settings.send_queue)
        self._server: ThreadedAssociationServer | None = None

    @property
    def port(self) -> int:
        """The port listened on (the real one when the settings said 0)."""
        if self._server is None:
            raise RuntimeError("the node is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        handlers: list[Any] = [(evt.EVT_C_STORE, self._on_store),
                               (evt.EVT_REJECTED, self._on_rejected),
                               (evt.EVT_C_ECHO, lambda event: intake.SUCCESS)]
        self._server = self._ae.start_server((self.settings.host, self.settings.port),
                                             block=False, evt_handlers=handlers)
        logger.info("DICOM node %s listening on %s:%d; results go to %s",
                    self.settings.ae_title, self.settings.host, self.port,
                    self.settings.destination)

    def stop(self) -> bool:
        """Stop listening, let open associations finish, send every queued result.

        Returns False when ``shutdown_timeout_s`` ran out before all that was done.
        """
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        if self._server is not None:
            self._server.shutdown()  # the listening socket only; open associations go on
            self._server = None
        while self._ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.1)
        finished = not self._ae.active_associations
        if not finished:
            logger.warning("stopping with %d association(s) still open",
                           len(self._ae.active_associations))
            self._ae.shutdown()
        sent = self.sender.close(max(0.0, deadline - time.monotonic()))
        if not sent:
            logger.error("stopping before every result was sent: see the log above")
        counts, sends = self.counts, self.sender.counts
        logger.info("stopped: %d received, %d predicted, %d without result, %d refused; "
                    "%d delivered, %d spooled, %d lost", counts.received, counts.predicted,
                    counts.skipped, counts.refused, sends.delivered, sends.spooled, sends.lost)
        return finished and sent

    def _on_rejected(self, event: evt.Event) -> None:
        calling = event.assoc.requestor.ae_title.strip()
        allowed = not self.settings.allow_ae or calling in self.settings.allow_ae
        logger.warning("refused an association from calling AE %r: %s", calling,
                       "too many associations open" if allowed else "not in the allow-list")

    def _on_store(self, event: evt.Event) -> int:
        number = next(self._numbers)
        with self._lock:
            self.counts.received += 1
        try:
            status = self._store(event, number)
        except Exception as exc:  # never raise out of a handler: answer and keep serving
            logger.error("image %d: unexpected %s; answered 0x%04X", number,
                         exc.__class__.__name__, intake.PROCESSING_FAILED)
            status = intake.PROCESSING_FAILED
        if status not in (intake.SUCCESS,):
            with self._lock:
                self.counts.refused += 1
        return status

    def _store(self, event: evt.Event, number: int) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        refusal = intake.check_received(dataset)
        if refusal is not None:
            return self._refuse(number, refusal)
        with self._predictions:
            try:
                decoded = self.predictor.decode(event.encoded_dataset(include_meta=True),
                                                reduce_to=DECODE_MIN_SIDE)
            except Exception as exc:
                return self._refuse(number, intake.refusal_for_decode_error(exc))
            reason = intake.out_of_scope_reason(decoded)
            if reason:
                logger.info("image %d: stored, no result: %s", number, reason)
                with self._lock:
                    self.counts.skipped += 1
                return intake.SUCCESS
            prediction = self.predictor.predict_decoded([decoded], heatmap=True)[0]
        self.sender.submit(ResultBundle(number, build_results(dataset, prediction)))
        with self._lock:
            self.counts.predicted += 1
        height, width = decoded.pixels.shape
        logger.info("image %d (%dx%d): %s %.3f%s; results queued", number, width, height,
                    prediction.label, prediction.probability,
                    "" if prediction.in_scope else ", out of scope")
        return intake.SUCCESS

    def _refuse(self, number: int, refusal: intake.Refusal) -> int:
        logger.warning("image %d: refused with 0x%04X: %s", number, refusal.status,
                       refusal.reason)
        return refusal.status
