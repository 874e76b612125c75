"""The batching runner: a single inference thread that gathers concurrent requests into one forward
pass (dynamic micro-batching) and hands it to a runner (`serving.runners`: on this thread, or in the
model process). No FastAPI here: the HTTP layer, the terminal tool and the tests all drive the same
`Predictor`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from serving.backends import load_tagger
from serving.inference import (
    CACHE_BYTES,
    CACHE_WORD_CHARS,
    Prepared,
    Scores,
    ServedModel,
    decode,
    freeze_long_lived_objects,
)
from serving.runners import InThreadRunner, ProcessRunner, Runner

log = logging.getLogger("serving.predictor")


@dataclass(eq=False)
class _Job:
    """One request's sentences; its future is resolved when every piece has been answered."""

    items: list[Prepared]
    future: asyncio.Future[list[Scores]] | concurrent.futures.Future[list[Scores]]
    loop: asyncio.AbstractEventLoop | None = None
    results: list[Scores | None] = field(default_factory=list)
    pieces_left: int = 0
    done: bool = False


@dataclass(eq=False)
class _Piece:
    """Some of a job's sentences (by index) that go into one forward pass."""

    job: _Job
    indices: list[int]


def _deliver(pairs: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in pairs:
        if future.done():  # the client went away and the request was cancelled
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class Predictor:
    """Owns the served model and the inference thread.

    Requests are queued as pieces: a request of at most `chunk_words` padded words is one small
    piece, a larger one is split into pieces of that size. The thread takes every small piece waiting
    (up to `max_batch_sentences` sentences, after waiting at most `batch_wait_s` for more) as one
    padded forward pass, or, when no small piece waits, one large piece, and hands it to the runner;
    a request is answered when all its pieces are. The model is read once per batch, so `load` swaps it
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
        chunk_words: int = 512,
        cache_bytes: int = CACHE_BYTES,
        cache_word_chars: int = CACHE_WORD_CHARS,
        backend: str | None = None,
    ) -> None:
        self.torch_threads = torch_threads
        self.backend = backend  # torch, onnx, or None: the one the file needs (serving.backends)
        self.max_batch_sentences = max_batch_sentences
        self.batch_wait_s = batch_wait_s
        self.intent_top_k = intent_top_k
        self.model_name = model_name
        self.on_batch = on_batch
        self.chunk_words = chunk_words
        self.cache_bytes = cache_bytes
        self.cache_word_chars = cache_word_chars
        self.runner: Runner = (
            ProcessRunner(torch_threads, intent_top_k, batches_in_flight, cache_bytes, cache_word_chars)
            if model_process
            else InThreadRunner(intent_top_k)
        )
        self._current: ServedModel | None = None
        self._load_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # What the inference thread waits on: small pieces (whole requests of at most `chunk_words`
        # padded words) go before the pieces of large requests, and at most one large piece is in
        # flight, so a small request never waits behind more than one piece of a large one.
        self._ready = threading.Condition()
        self._small: deque[_Piece] = deque()
        self._large: deque[_Piece] = deque()
        self._in_flight = 0  # forward passes handed to the runner and not answered yet
        self._large_in_flight = 0
        self._stopping = False
        self._results_lock = threading.Lock()

    # -- model ---------------------------------------------------------------------------------------
    @property
    def current(self) -> ServedModel | None:
        return self._current

    @property
    def ready(self) -> bool:
        return self._current is not None and self._thread is not None and self._thread.is_alive()

    def load(self, path: str | Path) -> ServedModel:
        """Load, warm up and then swap in the model file at `path` (a checkpoint, or an ONNX export for
        the onnx backend). Raises `CheckpointError` and leaves the current model serving when the file
        is missing or broken, or does not suit the backend."""
        with self._load_lock:
            tagger = load_tagger(path, self.backend, self.torch_threads)
            config = tagger.config
            name = self.model_name or f"slotfill-{'bi' if config.bidirectional else ''}{config.cell}"
            served = ServedModel.with_caches(tagger, name, tagger.sha256[:12], self.cache_bytes, self.cache_word_chars)
            self.runner.load(served)
            self._current = served  # one reference assignment: the swap is atomic
            freeze_long_lived_objects()
            log.debug("loaded %s version %s from %s", served.name, served.version, path)
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
            with self._ready:
                self._stopping = True
                self._ready.notify_all()
            self._thread.join(timeout)
            self._thread = None
            self._stopping = False
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
        job = _Job(items, future, loop, results=[None] * len(items))
        pieces = self._split(job)
        job.pieces_left = len(pieces)
        with self._ready:
            (self._large if len(pieces) > 1 else self._small).extend(pieces)
            self._ready.notify()

    def _split(self, job: _Job) -> list[_Piece]:
        """One piece when the job's padded size (sentences x longest) is at most `chunk_words`; else its
        sentences, shortest first (less padding), in pieces of at most `chunk_words` padded words each."""
        lengths = [len(item.words) for item in job.items]
        if len(lengths) * max(lengths, default=0) <= self.chunk_words and len(lengths) <= self.max_batch_sentences:
            return [_Piece(job, list(range(len(lengths))))]
        pieces: list[_Piece] = []
        current: list[int] = []
        for index in sorted(range(len(lengths)), key=lengths.__getitem__):
            too_big = (len(current) + 1) * lengths[index] > self.chunk_words
            if current and (too_big or len(current) >= self.max_batch_sentences):
                pieces.append(_Piece(job, current))
                current = []
            current.append(index)
        pieces.append(_Piece(job, current))
        return pieces

    def predict(self, items: list[Prepared], timeout: float | None = 60.0) -> list[dict[str, Any]]:
        """Blocking convenience for callers outside an event loop (the terminal tool, tests)."""
        future: concurrent.futures.Future[list[Scores]] = concurrent.futures.Future()
        self.submit(items, future)
        return [decode(scores) for scores in future.result(timeout)]

    def _serve(self) -> None:
        torch.set_num_threads(self.torch_threads)  # per thread: the rest of the process keeps its own
        while True:
            with self._ready:
                while True:
                    if self._stopping:
                        return
                    if self._in_flight < self.runner.places:
                        if self._small:
                            pieces, large = self._take_small(), False
                            break
                        if self._large and self._large_in_flight == 0:
                            pieces, large = [self._large.popleft()], True
                            break
                    self._ready.wait()
                self._in_flight += 1
                self._large_in_flight += large
            self._dispatch(pieces, large)

    def _take_small(self) -> list[_Piece]:
        """Every small piece waiting, up to `max_batch_sentences` sentences, after waiting up to
        `batch_wait_s` for more (called with `_ready` held)."""
        pieces = [self._small.popleft()]
        count = len(pieces[0].indices)
        deadline = time.monotonic() + self.batch_wait_s
        while count < self.max_batch_sentences:
            if not self._small:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping:
                    break
                self._ready.wait(remaining)
                continue
            if count + len(self._small[0].indices) > self.max_batch_sentences:
                break
            pieces.append(self._small.popleft())
            count += len(pieces[-1].indices)
        return pieces

    def _dispatch(self, pieces: list[_Piece], large: bool) -> None:
        """Hand `pieces` to the runner as one forward pass and return (the caller counted it in
        `_in_flight`; the answer takes it out again)."""
        items = [piece.job.items[i] for piece in pieces for i in piece.indices]

        def answered(done: concurrent.futures.Future[Any] | None, error: BaseException | None = None) -> None:
            with self._ready:  # on this thread, or on the model process's pipe reader
                self._in_flight -= 1
                self._large_in_flight -= large
                self._ready.notify()
            try:
                if error is not None:
                    raise error
                assert done is not None
                rows, seconds = done.result()
            except Exception as caught:
                log.error("inference failed for a batch of %d sentences: %s", len(items), caught)
                self._finish(pieces, None, caught)
                return
            if self.on_batch is not None:
                self.on_batch(len(items), seconds)
            self._finish(pieces, [Scores(served, item, *row) for item, row in zip(items, rows, strict=True)], None)

        try:
            served = self._served()
            answer = self.runner.submit(served, items)
        except Exception as caught:
            answered(None, caught)
            return
        answer.add_done_callback(answered)

    def _finish(self, pieces: list[_Piece], results: list[Scores] | None, error: BaseException | None) -> None:
        """Put each piece's results into its job; hand every job that is complete (or failed) its answer,
        asyncio futures through their loops."""
        by_loop: dict[asyncio.AbstractEventLoop | None, list[tuple[Any, Any, BaseException | None]]] = {}
        offset = 0
        with self._results_lock:
            for piece in pieces:
                job = piece.job
                count = len(piece.indices)
                if job.done:
                    offset += count
                    continue
                if results is None:
                    job.done = True
                    job.results = []  # free what the other pieces already hold
                    by_loop.setdefault(job.loop, []).append((job.future, None, error))
                    continue
                for index, scores in zip(piece.indices, results[offset : offset + count], strict=True):
                    job.results[index] = scores
                offset += count
                job.pieces_left -= 1
                if job.pieces_left == 0:
                    job.done = True
                    answer, job.results = job.results, []
                    by_loop.setdefault(job.loop, []).append((job.future, answer, None))
        for loop, pairs in by_loop.items():
            if loop is None:
                _deliver(pairs)
                continue
            try:
                loop.call_soon_threadsafe(_deliver, pairs)
            except RuntimeError:  # that event loop is closed: nobody is waiting any more
                pass
