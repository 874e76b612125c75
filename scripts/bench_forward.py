"""Where one inference pass of the service spends its time, in process (no HTTP).

    python scripts/bench_forward.py --checkpoint checkpoints/atis-best/best.ckpt [--sizes 1 8 16] [--profile]

For each batch size it runs the service's pass (`serving.inference.score_rows`) on the first ATIS test sentences
and times its parts: the whole pass, the model's forward, BIO-valid decoding (`model.decode`, beside
the per-word reference decoder it replaced, tests/decoding_reference.py, and the share of the pass
each would take) and building the answers. Times are the minimum over `--repeats` runs of the
thread's CPU time, which other processes on a shared machine disturb far less than the mean wall
time. `--check` decodes the whole file in batches of 16 with both decoders and reports sentences
whose tags differ and the largest confidence difference (against the reference as it ran, in
float32, and against the same recursion in float64). `--profile` adds torch's operator table for
batches of 8. `--gil` runs forward passes of 8 sentences on a thread for 3 s, alone and then beside
a thread that only runs Python, and reports passes/s and the cores the process used: what the GIL
does to a forward pass on a thread.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the reference decoder lives in tests/

from models.text import words_from_tokens
from serving.inference import Prepared, Scores, ServedModel, decode, encode_batch, score_rows
from serving.predictor import Predictor
from tests import decoding_reference


def min_ms(function, repeats: int) -> float:
    """The least CPU time of this thread over `repeats` calls (after a few warm-up calls), in ms."""
    for _ in range(max(1, repeats // 10)):
        function()
    best = float("inf")
    for _ in range(repeats):
        started = time.thread_time()
        function()
        best = min(best, time.thread_time() - started)
    return best * 1000


def reference_decode(model, tag_logits: torch.Tensor, mask: torch.Tensor, float64: bool = False):
    return decoding_reference.decode(
        tag_logits, mask, model.allowed_start, model.allowed_transitions, model.crf, float64=float64
    )


def run_pass(served, batch: list[Prepared]) -> list[Scores]:
    """One forward pass as the predictor's runner makes it: `score_rows`, as `Scores` for `decode`."""
    return [Scores(served, item, *row) for item, row in zip(batch, score_rows(served, batch, 3), strict=True)]


def time_batch(predictor: Predictor, batch: list[Prepared], repeats: int) -> None:
    served = predictor.current
    model = served.tagger.model
    token_ids, mask, char_ids = encode_batch(served, batch)
    longest = mask.size(1)
    scores = run_pass(served, batch)
    with torch.inference_mode():
        output = model(token_ids, mask, char_ids)
        whole = min_ms(lambda: run_pass(served, batch), repeats)
        forward = min_ms(lambda: model(token_ids, mask, char_ids), repeats)
        decoding = min_ms(lambda: model.decode(output.tag_logits, mask), repeats)
        before = min_ms(lambda: reference_decode(model, output.tag_logits, mask), repeats)
    answers = min_ms(lambda: [decode(item) for item in scores], repeats)
    rest = max(whole - forward - decoding, 0.0)
    print(
        f"{len(batch):3d} sentences (padded to {longest} words): pass {whole:.2f} ms = forward {forward:.2f} "
        f"+ decode {decoding:.2f} ({decoding / whole:.0%} of the pass; the reference decoder {before:.2f}, "
        f"{before / (whole - decoding + before):.0%} of its pass) + the rest {rest:.2f}; answers {answers:.2f} ms"
    )


def check(served: ServedModel, sentences: list[Prepared], batch_size: int = 16) -> None:
    """Both decoders over every sentence: sentences with different tags, largest confidence gaps."""
    model = served.tagger.model
    differ = 0
    gap32 = gap64 = 0.0
    with torch.inference_mode():
        for first in range(0, len(sentences), batch_size):
            token_ids, mask, char_ids = encode_batch(served, sentences[first : first + batch_size])
            tag_logits = model(token_ids, mask, char_ids).tag_logits
            tag_ids, confidences = model.decode(tag_logits, mask)
            before_ids, before = reference_decode(model, tag_logits, mask)
            _, exact = reference_decode(model, tag_logits, mask, float64=True)
            differ += int((tag_ids != before_ids).any(dim=1).sum())
            gap32 = max(gap32, float((confidences.double() - before.double()).abs()[mask].max()))
            gap64 = max(gap64, float((confidences.double() - exact).abs()[mask].max()))
    print(
        f"check over {len(sentences)} sentences: {differ} with different tags; largest confidence difference "
        f"{gap32:.2e} from the reference decoder in float32, {gap64:.2e} from its recursion in float64"
    )


def forward_beside_python(forward, seconds: float, with_python: bool) -> tuple[float, float]:
    """(forward passes per second on a second thread, cores the process used) over `seconds`,
    optionally while the main thread runs pure Python the whole time (as a busy event loop does)."""
    stop_at = time.perf_counter() + seconds
    passes = 0

    def run_forwards() -> None:
        nonlocal passes
        torch.set_num_threads(1)
        with torch.inference_mode():
            while time.perf_counter() < stop_at:
                forward()
                passes += 1

    started, cpu = time.perf_counter(), time.process_time()
    worker = threading.Thread(target=run_forwards)
    worker.start()
    if with_python:
        total = 0
        while time.perf_counter() < stop_at:
            total += sum(range(100))
    worker.join()
    elapsed = time.perf_counter() - started
    return passes / elapsed, (time.process_time() - cpu) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", default="data/atis/test/seq.in", help="one sentence a line, words split by spaces")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--check", action="store_true", help="compare both decoders over the whole file")
    parser.add_argument("--gil", type=float, default=0.0, metavar="SECONDS", help="GIL test of this many seconds")
    parser.add_argument(
        "--switch-interval-ms", type=float, default=1.0, help="sys.setswitchinterval for --gil (the server's default)"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    predictor = Predictor(torch_threads=args.threads)
    predictor.load(args.checkpoint)
    served = predictor.current
    model = served.tagger.model
    lines = Path(args.data).read_text(encoding="utf-8").splitlines()
    sentences = [Prepared(*words_from_tokens(line.split())) for line in lines if line.strip()]
    config = model.config
    chars = f"{config.char_channels} ({config.char_encoder})" if config.char_channels else "off"
    print(f"{args.checkpoint}: {config.cell}, decoder {config.decoder}, chars {chars}")
    for size in args.sizes:
        time_batch(predictor, sentences[:size], args.repeats)
    if args.check:
        check(served, sentences)
    if args.gil > 0:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
        batch = sentences[:8]
        token_ids, mask, char_ids = encode_batch(served, batch)
        for with_python in (False, True):
            rate, cores = forward_beside_python(lambda: model(token_ids, mask, char_ids), args.gil, with_python)
            where = "beside a busy Python thread" if with_python else "alone"
            print(
                f"forward passes of {len(batch)} sentences on a thread, {where} (switch interval "
                f"{args.switch_interval_ms:g} ms): {rate:.0f}/s, {cores:.2f} cores used"
            )
    if args.profile:
        batch = sentences[:8]
        with torch.profiler.profile() as profile:
            for _ in range(20):
                run_pass(served, batch)
        print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
