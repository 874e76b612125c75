"""Serving settings, read from the environment (prefix `SLOTFILL_`) with pydantic-settings."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger("serving.settings")

# oneDNN, which runs torch's CPU LSTMs, compiles a primitive per input shape (sentences x words for
# the word LSTM, words x characters for the character LSTM) and keeps up to 1,024 of them, about
# 0.4 MB each. A pass whose shape was evicted pays for a new one (about 0.3 ms per LSTM): with 32 the
# ATIS test sentences one at a time cost 3.4 instead of 2.4 ms a pass. 256 keeps the shapes of
# ordinary traffic and bounds the cache near 100 MB. `slotfill-serve` and the model process set
# ONEDNN_PRIMITIVE_CACHE_CAPACITY to this unless it is set (it must be set before torch loads).
ONEDNN_CACHE_CAPACITY = "256"

# The shortest admin key accepted: 16 characters (about 95 bits drawn from printable ASCII) is out of
# reach of guessing over HTTP, and refuses placeholders such as "changeme" or "secret".
MIN_ADMIN_KEY_CHARS = 16

# The most bytes one character of a text can take in a JSON body: a character outside the BMP written
# as an escaped surrogate pair, `\ud83d\ude00`.
_JSON_BYTES_PER_CHAR = 12
# Per token of a `tokens` list: its two quotes and the comma; per item: braces, key and slack.
_JSON_BYTES_PER_TOKEN = 4
_JSON_BYTES_PER_ITEM = 64


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
    log_format: Literal["text", "json"] = Field(
        "text", description="log lines as text (time, level, logger, message) or as JSON objects, one a line"
    )
    docs: bool = Field(
        False,
        description="serve the OpenAPI UI at /docs and /redoc (their scripts come from a CDN, so they need "
        "the browser to reach it); /openapi.json is always served",
    )
    max_header_bytes: int = Field(
        16384, ge=1024, description="largest request head (request line and headers) accepted; larger get 431"
    )

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
    max_batch_words: int = Field(4096, ge=1, description="most words in one /v1/tag/batch request, all items together")
    max_body_bytes: int | None = Field(
        None,
        ge=64,
        description="largest request body accepted, in bytes; default: the largest legitimate batch "
        "(max_batch_items texts of max_chars characters, each written as a JSON escape)",
    )
    chunk_words: int = Field(
        512,
        ge=1,
        description="a request with more words than this is split into forward passes of at most this many "
        "(padded) words, and requests at most this big go first, so small requests never wait behind a whole "
        "big batch",
    )
    word_cache_bytes: int = Field(
        8 << 20, ge=0, description="memory for each of the two word caches (word ids, character ids), in bytes"
    )
    cache_word_chars: int = Field(
        64, ge=1, description="words whose normalised form is longer are looked up every time, never cached"
    )
    intent_top_k: int = Field(3, ge=1, description="length of intent_ranking")

    admin_api_key: SecretStr | None = Field(
        None,
        description=f"key for /v1/admin/reload, at least {MIN_ADMIN_KEY_CHARS} characters (surrounding "
        "whitespace is stripped); reload is off when unset or empty",
    )

    @field_validator("admin_api_key")
    @classmethod
    def _clean_admin_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is None:
            return None
        raw = key.get_secret_value()
        value = raw.strip()
        if value != raw:
            log.warning("SLOTFILL_ADMIN_API_KEY: %d surrounding whitespace characters stripped", len(raw) - len(value))
        return SecretStr(value) if value else None

    @model_validator(mode="after")
    def _derive_body_limit(self) -> Settings:
        if self.max_body_bytes is None:
            per_item = self.max_chars * _JSON_BYTES_PER_CHAR + self.max_words * _JSON_BYTES_PER_TOKEN
            self.max_body_bytes = self.max_batch_items * (per_item + _JSON_BYTES_PER_ITEM) + 1024
        return self

    def check(self) -> None:
        """Refuse settings the service must not start with (raises `ValueError`; the message never
        holds the key itself, unlike pydantic's, which is why this is not a validator)."""
        key = self.admin_api_key
        if key is not None and len(key.get_secret_value()) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(
                f"SLOTFILL_ADMIN_API_KEY has {len(key.get_secret_value())} characters; at least "
                f"{MIN_ADMIN_KEY_CHARS} are required (unset it to disable reload)"
            )

    @property
    def body_limit(self) -> int:
        """`max_body_bytes`, always set after validation."""
        assert self.max_body_bytes is not None
        return self.max_body_bytes
