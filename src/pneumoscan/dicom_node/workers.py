"""The node's per-image work in processes of its own: decode, predict, build the results.

The DICOM protocol runs in the node's threads; what each image costs beyond it (the JPEG
2000 and JPEG-LS decoders, the model, highdicom building the SR and the Secondary
Capture) runs in ``processes`` worker processes, each with the model loaded once. In one
process all of it shared one interpreter lock with the protocol, and the node could not use
more than about one core whatever the machine had (docs/benchmarks.md).

A worker takes the received dataset as bytes and gives back an :class:`Outcome`: the
refusal, the reason it is stored without a result, or the two result objects with the
prediction (without its pixels). A worker writes no log and shows no warning: the DICOM
libraries' messages quote header values, and the node logs what became of each image from
the outcome, naming no patient. A worker that dies (a codec's crash, the kernel's
out-of-memory killer) breaks its pool: the pool is replaced, the image tried once more on
the new one, and refused with a failure status if that fails too. Processes are started
with ``spawn``: the node's threads make ``fork`` unsafe.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from io import BytesIO
from typing import TYPE_CHECKING

import pydicom

from pneumoscan.backends import default_threads
from pneumoscan.dicom_node import intake
from pneumoscan.dicom_node.results import build_results
from pneumoscan.memory import release_free_memory

if TYPE_CHECKING:
    from pathlib import Path

    from pydicom.dataset import Dataset

    from pneumoscan.modelcard import ModelCard
    from pneumoscan.predictor import Prediction, Predictor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelFacts:
    """What the node reports of the model its workers run."""

    version: str
    backend: str
    card: ModelCard


@dataclass(frozen=True)
class Outcome:
    """What became of one received image: refused, stored without a result, or with its
    results (``prediction`` without its pixels and heat map, for the metrics and the log)."""

    refusal: intake.Refusal | None = None
    skipped: str = ""  # stored with success, no result: what the header says
    results: list[Dataset] = field(default_factory=list)  # the SR, the Secondary Capture
    prediction: Prediction | None = None


#: The failure status of an image whose worker died on both tries.
WORKER_STOPPED = intake.Refusal(intake.PROCESSING_FAILED,
                                "the prediction process stopped while working on it")


class PredictionWorkers:
    """``processes`` worker processes with the model loaded; :meth:`start`,
    :meth:`outcome` per image (from any thread), :meth:`close`."""

    def __init__(self, model: Path | None, *, backend: str, max_pixels: int,
                 processes: int) -> None:
        # The CPUs are shared out: the processes run side by side.
        threads = max(1, default_threads() // processes)
        self._arguments = (model, backend, max_pixels, threads)
        self.processes = processes
        self._lock = threading.Lock()
        self._pool = self._new_pool()
        self.pids: list[int] = []  # the worker processes started by :meth:`start`

    def start(self) -> ModelFacts:
        """Start every worker and load its model; the model's facts.

        Raises:
            whatever loading the model raised in a worker (a missing model, a backend that
            is not installed), with its own message.
        """
        facts: ModelFacts | None = None
        pids: set[int] = set()
        for _ in range(4 * self.processes):  # workers start on demand: ask until all have
            jobs = [self._pool.submit(_facts) for _ in range(self.processes)]
            for job in jobs:
                pid, facts = job.result()
                pids.add(pid)
            if len(pids) == self.processes:
                break
        self.pids = sorted(pids)
        assert facts is not None
        return facts

    def outcome(self, encoded: bytes) -> Outcome:
        """The outcome of one received dataset (``encoded`` with its file meta)."""
        for _ in range(2):
            pool = self._pool
            try:
                return pool.submit(_outcome, encoded).result()
            except BrokenProcessPool:
                self._replace(pool)
        return Outcome(refusal=WORKER_STOPPED)

    def close(self) -> None:
        """Stop the workers (after the images they hold)."""
        self._pool.shutdown(wait=True)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.processes,
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_load, initargs=self._arguments)

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """A new pool for ``broken`` (once, however many threads found it broken)."""
        with self._lock:
            if self._pool is broken:
                logger.error("a prediction process stopped; starting new ones")
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()


# --- in the worker processes --------------------------------------------------------------

_predictor: Predictor | None = None
_load_error: Exception | None = None


def _load(model: Path | None, backend: str, max_pixels: int, threads: int) -> None:
    """Pool initializer: no log or warning output (see the module's docstring), the model
    loaded once. A failure is kept and raised by the first job, so the node sees it."""
    global _predictor, _load_error
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    try:
        from pneumoscan.predictor import Predictor

        _predictor = Predictor.load(model, backend=backend, max_pixels=max_pixels,
                                    threads=threads)
    except Exception as exc:
        _load_error = exc


def _loaded() -> Predictor:
    if _predictor is None:
        raise _load_error or RuntimeError("the model was not loaded")
    return _predictor


def _facts() -> tuple[int, ModelFacts]:
    predictor = _loaded()
    return os.getpid(), ModelFacts(predictor.version,
                                   str(getattr(predictor.backend, "name", "unknown")),
                                   predictor.card)


def _outcome(encoded: bytes) -> Outcome:
    predictor = _loaded()
    try:
        decoded = predictor.decode(encoded)
    except Exception as exc:
        return Outcome(refusal=intake.refusal_for_decode_error(exc))
    reason = intake.skip_reason(decoded.dicom)
    if reason:
        return Outcome(skipped=reason)
    prediction = predictor.predict_decoded([decoded], heatmap=True)[0]
    header = pydicom.dcmread(BytesIO(encoded), stop_before_pixels=True)
    results = build_results(header, prediction)
    del decoded
    release_free_memory()
    return Outcome(results=results, prediction=replace(prediction, pixels=None, heatmap=None))
