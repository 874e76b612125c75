"""`SlotTaggerModule`: a thin LightningModule around `models.RecurrentTagger`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch

from models.checkpoint import BUNDLE_KEY, make_bundle
from models.loss import intent_loss, language_model_loss
from models.spans import bio_to_spans
from models.tagger import TaggerConfig, build_tagger, intent_part_names
from models.vocab import Vocabulary
from training.data import write_conlleval_file
from training.distributed import dataset_size, gather_in_order
from training.metrics import Accuracy, SpanF1


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; training stops before anything is saved from it."""


class SlotTaggerModule(pl.LightningModule):
    """Trains a `RecurrentTagger`; every checkpoint embeds a plain bundle that rebuilds it.

    Args:
        vocabulary, slot_tags, intents: linked from the data module by the CLI.
        cell: `elman`, `lstm` or `gru`.
        embedding_dim, hidden_size, num_layers, bidirectional, dropout: the encoder's shape.
        forget_bias: LSTM forget-gate bias at init (None: torch's default).
        intent_head: predict the intent too.
        word_dropout: probability of replacing a training word by `<unk>`.
        intent_pooling: `meanmax`, `attention` or `token` (see `models.tagger.TaggerConfig`).
        decoder: `softmax` (per-word cross-entropy) or `crf`; decoding is BIO-valid either way.
        characters: the character list, linked from the data module (used when char_channels > 0).
        char_channels, char_embedding_dim, char_kernel: the character CNN (0 channels: off).
        char_encoder: `cnn`, or `lstm` for a character BiLSTM (`char_channels` wide, `char_kernel` unused).
        intent_to_slots: feed the predicted intent distribution to every word's tag scores.
        intent_parts: score multi-intent labels (`a#b`) as the sum of their parts' scores plus a bias.
        self_attention_heads: self-attention over the encoder states, concatenated to them (0: off).
        intent_words: the intent head also pools each word's input features (embedding + characters).
        intent_encoder: the intent head reads a recurrent encoder of its own (same shape and inputs).
        intent_loss_weight: weight of the intent cross-entropy added to the slot loss.
        intent_counts: training sentences per intent, linked from the data module.
        intent_balance: 0 treats every sentence alike; b > 0 weights each intent's cross-entropy by
            (count / largest count) ** -b (1: inverse frequency), normalised so that the mean weight
            over the training sentences is 1, to help the rare intents.
        intent_label_smoothing: share of each intent target spread uniformly over all intents.
        lm_loss_weight: weight of the auxiliary language-model loss (Rei 2017; training only, the
            heads are never used to tag): the encoder's first layer also predicts each next word
            (forward states) and each previous word (backward states). 0: off, no extra weights.
        lm_vocab_size: how many of the most frequent vocabulary ids the language model predicts
            (rarer words share `<unk>`); capped at the vocabulary's size.
        lr, weight_decay: Adam's.
        lr_schedule: `constant`; `cosine` decay to zero over `trainer.max_epochs`; or `plateau`: the
            rate halves whenever validation slot F1 has not improved for 2 epochs, so it stays high
            while the model still learns and drops only once progress stalls.
        predictions_file: where `test` writes conlleval input (relative paths go under the log dir).
    """

    def __init__(
        self,
        vocabulary: list[str],
        slot_tags: list[str],
        intents: list[str],
        cell: str = "lstm",
        embedding_dim: int = 100,
        hidden_size: int = 200,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.3,
        forget_bias: float | None = 1.0,
        intent_head: bool = True,
        word_dropout: float = 0.0,
        intent_pooling: Literal["meanmax", "attention", "token"] = "meanmax",
        decoder: Literal["softmax", "crf"] = "softmax",
        characters: list[str] | None = None,
        char_channels: int = 0,
        char_embedding_dim: int = 30,
        char_kernel: int = 3,
        char_encoder: Literal["cnn", "lstm"] = "cnn",
        intent_to_slots: bool = False,
        intent_parts: bool = False,
        self_attention_heads: int = 0,
        intent_words: bool = False,
        intent_encoder: bool = False,
        intent_loss_weight: float = 1.0,
        intent_counts: list[int] | None = None,
        intent_balance: float = 0.0,
        intent_label_smoothing: float = 0.0,
        lm_loss_weight: float = 0.0,
        lm_vocab_size: int = 2000,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: Literal["constant", "cosine", "plateau"] = "constant",
        predictions_file: str = "predictions.txt",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.vocabulary = Vocabulary(vocabulary)
        self.slot_tags = list(slot_tags)
        self.intents = list(intents)
        self.characters = Vocabulary(characters) if characters else None
        if char_channels > 0 and self.characters is None:
            raise ValueError("char_channels > 0 needs the character list (linked from the data module)")
        self.config = TaggerConfig(
            vocab_size=len(self.vocabulary),
            num_tags=len(self.slot_tags),
            num_intents=len(self.intents),
            cell=cell,
            embedding_dim=embedding_dim,
            hidden_size=hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            forget_bias=forget_bias,
            intent_head=intent_head,
            word_dropout=word_dropout,
            intent_pooling=intent_pooling,
            decoder=decoder,
            char_vocab_size=len(self.characters) if self.characters is not None else 0,
            char_channels=char_channels,
            char_embedding_dim=char_embedding_dim,
            char_kernel=char_kernel,
            char_encoder=char_encoder,
            intent_to_slots=intent_to_slots,
            intent_parts=len(intent_part_names(self.intents)) if intent_parts else 0,
            self_attention_heads=self_attention_heads,
            intent_words=intent_words,
            intent_encoder=intent_encoder,
            lm_vocab_size=min(lm_vocab_size, len(self.vocabulary)) if lm_loss_weight > 0 else 0,
        )
        if lm_loss_weight < 0:
            raise ValueError(f"lm_loss_weight must be >= 0, got {lm_loss_weight}")
        self.model = build_tagger(self.config, self.slot_tags, self.intents)
        if not 0.0 <= intent_label_smoothing < 1.0:
            raise ValueError(f"intent_label_smoothing must be in [0, 1), got {intent_label_smoothing}")
        self.register_buffer("intent_weights", intent_class_weights(intent_counts, intent_balance), persistent=False)
        self.span_f1 = torch.nn.ModuleDict({stage: SpanF1() for stage in ("val", "test")})
        self.intent_accuracy = torch.nn.ModuleDict({stage: Accuracy() for stage in ("val", "test")})
        self.sentence_accuracy = torch.nn.ModuleDict({stage: Accuracy() for stage in ("val", "test")})
        self._test_rows: list[tuple[tuple[str, ...], tuple[str, ...], list[str]]] = []

    def forward(self, token_ids: torch.Tensor, mask: torch.Tensor, char_ids: torch.Tensor | None = None):
        return self.model(token_ids, mask, char_ids)

    def _run_model(self, batch: dict, with_lm: bool = False):
        return self.model(batch["token_ids"], batch["mask"], batch.get("char_ids"), with_lm=with_lm)

    def decode(self, batch: dict, output) -> tuple[list[list[str]], list[str]]:
        """BIO-valid tag strings per real word, and the argmax intent string per sentence."""
        tag_ids = self.model.decode(output.tag_logits, batch["mask"])[0].tolist()
        lengths = batch["mask"].sum(dim=1).tolist()
        tags = [[self.slot_tags[i] for i in row[:n]] for row, n in zip(tag_ids, lengths)]
        if output.intent_logits is None:
            return tags, [""] * len(tags)
        return tags, [self.intents[i] for i in output.intent_logits.argmax(dim=-1).tolist()]

    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        # The language model is a training signal only: validation and test losses leave it out.
        with_lm = stage == "train" and self.hparams.lm_loss_weight > 0
        output = self._run_model(batch, with_lm=with_lm)
        batch_size = batch["token_ids"].size(0)
        loss = self.model.slot_loss(output.tag_logits, batch["tag_ids"], batch["mask"])
        if with_lm:
            lm_term = language_model_loss(*output.lm_logits, batch["token_ids"], batch["mask"])
            self.log("train/lm_loss", lm_term, batch_size=batch_size, on_step=False, on_epoch=True)
            loss = loss + self.hparams.lm_loss_weight * lm_term
        if output.intent_logits is not None:
            intent_term = intent_loss(
                output.intent_logits, batch["intent_ids"], self.intent_weights, self.hparams.intent_label_smoothing
            )
            loss = loss + self.hparams.intent_loss_weight * intent_term
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
                tags_right &= intent_right
            self.sentence_accuracy[stage].update(tags_right)
            if stage == "test":
                self._test_rows.extend((ex.words, ex.tags, p) for ex, p in zip(examples, predicted_tags))
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
        values[f"{stage}/sentence_accuracy"] = self.sentence_accuracy[stage].compute()
        if self.config.intent_head:
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
            write_conlleval_file(path, rows)
            print(f"conlleval input written to {path}")

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
        optimizer = torch.optim.Adam(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay, fused=fused or None
        )
        if self.hparams.lr_schedule == "constant":
            return optimizer
        if self.hparams.lr_schedule == "plateau":
            schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=2)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": schedule, "monitor": "val/slot_f1", "interval": "epoch"},
            }
        if self.hparams.lr_schedule != "cosine":
            raise ValueError(f"unknown lr_schedule {self.hparams.lr_schedule!r}; valid: constant, cosine, plateau")
        epochs = max(1, self.trainer.max_epochs or 1)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("val/")}
        # The bundle takes the weights this checkpoint saves, which a weight-averaging callback (it runs
        # first) may have replaced with the averaged ones.
        prefix = "model."
        weights = {k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}
        synonyms = getattr(self.trainer.datamodule, "synonyms", None)  # canonical values, from the data
        checkpoint[BUNDLE_KEY] = make_bundle(
            self.model,
            self.vocabulary,
            self.slot_tags,
            self.intents,
            metrics,
            self.characters,
            weights,
            synonyms=synonyms,
        )


def intent_class_weights(counts: list[int] | None, balance: float) -> torch.Tensor | None:
    """Per-intent loss weights (count / max) ** -balance, mean 1 over the training sentences; None
    when balance is 0."""
    if balance == 0.0:
        return None
    if balance < 0 or not counts or min(counts) < 1:
        raise ValueError("intent_balance needs balance > 0 and a positive count for every intent")
    frequency = torch.tensor(counts, dtype=torch.float)
    weights = (frequency / frequency.max()) ** -balance
    return weights * frequency.sum() / (weights * frequency).sum()
