"""The batching runner: a single inference thread that gathers concurrent requests into one forward
pass (dynamic micro-batching) and hands it to a runner (`serving.runners`: on this thread, or in the
model process). No FastAPI here: the HTTP layer, the terminal tool and the tests all drive the same
`Predictor`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import load_bundle
from serving.inference import Prepared, Scores, ServedModel, decode, freeze_long_lived_objects
from serving.runners import InThreadRunner, ProcessRunner, Runner

log = logging.getLogger("serving.predictor")


@dataclass
class _Job:
    items: list[Prepared]
    future: asyncio.Future[list[Scores]] | concurrent.futures.Future[list[Scores]]
    loop: asyncio.AbstractEventLoop | None = None


_STOP = object()


def _resolve(pairs: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in pairs:
        if future.done():  # the client went away and the request was cancelled
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class Predictor:
    """Owns the served model and the inference thread.

    Requests put jobs on a queue; the thread takes every job waiting (up to `max_batch_sentences`
    sentences, after waiting at most `batch_wait_s` for more), hands them to the runner as one padded
    forward pass and gives each job its results. The model is read once per batch, so `load` swaps it
    atomically: a batch already running finishes on the old model, the next one runs on the new.
    """

    def __init__(
        self,
        *,
        torch_threads: int = 1,
        max_batch_sentences: int = 256,
        batch_wait_s: float = 0.0,
        intent_top_k: int = 3,
        model_name: str | None = None,
        on_batch: Callable[[int, float], None] | None = None,
        model_process: bool = False,
        batches_in_flight: int = 2,
    ) -> None:
        self.torch_threads = torch_threads
        self.max_batch_sentences = max_batch_sentences
        self.batch_wait_s = batch_wait_s
        self.intent_top_k = intent_top_k
        self.model_name = model_name
        self.on_batch = on_batch
        self.runner: Runner = (
            ProcessRunner(torch_threads, intent_top_k, batches_in_flight)
            if model_process
            else InThreadRunner(intent_top_k)
        )
        self._current: ServedModel | None = None
        self._load_lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._in_flight = threading.BoundedSemaphore(self.runner.places)  # batches submitted, not answered

    # -- model ---------------------------------------------------------------------------------------
    @property
    def current(self) -> ServedModel | None:
        return self._current

    @property
    def ready(self) -> bool:
        return self._current is not None and self._thread is not None and self._thread.is_alive()

    def load(self, path: str | Path) -> ServedModel:
        """Load, warm up and then swap in the checkpoint at `path`. Raises `CheckpointError` and leaves
        the current model serving when the file is missing or broken."""
        with self._load_lock:
            tagger = load_bundle(path)
            config = tagger.config
            name = self.model_name or f"slotfill-{'bi' if config.bidirectional else ''}{config.cell}"
            served = ServedModel(tagger=tagger, name=name, version=tagger.sha256[:12])
            self.runner.load(served)
            self._current = served  # one reference assignment: the swap is atomic
            freeze_long_lived_objects()
            log.info("serving %s version %s from %s", served.name, served.version, path)
            return served

    def _served(self) -> ServedModel:
        """The model for the next batch (read once per batch: a reload swaps it between batches)."""
        served = self._current
        if served is None:
            raise RuntimeError("no model loaded")
        return served

    # -- inference thread ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._serve, name="slotfill-inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        self.runner.close()

    def submit(
        self,
        items: list[Prepared],
        future: asyncio.Future[list[Scores]] | concurrent.futures.Future[list[Scores]],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Queue `items` (one forward pass, possibly shared with other jobs); `future` gets one `Scores`
        per item, for `decode`. Pass `loop` when `future` is an asyncio future."""
        if self._current is None:
            raise RuntimeError("no model loaded")
        self._queue.put(_Job(items, future, loop))

    def predict(self, items: list[Prepared], timeout: float | None = 60.0) -> list[dict[str, Any]]:
        """Blocking convenience for callers outside an event loop (the terminal tool, tests)."""
        future: concurrent.futures.Future[list[Scores]] = concurrent.futures.Future()
        self.submit(items, future)
        return [decode(scores) for scores in future.result(timeout)]

    def _serve(self) -> None:
        torch.set_num_threads(self.torch_threads)  # per thread: the rest of the process keeps its own
        carry: Any = None
        while True:
            self._in_flight.acquire()  # gather the next batch only when it can be sent
            job = carry if carry is not None else self._queue.get()
            carry = None
            if job is _STOP:
                self._in_flight.release()
                return
            jobs = [job]
            count = len(job.items)
            deadline = time.monotonic() + self.batch_wait_s
            while count < self.max_batch_sentences:
                try:
                    remaining = deadline - time.monotonic()
                    nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP or count + len(nxt.items) > self.max_batch_sentences:
                    carry = nxt
                    break
                jobs.append(nxt)
                count += len(nxt.items)
            self._dispatch(jobs)

    def _dispatch(self, jobs: list[_Job]) -> None:
        """Hand `jobs` to the runner as one batch and return (the caller holds one of `_in_flight`'s
        places; the answer frees it)."""
        items = [item for job in jobs for item in job.items]
        try:
            served = self._served()
            answer = self.runner.submit(served, items)
        except Exception as caught:
            self._in_flight.release()
            log.exception("could not run a batch of %d sentences", len(items))
            self._finish(jobs, None, caught)
            return

        def answered(done: concurrent.futures.Future[Any]) -> None:  # on this thread or the pipe's reader
            self._in_flight.release()
            try:
                rows, seconds = done.result()
            except Exception as caught:
                log.error("inference failed for a batch of %d sentences: %s", len(items), caught)
                self._finish(jobs, None, caught)
                return
            if self.on_batch is not None:
                self.on_batch(len(items), seconds)
            self._finish(jobs, [Scores(served, item, *row) for item, row in zip(items, rows, strict=True)], None)

        answer.add_done_callback(answered)

    def _finish(self, jobs: list[_Job], results: list[Scores] | None, error: BaseException | None) -> None:
        """Hand each job its slice of `results`, or `error`; asyncio futures through their loops."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, BaseException | None]]] = {}
        offset = 0
        for job in jobs:
            part = None if results is None else results[offset : offset + len(job.items)]
            offset += len(job.items)
            if job.loop is None:
                if error is None:
                    job.future.set_result(part)
                else:
                    job.future.set_exception(error)
            else:
                by_loop.setdefault(job.loop, []).append((job.future, part, error))
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, pairs)
            except RuntimeError:  # that event loop is closed: nobody is waiting any more
                pass
