"""`slotfill-train` / `python -m training`: the LightningCLI (fit, validate, test, predict), plus
`download` to fetch the data sets, `import` to bring in data annotated in other formats and `report` to draw a
run's training curves."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from models.checkpoint import CheckpointError
from models.vocab import Vocabulary
from training.callbacks import JsonLinesWriter
from training.data import DataError
from training.datamodule import SlotDataModule
from training.module import NonFiniteLossError, SlotTaggerModule, upgrade_hyperparameters


class SlotfillCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/slot_f1",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best",
                "checkpoint.enable_version_counter": False,
            }
        )
        # ModelCheckpoint(save_last=True) writes last.ckpt only when it also writes a best one, so
        # `--ckpt_path last` could go back many epochs. This second one rewrites last.ckpt every epoch.
        parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
        parser.set_defaults(
            {
                "last_checkpoint.monitor": None,
                "last_checkpoint.filename": "last",
                "last_checkpoint.save_top_k": 1,
                "last_checkpoint.enable_version_counter": False,
            }
        )
        parser.link_arguments("checkpoint.dirpath", "last_checkpoint.dirpath")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults(
            {"early_stopping.monitor": "val/slot_f1", "early_stopping.mode": "max", "early_stopping.patience": 8}
        )
        parser.add_lightning_class_args(JsonLinesWriter, "prediction_writer")
        parser.link_arguments(
            "data.vocabulary", "model.vocabulary", compute_fn=Vocabulary.to_list, apply_on="instantiate"
        )
        parser.link_arguments(
            "data.characters", "model.characters", compute_fn=Vocabulary.to_list, apply_on="instantiate"
        )
        parser.link_arguments("data.slot_tags", "model.slot_tags", apply_on="instantiate")
        parser.link_arguments("data.intents", "model.intents", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        # LightningCLI sets the model's arguments from the checkpoint's hyper-parameters; those of an
        # older layout are upgraded first, so its checkpoints still test, predict and resume.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            hparams = torch.load(ckpt_path, weights_only=True, map_location="cpu").get("hyper_parameters", {})
            if "tagger" not in hparams and "cell" in hparams:
                hparams.pop("_instantiator", None)
                try:
                    upgraded = upgrade_hyperparameters(hparams)
                except ValueError as error:
                    raise CheckpointError(f"{ckpt_path}: {error}") from None
                self.config = self.parser.parse_object({subcommand: {"model": upgraded}}, self.config)
                return
        super()._parse_ckpt_path()

    def before_fit(self) -> None:
        rank_zero_info(self.datamodule.summary())


def run_cli(args: list[str]) -> SlotfillCLI:
    """Run one CLI command and return the CLI object (its `trainer` holds the metrics)."""
    return SlotfillCLI(
        SlotTaggerModule,
        SlotDataModule,
        seed_everything_default=42,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


def main(args: list[str] | None = None) -> None:
    argv = sys.argv[1:] if args is None else args
    if argv[:1] == ["download"]:
        from training.download import main as download_main

        sys.exit(download_main(argv[1:]))
    if argv[:1] == ["report"]:
        from training.curves import main as report_main

        sys.exit(report_main(argv[1:]))
    if argv[:1] == ["import"]:
        from training.import_data import main as import_main

        sys.exit(import_main(argv[1:]))
    try:
        run_cli(argv)
    except (DataError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteLossError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(3)
