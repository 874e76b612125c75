"""Fairness under heavy requests, on 127.0.0.1: the latency of a single small POST /v1/tag while
`--big-clients` clients loop the largest batch the server allows, beside the same small request on
the idle server, and the big batches' own throughput.

The largest allowed batch is SLOTFILL_MAX_BATCH_ITEMS items sharing SLOTFILL_MAX_BATCH_WORDS words
(64 x 64 by default), made of ATIS test sentences. The small request is one ATIS sentence, sent one
at a time on its own connection, back to back. The server runs as a subprocess (`python -m serving`)
unless `--url` names one already running. Goal of the service: small p50 <= 100 ms and p99 <= 250 ms
with two big clients on a 2-core machine. Load on the machine from elsewhere shows in the figures:
the load average is printed beside them.

    python scripts/bench_fairness.py --checkpoint checkpoints/atis-best/best.ckpt --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

from bench_serving import REPO, free_port, load_sentences, one_user, request_bytes, stop_server, wait_ready


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000


def largest_batch(sentences: list[str], items: int, words: int, max_words: int) -> dict:
    """`items` texts of about `words / items` words each (ATIS sentences joined), `words` in all."""
    pool = " ".join(sentences).split()
    per_item = min(max_words, words // items)
    texts = [" ".join(pool[(i * per_item) % (len(pool) - per_item) :][:per_item]) for i in range(items)]
    return {"items": [{"text": text} for text in texts]}


def summary(latencies: list[float]) -> dict:
    if not latencies:
        return {"count": 0}
    return {
        "count": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p90_ms": round(percentile(latencies, 90), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
    }


async def run(port: int, args: argparse.Namespace) -> dict:
    sentences = load_sentences()
    small = [request_bytes("POST", "/v1/tag", {"text": text}) for text in sentences[:200]]
    big_payload = largest_batch(sentences, args.items, args.words, args.max_words)
    big = [request_bytes("POST", "/v1/tag/batch", big_payload)]
    big_words = sum(len(item["text"].split()) for item in big_payload["items"])

    idle: list[float] = []
    failures_idle = await one_user(port, small, 0, time.perf_counter() + args.duration / 3, idle)

    small_loaded: list[float] = []
    big_latencies: list[list[float]] = [[] for _ in range(args.big_clients)]
    started = time.perf_counter()
    load_before = os.getloadavg()
    stop_at = started + args.duration
    await asyncio.sleep(0)
    results = await asyncio.gather(
        *(one_user(port, big, 0, stop_at, big_latencies[i]) for i in range(args.big_clients)),
        # the small client starts once the big ones are under way, and stops with them
        _after(1.0, one_user(port, small, 0, stop_at, small_loaded)),
    )
    elapsed = time.perf_counter() - started
    batches = sum(len(latencies) for latencies in big_latencies)
    return {
        "machine": {"cores": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "big_batch": {"items": len(big_payload["items"]), "words": big_words, "clients": args.big_clients},
        "small_idle": summary(idle),
        "small_beside_big": summary(small_loaded),
        "big": {
            **summary([x for latencies in big_latencies for x in latencies]),
            "batches_per_s": round(batches / elapsed, 2),
            "sentences_per_s": round(batches * len(big_payload["items"]) / elapsed, 1),
            "words_per_s": round(batches * big_words / elapsed, 1),
        },
        "non_200": {"idle": failures_idle, "big": sum(results[:-1]), "small": results[-1]},
    }


async def _after(seconds: float, coroutine):
    await asyncio.sleep(seconds)
    return await coroutine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="checkpoint to serve (a server is started on a free port)")
    parser.add_argument("--port", type=int, help="port of a server already running on 127.0.0.1")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds under load (idle phase: a third)")
    parser.add_argument("--big-clients", type=int, default=2)
    parser.add_argument("--items", type=int, default=64, help="items of the big batch (SLOTFILL_MAX_BATCH_ITEMS)")
    parser.add_argument("--words", type=int, default=4096, help="words of the big batch (SLOTFILL_MAX_BATCH_WORDS)")
    parser.add_argument("--max-words", type=int, default=200, help="most words of one item (SLOTFILL_MAX_WORDS)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the started server")
    args = parser.parse_args()
    if (args.checkpoint is None) == (args.port is None):
        parser.error("pass --checkpoint (start a server) or --port (use one on 127.0.0.1)")
    server = None
    port = args.port
    if args.checkpoint:
        port = free_port()
        env = {**os.environ, "SLOTFILL_LOG_LEVEL": "warning", **dict(item.split("=", 1) for item in args.env)}
        command = [sys.executable, "-m", "serving", "--checkpoint", args.checkpoint, "--port", str(port)]
        server = subprocess.Popen(command, cwd=REPO, env=env)
        wait_ready(port, server, timeout=120)
    try:
        print(json.dumps(asyncio.run(run(port, args)), indent=1))
    finally:
        if server is not None:
            stop_server(server)


if __name__ == "__main__":
    main()
