"""The Storage SCP: receive radiographs, predict, queue the SR and heat map for sending.

One C-STORE, one chain of plain functions: the header checks of :mod:`intake` in the
association's thread, then decoding, the prediction and
:func:`~pneumoscan.dicom_node.results.build_results` in one of ``max_predictions`` worker
processes (:mod:`~pneumoscan.dicom_node.workers`); the reply status says what became of the
image. Handlers never raise: every failure is a status and a log line that names no patient.

Connections are admitted so that silent peers cannot lock senders out: a connection that
asks for no association within ``acse_timeout_s`` is closed and is not counted against
``max_associations`` meanwhile; an association idle for ``network_timeout_s`` is aborted;
and when every place is taken, the association idle longest (``idle_after_s`` or more, and
not being answered) is aborted to admit the new sender.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from pneumoscan.dicom_node import intake
from pneumoscan.dicom_node.sender import ResultBundle, ResultSender
from pneumoscan.dicom_node.settings import DicomNodeSettings
from pneumoscan.dicom_node.tcp import send_without_delay
from pneumoscan.dicom_node.workers import PredictionWorkers
from pneumoscan.memory import release_free_memory
from pneumoscan.monitoring import ServiceMetrics, expected_positive_share

logger = logging.getLogger(__name__)


#: Connections accepted beyond max_associations while they have not yet asked for an
#: association (each is closed after acse_timeout_s).
PENDING_CONNECTIONS = 32

#: The largest PDU this node takes, announced to senders (pynetdicom's default is 16 KB: a
#: 7 MB film came in 440 PDUs, each parsed in Python). Bounded: a PDU is read whole into
#: memory before it is looked at.
MAXIMUM_PDU_BYTES = 1 << 20


@dataclass
class NodeCounts:
    received: int = 0  # C-STORE requests
    predicted: int = 0  # images with results queued
    skipped: int = 0  # stored with success but no result (header says: not for this model)
    refused: int = 0  # answered with a failure status


class DicomNode:
    """A Storage SCP with its worker processes started (the model loaded in each: raises
    what loading it raised); :meth:`start` it, :meth:`stop` it (finishes received work)."""

    def __init__(self, settings: DicomNodeSettings) -> None:
        self.settings = settings
        self.counts = NodeCounts()
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self.workers = PredictionWorkers(settings.model, backend=settings.backend,
                                         max_pixels=settings.max_pixels,
                                         processes=settings.max_predictions)
        try:
            self.model = self.workers.start()
        except BaseException:
            self.workers.close()
            raise
        self._ae = AE(ae_title=settings.ae_title)
        # pynetdicom counts connections still silent against its limit; ours
        # (_on_requested) counts the associations asked for.
        self._ae.maximum_associations = settings.max_associations + PENDING_CONNECTIONS
        self._ae.maximum_pdu_size = MAXIMUM_PDU_BYTES
        self._ae.acse_timeout = settings.acse_timeout_s
        self._ae.network_timeout = settings.network_timeout_s
        self._ae.dimse_timeout = settings.dimse_timeout_s
        self._admitted: dict[Any, float] = {}  # association -> when it last received
        self._busy: set[Any] = set()  # associations whose C-STORE is being handled
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
                                   queue_size=settings.send_queue,
                                   timeout_s=settings.send_timeout_s)
        self._server: ThreadedAssociationServer | None = None
        self.metrics = ServiceMetrics("dicom", self.model.version, self.model.backend,
                                      expected_positive_share(self.model.card))
        self._metrics_server: Any = None  # prometheus-client's WSGI server, when serving

    @property
    def metrics_port(self) -> int:
        """The port /metrics is served on (the real one when the settings said 0)."""
        if self._metrics_server is None:
            raise RuntimeError("the node serves no metrics (no metrics_port)")
        return int(self._metrics_server.server_port)

    @property
    def port(self) -> int:
        """The port listened on (the real one when the settings said 0)."""
        if self._server is None:
            raise RuntimeError("the node is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        handlers: list[Any] = [(evt.EVT_C_STORE, self._on_store),
                               (evt.EVT_REQUESTED, self._on_requested),
                               (evt.EVT_PDU_RECV, self._on_received),
                               (evt.EVT_REJECTED, self._on_rejected),
                               (evt.EVT_C_ECHO, lambda event: intake.SUCCESS),
                               (evt.EVT_CONN_OPEN, send_without_delay)]
        self._server = self._ae.start_server((self.settings.host, self.settings.port),
                                             block=False, evt_handlers=handlers)
        if self.settings.metrics_port is not None:
            from prometheus_client import start_http_server

            self._metrics_server, _ = start_http_server(
                self.settings.metrics_port, addr=self.settings.host,
                registry=self.metrics.registry)
            logger.info("metrics on http://%s:%d/metrics", self.settings.host,
                        self.metrics_port)
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
        self.workers.close()
        sent = self.sender.close(max(0.0, deadline - time.monotonic()))
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
            self._metrics_server = None
        if not sent:
            logger.error("stopping before every result was delivered: the rest is in %s",
                         self.settings.spool_dir)
        counts, sends = self.counts, self.sender.counts
        logger.info("stopped: %d received, %d predicted, %d without result, %d refused; "
                    "%d delivered, %d spooled, %d lost%s", counts.received, counts.predicted,
                    counts.skipped, counts.refused, sends.delivered, sends.spooled, sends.lost,
                    f", {sends.pending} unaccounted" if sends.pending else "")
        return finished and sent and not sends.lost

    def _on_requested(self, event: evt.Event) -> None:
        """Admit an association request, or refuse it (local limit exceeded) when every
        place is taken by an association that is busy or was active recently."""
        now = time.monotonic()
        evicted: Any = None
        with self._lock:
            for other in [a for a in self._admitted if not a.is_alive()]:
                del self._admitted[other]
            if len(self._admitted) >= self.settings.max_associations:
                idle = [(last, id(a), a) for a, last in self._admitted.items()
                        if a not in self._busy and now - last >= self.settings.idle_after_s]
                if idle:
                    idle_since, _, evicted = min(idle)
                    del self._admitted[evicted]
            admitted = len(self._admitted) < self.settings.max_associations
            if admitted:
                self._admitted[event.assoc] = now
        if evicted is not None:
            logger.warning("aborted an association idle for %.0f s to admit a new one",
                           now - idle_since)
            evicted.abort()
        if not admitted:
            logger.warning("refused an association: %d associations open and none idle",
                           self.settings.max_associations)
            event.assoc.acse.send_reject(0x02, 0x03, 0x02)  # transient: local limit exceeded

    def _on_received(self, event: evt.Event) -> None:
        with self._lock:
            if event.assoc in self._admitted:
                self._admitted[event.assoc] = time.monotonic()

    def _on_rejected(self, event: evt.Event) -> None:
        calling = event.assoc.requestor.ae_title.strip()
        allowed = not self.settings.allow_ae or calling in self.settings.allow_ae
        logger.warning("refused an association from calling AE %r: %s", calling,
                       "too many associations open" if allowed else "not in the allow-list")

    def _on_store(self, event: evt.Event) -> int:
        started = time.perf_counter()
        number = next(self._numbers)
        with self._lock:
            self.counts.received += 1
            self._busy.add(event.assoc)
        try:
            status = self._store(event, number)
        except Exception as exc:  # never raise out of a handler: answer and keep serving
            logger.error("image %d: unexpected %s; answered 0x%04X", number,
                         exc.__class__.__name__, intake.PROCESSING_FAILED)
            status = intake.PROCESSING_FAILED
        finally:
            with self._lock:
                self._busy.discard(event.assoc)
                if event.assoc in self._admitted:
                    self._admitted[event.assoc] = time.monotonic()
            release_free_memory()  # each association is a thread with its own arena
        if status not in (intake.SUCCESS,):
            with self._lock:
                self.counts.refused += 1
            self.metrics.record_refused(status)
        self.metrics.observe_seconds(time.perf_counter() - started)
        return status

    def _store(self, event: evt.Event, number: int) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        refusal = intake.check_received(dataset)
        if refusal is not None:
            return self._refuse(number, refusal)
        outcome = self.workers.outcome(event.encoded_dataset(include_meta=True))
        if outcome.refusal is not None:
            return self._refuse(number, outcome.refusal)
        if outcome.skipped:
            logger.info("image %d: stored, no result: %s", number, outcome.skipped)
            with self._lock:
                self.counts.skipped += 1
            self.metrics.record_not_applicable("out_of_scope_header")
            return intake.SUCCESS
        prediction = outcome.prediction
        assert prediction is not None
        self.metrics.record_prediction(prediction)
        self.sender.submit(ResultBundle(number, outcome.results))
        with self._lock:
            self.counts.predicted += 1
        logger.info("image %d (%dx%d): %s; results queued", number, prediction.width,
                    prediction.height, prediction.meaning.summary())
        return intake.SUCCESS

    def _refuse(self, number: int, refusal: intake.Refusal) -> int:
        logger.warning("image %d: refused with 0x%04X: %s", number, refusal.status,
                       refusal.reason)
        return refusal.status
