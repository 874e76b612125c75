"""Encoding and scoring: sentences ready for the model (`Prepared`), the served model with its word-id
caches (`ServedModel`), one padded forward pass (`score_rows`) and the answer built from its scores
(`decode`). Both runners import this module: the inference thread of the server process and the
child of `serving.model_process`, so a sentence is scored by the same code wherever the model runs.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from models.checkpoint import LoadedTagger
from models.spans import bio_to_spans
from models.text import Word
from models.vocab import encode_characters, pad_characters, pad_token_ids
from serving.backends import backend_of
from serving.cache import WordCache

# Each word cache's budget when none is given (SLOTFILL_WORD_CACHE_BYTES), and the longest word key cached.
CACHE_BYTES = 8 << 20
CACHE_WORD_CHARS = 64


@dataclass(frozen=True)
class Prepared:
    """A sentence ready for the model: the text the offsets point into, and its words."""

    text: str
    words: list[Word]


@dataclass(frozen=True)
class ServedModel:
    """A loaded model (a checkpoint, or an ONNX export run by ONNX Runtime: the same `LoadedTagger`,
    scored and decoded by the same code) with the name and version reported in every answer."""

    tagger: LoadedTagger
    name: str
    version: str
    loaded_at: float = field(default_factory=time.time)
    # word key -> id and word key -> character ids, filled as words are seen, bounded in bytes; only
    # the thread (or process) that runs forward passes uses them
    id_cache: WordCache = field(default_factory=lambda: WordCache(CACHE_BYTES, CACHE_WORD_CHARS), repr=False)
    char_cache: WordCache = field(default_factory=lambda: WordCache(CACHE_BYTES, CACHE_WORD_CHARS), repr=False)

    @classmethod
    def with_caches(
        cls, tagger: LoadedTagger, name: str, version: str, cache_bytes: int, cache_word_chars: int
    ) -> ServedModel:
        """A served model whose two word caches hold at most `cache_bytes` each."""
        return cls(
            tagger=tagger,
            name=name,
            version=version,
            id_cache=WordCache(cache_bytes, cache_word_chars),
            char_cache=WordCache(cache_bytes, cache_word_chars),
        )

    def encode(self, words: Sequence[Word]) -> list[int]:
        """Per word, its vocabulary id."""
        vocabulary = self.tagger.vocabulary
        return self.id_cache.lookup((word.key for word in words), lambda key: vocabulary.encode([key])[0])

    def encode_characters(self, words: Sequence[Word]) -> list[list[int]]:
        """Per word, its character ids (the model's character list must exist)."""
        characters = self.tagger.characters
        return self.char_cache.lookup((word.key for word in words), lambda key: encode_characters([key], characters)[0])

    @property
    def backend(self) -> str:
        """What runs the forward passes: `torch` or `onnx` (`serving.backends`)."""
        return backend_of(self.tagger)

    @property
    def info(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}

    def describe(self) -> dict[str, Any]:
        config = self.tagger.config
        return {
            "name": self.name,
            "version": self.version,
            "cell": config.cell,
            "bidirectional": config.bidirectional,
            "num_layers": config.num_layers,
            "embedding_dim": config.embedding_dim,
            "hidden_size": config.hidden_size,
            "decoder": config.decoder,
            "char_encoder": config.char_encoder if config.char_channels > 0 else None,
            "config": asdict(config),
            "vocabulary_size": len(self.tagger.vocabulary),
            "slot_tags": list(self.tagger.slot_tags),
            "intents": list(self.tagger.intents),
            "training_metrics": dict(self.tagger.metrics),
            "checkpoint": Path(self.tagger.path).name,
            "checkpoint_sha256": self.tagger.sha256,
            "created_at": self.tagger.created_at,
            "backend": self.backend,
        }


def _round4(values: torch.Tensor) -> torch.Tensor:
    """Probabilities rounded to 4 decimals (in float64, so they print as short decimals)."""
    return (values * 10_000).round() / 10_000


def freeze_long_lived_objects() -> None:
    """Put every object that exists now (imported modules, the loaded model and its vocabulary) out
    of the garbage collector's reach.

    A full (generation-2) collection walks every tracked object. With torch, FastAPI and pydantic
    imported that is about 200,000 objects and 80-140 ms here, and it happens now and then under
    load, in the server and in the model process alike: every request in flight waits for it
    (docs/benchmarks.md, "Garbage-collector pauses"). After `gc.freeze()` a full collection walks only what came
    later. It collects first, so garbage waiting for collection is not frozen with the rest (that
    one full pass, once per load, is the pause this saves later). Frozen objects are still freed by
    reference counting when the last reference goes (an old model after a reload); only reference
    cycles among them would stay until exit."""
    gc.collect()
    gc.freeze()


def warm_up(served: ServedModel, intent_top_k: int) -> None:
    """The first forward passes allocate and pick kernels; do them before taking traffic."""
    for batch, length in ((1, 4), (8, 12)):
        score_rows(served, [Prepared("x", [Word("x", 0, 1, "x")] * length)] * batch, intent_top_k)


def score_rows(served: ServedModel, items: list[Prepared], intent_top_k: int) -> list[tuple[Any, ...]]:
    """One padded forward pass over `items`: per sentence, BIO-valid tag ids, their probabilities
    (full and rounded for display), and the top-k intent ids and rounded probabilities, as plain
    lists (cheap to send between processes). The fields of `Scores` after `served` and `item`."""
    token_ids, mask, char_ids = encode_batch(served, items)
    with torch.inference_mode():
        model = served.tagger.model
        output = model(token_ids, mask, char_ids)
        # BIO-valid tags (constrained Viterbi, or the CRF's) and each chosen tag's probability.
        tag_index, tag_confidence = model.decode(output.tag_logits, mask)  # (B, T)
        tag_confidence = tag_confidence.double()
        shown_confidence = _round4(tag_confidence)
        if output.intent_logits is not None:
            k = min(intent_top_k, output.intent_logits.size(-1))
            intent_confidence, intent_index = output.intent_logits.double().softmax(dim=-1).topk(k, dim=-1)  # (B, k)
            intent_rows = list(zip(intent_index.tolist(), _round4(intent_confidence).tolist(), strict=True))
        else:
            intent_rows = [([], [])] * len(items)
    rows = zip(tag_index.tolist(), tag_confidence.tolist(), shown_confidence.tolist(), intent_rows, strict=True)
    return [(indices, confidences, shown, ids, probs) for indices, confidences, shown, (ids, probs) in rows]


def encode_batch(served: ServedModel, items: list[Prepared]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The model's inputs for `items`: (B, T) token ids, (B, T) mask of real words, and (B, T, C)
    character ids when the model reads characters (else None)."""
    token_ids, mask = pad_token_ids([served.encode(item.words) for item in items])
    characters = served.tagger.characters
    char_ids = None
    if served.tagger.config.char_channels > 0 and characters is not None:
        char_ids = pad_characters([served.encode_characters(item.words) for item in items])
    return token_ids, mask, char_ids


class Scores(NamedTuple):
    """One sentence's model output as plain lists (rows may be longer than the sentence: padding)."""

    served: ServedModel
    item: Prepared
    tag_ids: list[int]
    confidences: list[float]
    shown_confidences: list[float]
    intent_ids: list[int]
    intent_confidences: list[float]


def decode(scores: Scores) -> dict[str, Any]:
    """The answer for one sentence: words with tags, slots as spans, intent ranking, model.

    A word's confidence is the probability of its chosen tag (softmax, or the CRF's marginal); a
    slot's is the product of its words' (see docs/serving.md). A slot's `canonical` is its value
    after the checkpoint's synonyms, or None when none applies."""
    served, item = scores.served, scores.item
    tag_names = served.tagger.slot_tags
    intent_names = served.tagger.intents
    text = item.text
    words = item.words
    n = len(words)
    tags = [tag_names[i] for i in scores.tag_ids[:n]]
    confidences = scores.confidences
    synonyms = served.tagger.synonyms
    slots = []
    for span in bio_to_spans(tags):
        first, last = words[span.start], words[span.end - 1]
        value = text[first.start : last.end]
        slots.append(
            {
                "slot": span.label,
                "value": value,
                "canonical": synonyms.canonical(span.label, value),
                "start": first.start,
                "end": last.end,
                "token_start": span.start,
                "token_end": span.end,
                "confidence": round(math.prod(confidences[span.start : span.end]), 4),
            }
        )
    ranking = [
        {"name": intent_names[i], "confidence": p}
        for i, p in zip(scores.intent_ids, scores.intent_confidences, strict=True)
    ]
    return {
        "text": text,
        "words": [
            {"text": w.text, "start": w.start, "end": w.end, "tag": tag, "confidence": c}
            for w, tag, c in zip(words, tags, scores.shown_confidences, strict=False)
        ],
        "slots": slots,
        "intent": ranking[0] if ranking else None,
        "intent_ranking": ranking,
        "model": served.info,
    }
