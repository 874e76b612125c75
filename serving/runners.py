"""Where forward passes run, behind one interface: `InThreadRunner` scores on the calling thread (the
predictor's inference thread), `ProcessRunner` sends the batch to the child of `serving.model_process`
(its own GIL, so the event loop and the model use two cores).

A runner loads a served model (`load`) and scores a batch (`submit`, which returns a future of
`(rows, seconds)`: `score_rows`'s rows and how long the pass took). `places` is how many batches may
be submitted before the first is answered; the predictor never has more in flight.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from typing import Any, Protocol

from serving.inference import CACHE_BYTES, CACHE_WORD_CHARS, Prepared, ServedModel, score_rows, warm_up
from serving.model_process import ModelProcess

log = logging.getLogger("serving.runners")


class Runner(Protocol):
    places: int

    def load(self, served: ServedModel) -> None:
        """Make `served` ready to score (warmed up); raises `CheckpointError` when it cannot."""

    def submit(self, served: ServedModel, items: list[Prepared]) -> Future[tuple[list[tuple[Any, ...]], float]]:
        """Score `items` with `served`; the future gets `(rows, seconds)` or the error."""

    def close(self) -> None:
        """Free what the runner holds (the child process)."""


class InThreadRunner:
    """Scores on the thread that submits (the predictor's inference thread); one batch at a time."""

    places = 1

    def __init__(self, intent_top_k: int = 3) -> None:
        self.intent_top_k = intent_top_k

    def load(self, served: ServedModel) -> None:
        warm_up(served, self.intent_top_k)

    def submit(self, served: ServedModel, items: list[Prepared]) -> Future[tuple[list[tuple[Any, ...]], float]]:
        future: Future[tuple[list[tuple[Any, ...]], float]] = Future()
        started = time.perf_counter()
        try:
            rows = score_rows(served, items, self.intent_top_k)
        except Exception as error:  # handed to the waiting requests, which answer with an error
            log.exception("inference failed for a batch of %d sentences", len(items))
            future.set_exception(error)
        else:
            future.set_result((rows, time.perf_counter() - started))
        return future

    def close(self) -> None:
        pass


class ProcessRunner:
    """Sends batches to the model process. A dead child is replaced (and loaded with the model of the
    batch) before the next batch is sent; the batches it was running fail."""

    def __init__(
        self,
        torch_threads: int = 1,
        intent_top_k: int = 3,
        places: int = 2,
        cache_bytes: int = CACHE_BYTES,
        cache_word_chars: int = CACHE_WORD_CHARS,
    ) -> None:
        if places < 1:
            raise ValueError(f"batches in flight must be at least 1, got {places}")
        # With 2, the next batch waits in the pipe while one runs, so the child never waits for this
        # process between passes; but batches are then smaller, which costs more per sentence.
        self.places = places
        self.torch_threads = torch_threads
        self.intent_top_k = intent_top_k
        self.cache_bytes = cache_bytes
        self.cache_word_chars = cache_word_chars
        self._process: ModelProcess | None = None

    @property
    def process(self) -> ModelProcess:
        """The child, started on first use."""
        if self._process is None:
            self._process = ModelProcess(self.torch_threads, self.intent_top_k, self.cache_bytes, self.cache_word_chars)
        return self._process

    def load(self, served: ServedModel) -> None:
        # the child loads and warms up its copy, with the backend the parent's copy runs on
        self.process.load(served.tagger.path, served.tagger.sha256, served.backend)

    def submit(self, served: ServedModel, items: list[Prepared]) -> Future[tuple[list[tuple[Any, ...]], float]]:
        process = self.process
        if not process.alive:
            log.error("the model process exited (code %s); starting a new one", process.exitcode)
            process.restart()
            process.load(served.tagger.path, served.tagger.sha256, served.backend)
        return process.submit_score(served.tagger.sha256, items)

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
            self._process = None
