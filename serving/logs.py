"""Logging of the service: every line with time and level, as text or as JSON lines
(`SLOTFILL_LOG_FORMAT=json`), for the `serving` loggers and uvicorn's alike."""

from __future__ import annotations

import json
import logging
import logging.config
import time
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601 with milliseconds), level, logger, message and,
    when there is one, the exception's traceback."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def logging_config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """A `logging.config.dictConfig` for the `serving` and `uvicorn` loggers (also handed to uvicorn,
    which applies it in every worker)."""
    formatter: dict[str, Any] = {"()": f"{__name__}.JsonFormatter"} if fmt == "json" else {"format": TEXT_FORMAT}
    python_level = "DEBUG" if level == "trace" else level.upper()
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    loggers = {name: {"handlers": ["default"], "level": python_level, "propagate": False}
               for name in ("serving", "uvicorn", "uvicorn.error", "uvicorn.access")}  # fmt: skip
    loggers["uvicorn.error"]["handlers"] = []  # its records reach the handler through "uvicorn"
    loggers["uvicorn.error"]["propagate"] = True
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": loggers,
    }


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Apply `logging_config`."""
    logging.config.dictConfig(logging_config(level, fmt))
