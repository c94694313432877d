"""C-STORE of results to the PACS: a bounded queue, bounded retries, never lost silently.

Each object goes in the most compact form the destination accepts: the heat-map Secondary
Capture is made as JPEG baseline and is proposed as that, as JPEG-LS lossless and as
uncompressed, each in a presentation context of its own; when the destination takes only
one of the latter two, the image is re-encoded to it (lossless from the JPEG's pixels; it
stays marked as lossy-compressed).

Results go over one association that stays open while they keep coming, and is released
once none came for ``keep_open_s`` (opening and releasing an association per image cost
more than its two C-STOREs, on both sides). One the destination closed while it was idle
is replaced when the next result comes; one that fails is aborted and the next try opens a
new one.

A result that still fails after the last try is written to the spool folder (named by its
own, new SOP Instance UID) and logged as an error; send it later with any C-STORE tool,
e.g. ``storescu HOST PORT -aec AE SPOOL/*.dcm``. The spool holds patient data: the folder is
made private (0700) and each file is 0600.

At :meth:`ResultSender.close`, what has not been delivered when the time is up (queued, or
in a try that is still waiting on the destination) is spooled too: every bundle submitted
ends delivered, spooled or, only when the spool cannot be written, counted lost. A bundle
spooled while its last try was still running may also arrive: results carry fixed UIDs, so
a PACS stores it once.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import simplejpeg
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
)
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider

from pneumoscan.dicom_node.settings import Destination
from pneumoscan.dicom_node.tcp import send_without_delay

logger = logging.getLogger(__name__)

#: C-STORE statuses that mean "stored" (success, and the warnings: coercion, elements
#: discarded, data set does not match SOP class).
STORED = frozenset({0x0000, 0xB000, 0xB006, 0xB007})
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
#: The forms an image may be sent in, most compact first; each is proposed in a context of
#: its own, so that the destination's answer says which of them it takes.
IMAGE_SYNTAXES = ((JPEGBaseline8Bit,), (JPEGLSLossless,), UNCOMPRESSED)
#: Seconds the association to the destination stays open after the last result was sent
#: (well under any association idle timeout, the destination's or this node's).
KEEP_OPEN_S = 1.0
#: The longest wait for pynetdicom's reactor to resume between two C-STOREs.
RESUME_WAIT_S = 1.0


@dataclass
class ResultBundle:
    """The objects made for one received image, sent together."""

    number: int  # the image's sequence number in this node's log (no patient data)
    objects: list[Dataset]
    settled: bool = False  # delivered, spooled or lost: counted once, by whoever was first


@dataclass
class SendCounts:
    submitted: int = 0  # bundles handed to the sender
    delivered: int = 0  # bundles stored at the destination
    spooled: int = 0  # bundles written to the spool (every try failed, or shutdown came)
    lost: int = 0  # bundles neither delivered nor spooled (the spool failed too)
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def pending(self) -> int:
        """Bundles not yet delivered, spooled or lost."""
        return self.submitted - self.delivered - self.spooled - self.lost


class SendError(Exception):
    """One try at sending failed (association refused, timed out, or a failure status)."""


class ResultSender:
    """Sends :class:`ResultBundle` objects to ``destination`` from a background thread."""

    def __init__(self, destination: Destination, *, calling_ae_title: str,
                 spool_dir: Path, retries: int = 3, retry_delay_s: float = 2.0,
                 queue_size: int = 16, timeout_s: float = 60.0,
                 keep_open_s: float = KEEP_OPEN_S) -> None:
        self.destination = destination
        self.keep_open_s = keep_open_s
        self.spool_dir = spool_dir
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self.counts = SendCounts()
        self._queue: queue.Queue[ResultBundle | None] = queue.Queue(maxsize=queue_size)
        self._in_flight: ResultBundle | None = None  # the bundle the thread is sending
        self._closing = threading.Event()  # no further tries: the sender is closing
        self._ae = AE(ae_title=calling_ae_title)
        for timeout in ("acse_timeout", "dimse_timeout", "network_timeout",
                        "connection_timeout"):
            setattr(self._ae, timeout, timeout_s)
        self._requested: set[str] = set()
        self._association: Association | None = None  # kept open between results
        self._thread = threading.Thread(target=self._run, name="result-sender", daemon=True)
        self._thread.start()

    def submit(self, bundle: ResultBundle) -> None:
        """Queue ``bundle``; waits while the queue is full (back-pressure on the receiver)."""
        with self.counts.lock:
            self.counts.submitted += 1
        self._queue.put(bundle)

    def close(self, timeout_s: float | None = None) -> bool:
        """Send everything queued, then stop. When ``timeout_s`` runs out first, spool what
        is left (queued or still being tried) and return False."""
        self._queue.put(None)
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            return True
        self._closing.set()  # the thread makes no further try
        left = [bundle for bundle in self._drain() if bundle is not None]
        in_flight = self._in_flight
        if in_flight is not None:
            left.insert(0, in_flight)
        logger.warning("out of time with %d result(s) not delivered: spooling them",
                       len(left))
        for bundle in left:
            self._spool(bundle)
        # A try still waiting on the destination is abandoned: its network thread is stopped
        # (an abort would wait for the hung peer to close the connection, and that thread
        # would keep the process from exiting). Its result is spooled above.
        for thread in threading.enumerate():
            if isinstance(thread, DULServiceProvider) and thread.assoc.ae is self._ae:
                thread.kill_dul()
        return False

    def _drain(self) -> list[ResultBundle | None]:
        drained = []
        while True:
            try:
                drained.append(self._queue.get_nowait())
            except queue.Empty:
                return drained

    def _run(self) -> None:
        while (bundle := self._next()) is not None:
            self._in_flight = bundle
            try:
                self._deliver(bundle)
            except Exception as exc:  # the sender thread must outlive any one bundle
                logger.error("result %d: unexpected %s while sending", bundle.number,
                             exc.__class__.__name__)
                self._abort()
                self._spool(bundle)
            finally:
                self._in_flight = None
        self._release()

    def _next(self) -> ResultBundle | None:
        """The next bundle; the open association is released once none came for
        ``keep_open_s``."""
        if self._association is not None:
            try:
                return self._queue.get(timeout=self.keep_open_s)
            except queue.Empty:
                self._release()
        return self._queue.get()

    def _settle(self, bundle: ResultBundle) -> bool:
        """Mark ``bundle`` settled; False when it already was (counted once only)."""
        with self.counts.lock:
            if bundle.settled:
                return False
            bundle.settled = True
            return True

    def _deliver(self, bundle: ResultBundle) -> None:
        delay = self.retry_delay_s
        for attempt in range(1, self.retries + 1):
            try:
                self._send(bundle.objects)
            except SendError as exc:
                if self._closing.is_set():
                    return  # close() has spooled it
                if attempt == self.retries:
                    logger.error("result %d: not delivered to %s after %d tries (%s)",
                                 bundle.number, self.destination, attempt, exc)
                    self._spool(bundle)
                    return
                logger.warning("result %d: try %d of %d failed (%s); retrying in %.1f s",
                               bundle.number, attempt, self.retries, exc, delay)
                with self.counts.lock:
                    self.counts.retries += 1
                if self._closing.wait(delay):
                    return  # close() has spooled it
                delay *= 2
            else:
                if not self._settle(bundle):
                    return  # spooled at shutdown, then delivered too: counted as spooled
                with self.counts.lock:
                    self.counts.delivered += 1
                logger.info("result %d: delivered to %s", bundle.number,
                            self.destination.ae_title)
                return

    def _send(self, objects: list[Dataset]) -> None:
        """Every object stored (over the open association or a new one) or
        :class:`SendError`, after which the association is aborted."""
        try:
            self._store(self._open(objects), objects)
        except SendError:
            self._abort()
            raise

    def _open(self, objects: list[Dataset]) -> Association:
        """The open association, or a new one (also when ``objects`` bring a SOP class the
        open one was not negotiated for)."""
        for dataset in objects:
            if dataset.SOPClassUID not in self._requested:  # once per SOP class
                compressed = dataset.file_meta.TransferSyntaxUID.is_compressed
                for syntaxes in IMAGE_SYNTAXES if compressed else (UNCOMPRESSED,):
                    self._ae.add_requested_context(dataset.SOPClassUID, list(syntaxes))
                self._requested.add(dataset.SOPClassUID)
                self._release()
        if self._association is not None and self._association.is_established:
            return self._association
        self._abort()
        association = self._ae.associate(
            self.destination.host, self.destination.port, ae_title=self.destination.ae_title,
            evt_handlers=[(evt.EVT_CONN_OPEN, send_without_delay)])
        if not association.is_established:
            raise SendError("association refused or destination unreachable")
        self._association = association
        return association

    def _store(self, association: Association, objects: list[Dataset]) -> None:
        for dataset in objects:
            _wait_until_resumed(association)
            try:
                status = association.send_c_store(in_accepted_form(dataset, association))
            except RuntimeError as exc:  # pynetdicom: the association is no longer open
                raise SendError("the association closed") from exc
            code = int(status.Status) if "Status" in status else None
            if code not in STORED:
                raise SendError("no response" if code is None
                                else f"C-STORE status 0x{code:04X}")

    def _release(self) -> None:
        """Release the open association, if any."""
        association, self._association = self._association, None
        if association is not None and association.is_established:
            association.release()

    def _abort(self) -> None:
        """Abort the open association, if any (after a failure: its state is unknown)."""
        association, self._association = self._association, None
        if association is not None and association.is_established:
            association.abort()

    def _spool(self, bundle: ResultBundle) -> None:
        if not self._settle(bundle):
            return
        try:
            make_private_folder(self.spool_dir)
            paths = []
            for dataset in bundle.objects:
                path = self.spool_dir / f"{dataset.SOPInstanceUID}.dcm"
                with open(path, "wb", opener=_private_opener) as handle:
                    dataset.save_as(handle, enforce_file_format=True)
                paths.append(path.name)
        except OSError as exc:
            with self.counts.lock:
                self.counts.lost += 1
            logger.critical("result %d: LOST: not delivered and not written to %s (%s)",
                            bundle.number, self.spool_dir, exc.strerror or exc)
            return
        with self.counts.lock:
            self.counts.spooled += 1
        logger.error("result %d: kept in %s as %s; send it later (storescu)", bundle.number,
                     self.spool_dir, ", ".join(paths))


def _wait_until_resumed(association: Association) -> None:
    """Wait (a fraction of a millisecond, at most :data:`RESUME_WAIT_S`) until the
    association's reactor has resumed after the previous C-STORE.

    pynetdicom 3.0's ``send_c_store`` pauses the reactor thread, waits for the response,
    and resumes it. A second ``send_c_store`` right after can find the reactor's "paused"
    flag still set from the first, send at once, and have its response taken by the
    reactor ("Received unexpected C-STORE service message"), then wait for the DIMSE
    timeout: with responses over TCP_NODELAY, one load run in three stalled 20 s that way.
    The flag is pynetdicom's own (``_is_paused``); without it this returns at once.
    """
    deadline = time.monotonic() + RESUME_WAIT_S
    while (getattr(association, "_is_paused", False) and association.is_established
           and time.monotonic() < deadline):
        time.sleep(0.0001)


def make_private_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) if needed and make it 0700: it holds patient
    data. A folder someone else owns is left as it is (chmod fails: OSError)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_mode & 0o077:
        folder.chmod(0o700)


def _private_opener(path: str, flags: int) -> int:
    """Open for writing as 0600 (also when the file exists with wider permissions)."""
    descriptor = os.open(path, flags | os.O_NOFOLLOW, 0o600)
    os.fchmod(descriptor, 0o600)
    return descriptor
def accepted_syntaxes(association: Association, sop_class: str) -> set[UID]:
    """The transfer syntaxes the destination accepted for ``sop_class``."""
    return {UID(context.transfer_syntax[0]) for context in association.accepted_contexts
            if context.abstract_syntax == sop_class and context.transfer_syntax}


def in_accepted_form(dataset: Dataset, association: Association) -> Dataset:
    """``dataset`` as it is when the destination accepts its transfer syntax, else a copy
    re-encoded as JPEG-LS lossless or uncompressed (whichever it accepts, in that order).

    Raises:
        SendError: the destination accepts none of them for this SOP class.
    """
    accepted = accepted_syntaxes(association, dataset.SOPClassUID)
    syntax = dataset.file_meta.TransferSyntaxUID
    uncompressed = accepted.intersection(UNCOMPRESSED)
    # pynetdicom itself re-encodes between the uncompressed syntaxes.
    if syntax in accepted or (not syntax.is_compressed and uncompressed):
        return dataset
    if not (uncompressed or JPEGLSLossless in accepted) or not syntax.is_compressed:
        raise SendError(f"the destination accepts no transfer syntax offered for "
                        f"{dataset.SOPClassUID.name}")
    copy = deepcopy(dataset)
    copy.set_pixel_data(jpeg_pixels(dataset), "RGB", 8, generate_instance_uid=False)
    if JPEGLSLossless in accepted:
        copy.compress(JPEGLSLossless, generate_instance_uid=False)
        copy["PixelData"].is_undefined_length = True  # encapsulated (see heatmap_capture)
    return copy


def jpeg_pixels(capture: Dataset) -> np.ndarray:
    """The RGB pixels ``(H, W, 3)`` of a JPEG baseline capture, as libjpeg-turbo decodes
    them (chroma upsampled by its interpolation; pydicom's default decoder, libjpeg 9 and a
    colour conversion in numpy, gives values up to 15 levels apart at sharp colour edges
    and took 50 ms against 4 on a 1,024 px capture)."""
    frame = get_frame(capture.PixelData, 0, number_of_frames=1)
    return simplejpeg.decode_jpeg(frame, colorspace="RGB")
