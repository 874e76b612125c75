"""Text -> tagged words, slots and intent: tokenisation with character offsets, and a single inference
thread that gathers concurrent requests into one forward pass (dynamic micro-batching), run on that
thread or, in the service, in a child process (`serving.model_process`).

No FastAPI here: the HTTP layer, the terminal tool and the tests all drive the same `Predictor`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import math
import queue
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from models.checkpoint import LoadedTagger
from models.spans import bio_to_spans
from models.vocab import encode_characters, pad_characters, pad_token_ids
from serving.model_process import ModelProcess
from serving.onnx_backend import backend_of, load_tagger

log = logging.getLogger("serving.predictor")

# Characters that always end a word: whitespace (any Unicode space), control characters, and
# punctuation that never sits inside an ATIS word.
_WORD_RUN = re.compile(r"[^\s\x00-\x1f\x7f-\x9f,;!?\"()\[\]{}<>«»“”„‟¿¡…]+")
_ASCII_EDGE = "".join(chr(c) for c in range(128) if unicodedata.category(chr(c)).startswith("P"))
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "ʼ": "'"})

# Words that keep their final `.`: the abbreviations the ATIS data writes as one word (`st.`) and a
# few more of the same kind. A word missing from the checkpoint's vocabulary still maps to `<unk>`.
ABBREVIATIONS = frozenset({"st.", "mt.", "ft.", "dr.", "mr.", "mrs.", "ms.", "jr.", "sr.", "a.m.", "p.m.", "u.s."})


_ID_CACHE_SIZE = 200_000


class InputError(ValueError):
    """Input the model cannot tag (no words, too many words, a bad token); the message says why."""


class Word(NamedTuple):
    """One word of the input: its characters `text[start:end]` and the key looked up in the vocabulary.
    (A tuple: thousands are made per second, and tuples are the cheapest to build.)"""

    text: str
    start: int
    end: int
    key: str


def _is_edge(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] == "P" or category == "Cf"


def lookup_key(word: str) -> str:
    """The form of a word looked up in the vocabulary (which then lower-cases it and maps digits to 0):
    NFKC-normalised (full-width letters, ligatures) with typographic apostrophes made plain."""
    if not word.isascii():
        word = unicodedata.normalize("NFKC", word).translate(_APOSTROPHES)
    return word


def tokenize(text: str) -> list[Word]:
    """Split raw text into words with end-exclusive character offsets into `text` (see docs/serving.md)."""
    words: list[Word] = []
    append = words.append
    for match in _WORD_RUN.finditer(text):
        run = match.group()
        if run.isascii():
            if run[0] not in _ASCII_EDGE and run[-1] not in _ASCII_EDGE:  # the common case: a plain word
                append(Word(run, match.start(), match.end(), run))
                continue
            core = run.strip(_ASCII_EDGE)
            if not core:
                continue
            left = run.find(core)
            right = left + len(core)
        else:
            left, right = 0, len(run)
            while left < right and _is_edge(run[left]):
                left += 1
            while right > left and _is_edge(run[right - 1]):
                right -= 1
            if left == right:
                continue
        if right < len(run) and run[right] == "." and run[left : right + 1].lower() in ABBREVIATIONS:
            right += 1
        start = match.start() + left
        word = run[left:right]
        append(Word(word, start, start + len(word), lookup_key(word)))
    return words


def words_from_tokens(tokens: Sequence[str]) -> tuple[str, list[Word]]:
    """Pre-split tokens -> (the tokens joined by single spaces, their words). Tokens are taken as they
    are (no punctuation stripping); only the vocabulary key is normalised."""
    words: list[Word] = []
    position = 0
    for index, token in enumerate(tokens):
        if not token or token.isspace():
            raise InputError(f"tokens[{index}] is empty; every token must hold at least one visible character")
        if any(char.isspace() for char in token):
            raise InputError(f"tokens[{index}] contains whitespace; send one word per token")
        words.append(Word(token, position, position + len(token), lookup_key(token)))
        position += len(token) + 1
    return " ".join(tokens), words


@dataclass(frozen=True)
class Prepared:
    """A sentence ready for the model: the text the offsets point into, and its words."""

    text: str
    words: list[Word]


def _cached(cache: dict[str, Any], words: Sequence[Word], compute: Callable[[str], Any]) -> list[Any]:
    """`compute(word.key)` for each word, remembered in `cache` (up to `_ID_CACHE_SIZE` keys)."""
    values = []
    for word in words:
        value = cache.get(word.key)
        if value is None:
            value = compute(word.key)
            if len(cache) < _ID_CACHE_SIZE:
                cache[word.key] = value
        values.append(value)
    return values


@dataclass(frozen=True)
class ServedModel:
    """A loaded checkpoint with the name and version reported in every answer."""

    tagger: LoadedTagger
    name: str
    version: str
    loaded_at: float = field(default_factory=time.time)
    # word key -> id and word key -> character ids, filled as words are seen; only the thread (or
    # process) that runs forward passes writes them
    id_cache: dict[str, int] = field(default_factory=dict, repr=False)
    char_cache: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def encode(self, words: Sequence[Word]) -> list[int]:
        """Per word, its vocabulary id."""
        vocabulary = self.tagger.vocabulary
        return _cached(self.id_cache, words, lambda key: vocabulary.encode([key])[0])

    def encode_characters(self, words: Sequence[Word]) -> list[list[int]]:
        """Per word, its character ids (the model's character list must exist)."""
        characters = self.tagger.characters
        return _cached(self.char_cache, words, lambda key: encode_characters([key], characters)[0])

    @property
    def info(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version}

    def describe(self) -> dict[str, Any]:
        config = self.tagger.config
        return {
            "name": self.name,
            "version": self.version,
            "cell": config.cell,
            "bidirectional": config.bidirectional,
            "num_layers": config.num_layers,
            "embedding_dim": config.embedding_dim,
            "hidden_size": config.hidden_size,
            "decoder": config.decoder,
            "char_encoder": config.char_encoder if config.char_channels > 0 else None,
            "config": asdict(config),
            "vocabulary_size": len(self.tagger.vocabulary),
            "slot_tags": list(self.tagger.slot_tags),
            "intents": list(self.tagger.intents),
            "training_metrics": dict(self.tagger.metrics),
            "checkpoint": Path(self.tagger.path).name,
            "checkpoint_sha256": self.tagger.sha256,
            "created_at": self.tagger.created_at,
            "backend": backend_of(self.tagger),
        }


@dataclass
class _Job:
    items: list[Prepared]
    future: asyncio.Future[list[Scores]] | concurrent.futures.Future[list[Scores]]
    loop: asyncio.AbstractEventLoop | None = None


_STOP = object()


def _round4(values: torch.Tensor) -> torch.Tensor:
    """Probabilities rounded to 4 decimals (in float64, so they print as short decimals)."""
    return (values * 10_000).round() / 10_000


def _resolve(pairs: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in pairs:
        if future.done():  # the client went away and the request was cancelled
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class Predictor:
    """Owns the served model and the inference thread.

    Requests put jobs on a queue; the thread takes every job waiting (up to `max_batch_sentences`
    sentences, after waiting at most `batch_wait_s` for more), runs them as one padded forward pass
    (itself, or through the model process when `model_process` is set) and hands each job its
    results. The model is read once per batch, so `load` swaps it atomically: a batch already running
    finishes on the old model, the next one runs on the new.
    """

    def __init__(
        self,
        *,
        torch_threads: int = 1,
        max_batch_sentences: int = 256,
        batch_wait_s: float = 0.0,
        intent_top_k: int = 3,
        model_name: str | None = None,
        on_batch: Callable[[int, float], None] | None = None,
        model_process: bool = False,
        batches_in_flight: int = 2,
        backend: str | None = None,
    ) -> None:
        self.torch_threads = torch_threads
        self.backend = backend  # torch, onnx, or None: the one the file needs (serving.onnx_backend)
        self.model_process = model_process
        self.max_batch_sentences = max_batch_sentences
        self.batch_wait_s = batch_wait_s
        self.intent_top_k = intent_top_k
        self.model_name = model_name
        self.on_batch = on_batch
        self._current: ServedModel | None = None
        self._load_lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._process: ModelProcess | None = None
        # batches sent to the model process and not answered yet. With 2, the next batch waits in the
        # pipe while one runs, so the child never waits for this process between passes; but batches
        # are then smaller, which costs more per sentence (docs/benchmarks.md).
        if batches_in_flight < 1:
            raise ValueError(f"batches_in_flight must be at least 1, got {batches_in_flight}")
        self._in_flight = threading.BoundedSemaphore(batches_in_flight)

    # -- model ---------------------------------------------------------------------------------------
    @property
    def current(self) -> ServedModel | None:
        return self._current

    @property
    def ready(self) -> bool:
        return self._current is not None and self._thread is not None and self._thread.is_alive()

    def load(self, path: str | Path) -> ServedModel:
        """Load, warm up and then swap in the checkpoint at `path`. Raises `CheckpointError` and leaves
        the current model serving when the file is missing or broken."""
        with self._load_lock:
            tagger = load_tagger(path, self.backend, self.torch_threads)
            config = tagger.config
            name = self.model_name or f"slotfill-{'bi' if config.bidirectional else ''}{config.cell}"
            served = ServedModel(tagger=tagger, name=name, version=tagger.sha256[:12])
            if self.model_process:
                self._model_process().load(path, tagger.sha256)  # the child loads and warms up its copy
            else:
                warm_up(served, self.intent_top_k)
            self._current = served  # one reference assignment: the swap is atomic
            freeze_long_lived_objects()
            log.info("serving %s version %s from %s", served.name, served.version, path)
            return served

    def _served(self) -> ServedModel:
        """The model for the next batch (read once per batch: a reload swaps it between batches)."""
        served = self._current
        if served is None:
            raise RuntimeError("no model loaded")
        return served

    def _model_process(self) -> ModelProcess:
        if self._process is None:
            self._process = ModelProcess(self.torch_threads, self.intent_top_k, self.backend)
        return self._process

    # -- inference thread ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._serve, name="slotfill-inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        if self._process is not None:
            self._process.close()
            self._process = None

    def submit(
        self,
        items: list[Prepared],
        future: asyncio.Future[list[Scores]] | concurrent.futures.Future[list[Scores]],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Queue `items` (one forward pass, possibly shared with other jobs); `future` gets one `Scores`
        per item, for `decode`. Pass `loop` when `future` is an asyncio future."""
        if self._current is None:
            raise RuntimeError("no model loaded")
        self._queue.put(_Job(items, future, loop))

    def predict(self, items: list[Prepared], timeout: float | None = 60.0) -> list[dict[str, Any]]:
        """Blocking convenience for callers outside an event loop (the terminal tool, tests)."""
        future: concurrent.futures.Future[list[Scores]] = concurrent.futures.Future()
        self.submit(items, future)
        return [decode(scores) for scores in future.result(timeout)]

    def _serve(self) -> None:
        torch.set_num_threads(self.torch_threads)  # per thread: the rest of the process keeps its own
        carry: Any = None
        while True:
            if self.model_process:
                self._in_flight.acquire()  # gather the next batch only when it can be sent
            job = carry if carry is not None else self._queue.get()
            carry = None
            if job is _STOP:
                if self.model_process:
                    self._in_flight.release()
                return
            jobs = [job]
            count = len(job.items)
            deadline = time.monotonic() + self.batch_wait_s
            while count < self.max_batch_sentences:
                try:
                    remaining = deadline - time.monotonic()
                    nxt = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP or count + len(nxt.items) > self.max_batch_sentences:
                    carry = nxt
                    break
                jobs.append(nxt)
                count += len(nxt.items)
            if self.model_process:
                self._send_jobs(jobs)
            else:
                self._run_jobs(jobs)

    def _run_jobs(self, jobs: list[_Job]) -> None:
        """Run `jobs` as one forward pass on this thread and hand each job its results."""
        items = [item for job in jobs for item in job.items]
        try:
            served = self._served()
            started = time.perf_counter()
            results = self._run(served, items)
            if self.on_batch is not None:
                self.on_batch(len(items), time.perf_counter() - started)
        except Exception as caught:  # handed to every waiting request, which answers with an error
            log.exception("inference failed for a batch of %d sentences", len(items))
            self._finish(jobs, None, caught)
            return
        self._finish(jobs, results, None)

    def _send_jobs(self, jobs: list[_Job]) -> None:
        """Send `jobs` to the model process as one batch and return at once (the caller holds one of
        `_in_flight`'s places; the answer frees it). A dead child is replaced first, loaded with
        the served model; the batches it was running fail."""
        items = [item for job in jobs for item in job.items]
        try:
            served = self._served()
            process = self._model_process()
            if not process.alive:
                log.error("the model process exited (code %s); starting a new one", process.exitcode)
                process.restart()
                process.load(served.tagger.path, served.tagger.sha256)
            answer = process.submit_score(served.tagger.sha256, items)
        except Exception as caught:
            self._in_flight.release()
            log.exception("could not send a batch of %d sentences to the model process", len(items))
            self._finish(jobs, None, caught)
            return

        def answered(done: concurrent.futures.Future[Any]) -> None:  # runs on the pipe's reader thread
            self._in_flight.release()
            try:
                rows, seconds = done.result()
            except Exception as caught:
                log.error("inference failed for a batch of %d sentences: %s", len(items), caught)
                self._finish(jobs, None, caught)
                return
            if self.on_batch is not None:
                self.on_batch(len(items), seconds)
            self._finish(jobs, [Scores(served, item, *row) for item, row in zip(items, rows, strict=True)], None)

        answer.add_done_callback(answered)

    def _finish(self, jobs: list[_Job], results: list[Scores] | None, error: BaseException | None) -> None:
        """Hand each job its slice of `results`, or `error`; asyncio futures through their loops."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, BaseException | None]]] = {}
        offset = 0
        for job in jobs:
            part = None if results is None else results[offset : offset + len(job.items)]
            offset += len(job.items)
            if job.loop is None:
                if error is None:
                    job.future.set_result(part)
                else:
                    job.future.set_exception(error)
            else:
                by_loop.setdefault(job.loop, []).append((job.future, part, error))
        for loop, pairs in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, pairs)
            except RuntimeError:  # that event loop is closed: nobody is waiting any more
                pass

    # -- one forward pass ----------------------------------------------------------------------------
    def _run(self, served: ServedModel, items: list[Prepared]) -> list[Scores]:
        """Score `items` in one padded forward pass on this thread; turning scores into answers
        (`decode`) is left to the caller's thread, which keeps the inference thread free for the next
        batch."""
        rows = score_rows(served, items, self.intent_top_k)
        return [Scores(served, item, *row) for item, row in zip(items, rows, strict=True)]


def freeze_long_lived_objects() -> None:
    """Put every object that exists now (imported modules, the loaded model and its vocabulary) out
    of the garbage collector's reach.

    A full (generation-2) collection walks every tracked object. With torch, FastAPI and pydantic
    imported that is about 200,000 objects and 80-140 ms here, and it happens now and then under
    load, in the server and in the model process alike: every request in flight waits for it
    (docs/benchmarks.md, "Garbage-collector pauses"). After `gc.freeze()` a full collection walks only what came
    later. It collects first, so garbage waiting for collection is not frozen with the rest (that
    one full pass, once per load, is the pause this saves later). Frozen objects are still freed by
    reference counting when the last reference goes (an old model after a reload); only reference
    cycles among them would stay until exit."""
    gc.collect()
    gc.freeze()


def warm_up(served: ServedModel, intent_top_k: int) -> None:
    """The first forward passes allocate and pick kernels; do them before taking traffic."""
    for batch, length in ((1, 4), (8, 12)):
        score_rows(served, [Prepared("x", [Word("x", 0, 1, "x")] * length)] * batch, intent_top_k)


def score_rows(served: ServedModel, items: list[Prepared], intent_top_k: int) -> list[tuple[Any, ...]]:
    """One padded forward pass over `items`: per sentence, BIO-valid tag ids, their probabilities
    (full and rounded for display), and the top-k intent ids and rounded probabilities, as plain
    lists (cheap to send between processes). The fields of `Scores` after `served` and `item`."""
    token_ids, mask, char_ids = encode_batch(served, items)
    with torch.inference_mode():
        model = served.tagger.model
        output = model(token_ids, mask, char_ids)
        # BIO-valid tags (constrained Viterbi, or the CRF's) and each chosen tag's probability.
        tag_index, tag_confidence = model.decode(output.tag_logits, mask)  # (B, T)
        tag_confidence = tag_confidence.double()
        shown_confidence = _round4(tag_confidence)
        if output.intent_logits is not None:
            k = min(intent_top_k, output.intent_logits.size(-1))
            intent_confidence, intent_index = output.intent_logits.double().softmax(dim=-1).topk(k, dim=-1)  # (B, k)
            intent_rows = list(zip(intent_index.tolist(), _round4(intent_confidence).tolist(), strict=True))
        else:
            intent_rows = [([], [])] * len(items)
    rows = zip(tag_index.tolist(), tag_confidence.tolist(), shown_confidence.tolist(), intent_rows, strict=True)
    return [(indices, confidences, shown, ids, probs) for indices, confidences, shown, (ids, probs) in rows]


def encode_batch(served: ServedModel, items: list[Prepared]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The model's inputs for `items`: (B, T) token ids, (B, T) mask of real words, and (B, T, C)
    character ids when the model reads characters (else None)."""
    token_ids, mask = pad_token_ids([served.encode(item.words) for item in items])
    characters = served.tagger.characters
    char_ids = None
    if served.tagger.config.char_channels > 0 and characters is not None:
        char_ids = pad_characters([served.encode_characters(item.words) for item in items])
    return token_ids, mask, char_ids


class Scores(NamedTuple):
    """One sentence's model output as plain lists (rows may be longer than the sentence: padding)."""

    served: ServedModel
    item: Prepared
    tag_ids: list[int]
    confidences: list[float]
    shown_confidences: list[float]
    intent_ids: list[int]
    intent_confidences: list[float]


def decode(scores: Scores) -> dict[str, Any]:
    """The answer for one sentence: words with tags, slots as spans, intent ranking, model.

    A word's confidence is the probability of its chosen tag (softmax, or the CRF's marginal); a
    slot's is the product of its words' (see docs/serving.md)."""
    served, item = scores.served, scores.item
    tag_names = served.tagger.slot_tags
    intent_names = served.tagger.intents
    text = item.text
    words = item.words
    n = len(words)
    tags = [tag_names[i] for i in scores.tag_ids[:n]]
    confidences = scores.confidences
    slots = []
    for span in bio_to_spans(tags):
        first, last = words[span.start], words[span.end - 1]
        slots.append(
            {
                "slot": span.label,
                "value": text[first.start : last.end],
                "start": first.start,
                "end": last.end,
                "token_start": span.start,
                "token_end": span.end,
                "confidence": round(math.prod(confidences[span.start : span.end]), 4),
            }
        )
    ranking = [
        {"name": intent_names[i], "confidence": p}
        for i, p in zip(scores.intent_ids, scores.intent_confidences, strict=True)
    ]
    return {
        "text": text,
        "words": [
            {"text": w.text, "start": w.start, "end": w.end, "tag": tag, "confidence": c}
            for w, tag, c in zip(words, tags, scores.shown_confidences, strict=False)
        ],
        "slots": slots,
        "intent": ranking[0] if ranking else None,
        "intent_ranking": ranking,
        "model": served.info,
    }
