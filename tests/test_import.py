"""`python -m training import`: every format on files written here, spans round trips, tag-scheme
conversion, every error with its file:line, and imported data through training."""

from __future__ import annotations

import json
import random
import re
import unicodedata
from pathlib import Path

import pytest

from models.spans import bio_to_spans
from models.text import tokenize
from training.import_data import main as import_main
from training.importers.common import MAX_CHARS, MAX_WORDS, CharSpan, char_spans
from training.importers.split import split_examples
from training.importers.tags import find_scheme, to_bio


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def run_import(*args: str | Path) -> int:
    return import_main([str(arg) for arg in args])


def read_out(out: Path, split: str) -> list[tuple[list[str], list[str], str | None]]:
    """(words, tags, intent or None) per line of an imported split."""
    folder = out / split
    words = (folder / "seq.in").read_text(encoding="utf-8").splitlines()
    tags = (folder / "seq.out").read_text(encoding="utf-8").splitlines()
    labels = (folder / "label").read_text().splitlines() if (folder / "label").exists() else [None] * len(words)
    return [(w.split(), t.split(), label) for w, t, label in zip(words, tags, labels, strict=True)]


def import_error(capsys: pytest.CaptureFixture, *args: str | Path) -> str:
    """Run an import that must fail; returns its error text."""
    assert run_import(*args) == 2
    return capsys.readouterr().err


# --- tag schemes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "scheme", "bio"),
    [
        (["O", "B-city", "I-city", "O"], "bio", ["O", "B-city", "I-city", "O"]),
        # IOB1: I- opens a chunk; B- only separates two adjacent chunks of one type
        (["I-city", "I-city", "B-city", "O", "I-day"], "bio", ["B-city", "I-city", "B-city", "O", "B-day"]),
        (["B-city", "E-city", "S-city", "O", "B-day", "I-day", "E-day"], "bioes", None),
        (["B-city", "L-city", "U-city", "O", "B-day", "I-day", "L-day"], "bioes", None),
        (["city", "city", "O", "day", "city"], "bare", ["B-city", "I-city", "O", "B-day", "B-city"]),
    ],
)
def test_tag_schemes_convert_to_bio(tags, scheme, bio):
    assert find_scheme(("f:1", tag) for tag in tags) == scheme
    expected = bio or ["O" if t == "O" else ("I-" if t[0] in "IEL" else "B-") + t[2:] for t in tags]
    assert to_bio(tags, scheme) == expected


def test_mixed_tag_schemes_are_refused():
    with pytest.raises(ValueError, match="f:2: tag 'city' has no B-/I-/E-/S- prefix, but f:1 has 'B-day'"):
        find_scheme([("f:1", "B-day"), ("f:2", "city")])


@pytest.mark.parametrize("tags", [["O", "E-city"], ["B-city", "I-day"], ["S-city", "I-city"]])
def test_bioes_tags_that_continue_no_chunk_are_refused(tags):
    with pytest.raises(ValueError, match="word 2: .* must continue a .* chunk"):
        to_bio(tags, "bioes")


# --- formats and round trips ------------------------------------------------------------------

CITIES = ["Boston", "New York", "San José", "Zürich", "A Coruña", "Köln"]
DAYS = ["monday", "friday", "next sunday"]


def make_text_examples(count: int, seed: int = 0, intents: bool = True) -> list[dict]:
    """Sentences with character-offset entities at word edges (some next to punctuation)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        city, day = rng.choice(CITIES), rng.choice(DAYS)
        prefix = rng.choice(["fly to ", "weather in ", "Show me hotels in “"])
        middle = rng.choice([", on ", "” for ", " "])
        text = f"{prefix}{city}{middle}{day}, please!"
        day_start = len(prefix) + len(city) + len(middle)
        entities = [
            {"start": len(prefix), "end": len(prefix) + len(city), "label": "city"},
            {"start": day_start, "end": day_start + len(day), "label": "day"},
        ]
        row = {"text": text, "entities": entities}
        if intents:
            row["intent"] = prefix.split()[0].lower()
        rows.append(row)
    return rows


def test_jsonl_round_trip(tmp_path: Path):
    """Spans in -> seq files -> spans back identical (valid and test given, so the order is kept)."""
    rows = {split: make_text_examples(12, seed=i) for i, split in enumerate(("train", "valid", "test"))}
    files = {split: write_jsonl(tmp_path / f"{split}.jsonl", r) for split, r in rows.items()}
    out = tmp_path / "out"
    assert run_import("jsonl", files["train"], "--valid", files["valid"], "--test", files["test"], "--out", out) == 0
    for split, source in rows.items():
        imported = read_out(out, split)
        assert len(imported) == len(source)
        for row, (words, tags, intent) in zip(source, imported):
            assert words == [word.key for word in tokenize(row["text"])]
            spans = [CharSpan(e["start"], e["end"], e["label"]) for e in row["entities"]]
            assert char_spans(row["text"], tags) == spans
            assert intent == row["intent"]
    report = json.loads((out / "import.json").read_text())
    words = sum(len(w) for w, _, _ in read_out(out, "train"))
    assert report["counts"]["train"] == {"sentences": 12, "words": words, "entities": 24}
    assert set(report["slot_types"]) == {"city", "day"}
    assert report["split"]["drawn_from_train"] == []


@pytest.mark.parametrize(
    "row",
    [
        {"text": "rooms in Köln tonight", "label": [[9, 13, "city"]]},
        {"text": "rooms in Köln tonight", "spans": [{"start": 9, "end": 13, "label": "city", "token_start": 2}]},
        {"text": "rooms in Köln tonight", "entities": [{"start_offset": 9, "end_offset": 13, "label": "city"}]},
    ],
)
def test_labelling_tool_export_forms(tmp_path: Path, row: dict):
    source = write_jsonl(tmp_path / "export.jsonl", [row] * 10)
    out = tmp_path / "out"
    assert run_import("jsonl", source, "--out", out) == 0
    words, tags, intent = read_out(out, "train")[0]
    assert (words, tags, intent) == (["rooms", "in", "Köln", "tonight"], ["O", "O", "B-city", "O"], None)
    assert not (out / "train" / "label").exists()


RASA = """\
version: "3.1"
nlu:
- intent: book_flight
  examples: |
    - fly to [New York](city) on [monday](day)
    - book [NYC]{"entity": "city", "value": "New York"} for [friday]{"entity": "day"}
    - from [Paris]{"entity": "city", "role": "from"} to [Zürich](city)

- intent: greet
  examples: |
    - hello
    - good morning!
- synonym: New York
  examples: |
    - big apple
    - the Big Apple
- lookup: city
  examples: |
    - Rome
- regex: zipcode
  examples: |
    - \\d{5}
"""


def test_rasa_examples_synonyms_and_left_out_features(tmp_path: Path):
    train = write(tmp_path / "nlu.yml", RASA)
    more = write(tmp_path / "more.yml", 'version: "3.1"\nnlu:\n- intent: greet\n  examples: |\n    - hi there\n')
    out = tmp_path / "out"
    assert run_import("rasa", train, more, "--valid", train, "--test", more, "--out", out) == 0
    imported = read_out(out, "train")
    assert imported[0] == (
        ["fly", "to", "New", "York", "on", "monday"],
        ["O", "O", "B-city", "I-city", "O", "B-day"],
        "book_flight",
    )
    assert imported[1][1] == ["O", "B-city", "O", "B-day"]
    assert imported[2] == (["from", "Paris", "to", "Zürich"], ["O", "B-city", "O", "B-city"], "book_flight")
    assert [row[0] for row in imported[3:]] == [["hello"], ["good", "morning"], ["hi", "there"]]
    synonyms = json.loads((out / "synonyms.json").read_text(encoding="utf-8"))
    assert synonyms == {"city": {"nyc": "New York"}, "*": {"big apple": "New York", "the big apple": "New York"}}
    report = json.loads((out / "import.json").read_text())
    assert report["ignored"] == {"rasa: entity roles": 2, "rasa: lookup items": 2, "rasa: regex items": 2}
    assert report["intents"]["greet"] == {"train": 3, "valid": 2, "test": 1}


def test_rasa_round_trip(tmp_path: Path):
    rows = make_text_examples(30, seed=3)
    lines = []
    for row in rows:
        text, annotated, position = row["text"], "", 0
        for entity in row["entities"]:
            annotated += (
                text[position : entity["start"]] + f"[{text[entity['start'] : entity['end']]}]({entity['label']})"
            )
            position = entity["end"]
        lines.append(f"    - {annotated}{text[position:]}\n")
    source = write(tmp_path / "nlu.yml", "nlu:\n- intent: ask\n  examples: |\n" + "".join(lines))
    out = tmp_path / "out"
    assert run_import("rasa", source, "--valid", source, "--test", source, "--out", out) == 0
    for row, (_, tags, intent) in zip(rows, read_out(out, "valid"), strict=True):
        assert char_spans(row["text"], tags) == [CharSpan(e["start"], e["end"], e["label"]) for e in row["entities"]]
        assert intent == "ask"


CONLL = """\
-DOCSTART- -X- O

# intent: book
fly\tVB\tO
to\tTO\tO
New\tNNP\tB-city
York\tNNP\tE-city
,\t,\tO
please\tRB\tO

# intent: weather
weather O
in O
Zürich S-city
"""


def test_conll_bioes_columns_and_intents(tmp_path: Path):
    source = write(tmp_path / "a.conll", CONLL)
    out = tmp_path / "out"
    assert run_import("conll", source, "--valid", source, "--test", source, "--out", out) == 0
    assert read_out(out, "test") == [
        (["fly", "to", "New", "York", "please"], ["O", "O", "B-city", "I-city", "O"], "book"),
        (["weather", "in", "Zürich"], ["O", "O", "B-city"], "weather"),
    ]
    report = json.loads((out / "import.json").read_text())
    assert report["tag_schemes"] == {str(source): "bioes"}
    assert report["tokens"]["dropped_punctuation_only"] == 3  # the "," of each of the three reads


def test_tokens_round_trip_and_iob1(tmp_path: Path):
    rng = random.Random(5)
    rows = []
    for _ in range(20):
        city = rng.choice(CITIES).split()
        tokens = ["hotels", "in", *city, "on", "friday"]
        tags = ["O", "O", *(["I-city"] * len(city)), "O", "I-day"]  # IOB1
        rows.append({"tokens": tokens, "tags": tags})
    source = write_jsonl(tmp_path / "t.jsonl", rows)
    out = tmp_path / "out"
    assert run_import("tokens", source, "--valid", source, "--test", source, "--out", out) == 0
    for row, (words, tags, _) in zip(rows, read_out(out, "train"), strict=True):
        assert words == row["tokens"]
        assert bio_to_spans(tags) == bio_to_spans(row["tags"])
        assert tags[2].startswith("B-")
    assert json.loads((out / "import.json").read_text())["tag_schemes"] == {str(source): "iob1"}


def test_stratified_split_keeps_every_intent_in_training():
    from training.importers.common import Sentence

    sentences = [Sentence(f"f:{i}", ("w",), ("O",), "big" if i < 90 else f"rare{i % 3}") for i in range(100)]
    splits = split_examples(sentences, {"train": 0.8, "valid": 0.1, "test": 0.1}, seed=1)
    assert [len(splits[name]) for name in ("train", "valid", "test")] == [80, 10, 10]
    assert sum(s.intent == "big" for s in splits["valid"]) == 9
    assert {s.intent for s in splits["train"]} == {"big", "rare0", "rare1", "rare2"}
    assert split_examples(sentences, {"train": 0.8, "valid": 0.1, "test": 0.1}, seed=1) == splits


def test_split_files_are_drawn_with_the_seed(tmp_path: Path):
    source = write_jsonl(tmp_path / "all.jsonl", make_text_examples(50))
    first, second = tmp_path / "a", tmp_path / "b"
    assert run_import("jsonl", source, "--out", first, "--seed", "7") == 0
    assert run_import("jsonl", source, "--out", second, "--seed", "7", "--split", "8,1,1") == 0
    assert (first / "valid" / "seq.in").read_text() == (second / "valid" / "seq.in").read_text()
    report = json.loads((first / "import.json").read_text())
    assert [report["counts"][s]["sentences"] for s in ("train", "valid", "test")] == [40, 5, 5]
    assert report["split"]["stratified_by"] == "intent"


# --- errors -----------------------------------------------------------------------------------


def test_limits_are_the_services():
    from serving.settings import Settings

    defaults = Settings.model_fields
    assert (MAX_WORDS, MAX_CHARS) == (defaults["max_words"].default, defaults["max_chars"].default)


JSONL_ERRORS = [
    (
        {"text": "fly to Boston", "entities": [{"start": 8, "end": 13, "label": "city"}]},
        "starts at 8, inside the word 'Boston'",
    ),  # fmt: skip
    (
        {"text": "fly to Boston", "entities": [{"start": 7, "end": 10, "label": "city"}]},
        "ends at 10, inside the word 'Boston'",
    ),  # fmt: skip
    ({"text": "fly to New York", "entities": [[7, 15, "city"], [11, 15, "state"]]}, "overlap (on the word 'York')"),
    ({"text": "  ", "entities": []}, "empty text"),
    ({"text": "?!", "entities": []}, "the text holds no words"),
    (
        {"text": "fly " * (MAX_WORDS + 1), "entities": []},
        f"{MAX_WORDS + 1} words; the service accepts at most {MAX_WORDS}",
    ),  # fmt: skip
    ({"text": "x" * (MAX_CHARS + 1), "entities": []}, f"{MAX_CHARS + 1} characters; the service accepts at most"),
    ({"text": "fly to Boston", "entities": [[7, 99, "city"]]}, "outside the text"),
    ({"text": "fly to Boston", "entities": [[7, 13]]}, "an entity must be"),
    ({"entities": []}, 'no "text" field'),
]


@pytest.mark.parametrize(("row", "message"), JSONL_ERRORS)
def test_jsonl_errors_name_file_and_line(tmp_path: Path, capsys, row, message):
    good = make_text_examples(3)
    source = write_jsonl(tmp_path / "bad.jsonl", [*good, row])
    out = tmp_path / "out"
    error = import_error(capsys, "jsonl", source, "--out", out)
    assert f"{source}:4: " in error and message in error
    assert "nothing was written" in error
    assert not out.exists() and list(tmp_path.iterdir()) == [source]


def test_rasa_errors_name_the_example_line(tmp_path: Path, capsys):
    text = RASA.replace("on [monday](day)", "on [mon](day)day").replace(
        "- hello\n", "- hello\n    - to [New York](city\n"
    )
    source = write(tmp_path / "nlu.yml", text)
    error = import_error(capsys, "rasa", source, "--out", tmp_path / "out")
    assert f"{source}:5: entity 'day' 'mon' ends at 22, inside the word 'monday'" in error
    assert f"{source}:12: annotation not understood near 'to [New York](city'" in error
    broken = write(tmp_path / "broken.yml", "nlu:\n- intent: a\n  examples: |\n    - hi\n  - oops: [\n")
    assert f"{broken}:5: not valid YAML" in import_error(capsys, "rasa", broken, "--out", tmp_path / "out")


def test_conll_errors(tmp_path: Path, capsys):
    source = write(tmp_path / "a.conll", "fly O\nto O\nBoston E-city\n\nhi O\nthere\n")
    error = import_error(capsys, "conll", source, "--out", tmp_path / "out")
    assert f"{source}:3: word 3: 'E-city' must continue a city chunk (BIOES/BILOU), but no chunk is open" in error
    assert f"{source}:6: expected a word and a tag, got 'there'" in error
    mixed = write(tmp_path / "m.conll", "fly O\nto O\nBoston B-city\n\nhi O\nParis city\n")
    error = import_error(capsys, "conll", mixed, "--out", tmp_path / "out")
    assert f"{mixed}:6: tag 'city' has no B-/I-/E-/S- prefix, but {mixed}:3 has 'B-city'" in error


def test_tokens_errors(tmp_path: Path, capsys):
    rows = [{"tokens": ["a", "b"], "tags": ["O"]}, {"tokens": ["a"], "tags": [0]}, {"tokens": "a b", "tags": []}]
    source = write(tmp_path / "t.jsonl", "".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    error = import_error(capsys, "tokens", source, "--out", tmp_path / "out")
    assert f"{source}:1: 1 tags for 2 tokens" in error
    assert f'{source}:2: "tags" must be a list of strings' in error
    assert f'{source}:3: "tokens" must be a list of strings' in error
    assert f"{source}:4: not JSON" in error


def test_some_examples_without_an_intent_is_an_error(tmp_path: Path, capsys):
    rows = make_text_examples(5)
    del rows[3]["intent"]
    source = write_jsonl(tmp_path / "a.jsonl", rows)
    error = import_error(capsys, "jsonl", source, "--out", tmp_path / "out")
    assert f"{source}:4: no intent, while 4 other examples have one (e.g. {source}:1)" in error


def test_skip_invalid_counts_and_lists_the_skips(tmp_path: Path, capsys):
    rows = make_text_examples(40)
    rows[5] = {"text": "fly to Boston", "entities": [[8, 13, "city"]], "intent": "fly"}
    rows[9] = {"text": "", "intent": "fly"}
    source = write_jsonl(tmp_path / "a.jsonl", rows)
    out = tmp_path / "out"
    assert run_import("jsonl", source, "--out", out, "--skip-invalid") == 0
    report = json.loads((out / "import.json").read_text())
    assert report["skipped"]["count"] == 2
    assert [item["where"] for item in report["skipped"]["items"]] == [f"{source}:6", f"{source}:10"]
    assert sum(report["counts"][s]["sentences"] for s in ("train", "valid", "test")) == 38
    assert "skipped 2 example(s)" in capsys.readouterr().out


def test_out_folder_that_is_not_an_import_is_left_alone(tmp_path: Path, capsys):
    source = write_jsonl(tmp_path / "a.jsonl", make_text_examples(20))
    out = write(tmp_path / "out" / "notes.txt", "mine").parent
    assert "is not an earlier import" in import_error(capsys, "jsonl", source, "--out", out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    again = tmp_path / "again"
    assert run_import("jsonl", source, "--out", again) == 0
    assert run_import("jsonl", source, "--out", again, "--seed", "3") == 0  # an earlier import is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "again", "out"]


# --- languages other than English ---------------------------------------------------------------

TEMPLATES = {
    "hotel": (
        "Je voudrais réserver un hôtel à ",
        ["Besançon", "Orléans", "Nîmes", "Genève"],
        " pour ",
        ["mercredi", "l'été prochain", "vendredi soir"],
        ".",
    ),  # fmt: skip
    "weather": ("¿Qué tiempo hará en ", ["Cádiz", "León", "A Coruña", "Logroño"], " el ", ["miércoles", "sábado"], "?"),
    "train": (
        "Zeig mir Züge nach ",
        ["München", "Düsseldorf", "Göttingen", "Gießen"],
        " am ",
        ["Dienstag", "Freitag"],
        "!",
    ),  # fmt: skip
}


def make_accented_examples(count: int, seed: int = 0, decomposed: bool = False) -> list[dict]:
    """French, Spanish and German sentences with entities by character offsets; `decomposed` writes
    them in NFD (accents as combining marks), so offsets count the marks as characters."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        intent = list(TEMPLATES)[index % len(TEMPLATES)]
        head, cities, middle, days, tail = TEMPLATES[intent]
        parts = [head, rng.choice(cities), middle, rng.choice(days), tail]
        if decomposed:
            parts = [unicodedata.normalize("NFD", part) for part in parts]
        city_start = len(parts[0])
        day_start = city_start + len(parts[1]) + len(parts[2])
        rows.append(
            {
                "text": "".join(parts),
                "intent": intent,
                "entities": [
                    {"start": city_start, "end": city_start + len(parts[1]), "label": "city"},
                    {"start": day_start, "end": day_start + len(parts[3]), "label": "date"},
                ],
            }
        )
    return rows


@pytest.mark.parametrize("decomposed", [False, True])
def test_accented_text_round_trip(tmp_path: Path, decomposed: bool):
    rows = make_accented_examples(24, decomposed=decomposed)
    source = write_jsonl(tmp_path / "multi.jsonl", rows)
    out = tmp_path / "out"
    assert run_import("jsonl", source, "--valid", source, "--test", source, "--out", out) == 0
    imported = read_out(out, "test")
    for row, (words, tags, intent) in zip(rows, imported, strict=True):
        assert char_spans(row["text"], tags) == [CharSpan(e["start"], e["end"], e["label"]) for e in row["entities"]]
        assert intent == row["intent"]
        # the seq files hold the composed (NFKC) lookup forms, whatever form the text was sent in
        assert words == [word.text for word in tokenize(unicodedata.normalize("NFC", row["text"]))]
    assert imported[1][0][:4] == ["Qué", "tiempo", "hará", "en"]
    assert "Züge" in imported[2][0]


def test_readme_examples_import(tmp_path: Path):
    """Each format's example in the README section imports as shown."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Train on your own data") :].split("\n## ", 1)[0]
    examples = dict(re.findall(r"`(\w+)` — .*?```\w*\n(.*?)```", section, re.S))
    assert sorted(examples) == ["conll", "jsonl", "rasa", "tokens"]
    for name, body in examples.items():
        source = write(tmp_path / f"{name}.txt", body)
        out = tmp_path / name
        assert run_import(name, source, "--valid", source, "--test", source, "--out", out) == 0
        assert read_out(out, "train")[0][1][2:5] == ["B-city", "I-city", "B-date"]


# --- imported data through training and serving ------------------------------------------------


@pytest.fixture(scope="module")
def intentless_accented_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """Entity-only French/Spanish/German data imported, then trained with configs/default.yaml (made
    tiny); returns (the data folder, best.ckpt, the CLI arguments)."""
    from training.cli import main as cli_main

    root = tmp_path_factory.mktemp("intentless")
    rows = [{key: value for key, value in row.items() if key != "intent"} for row in make_accented_examples(90)]
    source = write_jsonl(root / "multi.jsonl", rows)
    data = root / "data"
    assert run_import("jsonl", source, "--out", data, "--split", "0.7,0.15,0.15") == 0
    assert not (data / "train" / "label").exists()
    args = [
        "--config", str(Path(__file__).resolve().parents[1] / "configs" / "default.yaml"),
        f"--data.data_dir={data}", "--data.batch_size=8",
        "--model.tagger.embedding_dim=16", "--model.tagger.hidden_size=16", "--model.tagger.char_channels=8",
        "--trainer.max_epochs=3", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={root / 'runs'}", f"--checkpoint.dirpath={root / 'checkpoints'}",
    ]  # fmt: skip
    cli_main(["fit", *args])
    checkpoint = root / "checkpoints" / "best.ckpt"
    assert checkpoint.is_file()
    return data, checkpoint, args


def test_intentless_data_trains_without_intent_head(intentless_accented_run):
    from models.checkpoint import load_bundle
    from training.cli import run_cli
    from training.datamodule import SlotDataModule

    data, checkpoint, args = intentless_accented_run
    assert "; no intents (no intent head);" in SlotDataModule(str(data)).summary()
    loaded = load_bundle(checkpoint)
    assert loaded.intents == [] and not loaded.config.intent_head
    cli = run_cli(["test", *args, f"--ckpt_path={checkpoint}"])
    metrics = set(cli.trainer.callback_metrics)
    assert "test/slot_f1" in metrics
    assert not any("intent" in key or "sentence" in key for key in metrics)


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_intentless_accented_model_serves_offsets_into_the_text_as_sent(intentless_accented_run, form):
    from tests.serving.serving_helpers import make_client

    _, checkpoint, _ = intentless_accented_run
    text = unicodedata.normalize(form, "¿Qué tiempo hará en Logroño el sábado? Zeig mir Züge nach Gießen!")
    with make_client(checkpoint, model_process=False) as client:
        response = client.post("/v1/tag", json={"text": text})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["intent"] is None and answer["intent_ranking"] == []
    assert answer["text"] == text
    words = answer["words"]
    assert [w["text"] for w in words] == [w.text for w in tokenize(text)]
    assert all(text[w["start"] : w["end"]] == w["text"] for w in words)
    assert all(text[s["start"] : s["end"]] == s["value"] for s in answer["slots"])


def test_conll_written_tag_first_is_read_tag_first(tmp_path: Path):
    source = write(tmp_path / "mit.bio", "O\ta\nB-Cuisine\tthai\nO\tplace\nI-Location\tnearby\n\nO\tyes\n")
    out = tmp_path / "out"
    assert run_import("conll", source, "--valid", source, "--test", source, "--out", out) == 0
    assert read_out(out, "train") == [
        (["a", "thai", "place", "nearby"], ["O", "B-Cuisine", "O", "B-Location"], None),
        (["yes"], ["O"], None),
    ]
    assert json.loads((out / "import.json").read_text())["tag_schemes"] == {
        str(source): "iob1, tags in the first column"
    }
