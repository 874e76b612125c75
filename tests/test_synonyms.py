"""Canonical slot values: the JSON and Rasa YAML synonym forms, matching rules, file:line errors,
and synonyms travelling from the data folder through training into the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.checkpoint import CheckpointError, load_bundle, read_bundle, save_bundle
from models.synonyms import Synonym, SynonymError, SynonymTable, load_synonyms

RASA_YAML = """\
version: "3.1"
nlu:
- intent: greet
  examples: |
    - hello
- synonym: New York
  examples: |
    - NYC
    - new york city

    - big apple
- regex: zipcode
  examples: |
    - [0-9]{5}
- synonym: Boston
  examples: |
    - bos
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def json_form(*entries: dict) -> str:
    return json.dumps({"format": "slotfill-synonyms", "version": 1, "synonyms": list(entries)}, indent=2)


def test_rasa_yaml_synonyms_apply_to_every_slot_type_and_ignore_other_items(tmp_path: Path) -> None:
    table = load_synonyms(write(tmp_path / "nlu.yml", RASA_YAML))
    assert len(table) == 4
    assert table.canonical("toloc.city_name", "NYC") == "New York"
    assert table.canonical("fromloc.city_name", "nyc") == "New York"
    assert table.canonical("fromloc.city_name", "Big  Apple") == "New York"  # case and spacing ignored
    assert table.canonical("toloc.city_name", "BOS") == "Boston"
    assert table.canonical("toloc.city_name", "hello") is None
    assert table.canonical("toloc.city_name", "New York") is None  # only listed forms map


def test_json_form_matches_per_slot_type_and_a_typed_entry_wins(tmp_path: Path) -> None:
    path = write(
        tmp_path / "synonyms.json",
        json_form(
            {"canonical": "New York", "written": ["nyc"]},
            {"canonical": "JFK", "written": ["nyc", "kennedy"], "slot": "airport_name"},
        ),
    )
    table = load_synonyms(path)
    assert table.canonical("airport_name", "NYC") == "JFK"
    assert table.canonical("toloc.city_name", "NYC") == "New York"
    assert table.canonical("toloc.city_name", "kennedy") is None
    # the JSON form written back reads as the same table
    again = SynonymTable.from_json(table.to_json())
    assert again.canonical("airport_name", "nyc") == "JFK" and again.canonical("city", "nyc") == "New York"
    assert again.to_json() == table.to_json()


def test_json_errors_name_the_file_and_the_line_of_the_entry(tmp_path: Path) -> None:
    text = json_form({"canonical": "Boston", "written": ["bos"]}, {"canonical": "Denver", "written": "den"})
    path = write(tmp_path / "synonyms.json", text)
    with pytest.raises(SynonymError) as caught:
        load_synonyms(path)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if '"Denver"' in row) - 1  # the entry's `{`
    assert str(caught.value).startswith(f"{path}:{line}: 'written' must be a non-empty list")


def test_json_syntax_errors_and_foreign_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    broken = write(tmp_path / "broken.json", '{\n  "format": "slotfill-synonyms",\n  "version": 1,\n  oops\n}')
    with pytest.raises(SynonymError, match=r"broken\.json:4: not valid JSON"):
        load_synonyms(broken)
    foreign = write(tmp_path / "other.json", json.dumps({"synonyms": []}))
    with pytest.raises(SynonymError, match="'format' must be 'slotfill-synonyms'"):
        load_synonyms(foreign)
    with pytest.raises(SynonymError, match="unknown synonym file type '.txt'"):
        load_synonyms(write(tmp_path / "s.txt", ""))
    with pytest.raises(SynonymError, match="no such synonym file"):
        load_synonyms(tmp_path / "missing.yml")


def test_yaml_errors_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "nlu.yml", "nlu:\n- synonym: Boston\n  examples: |\n    - bos\n    beantown\n")
    with pytest.raises(SynonymError, match=r"nlu\.yml:5: expected '- written form', got 'beantown'"):
        load_synonyms(path)
    path = write(tmp_path / "bad.yml", "nlu:\n- synonym: Boston\n  examples: [unclosed\n")
    with pytest.raises(SynonymError, match=r"bad\.yml:\d+: not valid YAML"):
        load_synonyms(path)
    path = write(tmp_path / "none.yml", "version: '3.1'\n")
    with pytest.raises(SynonymError, match="no 'nlu' key"):
        load_synonyms(path)


def test_a_written_form_mapping_to_two_values_is_refused_with_both_places(tmp_path: Path) -> None:
    path = write(tmp_path / "nlu.yml", "nlu:\n- synonym: New York\n  examples: |\n    - NY\n- synonym: Newark\n"
                 "  examples: |\n    - ny\n")  # fmt: skip
    with pytest.raises(SynonymError) as caught:
        load_synonyms(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:7: 'ny' (every slot) maps to 'Newark' here but to 'New York' at {path}:4")
    # the same form for different slot types is fine
    SynonymTable([Synonym("ny", "New York", "city"), Synonym("ny", "New York State", "state")])


def test_synonyms_travel_from_the_data_folder_into_the_checkpoint(tmp_path: Path) -> None:
    from tests.conftest import tiny_args, write_corpus
    from training.cli import main

    data = write_corpus(tmp_path / "data", {"train": 40, "valid": 10, "test": 10})
    write(data / "synonyms.json", json_form({"canonical": "Boston", "written": ["bos"], "slot": "toloc.city_name"}))
    rasa = write(tmp_path / "nlu.yml", "nlu:\n- synonym: New York\n  examples: |\n    - nyc\n")
    main(["fit", *tiny_args(tmp_path, data, "--trainer.max_epochs=1", f"--data.synonyms={rasa}")])
    loaded = load_bundle(tmp_path / "checkpoints" / "best.ckpt")
    assert loaded.synonyms.canonical("toloc.city_name", "BOS") == "Boston"
    assert loaded.synonyms.canonical("fromloc.city_name", "bos") is None
    assert loaded.synonyms.canonical("fromloc.city_name", "NYC") == "New York"


def test_a_broken_synonym_file_stops_training_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.conftest import tiny_args, write_corpus
    from training.cli import main

    data = write_corpus(tmp_path / "data", {"train": 20, "valid": 5, "test": 5})
    rasa = write(tmp_path / "nlu.yml", "nlu:\n- synonym: Boston\n  examples: |\n    - bos\n    oops\n")
    with pytest.raises(SystemExit) as caught:
        main(["fit", *tiny_args(tmp_path, data, "--trainer.max_epochs=1", f"--data.synonyms={rasa}")])
    assert caught.value.code == 2
    assert f"error: {rasa}:5: expected '- written form', got 'oops'" in capsys.readouterr().err


def test_checkpoints_without_synonyms_load_and_broken_ones_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    bundle = read_bundle(tiny_checkpoint)
    assert "synonyms" not in bundle  # the tiny corpus has none: the key is left out, as in older bundles
    assert len(load_bundle(tiny_checkpoint).synonyms) == 0
    bundle["synonyms"] = {"format": "slotfill-synonyms", "version": 1, "synonyms": [{"canonical": "x"}]}
    save_bundle(bundle, tmp_path / "broken.ckpt")
    with pytest.raises(CheckpointError, match=r"broken\.ckpt \(synonyms\): synonyms\[0\]: 'written' must be"):
        load_bundle(tmp_path / "broken.ckpt")
