"""ONNX export and the ONNX Runtime backend: the exported graph scores like torch on batches of any
shape, the file carries what the service needs, models that cannot be exported are refused with the
reason, and the service answers the same through either backend."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime
import pytest
import torch

from models.checkpoint import CheckpointError, load_bundle, make_bundle, save_bundle
from models.synonyms import Synonym, SynonymTable
from models.tagger import TaggerConfig, build_tagger
from models.text import tokenize, words_from_tokens
from models.vocab import Vocabulary, build_characters
from serving import export as exporting
from serving.backends import METADATA_KEY, backend_for, backend_of, load_tagger
from serving.inference import Prepared, Scores, ServedModel, decode, score_rows
from tests.conftest import write_corpus
from tests.serving.serving_helpers import make_client

TAGS = ["O", "B-city", "I-city", "B-date", "I-date", "B-time"]
INTENTS = ["flight", "fare", "flight#fare"]
WORDS = ["boston", "denver", "to", "from", "on", "monday", "morning", "fare", "flights", "san", "francisco"]


def random_checkpoint(path: Path, seed: int = 0, synonyms: SynonymTable | None = None, **overrides: object) -> Path:
    """A bundle of an untrained tagger with random weights (CRF scores included): the architecture
    and shapes are what export has to get right, not the accuracy."""
    torch.manual_seed(seed)
    vocabulary = Vocabulary(["<pad>", "<unk>", *WORDS])
    characters = build_characters([WORDS])
    values = dict(
        vocab_size=len(vocabulary),
        num_tags=len(TAGS),
        num_intents=len(INTENTS),
        embedding_dim=8,
        hidden_size=6,
        dropout=0.0,
        char_vocab_size=len(characters),
        char_embedding_dim=4,
    )
    values.update(overrides)
    model = build_tagger(TaggerConfig(**values), TAGS, INTENTS)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 1.0)
    save_bundle(make_bundle(model, vocabulary, TAGS, INTENTS, {"val/slot_f1": 0.5}, characters, synonyms), path)
    return path


# The shipped configurations' shapes: atis-best (CRF, character BiLSTM, intent fed to the slots,
# intents by parts) and atis-lstm (softmax, character CNN), and a GRU without characters or intents.
ARCHITECTURES = {
    "crf-char-bilstm": dict(decoder="crf", char_channels=6, char_encoder="lstm", intent_to_slots=True, intent_parts=2),
    "softmax-char-cnn": dict(decoder="softmax", char_channels=5, char_encoder="cnn"),
    "gru-words-only": dict(cell="gru", intent_head=False, num_intents=0, num_layers=2),
}


def sentences(count: int, seed: int) -> list[Prepared]:
    """Sentences of 1 to 25 words, known and unknown, some words long (the character encoders'
    last-state gather reads far into a word)."""
    generator = torch.Generator().manual_seed(seed)
    pool = [*WORDS, "xylophonically", "q", "pittsburgh's", "a" * 30]
    result = []
    for _ in range(count):
        length = int(torch.randint(1, 26, (1,), generator=generator))
        picks = torch.randint(0, len(pool), (length,), generator=generator).tolist()
        result.append(Prepared(*words_from_tokens([pool[i] for i in picks])))
    return result


def assert_same_scores(checkpoint: Path, exported: Path, items: list[Prepared]) -> None:
    """Torch and ONNX Runtime: the same tags and intents, confidences within 1e-4."""
    torch_model = ServedModel(load_tagger(checkpoint), "m", "torch")
    onnx_model = ServedModel(load_tagger(exported), "m", "onnx")
    for first in range(0, len(items), 7):  # batches of several lengths
        batch = items[first : first + 7]
        for item, want, have in zip(
            batch, score_rows(torch_model, batch, 3), score_rows(onnx_model, batch, 3), strict=True
        ):
            words = len(item.words)
            assert have[0][:words] == want[0][:words]
            assert have[3] == want[3]  # top intents in order
            torch.testing.assert_close(torch.tensor(have[1][:words]), torch.tensor(want[1][:words]), rtol=0, atol=1e-4)
            torch.testing.assert_close(torch.tensor(have[4]), torch.tensor(want[4]), rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def tiny_onnx(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    exporting.main([str(tiny_checkpoint), "--out", str(path)])
    return path


def test_tiny_checkpoint_exports_with_everything_the_service_needs(tiny_checkpoint: Path, tiny_onnx: Path) -> None:
    session = onnxruntime.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["token_ids", "mask", "char_ids"]
    assert [o.name for o in session.get_outputs()] == ["tag_scores", "intent_scores"]
    shapes = {i.name: i.shape for i in session.get_inputs()}
    assert all(isinstance(dim, str) for dim in shapes["char_ids"])  # batch, words, characters: dynamic
    values = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
    source = load_bundle(tiny_checkpoint)
    assert values["config"] == source.config.to_dict()
    assert values["vocabulary"] == source.vocabulary.to_list()
    assert values["characters"] == source.characters.to_list()
    assert (values["slot_tags"], values["intents"]) == (source.slot_tags, source.intents)
    assert values["metrics"] == source.metrics and values["source_sha256"] == source.sha256
    assert values["crf"] is None  # atis-lstm's softmax decoder


def test_tiny_checkpoint_scores_like_torch_on_its_test_set(
    tiny_checkpoint: Path, tiny_onnx: Path, tmp_path: Path
) -> None:
    test = write_corpus(tmp_path / "data", {"test": 40}, seed=3) / "test" / "seq.in"
    items = [Prepared(*words_from_tokens(line.split())) for line in test.read_text().splitlines()]
    assert_same_scores(tiny_checkpoint, tiny_onnx, items + sentences(20, seed=1))


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_exported_graph_scores_like_torch_for_every_shape(tmp_path: Path, architecture: str) -> None:
    checkpoint = random_checkpoint(tmp_path / "model.ckpt", **ARCHITECTURES[architecture])
    values = exporting.export(checkpoint, tmp_path / "model.onnx")
    assert values["max_difference"] <= exporting.TOLERANCE
    if architecture.startswith("crf"):
        crf = load_bundle(checkpoint).model.crf
        assert values["crf"]["transitions"] == crf.transitions.tolist()
    assert_same_scores(checkpoint, tmp_path / "model.onnx", sentences(40, seed=2))


@pytest.mark.parametrize("cell", ["clockwork", "scrn"])
def test_hand_written_cells_are_refused_with_the_reason(tmp_path: Path, cell: str, capsys) -> None:
    checkpoint = random_checkpoint(tmp_path / "model.ckpt", cell=cell)
    with pytest.raises(exporting.ExportError, match=rf"cell '{cell}' cannot be exported.*unrolls"):
        exporting.export(checkpoint, tmp_path / "model.onnx")
    with pytest.raises(SystemExit, match="hand-written Python loop"):
        exporting.main([str(checkpoint), "--out", str(tmp_path / "model.onnx")])
    assert not (tmp_path / "model.onnx").exists()


def test_export_of_a_missing_checkpoint_says_so_through_either_command(tmp_path: Path) -> None:
    from serving.__main__ import main as serving_main

    arguments = [str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "model.onnx")]
    with pytest.raises(SystemExit, match="no such checkpoint file"):
        exporting.main(arguments)
    with pytest.raises(SystemExit, match="slotfill-export: .*no such checkpoint file"):
        serving_main(["export", *arguments])


def test_backend_follows_the_file_unless_told(tiny_checkpoint: Path, tiny_onnx: Path) -> None:
    assert (backend_for(tiny_checkpoint), backend_for(tiny_onnx)) == ("torch", "onnx")
    assert backend_of(load_tagger(tiny_onnx)) == "onnx" and backend_of(load_tagger(tiny_checkpoint)) == "torch"
    with pytest.raises(CheckpointError, match="slotfill-export"):
        load_tagger(tiny_checkpoint, "onnx")
    with pytest.raises(CheckpointError, match="SLOTFILL_BACKEND=onnx"):
        load_tagger(tiny_onnx, "torch")
    with pytest.raises(CheckpointError, match="unknown backend"):
        load_tagger(tiny_onnx, "tensorrt")


def test_an_onnx_file_without_slotfill_metadata_is_refused(tiny_onnx: Path, tmp_path: Path) -> None:
    import onnx

    graph = onnx.load(str(tiny_onnx))
    del graph.metadata_props[:]
    onnx.save(graph, str(tmp_path / "bare.onnx"))
    with pytest.raises(CheckpointError, match="without slotfill metadata"):
        load_tagger(tmp_path / "bare.onnx")


@pytest.mark.parametrize("model_process", [False, True])
def test_the_service_answers_the_same_through_either_backend(
    tiny_checkpoint: Path, tiny_onnx: Path, model_process: bool, caplog: pytest.LogCaptureFixture
) -> None:
    texts = ["show me flights from boston to denver on monday", "fare from San Francisco", "zzyzx"]
    answers = {}
    for backend, path in (("torch", tiny_checkpoint), ("onnx", tiny_onnx)):
        with make_client(path, model_process=model_process) as client:
            described = client.get("/v1/model").json()
            assert described["backend"] == backend
            response = client.post("/v1/tag/batch", json={"items": [{"text": text} for text in texts]})
            assert response.status_code == 200, response.text
            answers[backend] = response.json()["results"]
    for torch_answer, onnx_answer in zip(answers["torch"], answers["onnx"], strict=True):
        for answer in (torch_answer, onnx_answer):
            answer.pop("model")  # its version is the served file's hash
        assert [w["tag"] for w in onnx_answer["words"]] == [w["tag"] for w in torch_answer["words"]]
        assert onnx_answer["intent"]["name"] == torch_answer["intent"]["name"]
        for have, want in zip(onnx_answer["words"], torch_answer["words"], strict=True):
            assert abs(have["confidence"] - want["confidence"]) <= 1e-4 + 1e-9  # shown rounded to 4 places
    caplog.set_level("ERROR", logger="serving")
    with make_client(tiny_checkpoint, backend="onnx", model_process=False) as client:
        response = client.get("/readyz")
        assert response.status_code == 503 and "could not be loaded" in response.text
    # what to do goes to the log (the answer never names files)
    assert any("slotfill-export" in record.getMessage() for record in caplog.records)


def test_predictor_decodes_onnx_scores_through_the_same_answers(tiny_onnx: Path) -> None:
    served = ServedModel(load_tagger(tiny_onnx), "m", "v")
    text = "flights from boston to denver"
    (row,) = score_rows(served, [Prepared(text, tokenize(text))], 3)

    answer = decode(Scores(served, Prepared(text, tokenize(text)), *row))
    assert [w["text"] for w in answer["words"]] == text.split()
    assert answer["intent"]["name"] in served.tagger.intents


def test_synonyms_travel_in_the_exported_file(tmp_path: Path) -> None:
    table = SynonymTable([Synonym("sf", "San Francisco", "city"), Synonym("bos", "Boston")])
    checkpoint = random_checkpoint(tmp_path / "model.ckpt", synonyms=table, char_channels=0)
    exporting.export(checkpoint, tmp_path / "model.onnx")
    loaded = load_tagger(tmp_path / "model.onnx")
    assert backend_of(loaded) == "onnx"
    assert loaded.synonyms.to_json() == table.to_json()
    assert loaded.synonyms.canonical("city", "SF") == "San Francisco"
    assert loaded.synonyms.canonical("date", "bos") == "Boston"
