"""Torch against ONNX Runtime for the same checkpoints, side by side in one run.

    python scripts/bench_onnx.py checkpoints/atis-best/best.ckpt checkpoints/atis-lstm/best.ckpt \
        [--parity] [--forward] [--serve] [--duration 10] [--port 8301] [--baseline DIR]

Each checkpoint is exported first (`slotfill-export`, into --out-dir). Then, for each:
- `--parity`: the whole ATIS test set (--data) in batches of 16 through both backends' scoring and
  decoding (`serving.inference.score_rows`): sentences whose tags differ, sentences whose intent
  differs, the largest confidence difference (the issue's bar: 0, 0, <= 1e-4);
- `--forward`: the scoring pass (forward, no decoding) and the whole pass (with decoding) for
  batches of --sizes of the first test sentences: least CPU time of this thread over --repeats;
- `--serve`: the service (`python -m serving`, one worker, defaults otherwise) on 127.0.0.1 with
  each backend in turn, loaded by this process's client (scripts/bench_serving.py) at each
  --concurrency: POST /v1/tag and the constant GET /livez (the ceiling of the HTTP stack) requests
  per second and p50/p99 latency. `--baseline DIR` adds, first, the torch backend served by the code of
  another checkout (e.g. `git worktree add --detach ../slotfill-before <commit>`), the same way and
  in the same run: the service as it was before a change, as the goals' "today". `--in-thread` adds
  the ONNX backend with `SLOTFILL_MODEL_PROCESS=false` (passes on the server's inference thread).
With none of the three flags, all three run. The load average of the machine is printed beside
each serving phase: on a shared machine figures move with it, so compare rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/: bench_serving's client

import bench_serving  # noqa: E402
from bench_forward import min_ms  # noqa: E402

from models.text import words_from_tokens  # noqa: E402
from serving.backends import load_tagger  # noqa: E402
from serving.export import export  # noqa: E402
from serving.inference import Prepared, ServedModel, encode_batch, score_rows  # noqa: E402

HOST = "127.0.0.1"


def parity(torch_model: ServedModel, onnx_model: ServedModel, items: list[Prepared]) -> str:
    tags = intents = 0
    worst = 0.0
    for first in range(0, len(items), 16):
        batch = items[first : first + 16]
        rows = zip(batch, score_rows(torch_model, batch, 3), score_rows(onnx_model, batch, 3), strict=True)
        for item, want, have in rows:
            words = len(item.words)
            tags += have[0][:words] != want[0][:words]
            intents += have[3][:1] != want[3][:1]
            gaps = [abs(a - b) for a, b in zip(have[1][:words], want[1][:words], strict=True)]
            worst = max(worst, *gaps)
    return (
        f"parity over {len(items)} sentences: {tags} with different tags, {intents} with a different intent, "
        f"largest confidence difference {worst:.1e}"
    )


def forward_times(models: dict[str, ServedModel], items: list[Prepared], sizes: list[int], repeats: int) -> None:
    for size in sizes:
        batch = items[:size]
        cells = []
        for name, served in models.items():
            inputs = encode_batch(served, batch)
            model = served.tagger.model
            with torch.inference_mode():
                scoring = min_ms(lambda model=model, inputs=inputs: model(*inputs), repeats)
            whole = min_ms(lambda served=served, batch=batch: score_rows(served, batch, 3), repeats)
            cells.append(f"{name} scoring {scoring:6.2f} ms, pass {whole:6.2f} ms")
        print(f"  {size:3d} sentences: " + " | ".join(cells), flush=True)


def serve(
    path: Path,
    backend: str,
    port: int,
    concurrencies: list[int],
    duration: float,
    warmup: float,
    code: Path = bench_serving.REPO,
    label: str | None = None,
    settings: dict[str, str] | None = None,
) -> list:
    """Serve `path` with `backend` by the code in `code` (`python -m serving` there), with extra
    SLOTFILL_* `settings`, and load it."""
    env = {**os.environ, "SLOTFILL_BACKEND": backend, "SLOTFILL_LOG_LEVEL": "warning", "PYTHONPATH": str(code)}
    env.update(settings or {})
    command = [sys.executable, "-m", "serving", "--checkpoint", str(path.resolve())]
    command += ["--host", HOST, "--port", str(port)]
    server = subprocess.Popen(command, env=env, cwd=code)
    label = label or backend
    rows = []
    try:
        bench_serving.wait_ready(port, server, timeout=300)
        sentences = bench_serving.load_sentences()
        requests = {
            "/livez": [bench_serving.request_bytes("GET", "/livez", None)],
            "/v1/tag": [bench_serving.request_bytes("POST", "/v1/tag", {"text": s}) for s in sentences],
        }
        for concurrency in concurrencies:
            for endpoint, payloads in requests.items():
                load = os.getloadavg()[0]
                result = asyncio.run(bench_serving.phase(port, payloads, concurrency, duration, warmup, server.pid))
                rows.append((endpoint, concurrency, result, load))
                print(
                    f"  {label:<7} {endpoint:<8} c={concurrency:<3} {result['rps']:7.0f} req/s  "
                    f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms  "
                    f"({result['failures']} failures; load average {load:.1f})",
                    flush=True,
                )
    finally:
        bench_serving.stop_server(server)
    return rows


def baseline_commit(code: Path) -> str:
    """The commit checked out in `code`, for the record (or "unknown" outside git)."""
    answer = subprocess.run(["git", "-C", str(code), "log", "-1", "--format=%h"], capture_output=True, text=True)
    return answer.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/slotfill-onnx"), help="where exports go")
    parser.add_argument("--data", type=Path, default=Path("data/atis/test/seq.in"))
    parser.add_argument("--parity", action="store_true")
    parser.add_argument("--forward", action="store_true")
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per serving phase")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--port", type=int, default=8301)
    parser.add_argument("--in-thread", action="store_true", help="also serve onnx without the model process")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout whose torch backend is served first, as the baseline"
    )
    args = parser.parse_args()
    if not (args.parity or args.forward or args.serve):
        args.parity = args.forward = args.serve = True

    torch.set_num_threads(1)
    items = [Prepared(*words_from_tokens(line.split())) for line in args.data.read_text().splitlines() if line.strip()]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    summary = []
    for checkpoint in args.checkpoints:
        name = checkpoint.parent.name or checkpoint.stem
        exported = args.out_dir / f"{name}.onnx"
        values = export(checkpoint, exported)
        print(f"{name}: {checkpoint} -> {exported} (export check: {values['max_difference']:.1e})", flush=True)
        models = {
            "torch": ServedModel(load_tagger(checkpoint), name, "torch"),
            "onnx": ServedModel(load_tagger(exported), name, "onnx"),
        }
        if args.parity:
            print("  " + parity(models["torch"], models["onnx"], items), flush=True)
        if args.forward:
            forward_times(models, items, args.sizes, args.repeats)
        if args.serve:
            here = bench_serving.REPO
            runs = [("torch", checkpoint, here, "torch", {}), ("onnx", exported, here, "onnx", {})]
            if args.baseline is not None:
                runs.insert(0, ("torch", checkpoint, args.baseline.resolve(), "before", {}))
            if args.in_thread:
                runs.append(("onnx", exported, here, "onnx-th", {"SLOTFILL_MODEL_PROCESS": "false"}))
            for backend, path, code, label, settings in runs:
                for endpoint, concurrency, result, load in serve(
                    path, backend, args.port, concurrencies, args.duration, args.warmup, code, label, settings
                ):
                    summary.append((name, label, endpoint, concurrency, result, load))
        if args.baseline is not None:
            print(f"  before: torch backend of {args.baseline} ({baseline_commit(args.baseline)})", flush=True)
    if summary:
        print("\nmodel       backend endpoint c     req/s   p50 ms   p99 ms  load")
        for name, backend, endpoint, concurrency, result, load in summary:
            print(
                f"{name:<11} {backend:<7} {endpoint:<8} {concurrency:<3} {result['rps']:8.0f} {result['p50_ms']:8.2f} "
                f"{result['p99_ms']:8.2f} {load:5.1f}"
            )


if __name__ == "__main__":
    main()
