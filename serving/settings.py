"""Serving settings, read from the environment (prefix `SLOTFILL_`) with pydantic-settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; `SLOTFILL_<NAME>` sets `<name>` (e.g. `SLOTFILL_MAX_CHARS=500`)."""

    model_config = SettingsConfigDict(env_prefix="SLOTFILL_", extra="ignore")

    checkpoint: Path | None = Field(None, description="checkpoint to serve (.ckpt from training, or a bundle)")
    backend: Literal["torch", "onnx"] | None = Field(
        None,
        description="`torch` serves a checkpoint, `onnx` a file from slotfill-export with ONNX Runtime; "
        "default: the one the file needs",
    )
    model_name: str | None = Field(None, description="name reported with every answer; default slotfill-<cell>")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, description="uvicorn worker processes")
    http: Literal["auto", "h11", "httptools"] = "auto"
    loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"

    model_process: bool = Field(
        True,
        description="run forward passes in a child process (its own GIL: the event loop and the model use "
        "two cores); false runs them on the inference thread of the server process",
    )
    model_batches_in_flight: int = Field(
        2,
        ge=1,
        le=8,
        description="batches sent to the model process before the first is answered (2: the child never "
        "idles between passes, but batches are smaller)",
    )
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads of the inference worker")
    max_batch_sentences: int = Field(256, ge=1, description="most sentences gathered into one forward pass")
    batch_wait_ms: float = Field(
        0.0, ge=0.0, le=100.0, description="how long the inference worker waits for more requests to join a batch"
    )

    gil_switch_interval_ms: float = Field(
        1.0,
        gt=0.0,
        le=100.0,
        description="Python's thread switch interval (sys.setswitchinterval; Python's default is 5 ms): how "
        "long the event loop may hold the GIL before the inference thread gets it back",
    )

    max_chars: int = Field(1000, ge=1, description="most characters in one text")
    max_words: int = Field(200, ge=1, description="most words in one text")
    max_batch_items: int = Field(64, ge=1, description="most items in one /v1/tag/batch request")
    max_body_bytes: int = Field(1 << 20, ge=64, description="largest request body accepted, in bytes")
    intent_top_k: int = Field(3, ge=1, description="length of intent_ranking")

    admin_api_key: SecretStr | None = Field(None, description="key for /v1/admin/reload; reload is off when unset")
