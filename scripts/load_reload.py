"""Bounded load run with a hot reload in the middle (127.0.0.1 only).

Starts `python -m serving` with several uvicorn workers, sends `POST /v1/tag` from concurrent
keep-alive clients for a fixed time, and halfway through replaces the checkpoint file (write
elsewhere, then rename) and sends SIGHUP to every worker. Reports req/s, p50/p99 latency, failed
requests and malformed answers, and how many answers came from each model version.

    python scripts/load_reload.py --checkpoint A.ckpt --new-checkpoint B.ckpt [--workers 2] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from bench_serving import FALLBACK, free_port, stop_server  # scripts/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
SENTENCES = FALLBACK  # a few ATIS-like utterances, shared with the serving benchmark


def well_formed(text: str, body: dict) -> bool:
    words = body.get("words", [])
    return (
        bool(words)
        and all(text[w["start"] : w["end"]] == w["text"] for w in words)
        and all(text[s["start"] : s["end"]] == s["value"] for s in body.get("slots", []))
    )


def worker_pids(server_pid: int) -> list[int]:
    result = subprocess.run(["pgrep", "-P", str(server_pid)], capture_output=True, text=True, check=False)
    return [int(pid) for pid in result.stdout.split()]


def run(checkpoint: Path, new_checkpoint: Path, workers: int = 2, duration: float = 10.0, concurrency: int = 8) -> dict:
    """The load run; returns its figures."""
    folder = Path(tempfile.mkdtemp(prefix="slotfill-reload-"))
    served = folder / "served.ckpt"
    shutil.copyfile(checkpoint, served)
    port = free_port()
    env = {**os.environ, "SLOTFILL_LOG_LEVEL": "warning", "SLOTFILL_WORKERS": str(workers)}
    command = [sys.executable, "-m", "serving", "--checkpoint", str(served), "--port", str(port)]
    server = subprocess.Popen(command, cwd=REPO, env=env)
    base = f"http://127.0.0.1:{port}"
    latencies: list[float] = []
    failures: list[str] = []
    versions: Counter[str] = Counter()
    lock = threading.Lock()
    try:
        deadline = time.monotonic() + 90
        while len(worker_pids(server.pid)) < workers or not _ready(base):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not become ready")
            time.sleep(0.3)
        time.sleep(1.0)  # let every worker finish its warm-up
        stop_at = time.monotonic() + duration

        def user(index: int) -> None:
            with httpx.Client(base_url=base, timeout=10) as client:
                i = index
                while time.monotonic() < stop_at:
                    text = SENTENCES[i % len(SENTENCES)]
                    i += 1
                    started = time.perf_counter()
                    try:
                        response = client.post("/v1/tag", json={"text": text})
                        elapsed = time.perf_counter() - started
                        body = response.json()
                        ok = response.status_code == 200 and well_formed(text, body)
                    except (httpx.HTTPError, ValueError) as error:
                        ok, body, elapsed = False, {"error": repr(error)}, time.perf_counter() - started
                    with lock:
                        latencies.append(elapsed)
                        if ok:
                            versions[body["model"]["version"]] += 1
                        else:
                            failures.append(json.dumps(body)[:200])

        threads = [threading.Thread(target=user, args=(k,)) for k in range(concurrency)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        time.sleep(duration / 2)
        staged = folder / "staged.ckpt"
        shutil.copyfile(new_checkpoint, staged)
        os.replace(staged, served)  # atomic: a worker never reads half a file
        for pid in worker_pids(server.pid):
            os.kill(pid, signal.SIGHUP)
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
    finally:
        stop_server(server, timeout=20)
        shutil.rmtree(folder, ignore_errors=True)
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "failed": len(failures),
        "failures_sample": failures[:3],
        "req_per_s": len(latencies) / wall,
        "p50_ms": 1000 * statistics.median(ordered) if ordered else None,
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))] if ordered else None,
        "answers_per_model_version": dict(versions),
        "workers": workers,
        "concurrency": concurrency,
    }


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--new-checkpoint", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    figures = run(args.checkpoint, args.new_checkpoint, args.workers, args.duration, args.concurrency)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
