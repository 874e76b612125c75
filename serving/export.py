"""`slotfill-export CHECKPOINT --out model.onnx` (also `python -m serving export`): the tagger's
scoring as an ONNX graph for the ONNX Runtime backend (`serving.backends`).

The graph maps word ids (B, T) int64, the mask of real words (B, T) bool and, when the model reads
characters, character ids (B, T, C) int64 to tag scores (B, T, K) and intent scores (B, I), with
batch, length and word length all dynamic. Decoding (constrained Viterbi, CRF marginals) stays
outside the graph and runs on the scores exactly as it does for torch (`models.decoding`).
Everything else the service needs (config, vocabulary, characters, tags, intents, CRF scores,
validation metrics, the source checkpoint's SHA-256) is written as JSON in the file's metadata
under `METADATA_KEY`, so one file is the whole model.

Export traces one forward pass (`torch.onnx.export(..., dynamo=False)`; the dynamo exporter stops at
a branch on the input's values). A trace records the operations one example ran, so a Python loop
over time steps is unrolled to the example's length: the hand-written cells (`clockwork`, `scrn`)
cannot be exported and are refused with that reason. After writing, the file is run by ONNX
Runtime on batches of other shapes than the traced one and compared with torch, so a graph that
froze a shape is never left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.checkpoint import CheckpointError, LoadedTagger, load_bundle, read_bundle
from models.tagger import TaggerConfig
from serving.backends import METADATA_KEY, METADATA_VERSION

OPSET = 17
# Cells that are torch's fused modules (nn.LSTM / nn.GRU / nn.RNN) export as ONNX recurrent ops.
EXPORTABLE_CELLS = ("elman", "gru", "irnn", "lstm")
# Largest difference from torch accepted by the check after export.
TOLERANCE = 1e-4


class ExportError(Exception):
    """A model that cannot be exported, or an exported graph that does not reproduce torch."""


class Scoring(nn.Module):
    """The tagger's scoring as the graph sees it: tensors in, (tag scores, intent scores) out."""

    def __init__(self, tagger: nn.Module, reads_characters: bool, has_intents: bool) -> None:
        super().__init__()
        self.tagger = tagger
        self.reads_characters = reads_characters
        self.has_intents = has_intents

    def forward(self, token_ids: torch.Tensor, mask: torch.Tensor, *char_ids: torch.Tensor) -> Any:
        output = self.tagger(token_ids, mask, char_ids[0] if self.reads_characters else None)
        return (output.tag_logits, output.intent_logits) if self.has_intents else output.tag_logits


def check_exportable(config: TaggerConfig) -> None:
    """Raise `ExportError` naming why when `config`'s model cannot be exported."""
    if config.cell not in EXPORTABLE_CELLS:
        raise ExportError(
            f"cell {config.cell!r} cannot be exported to ONNX: it is a hand-written Python loop over the "
            "words (models/cells.py), which a trace unrolls to the example's length, so the graph would "
            f"only tag sentences of that one length. Exportable cells: {', '.join(EXPORTABLE_CELLS)}; "
            "serve this model with SLOTFILL_BACKEND=torch"
        )


def input_names(config: TaggerConfig) -> list[str]:
    return ["token_ids", "mask", "char_ids"] if config.char_channels > 0 else ["token_ids", "mask"]


def output_names(config: TaggerConfig) -> list[str]:
    return ["tag_scores", "intent_scores"] if config.intent_head else ["tag_scores"]


def example_inputs(config: TaggerConfig, lengths: Sequence[int], word_length: int, seed: int) -> tuple:
    """Random right-padded inputs: sentences of `lengths` words, words of 1..`word_length` characters."""
    generator = torch.Generator().manual_seed(seed)
    batch, steps = len(lengths), max(lengths)
    mask = torch.arange(steps).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    token_ids = torch.randint(1, config.vocab_size, (batch, steps), generator=generator).masked_fill(~mask, 0)
    if config.char_channels == 0:
        return token_ids, mask
    chars = torch.randint(1, config.char_vocab_size, (batch, steps, word_length), generator=generator)
    word_lengths = torch.randint(1, word_length + 1, (batch, steps, 1), generator=generator)
    chars = chars.masked_fill(torch.arange(word_length) >= word_lengths, 0).masked_fill(~mask.unsqueeze(2), 0)
    return token_ids, mask, chars


def metadata(loaded: LoadedTagger, bundle: dict[str, Any]) -> dict[str, Any]:
    """What the service needs besides the weights, as plain JSON values."""
    model = loaded.model
    crf = None
    if model.crf is not None:
        crf = {name: getattr(model.crf, name).detach().tolist() for name in ("start", "end", "transitions")}
    values = {
        "format_version": METADATA_VERSION,
        "config": loaded.config.to_dict(),
        "vocabulary": loaded.vocabulary.to_list(),
        "characters": loaded.characters.to_list() if loaded.characters is not None else None,
        "slot_tags": list(loaded.slot_tags),
        "intents": list(loaded.intents),
        "crf": crf,
        "metrics": dict(loaded.metrics),
        "created_at": loaded.created_at,
        "source_checkpoint": Path(loaded.path).name,
        "source_sha256": loaded.sha256,
        "inputs": input_names(loaded.config),
        "outputs": output_names(loaded.config),
    }
    if bundle.get("synonyms") is not None:
        values["synonyms"] = bundle["synonyms"]
    return values


def _run_onnx(path: Path, names: list[str], inputs: tuple) -> list[Any]:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {name: value.numpy() for name, value in zip(names, inputs, strict=True)})


def verify(path: Path, scoring: Scoring, config: TaggerConfig) -> float:
    """Run the exported file and torch on batches of shapes other than the traced one; the largest
    score difference. Raises `ExportError` above `TOLERANCE`."""
    worst = 0.0
    for seed, (lengths, word_length) in enumerate((([1], 1), ([9, 3, 14, 1], 12), ([23, 2], 4))):
        inputs = example_inputs(config, lengths, word_length, seed=100 + seed)
        with torch.inference_mode():
            expected = scoring(*inputs)
        expected = expected if isinstance(expected, tuple) else (expected,)
        try:
            got = _run_onnx(path, input_names(config), inputs)
        except Exception as error:  # onnxruntime raises its own types for graphs that fail to run
            raise ExportError(f"the exported graph fails on a batch of lengths {lengths}: {error}") from None
        mask = inputs[1]
        for name, want, have in zip(output_names(config), expected, got, strict=True):
            have = torch.from_numpy(have)
            if have.shape != want.shape:
                raise ExportError(f"{name}: shape {tuple(have.shape)} from the graph, {tuple(want.shape)} from torch")
            if want.dim() == 3:  # per-word scores: pads are not compared
                want, have = want[mask], have[mask]
            worst = max(worst, float((want - have).abs().max()))
    if worst > TOLERANCE:
        raise ExportError(f"the exported graph's scores differ from torch's by {worst:.2e} (> {TOLERANCE:g})")
    return worst


def export(checkpoint: str | Path, out: str | Path, opset: int = OPSET) -> dict[str, Any]:
    """Export `checkpoint` to the ONNX file `out` (written atomically) and check it against torch.
    Returns the metadata written, with `max_difference` (the check's largest score difference)."""
    import onnx

    loaded = load_bundle(checkpoint)
    config = loaded.config
    check_exportable(config)
    scoring = Scoring(loaded.model, config.char_channels > 0, config.intent_head).eval()
    names = input_names(config)
    dynamic_axes = {"token_ids": {0: "batch", 1: "words"}, "mask": {0: "batch", 1: "words"}}
    if config.char_channels > 0:
        dynamic_axes["char_ids"] = {0: "batch", 1: "words", 2: "characters"}
    dynamic_axes["tag_scores"] = {0: "batch", 1: "words"}
    if config.intent_head:
        dynamic_axes["intent_scores"] = {0: "batch"}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # The legacy exporter is deprecated (the dynamo one cannot trace the tagger), and it warns
            # that an LSTM without initial-state inputs may fail at other batch sizes: the
            # initial states are zeros built from the input's shape, and `verify` runs other sizes.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
            torch.onnx.export(
                scoring,
                example_inputs(config, [6, 3], 7, seed=0),
                str(tmp),
                input_names=names,
                output_names=output_names(config),
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                dynamo=False,
            )
        values = metadata(loaded, read_bundle(checkpoint))
        graph = onnx.load(str(tmp))
        entry = graph.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(values)
        onnx.save(graph, str(tmp))
        values["max_difference"] = verify(tmp, scoring, config)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # a temporary file is private; the export is an ordinary file
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return values


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="slotfill-export",
        description="Export a slotfill checkpoint's scoring to ONNX for the ONNX Runtime backend "
        "(SLOTFILL_BACKEND=onnx); the vocabulary, tags, CRF and config go into the file's metadata.",
    )
    parser.add_argument("checkpoint", help="checkpoint file (.ckpt from training, or a bundle)")
    parser.add_argument("--out", required=True, help="ONNX file to write, e.g. model.onnx")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    args = parser.parse_args(argv)
    try:
        values = export(args.checkpoint, args.out, args.opset)
    except (CheckpointError, ExportError) as error:
        sys.exit(f"slotfill-export: {error}")
    print(
        f"wrote {args.out}: {values['config']['cell']} tagger, decoder {values['config']['decoder']}, "
        f"{len(values['slot_tags'])} tags; largest score difference from torch {values['max_difference']:.1e}"
    )


if __name__ == "__main__":
    main()
