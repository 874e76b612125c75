"""Mention replacement (training/augment.py): values swapped within their slot type, tags realigned."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from models.spans import bio_to_spans
from tests.conftest import write_corpus
from training.augment import MentionReplacement, replace_mentions, slot_values
from training.data import Example
from training.datamodule import SlotDataModule

FLIGHT = Example(
    ("flights", "from", "new", "york", "to", "boston", "on", "monday"),
    ("O", "O", "B-from", "I-from", "O", "B-to", "O", "B-day"),
    "flight",
)
FARE = Example(("fare", "from", "denver", "to", "san", "francisco"), ("O", "O", "B-from", "O", "B-to", "I-to"), "fare")


def test_slot_values_lists_each_types_values_with_repeats() -> None:
    values = slot_values([FLIGHT, FARE, FLIGHT])
    assert values["from"] == [("new", "york"), ("denver",), ("new", "york")]
    assert values["to"] == [("boston",), ("san", "francisco"), ("boston",)]
    assert values["day"] == [("monday",), ("monday",)]


def test_probability_zero_keeps_the_example() -> None:
    values = slot_values([FLIGHT, FARE])
    assert replace_mentions(FLIGHT, values, 0.0, random.Random(0)) == FLIGHT


def test_every_value_is_replaced_by_one_of_its_type_and_tags_follow() -> None:
    values = {"from": [("los", "angeles", "international")], "to": [("dallas",)], "day": [("next", "friday")]}
    swapped = replace_mentions(FLIGHT, values, 1.0, random.Random(0))
    assert swapped.words == (
        "flights",
        "from",
        "los",
        "angeles",
        "international",
        "to",
        "dallas",
        "on",
        "next",
        "friday",
    )
    assert swapped.tags == ("O", "O", "B-from", "I-from", "I-from", "O", "B-to", "O", "B-day", "I-day")
    assert swapped.intent == "flight"


def test_replacement_keeps_carrier_words_and_span_types() -> None:
    examples = [FLIGHT, FARE]
    values = slot_values(examples)
    rng = random.Random(1)
    for _ in range(50):
        for example in examples:
            swapped = replace_mentions(example, values, 0.5, rng)
            assert len(swapped.words) == len(swapped.tags)
            spans = bio_to_spans(swapped.tags)
            assert [s.label for s in spans] == [s.label for s in bio_to_spans(example.tags)]
            for span in spans:
                assert swapped.words[span.start : span.end] in values[span.label]
            carriers = [w for w, t in zip(swapped.words, swapped.tags) if t == "O"]
            assert carriers == [w for w, t in zip(example.words, example.tags) if t == "O"]


def test_an_orphan_inside_tag_is_rewritten_as_a_valid_span() -> None:
    example = Example(("to", "big", "city"), ("O", "I-to", "I-to"), "flight")
    swapped = replace_mentions(example, {"to": [("dallas",)]}, 1.0, random.Random(0))
    assert swapped == Example(("to", "dallas"), ("O", "B-to"), "flight")


def test_dataset_draws_fresh_replacements_each_read(tmp_path: Path) -> None:
    data = SlotDataModule(str(write_corpus(tmp_path)), mention_replacement=1.0)
    dataset = MentionReplacement(data.train_examples, 1.0, data._encode)
    random.seed(0)
    reads = [tuple(dataset[i].example.words for i in range(len(dataset))) for _ in range(2)]
    assert reads[0] != reads[1]
    random.seed(0)
    assert tuple(dataset[i].example.words for i in range(len(dataset))) == reads[0]  # reproducible under a seed
    assert len(dataset) == len(data.train_examples)


def test_data_module_trains_on_replaced_mentions(tmp_path: Path) -> None:
    data = SlotDataModule(str(write_corpus(tmp_path)), batch_size=8, mention_replacement=1.0)
    batch = next(iter(data.train_dataloader()))
    assert batch["token_ids"].shape == batch["tag_ids"].shape == batch["mask"].shape
    assert batch["char_ids"].shape[:2] == batch["token_ids"].shape
    real_tags = batch["tag_ids"][batch["mask"]]
    assert bool((real_tags >= 0).all())  # every replaced value's tags are known training tags
    assert torch.equal(batch["mask"].sum(1), torch.tensor([len(ex.words) for ex in batch["examples"]]))
    plain = SlotDataModule(str(write_corpus(tmp_path)))
    assert plain.train_dataloader().dataset is plain._encoded("train")


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_mention_replacement_probability_is_checked(tmp_path: Path, bad: float) -> None:
    with pytest.raises(ValueError, match="mention_replacement must be in"):
        SlotDataModule(str(write_corpus(tmp_path)), mention_replacement=bad)
