"""Checkpoint bundles: plain dicts that rebuild a tagger with `models/` alone.

A bundle is {format_version, config, vocabulary, characters (None without character features),
slot_tags, intents, state_dict, metrics,
created_at}: strings, numbers, lists and tensors only, so `torch.load(path, weights_only=True)`
reads it. Training embeds the bundle in each Lightning checkpoint under `BUNDLE_KEY`; `load_bundle`
accepts either that checkpoint or a bundle saved on its own.

Older format versions are migrated on reading (`MIGRATIONS`), so a checkpoint keeps serving the
same answers after the code moves on; one built with an option the code no longer has is refused
with the option's name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from models.tagger import RecurrentTagger, TaggerConfig, build_tagger
from models.vocab import Vocabulary

FORMAT_VERSION = 2
BUNDLE_KEY = "slotfill_bundle"
REQUIRED_KEYS = ("format_version", "config", "vocabulary", "slot_tags", "intents", "state_dict")
# Version 1 tagger options that no longer exist, each with the value that left it off. `lm_hidden`
# only sized the language-model heads, which `lm_vocab_size` 0 left out.
RETIRED_OPTIONS: dict[str, Any] = {
    "self_attention_heads": 0,
    "intent_words": False,
    "intent_encoder": False,
    "lm_vocab_size": 0,
}
RETIRED_VALUES: dict[str, Any] = {"intent_pooling": "attention"}


class CheckpointError(Exception):
    """A checkpoint that cannot be read or rebuilt; the message names the file and the problem."""


@dataclass
class LoadedTagger:
    """A rebuilt tagger in eval mode, with everything needed to turn words into tags."""

    model: RecurrentTagger
    config: TaggerConfig
    vocabulary: Vocabulary
    slot_tags: list[str]
    intents: list[str]
    characters: Vocabulary | None = None  # with character features
    metrics: dict[str, float] = field(default_factory=dict)
    created_at: str = ""
    sha256: str = ""
    path: str = ""


def make_bundle(
    model: RecurrentTagger,
    vocabulary: Vocabulary,
    slot_tags: list[str],
    intents: list[str],
    metrics: dict[str, float] | None = None,
    characters: Vocabulary | None = None,
) -> dict[str, Any]:
    """The bundle of `model`: its config, label lists and weights, as plain data."""
    return {
        "characters": characters.to_list() if characters is not None else None,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "vocabulary": vocabulary.to_list(),
        "slot_tags": list(slot_tags),
        "intents": list(intents),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def save_bundle(bundle: dict[str, Any], path: str | Path) -> None:
    """Write atomically: a temporary file in the same folder, then rename, so readers never see
    half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(bundle, handle)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _from_version_1(config: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: the retired options go (refused when on), `intent_parts` becomes a flag (it
    counted the single intents, which the intent list already gives)."""
    used = [f"{name}={config[name]!r}" for name, off in RETIRED_OPTIONS.items() if config.get(name, off) != off]
    used += [f"{name}={value!r}" for name, value in RETIRED_VALUES.items() if config.get(name) == value]
    if used:
        raise ValueError(f"built with {', '.join(used)}, an option this version no longer has; retrain it")
    config = {key: value for key, value in config.items() if key not in (*RETIRED_OPTIONS, "lm_hidden")}
    config["intent_parts"] = bool(config.get("intent_parts", 0))
    return config


# format version -> the function that turns that version's config into the next version's.
MIGRATIONS = {1: _from_version_1}


def read_bundle(path: str | Path) -> dict[str, Any]:
    """The bundle dict stored at `path` (a bundle file or a Lightning checkpoint holding one)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from None
    if isinstance(data, dict) and BUNDLE_KEY in data:
        data = data[BUNDLE_KEY]
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a slotfill checkpoint (no bundle inside)")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise CheckpointError(f"{path}: not a slotfill checkpoint; missing key(s): {', '.join(missing)}")
    version = data["format_version"]
    if version != FORMAT_VERSION and version not in MIGRATIONS:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r}; this code reads versions "
            f"{', '.join(map(str, [*MIGRATIONS, FORMAT_VERSION]))}"
        )
    config = dict(data["config"])
    while version != FORMAT_VERSION:
        try:
            config = MIGRATIONS[version](config)
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}") from None
        version += 1
    return {**data, "config": config, "format_version": version}


def load_bundle(path: str | Path) -> LoadedTagger:
    """Rebuild the tagger stored at `path`, in eval mode, without Lightning."""
    bundle = read_bundle(path)
    try:
        config = TaggerConfig.from_dict(bundle["config"])
        vocabulary = Vocabulary(bundle["vocabulary"])
        characters = Vocabulary(bundle["characters"]) if bundle.get("characters") else None
        model = build_tagger(config, list(bundle["slot_tags"]), list(bundle["intents"]))
        model.load_state_dict(bundle["state_dict"])
    except (ValueError, TypeError, RuntimeError, KeyError) as error:
        raise CheckpointError(f"{path}: checkpoint does not rebuild a tagger: {error}") from None
    if len(vocabulary) != config.vocab_size or len(bundle["slot_tags"]) != config.num_tags:
        raise CheckpointError(f"{path}: vocabulary or tag list does not match the model's sizes")
    if config.char_channels > 0 and (characters is None or len(characters) != config.char_vocab_size):
        raise CheckpointError(f"{path}: the model reads characters but the character list is missing or wrong")
    model.eval()
    return LoadedTagger(
        model=model,
        config=config,
        vocabulary=vocabulary,
        slot_tags=list(bundle["slot_tags"]),
        intents=list(bundle["intents"]),
        characters=characters,
        metrics=dict(bundle.get("metrics", {})),
        created_at=str(bundle.get("created_at", "")),
        sha256=file_sha256(path),
        path=str(path),
    )
