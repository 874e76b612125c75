"""`SlotTaggerModule`: a thin LightningModule around `models.RecurrentTagger`."""

from __future__ import annotations

import time
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from models.checkpoint import BUNDLE_KEY, RETIRED_OPTIONS, RETIRED_VALUES, make_bundle
from models.loss import intent_loss
from models.spans import bio_to_spans
from models.tagger import TaggerConfig, TaggerOptions, build_tagger
from models.vocab import Vocabulary
from training.data import write_conlleval_file
from training.distributed import dataset_size, gather_in_order
from training.metrics import Accuracy, SpanF1
from training.report import report_source, scored_from_rows, write_report

DEFAULT_TAGGER = TaggerOptions()
# Training options that hyper-parameters written with bundle format 1 can hold, each with the value
# that left it off. (`lm_vocab_size` only counted with `lm_loss_weight` > 0.)
RETIRED_TRAINING_OPTIONS: dict[str, Any] = {
    "intent_balance": 0.0,
    "intent_label_smoothing": 0.0,
    "lm_loss_weight": 0.0,
    "weight_decay": 0.0,
    "lr_schedule": "constant",
}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; training stops before anything is saved from it."""


class SlotTaggerModule(pl.LightningModule):
    """Trains a `RecurrentTagger`; every checkpoint embeds a plain bundle that rebuilds it.

    Args:
        vocabulary, slot_tags, intents, characters: linked from the data module by the CLI; they fix
            the tagger's sizes.
        tagger: the tagger's architecture (`models.tagger.TaggerOptions`); in YAML `model.tagger.*`.
        intent_loss_weight: weight of the intent cross-entropy added to the slot loss.
        lr: Adam's learning rate.
        predictions_file: where `test` writes conlleval input (relative paths go under the log dir).
    """

    def __init__(
        self,
        vocabulary: list[str],
        slot_tags: list[str],
        intents: list[str],
        characters: list[str] | None = None,
        tagger: TaggerOptions = DEFAULT_TAGGER,
        intent_loss_weight: float = 1.0,
        lr: float = 1e-3,
        predictions_file: str = "predictions.txt",
    ) -> None:
        super().__init__()
        # A dict when rebuilt from a checkpoint's hyper-parameters, which hold plain data only so that
        # checkpoints load with `weights_only=True`: `save_hyperparameters` reads the local as a dict.
        options = TaggerOptions(**tagger) if isinstance(tagger, dict) else tagger
        if not intents:
            # entity-only data: no intent head, whatever the recipe asks of it
            options = replace(options, intent_head=False, intent_to_slots=False, intent_parts=False)
        tagger = asdict(options)
        self.save_hyperparameters()
        self.vocabulary = Vocabulary(vocabulary)
        self.slot_tags = list(slot_tags)
        self.intents = list(intents)
        self.characters = Vocabulary(characters) if characters else None
        if options.char_channels > 0 and self.characters is None:
            raise ValueError("char_channels > 0 needs the character list (linked from the data module)")
        self.config = TaggerConfig.sized(
            options,
            vocab_size=len(self.vocabulary),
            num_tags=len(self.slot_tags),
            num_intents=len(self.intents),
            char_vocab_size=len(self.characters) if self.characters is not None else 0,
        )
        self.model = build_tagger(self.config, self.slot_tags, self.intents)
        self.span_f1 = torch.nn.ModuleDict({stage: SpanF1() for stage in ("val", "test")})
        self.intent_accuracy = torch.nn.ModuleDict({stage: Accuracy() for stage in ("val", "test")})
        self.sentence_accuracy = torch.nn.ModuleDict({stage: Accuracy() for stage in ("val", "test")})
        self._test_rows: list[tuple[tuple[str, ...], tuple[str, ...], list[str]]] = []

    def forward(self, token_ids: torch.Tensor, mask: torch.Tensor, char_ids: torch.Tensor | None = None):
        return self.model(token_ids, mask, char_ids)

    def _run_model(self, batch: dict):
        return self.model(batch["token_ids"], batch["mask"], batch.get("char_ids"))

    def decode(self, batch: dict, output) -> tuple[list[list[str]], list[str]]:
        """BIO-valid tag strings per real word, and the argmax intent string per sentence."""
        tag_ids = self.model.decode(output.tag_logits, batch["mask"])[0].tolist()
        lengths = batch["mask"].sum(dim=1).tolist()
        tags = [[self.slot_tags[i] for i in row[:n]] for row, n in zip(tag_ids, lengths)]
        if output.intent_logits is None:
            return tags, [""] * len(tags)
        return tags, [self.intents[i] for i in output.intent_logits.argmax(dim=-1).tolist()]

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        output = self._run_model(batch)
        batch_size = batch["token_ids"].size(0)
        loss = self.model.slot_loss(output.tag_logits, batch["tag_ids"], batch["mask"])
        if output.intent_logits is not None:
            loss = loss + self.hparams.intent_loss_weight * intent_loss(output.intent_logits, batch["intent_ids"])
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, batch_size=batch_size, prog_bar=on_step, on_step=on_step, on_epoch=True)
        if stage in self.span_f1:
            predicted_tags, predicted_intents = self.decode(batch, output)
            examples = batch["examples"]
            gold_tags = [list(ex.tags) for ex in examples]
            self.span_f1[stage].update(predicted_tags, gold_tags)
            intent_right = torch.tensor([p == ex.intent for p, ex in zip(predicted_intents, examples)])
            tags_right = torch.tensor([p == g for p, g in zip(predicted_tags, gold_tags)])
            if self.config.intent_head:
                self.intent_accuracy[stage].update(intent_right)
                self.sentence_accuracy[stage].update(tags_right & intent_right)
            if stage == "test":
                tagged = zip(examples, predicted_tags, predicted_intents)
                self._test_rows.extend((ex.words, ex.tags, p, ex.intent, i) for ex, p, i in tagged)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self._shared_step(batch, "train")
        if not torch.isfinite(loss):
            # Stop before the optimiser applies non-finite gradients; checkpoints already written
            # (best, last) stay as they were.
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                "training stopped and the checkpoints already saved are untouched "
                "(try a lower --model.lr or a smaller --trainer.gradient_clip_val)"
            )
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def _log_epoch_metrics(self, stage: str) -> None:
        spans = self.span_f1[stage].compute()
        values = {f"{stage}/slot_{name}": value for name, value in spans.items()}
        if self.config.intent_head:  # sentence accuracy: intent and every tag right
            values[f"{stage}/sentence_accuracy"] = self.sentence_accuracy[stage].compute()
            values[f"{stage}/intent_accuracy"] = self.intent_accuracy[stage].compute()
        for key, value in values.items():
            self.log(key, value.float(), prog_bar=stage == "val" and key.endswith("slot_f1"))
        for metrics in (self.span_f1, self.intent_accuracy, self.sentence_accuracy):
            metrics[stage].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_start(self) -> None:
        self._test_rows = []

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")
        path = Path(self.hparams.predictions_file)
        if not path.is_absolute():
            path = Path(self.trainer.log_dir or ".") / path
        # Under DDP each process tagged a share of the test set: gather them, in order, and write once.
        rows = gather_in_order(self._test_rows, dataset_size(self.trainer.test_dataloaders))
        if self.trainer.is_global_zero:
            write_conlleval_file(path, [row[:3] for row in rows])
            print(f"conlleval input written to {path}")
            source = report_source(self.trainer.ckpt_path, getattr(self.trainer.datamodule, "data_dir", None), "test")
            write_report(path.parent, scored_from_rows(rows, with_intents=self.config.intent_head), source)
            print(f"evaluation report written to {path.parent}/report.md")

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict[str, Any]]:
        output = self._run_model(batch)
        tags, intents = self.decode(batch, output)
        records = []
        for example, sentence_tags, intent in zip(batch["examples"], tags, intents):
            words = list(example.words)
            slots = [
                {"slot": s.label, "value": " ".join(words[s.start : s.end]), "token_start": s.start, "token_end": s.end}
                for s in bio_to_spans(sentence_tags)
            ]
            record = {"words": words, "tags": sentence_tags, "slots": slots}
            if self.config.intent_head:
                record["intent"] = intent
            records.append(record)
        return records

    def on_train_epoch_start(self) -> None:
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self) -> None:
        # Wall time of the training part of the epoch (validation excluded), for speed comparisons.
        self.log("train/epoch_seconds", time.perf_counter() - self._epoch_started)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Lightning clips after this hook, so this is the norm before clipping.
        norms = [p.grad.detach().norm(2) for p in self.parameters() if p.grad is not None]
        if norms:
            self.log("train/grad_norm", torch.stack(norms).norm(2), on_step=True, on_epoch=False)

    def configure_optimizers(self):
        # Fused Adam updates every parameter in one kernel: on this CPU 2-3 ms a step against 13-19 ms
        # for torch's per-parameter loop on snips-best's 1.7 M parameters (docs/benchmarks.md).
        fused = all(p.device.type in ("cpu", "cuda") for p in self.parameters())
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, fused=fused or None)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}
        synonyms = getattr(self.trainer.datamodule, "synonyms", None)  # canonical values, from the data
        checkpoint[BUNDLE_KEY] = make_bundle(
            self.model, self.vocabulary, self.slot_tags, self.intents, metrics, self.characters, synonyms=synonyms
        )


def upgrade_hyperparameters(hparams: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's hyper-parameters in this version's layout. Those written with bundle format 1
    hold the tagger's options flat beside the training ones; they move under `tagger`. ValueError
    names a retired option that was on."""
    if "tagger" in hparams or "cell" not in hparams:
        return hparams
    tagger_options = {f.name for f in fields(TaggerOptions)}
    retired = {**RETIRED_TRAINING_OPTIONS, **{k: v for k, v in RETIRED_OPTIONS.items() if k != "lm_vocab_size"}}
    used = [f"{name}={hparams[name]!r}" for name, off in retired.items() if hparams.get(name, off) != off]
    used += [f"{name}={value!r}" for name, value in RETIRED_VALUES.items() if hparams.get(name) == value]
    if used:
        raise ValueError(f"trained with {', '.join(used)}, an option this version no longer has")
    dropped = {*retired, "lm_vocab_size", "intent_counts"}
    upgraded = {k: v for k, v in hparams.items() if k not in tagger_options and k not in dropped}
    upgraded["tagger"] = {k: v for k, v in hparams.items() if k in tagger_options}
    return upgraded
