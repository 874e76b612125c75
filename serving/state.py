"""`ServingState`: what the routes share (the settings and the predictor, which holds the served
model), and reloading the checkpoint."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from pathlib import Path

from models.checkpoint import CheckpointError
from serving import metrics
from serving.inference import ServedModel
from serving.predictor import Predictor
from serving.settings import Settings

log = logging.getLogger("serving.state")


class ServingState:
    """What the routes share: the settings and the predictor (which holds the served model)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Each torch op lets go of the GIL; taking it back waits for the event loop's thread to yield,
        # by default after up to 5 ms. A shorter interval keeps the inference thread's forward passes
        # from stretching under load (docs/benchmarks.md). Process-wide, set once per worker.
        sys.setswitchinterval(settings.gil_switch_interval_ms / 1000.0)
        self.load_error: str | None = None  # why the checkpoint could not be loaded at start-up
        self.predictor = Predictor(
            torch_threads=settings.torch_threads,
            max_batch_sentences=settings.max_batch_sentences,
            batch_wait_s=settings.batch_wait_ms / 1000.0,
            intent_top_k=settings.intent_top_k,
            model_name=settings.model_name,
            on_batch=metrics.observe_batch,
            model_process=settings.model_process,
            batches_in_flight=settings.model_batches_in_flight,
            chunk_words=settings.chunk_words,
            cache_bytes=settings.word_cache_bytes,
            cache_word_chars=settings.cache_word_chars,
            backend=settings.backend,
        )

    def checkpoint_path(self) -> Path:
        if self.settings.checkpoint is None:
            raise CheckpointError("no checkpoint configured: set SLOTFILL_CHECKPOINT or pass --checkpoint")
        return self.settings.checkpoint

    def reload(self) -> ServedModel:
        """Re-read the checkpoint and swap it in; on failure the old model keeps serving."""
        try:
            served = self.predictor.load(self.checkpoint_path())
        except CheckpointError as error:
            metrics.RELOADS.labels("failed").inc()
            log.error("reload failed, the old model keeps serving: %s", error)
            raise
        self.load_error = None
        metrics.RELOADS.labels("ok").inc()
        log.info("reloaded: serving %s version %s", served.name, served.version)
        return served

    def reload_in_background(self) -> None:
        def run() -> None:
            with contextlib.suppress(CheckpointError):  # already logged and counted
                self.reload()

        threading.Thread(target=run, name="slotfill-reload", daemon=True).start()
