"""Pydantic v2 request and response models: the HTTP contract (and the OpenAPI schema at /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TagRequest(_Strict):
    """One utterance: raw `text`, or pre-split `tokens` (exactly one of the two)."""

    text: StrictStr | None = Field(
        None, description="raw utterance; limits: SLOTFILL_MAX_CHARS characters, SLOTFILL_MAX_WORDS words"
    )
    tokens: list[StrictStr] | None = Field(
        None, description="pre-split words; offsets then point into the tokens joined by single spaces"
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"text": "Show me flights from New York City to Boston, please!"}]},
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> TagRequest:
        if (self.text is None) == (self.tokens is None):
            raise ValueError("send exactly one of 'text' or 'tokens'")
        return self


class BatchRequest(_Strict):
    items: list[TagRequest] = Field(description="utterances, at most SLOTFILL_MAX_BATCH_ITEMS; answered in order")


class TaggedWord(_Strict):
    text: str = Field(description="the word as it appears in the text")
    start: int = Field(description="offset of its first character")
    end: int = Field(description="offset after its last character (end-exclusive)")
    tag: str = Field(description="BIO slot tag")
    confidence: float = Field(
        description="probability of the tag: its softmax probability, or its marginal under a CRF"
    )


class Slot(_Strict):
    slot: str
    value: str = Field(description="text[start:end], original characters and spacing")
    canonical: str | None = Field(
        description="the value after the model's synonyms (e.g. NYC -> New York); null when none applies"
    )
    start: int
    end: int
    token_start: int = Field(description="index of the span's first word")
    token_end: int = Field(description="index after its last word (end-exclusive)")
    confidence: float = Field(description="product of the span's word confidences")


class Intent(_Strict):
    name: str
    confidence: float


class ModelInfo(_Strict):
    name: str
    version: str = Field(description="first 12 hex digits of the checkpoint's SHA-256")


class TagResponse(_Strict):
    text: str = Field(description="the text the offsets point into")
    words: list[TaggedWord]
    slots: list[Slot]
    intent: Intent | None = Field(description="top intent; null for a checkpoint without an intent head")
    intent_ranking: list[Intent]
    model: ModelInfo


class BatchResponse(_Strict):
    results: list[TagResponse]
    model: ModelInfo


class ModelDescription(_Strict):
    name: str
    version: str
    cell: str
    bidirectional: bool
    num_layers: int
    embedding_dim: int
    hidden_size: int
    decoder: str = Field(description="`softmax` (constrained Viterbi over per-word scores) or `crf`")
    char_encoder: str | None = Field(description="`cnn` or `lstm` character word features; null without them")
    config: dict[str, Any] = Field(description="every hyper-parameter the model was built with (TaggerConfig)")
    vocabulary_size: int
    slot_tags: list[str]
    intents: list[str]
    training_metrics: dict[str, float]
    checkpoint: str
    checkpoint_sha256: str
    created_at: str
    backend: str = Field(description="what runs the forward passes: `torch` (a checkpoint) or `onnx` (ONNX Runtime)")


class Status(_Strict):
    status: str


class ReloadResponse(_Strict):
    status: str
    previous: ModelInfo
    model: ModelInfo
    checkpoint_sha256: str


class ErrorBody(_Strict):
    code: str = Field(description="machine-readable kind: validation_error, too_large, not_found, ...")
    message: str = Field(description="one sentence a person can act on")
    details: list[dict[str, Any]] | None = None


class ErrorResponse(_Strict):
    """The one shape of every error answer."""

    error: ErrorBody
