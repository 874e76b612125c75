"""The model in a child process, so forward passes never wait for the GIL.

Torch lets go of the GIL inside each op, but every op must take it back before the next one starts.
While the event loop's thread is busy in Python, the inference thread waits for it before each of
the pass's few dozen ops. Measured here (`scripts/bench_forward.py --gil 3`), a busy Python thread
cut a BiLSTM's forward passes of 8 sentences from 346/s to 25/s with the server's 1 ms switch
interval (5/s with Python's default 5 ms). Under load the whole server never used more than one of
the two cores (docs/benchmarks.md, "The GIL"). A child process has a GIL of its own: the parent's inference
thread sends it a batch of prepared sentences through a pipe, waits (without the GIL) for the scores,
and the event loop keeps running on the other core. The inference thread may send the next batch
before the last one's scores are back (the predictor keeps at most two in flight), so the child goes
from one pass to the next without waiting for the parent; it answers in the order it was asked.

The child holds its own copy of the served model, keyed by the checkpoint's SHA-256, and keeps the
previous one as well, so a batch that started before a reload still runs on the model it began with.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import CheckpointError
from serving.backends import load_tagger
from serving.inference import (
    CACHE_BYTES,
    CACHE_WORD_CHARS,
    ServedModel,
    freeze_long_lived_objects,
    score_rows,
    warm_up,
)
from serving.settings import ONEDNN_CACHE_CAPACITY

log = logging.getLogger("serving.model_process")

LOAD_TIMEOUT_S = 300.0
SCORE_TIMEOUT_S = 120.0


def bound_onednn_cache() -> None:
    """Cap oneDNN's primitive cache (ONEDNN_PRIMITIVE_CACHE_CAPACITY; why: serving.settings) unless
    it is set already; takes effect in processes started after this, and in this one if oneDNN has
    not run yet."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_CACHE_CAPACITY)


class ModelProcessError(RuntimeError):
    """The child process died, hung, or failed a forward pass."""


def _child_main(
    connection: Connection,
    torch_threads: int,
    intent_top_k: int,
    cache_bytes: int = CACHE_BYTES,
    cache_word_chars: int = CACHE_WORD_CHARS,
) -> None:
    """The child's loop: `("load", path, sha256, backend)`, `("score", sha256, items)` or `("stop",)` in,
    `("ok", payload)` or `("error", message)` out, one answer per message, in order. A score's
    payload is `(rows, seconds the pass took)`."""
    torch.set_num_threads(torch_threads)
    models: dict[str, ServedModel] = {}  # sha256 -> model, oldest first; at most the last two
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):  # the parent went away
            return
        kind = message[0]
        try:
            if kind == "stop":
                connection.send(("ok", None))
                return
            if kind == "load":
                _, path, sha256, backend = message
                tagger = load_tagger(path, backend, torch_threads)
                if tagger.sha256 != sha256:
                    raise CheckpointError(f"{path} changed while it was being loaded; reload again")
                served = ServedModel.with_caches(tagger, "", sha256[:12], cache_bytes, cache_word_chars)
                warm_up(served, intent_top_k)
                models.pop(sha256, None)
                models[sha256] = served
                while len(models) > 2:
                    models.pop(next(iter(models)))
                freeze_long_lived_objects()
                connection.send(("ok", None))
            elif kind == "score":
                _, sha256, items = message
                if sha256 not in models:
                    raise ModelProcessError(f"model {sha256[:12]} is not loaded in the model process")
                started = time.perf_counter()
                rows = score_rows(models[sha256], items, intent_top_k)
                connection.send(("ok", (rows, time.perf_counter() - started)))
            else:
                raise ModelProcessError(f"unknown message {kind!r}")
        except Exception as error:  # answered to the parent, which raises it for the waiting requests
            connection.send(("error", f"{type(error).__name__}: {error}"))


@dataclass
class _Link:
    """One child process, its pipe, and the futures of the messages it has not answered yet."""

    process: BaseProcess
    connection: Connection
    pending: deque[Future[Any]] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)  # a send and its future go in together
    closed: bool = False
    stopping: bool = False  # the parent asked it to stop: its exit is no crash


def _receive(link: _Link) -> None:
    """Parent-side reader: hands each answer to the oldest waiting future; when the pipe closes (the
    child exited or was killed), fails every future still waiting."""
    while True:
        try:
            status, payload = link.connection.recv()
        except (EOFError, OSError):
            break
        with link.lock:
            future = link.pending.popleft()
        if status == "ok":
            future.set_result(payload)
        else:
            future.set_exception(ModelProcessError(payload))
    link.process.join(1)  # the pipe closes as the child exits; its exit code follows
    with link.lock:
        link.closed = True
        code = link.process.exitcode
        if not link.stopping:
            log.error("the model process (pid %s) exited with code %s; %d batches in flight fail with 503, "
                      "the next batch starts a new one", link.process.pid, code, len(link.pending))  # fmt: skip
        while link.pending:
            link.pending.popleft().set_exception(ModelProcessError(f"the model process has exited (code {code})"))


class ModelProcess:
    """Parent-side handle of the child. `submit_score` returns a future at once; `load` and `score`
    block until the child answers. Safe to call from several threads."""

    def __init__(
        self,
        torch_threads: int = 1,
        intent_top_k: int = 3,
        cache_bytes: int = CACHE_BYTES,
        cache_word_chars: int = CACHE_WORD_CHARS,
    ) -> None:
        self.torch_threads = torch_threads
        self.intent_top_k = intent_top_k
        self.cache_bytes = cache_bytes
        self.cache_word_chars = cache_word_chars
        self._start()

    def _start(self) -> None:
        bound_onednn_cache()  # the child inherits the environment and reads it when torch loads
        context = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        connection, child_end = context.Pipe()
        process = context.Process(
            target=_child_main,
            args=(child_end, self.torch_threads, self.intent_top_k, self.cache_bytes, self.cache_word_chars),
            name="slotfill-model",
            daemon=True,
        )
        process.start()
        child_end.close()
        self._link = _Link(process, connection)
        self._receiver = threading.Thread(target=_receive, args=(self._link,), name="slotfill-model-pipe", daemon=True)
        self._receiver.start()

    @property
    def alive(self) -> bool:
        return self._link.process.is_alive() and not self._link.closed

    @property
    def pid(self) -> int | None:
        return self._link.process.pid

    @property
    def exitcode(self) -> int | None:
        return self._link.process.exitcode

    def restart(self) -> None:
        self._kill()
        self._start()
        log.info("model process restarted (pid %s)", self.pid)

    def _send(self, message: tuple[Any, ...]) -> Future[Any]:
        link = self._link
        future: Future[Any] = Future()
        with link.lock:
            if link.closed or not link.process.is_alive():
                raise ModelProcessError(f"the model process has exited (code {link.process.exitcode})")
            link.pending.append(future)
            try:
                link.connection.send(message)
            except OSError as error:
                link.pending.pop()
                raise ModelProcessError(f"the model process has exited ({error!r})") from None
        return future

    def _wait(self, future: Future[Any], timeout: float) -> Any:
        try:
            return future.result(timeout)
        except FutureTimeout:
            log.error("the model process did not answer within %.0f s; killing it", timeout)
            self._kill()  # a hung child: the reader then fails everything still waiting
            raise ModelProcessError(f"the model process did not answer within {timeout:.0f} s") from None

    def load(self, path: str | Path, sha256: str, backend: str | None = None) -> None:
        """Load and warm up the model file at `path`, which must hash to `sha256`, for `backend`
        (`serving.backends.load_tagger`; None: the one the file needs)."""
        try:
            self._wait(self._send(("load", str(path), sha256, backend)), LOAD_TIMEOUT_S)
        except ModelProcessError as error:
            raise CheckpointError(f"the model process could not load {path}: {error}") from None

    def submit_score(self, sha256: str, items: list[Any]) -> Future[Any]:
        """Send `items` to be scored by the model with this SHA-256; the future gets `(rows, seconds)`:
        `score_rows`'s rows and how long the pass took in the child."""
        return self._send(("score", sha256, items))

    def score(self, sha256: str, items: list[Any]) -> list[tuple[Any, ...]]:
        """`score_rows` of `items`, computed in the child (blocking)."""
        rows, _ = self._wait(self.submit_score(sha256, items), SCORE_TIMEOUT_S)
        return rows

    def close(self, timeout: float = 5.0) -> None:
        link = self._link
        link.stopping = True
        try:
            self._wait(self._send(("stop",)), timeout)
        except ModelProcessError:
            pass
        link.process.join(timeout)
        self._kill()
        link.connection.close()

    def _kill(self) -> None:
        self._link.stopping = True
        process = self._link.process
        if process.is_alive():
            process.terminate()
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
        self._receiver.join(5)
