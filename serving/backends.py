"""The service's two backends: a checkpoint run by torch, or a file written by `slotfill-export`
run by ONNX Runtime.

`load_tagger(path, backend)` is what the service loads a model with. For `torch` it is
`models.checkpoint.load_bundle`; for `onnx` it returns the same `LoadedTagger` whose `model` is an
`OnnxTagger`: called like the torch tagger (word ids, mask, character ids -> `TaggerOutput` with
tag and intent scores as tensors) and decoded by the same `models.decoding.decode_tags`, so
batching, decoding and answers are one code path for both. The backend is chosen from the file
(`.onnx` and the ONNX magic: onnx; else torch) unless `SLOTFILL_BACKEND` names one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch

from models.checkpoint import CheckpointError, LoadedTagger, file_sha256, load_bundle
from models.decoding import LinearChainCRF, bio_constraints, decode_tags
from models.synonyms import SynonymError, SynonymTable
from models.tagger import TaggerConfig, TaggerOutput
from models.vocab import Vocabulary

Backend = Literal["torch", "onnx"]
BACKENDS: tuple[Backend, ...] = ("torch", "onnx")
METADATA_KEY = "slotfill"  # where serving.export writes the service's metadata
METADATA_VERSION = 1


def is_onnx_file(path: str | Path) -> bool:
    """An ONNX file by its name, or (for any name) not a torch checkpoint, which is a zip archive."""
    path = Path(path)
    if path.suffix == ".onnx":
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        return False
    # torch.save writes a zip archive; a serialised ONNX model starts with its ir_version field (0x08).
    return head[:1] == b"\x08"


def backend_for(path: str | Path, backend: str | None = None) -> Backend:
    """`backend` when given (checked), else the one the file at `path` needs."""
    if backend is None:
        return "onnx" if is_onnx_file(path) else "torch"
    if backend not in BACKENDS:
        raise CheckpointError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    return backend  # type: ignore[return-value]


class OnnxTagger:
    """An exported tagger run by ONNX Runtime, called and decoded as `RecurrentTagger` is."""

    backend: Backend = "onnx"

    def __init__(self, session: Any, config: TaggerConfig, slot_tags: list[str], crf: dict[str, Any] | None) -> None:
        self.session = session
        self.config = config
        self.input_names = [item.name for item in session.get_inputs()]
        self.output_names = [item.name for item in session.get_outputs()]
        self.allowed_start, self.allowed_transitions = bio_constraints(slot_tags)
        self.crf = None
        if crf is not None:
            self.crf = LinearChainCRF(len(slot_tags))
            with torch.no_grad():
                for name in ("start", "end", "transitions"):
                    getattr(self.crf, name).copy_(torch.tensor(crf[name]))
            self.crf.requires_grad_(False)

    def __call__(
        self, token_ids: torch.Tensor, mask: torch.Tensor, char_ids: torch.Tensor | None = None
    ) -> TaggerOutput:
        """Scores for a padded batch, as the torch tagger's forward gives them (float32 tensors)."""
        feeds = {"token_ids": token_ids.numpy(), "mask": mask.numpy()}
        if "char_ids" in self.input_names:
            if char_ids is None:
                raise ValueError("this model reads characters: pass char_ids")
            feeds["char_ids"] = char_ids.numpy()
        outputs = dict(zip(self.output_names, self.session.run(None, feeds), strict=True))
        intents = outputs.get("intent_scores")
        return TaggerOutput(
            torch.from_numpy(outputs["tag_scores"]), None if intents is None else torch.from_numpy(intents)
        )

    def decode(self, tag_logits: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return decode_tags(tag_logits, mask, self.allowed_start, self.allowed_transitions, self.crf)


def read_metadata(session: Any, path: str | Path) -> dict[str, Any]:
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if raw is None:
        raise CheckpointError(f"{path}: an ONNX file without slotfill metadata; export it with slotfill-export")
    try:
        values = json.loads(raw)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: unreadable slotfill metadata ({error})") from None
    if values.get("format_version") != METADATA_VERSION:
        raise CheckpointError(
            f"{path}: slotfill metadata version {values.get('format_version')!r}; this code reads {METADATA_VERSION}"
        )
    return values


def load_onnx(path: str | Path, threads: int = 1) -> LoadedTagger:
    """The exported model at `path` in an ONNX Runtime session of `threads` threads."""
    import onnxruntime

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for unreadable files
        raise CheckpointError(f"{path}: not a readable ONNX file ({type(error).__name__}: {error})") from None
    values = read_metadata(session, path)
    try:
        config = TaggerConfig.from_dict(values["config"])
        slot_tags, intents = list(values["slot_tags"]), list(values["intents"])
        vocabulary = Vocabulary(values["vocabulary"])
        characters = Vocabulary(values["characters"]) if values.get("characters") else None
        model = OnnxTagger(session, config, slot_tags, values.get("crf"))
        raw_synonyms = values.get("synonyms")
        synonyms = SynonymTable.from_json(raw_synonyms, f"{path} (synonyms)") if raw_synonyms else SynonymTable()
    except SynonymError as error:
        raise CheckpointError(str(error)) from None
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: slotfill metadata does not describe a tagger: {error}") from None
    return LoadedTagger(
        model=model,  # type: ignore[arg-type]  # called and decoded like RecurrentTagger
        config=config,
        vocabulary=vocabulary,
        slot_tags=slot_tags,
        intents=intents,
        characters=characters,
        metrics=dict(values.get("metrics") or {}),
        created_at=str(values.get("created_at", "")),
        sha256=file_sha256(path),
        path=str(path),
        synonyms=synonyms,
    )


def load_tagger(path: str | Path, backend: str | None = None, threads: int = 1) -> LoadedTagger:
    """The model at `path` for `backend` (None: the one the file needs). A checkpoint given to the
    onnx backend, or an ONNX file to torch, is a `CheckpointError` saying what to do."""
    chosen = backend_for(path, backend)
    onnx_file = Path(path).is_file() and is_onnx_file(path)
    if chosen == "onnx":
        if Path(path).is_file() and not onnx_file:
            raise CheckpointError(
                f"{path}: a torch checkpoint; the onnx backend serves an exported file "
                "(slotfill-export CHECKPOINT --out model.onnx), or set SLOTFILL_BACKEND=torch"
            )
        return load_onnx(path, threads)
    if onnx_file:
        raise CheckpointError(
            f"{path}: an ONNX file; the torch backend serves a checkpoint, or set SLOTFILL_BACKEND=onnx"
        )
    return load_bundle(path)


def backend_of(tagger: LoadedTagger) -> Backend:
    """Which backend runs `tagger`'s forward passes."""
    return getattr(tagger.model, "backend", "torch")
