"""The model in a child process, so forward passes never wait for the GIL.

Torch lets go of the GIL inside each op, but every op must take it back before the next one starts.
While the event loop's thread is busy in Python, the inference thread waits for it before each of
the pass's few dozen ops. Measured here (`scripts/bench_forward.py --gil 3`), a busy Python thread
cut a BiLSTM's forward passes of 8 sentences from 346/s to 25/s with the server's 1 ms switch
interval (5/s with Python's default 5 ms). Under load the whole server never used more than one of
the two cores (docs/benchmarks.md, "The GIL"). A child process has a GIL of its own: the parent's inference
thread sends it a batch of prepared sentences through a pipe, waits (without the GIL) for the scores,
and the event loop keeps running on the other core.

The child holds its own copy of the served model, keyed by the checkpoint's SHA-256, and keeps the
previous one as well, so a batch that started before a reload still runs on the model it began with.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from models.checkpoint import CheckpointError

log = logging.getLogger("serving.model_process")

LOAD_TIMEOUT_S = 300.0
SCORE_TIMEOUT_S = 120.0


class ModelProcessError(RuntimeError):
    """The child process died, hung, or failed a forward pass."""


def _child_main(connection: Connection, torch_threads: int, intent_top_k: int) -> None:
    """The child's loop: `("load", path, sha256)`, `("score", sha256, items)` or `("stop",)` in,
    `("ok", payload)` or `("error", message)` out, one answer per message."""
    import torch

    from models.checkpoint import load_bundle
    from serving.predictor import ServedModel, score_rows, warm_up

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
                _, path, sha256 = message
                tagger = load_bundle(path)
                if tagger.sha256 != sha256:
                    raise CheckpointError(f"{path} changed while it was being loaded; reload again")
                served = ServedModel(tagger=tagger, name="", version=sha256[:12])
                warm_up(served, intent_top_k)
                models.pop(sha256, None)
                models[sha256] = served
                while len(models) > 2:
                    models.pop(next(iter(models)))
                connection.send(("ok", None))
            elif kind == "score":
                _, sha256, items = message
                if sha256 not in models:
                    raise ModelProcessError(f"model {sha256[:12]} is not loaded in the model process")
                connection.send(("ok", score_rows(models[sha256], items, intent_top_k)))
            else:
                raise ModelProcessError(f"unknown message {kind!r}")
        except Exception as error:  # answered to the parent, which raises it for the waiting requests
            connection.send(("error", f"{type(error).__name__}: {error}"))


class ModelProcess:
    """Parent-side handle of the child: `load` and `score` block until the child answers. Safe to
    call from several threads (one message at a time)."""

    def __init__(self, torch_threads: int = 1, intent_top_k: int = 3) -> None:
        self.torch_threads = torch_threads
        self.intent_top_k = intent_top_k
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        self._connection, child_end = context.Pipe()
        self._process = context.Process(
            target=_child_main,
            args=(child_end, self.torch_threads, self.intent_top_k),
            name="slotfill-model",
            daemon=True,
        )
        self._process.start()
        child_end.close()

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode

    def restart(self) -> None:
        with self._lock:
            self._kill()
            self._start()

    def _request(self, message: tuple[Any, ...], timeout: float) -> Any:
        with self._lock:
            if not self._process.is_alive():
                raise ModelProcessError(f"the model process has exited (code {self._process.exitcode})")
            try:
                self._connection.send(message)
                if not self._connection.poll(timeout):
                    self._kill()
                    raise ModelProcessError(f"the model process did not answer within {timeout:.0f} s")
                status, payload = self._connection.recv()
            except (EOFError, OSError) as error:
                raise ModelProcessError(f"the model process has exited ({error!r})") from None
        if status == "error":
            raise ModelProcessError(payload)
        return payload

    def load(self, path: str | Path, sha256: str) -> None:
        """Load and warm up the checkpoint at `path`, which must hash to `sha256`."""
        try:
            self._request(("load", str(path), sha256), LOAD_TIMEOUT_S)
        except ModelProcessError as error:
            raise CheckpointError(f"the model process could not load {path}: {error}") from None

    def score(self, sha256: str, items: list[Any]) -> list[tuple[Any, ...]]:
        """`score_rows` of `items` on the model with this SHA-256, computed in the child."""
        return self._request(("score", sha256, items), SCORE_TIMEOUT_S)

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            if self._process.is_alive():
                try:
                    self._connection.send(("stop",))
                    self._process.join(timeout)
                except OSError:
                    pass
            self._kill()
            self._connection.close()

    def _kill(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
