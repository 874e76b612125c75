"""The ATIS-style reader (`training.data`), `SlotDataModule`, and the CLI's report of bad data."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from models.loss import IGNORE_INDEX
from models.vocab import PAD, UNK, Vocabulary
from tests.conftest import write_corpus
from training.data import FILES, SPLITS, DataError, Example, collate, encode, read_split, read_utterances
from training.datamodule import SlotDataModule


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus", sizes={"train": 12, "valid": 6, "test": 6})


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))


def replace_line(path: Path, number: int, text: str) -> None:
    """Replace 1-based line `number` of `path` by `text`."""
    lines = lines_of(path)
    lines[number - 1] = text
    write_lines(path, lines)


def expect_error(data_dir: Path, split: str, path: Path, line: int | None, *fragments: str) -> str:
    """`read_split` fails with a DataError whose message starts with `path:line:` and holds `fragments`."""
    with pytest.raises(DataError) as caught:
        read_split(data_dir, split)
    message = str(caught.value)
    prefix = f"{path}:{line}:" if line is not None else f"{path}"
    assert message.startswith(prefix), message
    for fragment in fragments:
        assert fragment in message, message
    return message


def norm(word: str) -> str:
    """The vocabulary's normalisation, restated: lower case, every digit -> 0."""
    return re.sub(r"[0-9]", "0", word.lower())


def expected_examples(split_dir: Path) -> list[tuple[list[str], list[str], str]]:
    """The examples as written, read back naively (independently of `training.data`)."""
    words, tags, labels = (lines_of(split_dir / name) for name in FILES)
    return [(w.split(), t.split(), lab.strip()) for w, t, lab in zip(words, tags, labels, strict=True)]


# --- a good corpus -----------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
def test_good_corpus_reads_back_exactly(corpus: Path, split: str):
    examples = read_split(corpus, split)
    expected = expected_examples(corpus / split)
    assert len(examples) == len(expected) > 0
    for example, (words, tags, intent) in zip(examples, expected, strict=True):
        assert isinstance(example, Example)
        assert example == Example(tuple(words), tuple(tags), intent)
        assert len(example.words) == len(example.tags)


def test_read_split_accepts_str_path(corpus: Path):
    assert read_split(str(corpus), "train") == read_split(corpus, "train")


def test_file_without_final_newline_is_fine(corpus: Path):
    expected = read_split(corpus, "train")
    for name in FILES:
        path = corpus / "train" / name
        path.write_bytes(path.read_bytes().rstrip(b"\n"))
    assert read_split(corpus, "train") == expected


def test_snips_style_trailing_spaces_are_accepted(corpus: Path):
    expected = read_split(corpus, "train")
    for name in FILES:
        path = corpus / "train" / name
        write_lines(path, [line + "  " for line in lines_of(path)])
    assert read_split(corpus, "train") == expected


def test_crlf_line_endings_are_accepted(corpus: Path):
    expected = read_split(corpus, "valid")
    for name in FILES:
        path = corpus / "valid" / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    examples = read_split(corpus, "valid")
    assert examples == expected
    assert not any("\r" in token for ex in examples for token in (*ex.words, *ex.tags, ex.intent))


def test_multi_intent_label_stays_one_class(corpus: Path):
    replace_line(corpus / "train" / "label", 2, "atis_flight#atis_airfare")
    examples = read_split(corpus, "train")
    assert examples[1].intent == "atis_flight#atis_airfare"
    module = SlotDataModule(str(corpus))
    assert "atis_flight#atis_airfare" in module.intents
    assert "atis_flight" in module.intents and "atis_airfare" in module.intents
    assert len(module.intents) == len(set(module.intents))


def test_non_ascii_utf8_is_read(corpus: Path):
    replace_line(
        corpus / "train" / "seq.in", 1, " ".join(["zürich"] * len(lines_of(corpus / "train" / "seq.out")[0].split()))
    )
    assert read_split(corpus, "train")[0].words[0] == "zürich"


# --- errors, each naming path:line ------------------------------------------------------------


@pytest.mark.parametrize("name", FILES)
def test_different_line_counts(corpus: Path, name: str):
    path = corpus / "train" / name
    lines = lines_of(path)
    write_lines(path, lines[:-2])
    n = len(lines)
    counts = {other: (n - 2 if other == name else n) for other in FILES}
    longer = next(other for other in FILES if other != name)
    message = expect_error(corpus, "train", corpus / "train" / longer, n - 1, "different line counts")
    for other, count in counts.items():
        assert f"{other}: {count}" in message


def test_extra_line_at_end_is_a_count_mismatch(corpus: Path):
    path = corpus / "test" / "label"
    lines = lines_of(path)
    write_lines(path, [*lines, "atis_flight"])
    expect_error(corpus, "test", path, len(lines) + 1, "different line counts", f"label: {len(lines) + 1}")


def test_tag_count_differs_from_word_count(corpus: Path):
    tags_path = corpus / "train" / "seq.out"
    words = lines_of(corpus / "train" / "seq.in")[3].split()
    replace_line(tags_path, 4, " ".join(["O"] * (len(words) + 1)))
    expect_error(corpus, "train", tags_path, 4, f"{len(words) + 1} tags for {len(words)} words")


def test_fewer_tags_than_words(corpus: Path):
    tags_path = corpus / "valid" / "seq.out"
    words = lines_of(corpus / "valid" / "seq.in")[-1].split()
    replace_line(tags_path, 6, " ".join(["O"] * (len(words) - 1)))
    expect_error(corpus, "valid", tags_path, 6, f"{len(words) - 1} tags for {len(words)} words")


@pytest.mark.parametrize("bad", ["X-city", "B-", "I-", "city", "o", "b-city", "BI-city", "-city", "O-city"])
def test_invalid_tag(corpus: Path, bad: str):
    tags_path = corpus / "train" / "seq.out"
    tags = lines_of(tags_path)[2].split()
    tags[-1] = bad
    replace_line(tags_path, 3, " ".join(tags))
    expect_error(corpus, "train", tags_path, 3, repr(bad), f"tag {len(tags)}")


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_blank_line_replacing_a_line(corpus: Path, name: str, blank: str):
    path = corpus / "train" / name
    replace_line(path, 5, blank)
    expect_error(corpus, "train", path, 5, "empty line")


@pytest.mark.parametrize("name", FILES)
def test_blank_line_inserted_in_the_middle(corpus: Path, name: str):
    """An extra blank line also shifts the counts; the blank line itself is what gets reported."""
    path = corpus / "valid" / name
    lines = lines_of(path)
    write_lines(path, [*lines[:3], "", *lines[3:]])
    expect_error(corpus, "valid", path, 4, "empty line")


@pytest.mark.parametrize("name", FILES)
def test_blank_line_at_the_end(corpus: Path, name: str):
    path = corpus / "test" / name
    n = len(lines_of(path))
    path.write_bytes(path.read_bytes() + b"\n")
    expect_error(corpus, "test", path, n + 1, "empty line")


def test_two_intents_separated_by_space(corpus: Path):
    path = corpus / "train" / "label"
    replace_line(path, 7, "atis_flight atis_airfare")
    expect_error(corpus, "train", path, 7, "one intent")


@pytest.mark.parametrize("split", SPLITS)
def test_missing_split_dir(corpus: Path, split: str):
    for name in FILES:
        (corpus / split / name).unlink()
    (corpus / split).rmdir()
    expect_error(corpus, split, corpus / split, None, repr(split), "not found")


def test_missing_data_dir(tmp_path: Path):
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "nowhere" / "train"))):
        read_split(tmp_path / "nowhere", "train")


@pytest.mark.parametrize("name", FILES[:2])
def test_missing_file(corpus: Path, name: str):
    path = corpus / "train" / name
    path.unlink()
    expect_error(corpus, "train", path, None, "not found")


def test_a_split_without_label_file_has_no_intents(corpus: Path):
    (corpus / "train" / "label").unlink()
    examples = read_split(corpus, "train")
    assert examples and all(ex.intent is None for ex in examples)
    (corpus / "train" / "seq.out").unlink()
    expect_error(corpus, "train", corpus / "train" / "seq.out", None, "not found")


def test_a_directory_where_a_file_should_be(corpus: Path):
    path = corpus / "train" / "label"
    path.unlink()
    path.mkdir()
    expect_error(corpus, "train", path, None, "not found")


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("line", [1, 3, 6])
def test_non_utf8_byte_names_its_line(corpus: Path, name: str, line: int):
    path = corpus / "valid" / name
    lines = path.read_bytes().split(b"\n")
    lines[line - 1] = lines[line - 1][:2] + b"\xff" + lines[line - 1][2:]
    path.write_bytes(b"\n".join(lines))
    expect_error(corpus, "valid", path, line, "UTF-8", "0xff")


def test_non_utf8_with_crlf_names_its_line(corpus: Path):
    path = corpus / "train" / "seq.in"
    lines = path.read_bytes().replace(b"\n", b"\r\n").split(b"\r\n")
    lines[2] = lines[2] + b" caf\xe9"
    path.write_bytes(b"\r\n".join(lines))
    expect_error(corpus, "train", path, 3, "UTF-8", "0xe9")


def test_read_utterances_skips_blank_lines_and_checks_utf8(tmp_path: Path):
    path = tmp_path / "utterances.txt"
    path.write_bytes(b"show me flights\r\n\n  \nto Boston  \n")
    assert read_utterances(path) == [["show", "me", "flights"], ["to", "Boston"]]
    path.write_bytes(b"ok\nok\n\x80 bad\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:3:")):
        read_utterances(path)
    with pytest.raises(DataError, match="not found"):
        read_utterances(tmp_path / "absent.txt")


# --- SlotDataModule ----------------------------------------------------------------------------


def test_vocabulary_comes_from_training_split_only(corpus: Path):
    replace_line(
        corpus / "valid" / "seq.in", 1, " ".join(["zanzibar"] * len(lines_of(corpus / "valid" / "seq.out")[0].split()))
    )
    module = SlotDataModule(str(corpus))
    assert module.vocabulary.tokens[:2] == [PAD, UNK]
    assert Vocabulary.pad_id == 0 and Vocabulary.unk_id == 1
    train_words = {norm(w) for ex in read_split(corpus, "train") for w in ex.words}
    assert set(module.vocabulary.tokens[2:]) == train_words
    assert "zanzibar" not in module.vocabulary
    batch = next(iter(module.val_dataloader()))
    first = batch["token_ids"][0, : int(batch["mask"][0].sum())]
    assert first.tolist() == [Vocabulary.unk_id] * len(first)


def test_vocabulary_lowercases_and_normalises_digits(corpus: Path):
    seq_in, seq_out = corpus / "train" / "seq.in", corpus / "train" / "seq.out"
    write_lines(seq_in, [*lines_of(seq_in)[:-1], "Under 1000 DOLLARS"])
    write_lines(seq_out, [*lines_of(seq_out)[:-1], "O O O"])
    module = SlotDataModule(str(corpus))
    ids = module.vocabulary.encode(["under", "UNDER", "2500", "1000", "dollars", "Dollars", "9999"])
    assert ids[0] == ids[1] != Vocabulary.unk_id
    assert ids[2] == ids[3] == ids[6] != Vocabulary.unk_id
    assert ids[4] == ids[5] != Vocabulary.unk_id
    assert "Under" not in module.vocabulary.tokens and "under" in module.vocabulary.tokens
    assert "0000" in module.vocabulary.tokens
    assert module.vocabulary.encode(["12345"]) == [Vocabulary.unk_id]  # a different digit shape


def test_min_word_freq(corpus: Path):
    seq_in, seq_out = corpus / "train" / "seq.in", corpus / "train" / "seq.out"
    write_lines(seq_in, [*lines_of(seq_in), "rare twice", "twice"])
    write_lines(seq_out, [*lines_of(seq_out), "O O", "O"])
    label = corpus / "train" / "label"
    write_lines(label, [*lines_of(label), "atis_flight", "atis_flight"])
    counts: dict[str, int] = {}
    for ex in read_split(corpus, "train"):
        for word in ex.words:
            counts[norm(word)] = counts.get(norm(word), 0) + 1
    assert counts["rare"] == 1 and counts["twice"] == 2
    for min_freq in (1, 2, 3):
        module = SlotDataModule(str(corpus), min_word_freq=min_freq)
        kept = {w for w, c in counts.items() if c >= min_freq}
        assert set(module.vocabulary.tokens[2:]) == kept
        assert module.vocabulary.tokens[:2] == [PAD, UNK]
    assert SlotDataModule(str(corpus), min_word_freq=2).vocabulary.encode(["rare", "twice"])[0] == Vocabulary.unk_id
    with pytest.raises(ValueError):
        SlotDataModule(str(corpus), min_word_freq=0)


def test_train_limit_restricts_vocabulary(corpus: Path):
    module = SlotDataModule(str(corpus), train_limit=2)
    assert len(module.train_examples) == 2
    words = {norm(w) for ex in module.train_examples for w in ex.words}
    assert set(module.vocabulary.tokens[2:]) == words


def test_label_lists(corpus: Path):
    module = SlotDataModule(str(corpus))
    train = read_split(corpus, "train")
    assert module.slot_tags[0] == "O"
    assert module.slot_tags[1:] == sorted({t for ex in train for t in ex.tags} - {"O"})
    assert module.intents == sorted({ex.intent for ex in train})


def test_collate_pads_and_masks():
    vocabulary = Vocabulary([PAD, UNK, "a", "b", "c"])
    tag_index, intent_index = {"O": 0, "B-x": 1}, {"i": 0}
    examples = [
        Example(("a", "b", "c"), ("O", "B-x", "O"), "i"),
        Example(("c",), ("B-x",), "i"),
        Example(("b", "zzz"), ("O", "I-unseen"), "other"),
    ]
    batch = collate([encode(ex, vocabulary, tag_index, intent_index) for ex in examples])
    assert batch["token_ids"].tolist() == [[2, 3, 4], [4, 0, 0], [3, 1, 0]]
    assert batch["tag_ids"].tolist() == [[0, 1, 0], [1, IGNORE_INDEX, IGNORE_INDEX], [0, IGNORE_INDEX, IGNORE_INDEX]]
    assert batch["mask"].tolist() == [[True, True, True], [True, False, False], [True, True, False]]
    assert batch["mask"].dtype == torch.bool
    assert batch["intent_ids"].tolist() == [0, 0, IGNORE_INDEX]
    assert batch["examples"] == examples
    assert batch["token_ids"].dtype == batch["tag_ids"].dtype == batch["intent_ids"].dtype == torch.long


def test_dataloader_batches_match_the_data(corpus: Path):
    module = SlotDataModule(str(corpus), eval_batch_size=4)
    batches = list(module.test_dataloader())
    examples = [ex for batch in batches for ex in batch["examples"]]
    assert examples == read_split(corpus, "test")
    for batch in batches:
        lengths = batch["mask"].sum(dim=1).tolist()
        assert lengths == [len(ex.words) for ex in batch["examples"]]
        assert batch["mask"].shape[1] == max(lengths)
        assert bool((batch["token_ids"][~batch["mask"]] == Vocabulary.pad_id).all())
        assert bool((batch["tag_ids"][~batch["mask"]] == IGNORE_INDEX).all())
        assert bool((batch["token_ids"][batch["mask"]] != Vocabulary.pad_id).all())
        for row, ex in enumerate(batch["examples"]):
            n = len(ex.words)
            assert batch["token_ids"][row, :n].tolist() == module.vocabulary.encode(ex.words)
            assert [module.slot_tags[i] for i in batch["tag_ids"][row, :n].tolist()] == list(ex.tags)
            assert module.intents[int(batch["intent_ids"][row])] == ex.intent


def test_unseen_tags_and_intents_get_ignore_index(corpus: Path):
    seq_out, label = corpus / "valid" / "seq.out", corpus / "valid" / "label"
    tags = lines_of(seq_out)[0].split()
    tags[0] = "B-never_in_training"
    replace_line(seq_out, 1, " ".join(tags))
    replace_line(label, 1, "atis_never_in_training")
    module = SlotDataModule(str(corpus), eval_batch_size=64)
    assert "B-never_in_training" not in module.slot_tags
    assert "atis_never_in_training" not in module.intents
    batch = next(iter(module.val_dataloader()))
    assert int(batch["tag_ids"][0, 0]) == IGNORE_INDEX
    assert int(batch["intent_ids"][0]) == IGNORE_INDEX
    assert bool(batch["mask"][0, 0])
    known = batch["tag_ids"][0, 1 : len(tags)]
    assert bool((known >= 0).all())
    assert bool((batch["intent_ids"][1:] >= 0).all())


def test_bad_valid_split_fails_when_read(corpus: Path):
    """The training split is read at construction; other splits when their loader is asked for."""
    replace_line(corpus / "valid" / "seq.out", 2, "O")
    module = SlotDataModule(str(corpus))
    with pytest.raises(DataError, match=re.escape(f"{corpus / 'valid' / 'seq.out'}:2:")):
        module.val_dataloader()


def test_predict_dataloader(corpus: Path, tmp_path: Path):
    utterances = tmp_path / "utts.txt"
    utterances.write_text("Show me flights to Boston\n\nfrom 2000 zanzibar\n", encoding="utf-8")
    module = SlotDataModule(str(corpus), predict_file=str(utterances))
    batch = next(iter(module.predict_dataloader()))
    assert [ex.words for ex in batch["examples"]] == [
        ("Show", "me", "flights", "to", "Boston"),
        ("from", "2000", "zanzibar"),
    ]
    assert batch["mask"].sum(dim=1).tolist() == [5, 3]
    with pytest.raises(ValueError, match="predict_file"):
        SlotDataModule(str(corpus)).predict_dataloader()


# --- the CLI reports bad data cleanly ----------------------------------------------------------


def run_cli_expecting_data_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    from training.cli import main

    with pytest.MonkeyPatch.context() as patch, pytest.raises(SystemExit) as caught:
        patch.setattr(sys, "argv", ["slotfill-train"])  # pytest's own arguments would make LightningCLI warn
        main(args)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def cli_args(data_dir: Path, tmp_path: Path) -> list[str]:
    return [
        "fit",
        "--data.data_dir",
        str(data_dir),
        "--trainer.max_epochs=1",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        f"--trainer.default_root_dir={tmp_path / 'root'}",
        f"--checkpoint.dirpath={tmp_path / 'ckpt'}",
    ]


def test_cli_reports_bad_training_data(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = corpus / "train" / "seq.out"
    replace_line(path, 5, "O O")
    err = run_cli_expecting_data_error(cli_args(corpus, tmp_path), capsys)
    assert f"error: {path}:5: 2 tags for" in err
    assert not (tmp_path / "ckpt").exists()


def test_cli_reports_bad_validation_data(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = corpus / "valid" / "seq.out"
    tags = lines_of(path)[1].split()
    tags[0] = "X-city"
    replace_line(path, 2, " ".join(tags))
    err = run_cli_expecting_data_error(cli_args(corpus, tmp_path), capsys)
    assert f"error: {path}:2: tag 1 'X-city'" in err


def test_cli_reports_missing_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    err = run_cli_expecting_data_error(cli_args(tmp_path / "absent", tmp_path), capsys)
    assert f"error: {tmp_path / 'absent' / 'train'}" in err
