"""`python -m serving` / `slotfill-serve`: run the service under uvicorn (settings from SLOTFILL_*).
`python -m serving export CHECKPOINT --out model.onnx` is `slotfill-export` (serving/export.py)."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

from serving.logs import configure_logging, logging_config
from serving.settings import ONEDNN_CACHE_CAPACITY, Settings

# Command-line flags override the environment; they are written back into it so that every uvicorn
# worker process (which builds its app from the environment) sees the same settings.
_FLAGS = {
    "checkpoint": "SLOTFILL_CHECKPOINT",
    "host": "SLOTFILL_HOST",
    "port": "SLOTFILL_PORT",
    "workers": "SLOTFILL_WORKERS",
    "torch_threads": "SLOTFILL_TORCH_THREADS",
    "log_level": "SLOTFILL_LOG_LEVEL",
    "log_format": "SLOTFILL_LOG_FORMAT",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="slotfill-serve", description="Serve a slotfill checkpoint over HTTP. Every flag has a SLOTFILL_* twin."
    )
    parser.add_argument("--checkpoint", help="checkpoint file (.ckpt or bundle); env SLOTFILL_CHECKPOINT")
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--workers", type=int, help="uvicorn worker processes (default 1)")
    parser.add_argument("--torch-threads", type=int, help="torch threads per worker (default 1)")
    parser.add_argument("--log-level", help="log level (default info)")
    parser.add_argument("--log-format", choices=["text", "json"], help="log lines as text or JSON (default text)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["export"]:
        from serving.export import main as export

        export(arguments[1:])
        return
    args = parse_args(arguments)
    # before torch loads (uvicorn imports the app later): bounds oneDNN's per-shape cache, as in the
    # model process (serving.model_process.bound_onednn_cache; not imported here, it imports torch)
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_CACHE_CAPACITY)
    for name, variable in _FLAGS.items():
        value = getattr(args, name)
        if value is not None:
            os.environ[variable] = str(value)
    try:  # before the settings are read, so that what reading them logs is formatted too
        configure_logging(os.environ.get("SLOTFILL_LOG_LEVEL", "info"), os.environ.get("SLOTFILL_LOG_FORMAT", "text"))
    except ValueError:  # a bad level: the settings below name it
        configure_logging()
    try:
        settings = Settings()
        settings.check()
    except ValueError as error:  # pydantic's ValidationError is one
        sys.exit(f"slotfill-serve: {error}")
    if settings.checkpoint is None:
        sys.exit("slotfill-serve: no checkpoint; pass --checkpoint PATH or set SLOTFILL_CHECKPOINT")
    if not settings.checkpoint.is_file():
        # Start anyway, not ready: in a deployment the checkpoint may be written later (then reload).
        logging.getLogger("serving").warning(
            "%s: no such checkpoint file yet; not ready until a reload finds one", settings.checkpoint
        )

    made_metrics_dir = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metrics to files here; /metrics in any worker adds them all up.
        made_metrics_dir = tempfile.mkdtemp(prefix="slotfill-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made_metrics_dir

    import uvicorn

    try:
        uvicorn.run(
            "serving.app:app_from_env",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            http=settings.http,
            loop=settings.loop,
            log_level=settings.log_level,
            log_config=logging_config(settings.log_level, settings.log_format),
            # the most bytes h11 buffers for a request head; over it the connection gets 431
            h11_max_incomplete_event_size=settings.max_header_bytes,
        )
    finally:
        if made_metrics_dir is not None:
            shutil.rmtree(made_metrics_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
