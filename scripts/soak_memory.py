"""Memory of the service under hostile and varied traffic, on 127.0.0.1 only: the resident memory
(RSS) of the server process and its model process, before and after.

`hostile`: `--requests` POST /v1/tag/batch requests (2,000 by default), each of 64 items holding one
unique 1,000-character word of U+FDFA (NFKC turns each into 18 characters, so a word becomes an
18,000-character vocabulary key) -- every word different, so a cache that kept them would grow
without end. `varied`: for `--duration` seconds (600 by default), a mix of ordinary /v1/tag and
batch requests, hostile batches, invalid JSON, oversized bodies and unknown routes, sampling memory
every `--every` seconds. Either reports the growth; the service's goal is under 64 MB after 2,000
hostile requests and a flat line over the soak.

    python scripts/soak_memory.py hostile --checkpoint checkpoints/atis-best/best.ckpt
    python scripts/soak_memory.py varied --checkpoint checkpoints/atis-best/best.ckpt --duration 600
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench_serving import (
    HOST,
    REPO,
    _child_pids,
    exchange,
    free_port,
    load_sentences,
    request_bytes,
    stop_server,
    wait_ready,
)

HOSTILE_CHAR = "\ufdfa"  # NFKC: 18 characters


def process_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its children, in MB (Linux /proc)."""
    return sum(process_rss_mb(process) for process in [pid, *_child_pids(pid)])


def unique_word(serial: int, length: int = 1000) -> str:
    """A `length`-character word of U+FDFA ending in `serial` written in Latin letters (so each is new)."""
    tail = "".join(chr(ord("a") + int(digit)) for digit in str(serial))
    return HOSTILE_CHAR * (length - len(tail)) + tail


def hostile_request(serial: int, words: int = 64) -> bytes:
    items = [{"text": unique_word(serial * words + i)} for i in range(words)]
    return request_bytes("POST", "/v1/tag/batch", {"items": items})


async def hostile(port: int, pid: int, requests: int, connections: int) -> dict:
    counter = itertools.count()
    statuses: dict[int, int] = {}

    async def client() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while (serial := next(counter)) < requests:
                status = await exchange(reader, writer, hostile_request(serial))
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    before, server_before = rss_mb(pid), process_rss_mb(pid)
    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    seconds = time.perf_counter() - started
    after, server_after = rss_mb(pid), process_rss_mb(pid)
    return {
        "server_alone_mb": [round(server_before, 1), round(server_after, 1)],
        "requests": requests,
        "statuses": statuses,
        "seconds": round(seconds, 1),
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "growth_mb": round(after - before, 1),
    }


async def varied(port: int, pid: int, duration: float, every: float, connections: int) -> dict:
    sentences = load_sentences()
    rng = random.Random(0)
    serial = itertools.count(10**6)
    statuses: dict[int, int] = {}

    def one() -> bytes:
        kind = rng.random()
        if kind < 0.5:
            return request_bytes("POST", "/v1/tag", {"text": rng.choice(sentences)})
        if kind < 0.7:
            return request_bytes("POST", "/v1/tag/batch", {"items": [{"text": t} for t in rng.sample(sentences, 32)]})
        if kind < 0.8:
            return hostile_request(next(serial), 16)
        if kind < 0.9:
            body = b'{"text": "broken'
            head = f"POST /v1/tag HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n"
            return head.encode() + b"Content-Type: application/json\r\n\r\n" + body
        if kind < 0.95:
            return request_bytes("POST", "/v1/tag/batch", {"items": [{"text": "a"}] * 100})
        return request_bytes("GET", "/nope", None)

    samples: list[tuple[float, float]] = []
    stop_at = time.perf_counter() + duration

    async def client() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while time.perf_counter() < stop_at:
                status = await exchange(reader, writer, one())
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    async def sampler() -> None:
        started = time.perf_counter()
        while time.perf_counter() < stop_at:
            samples.append((round(time.perf_counter() - started), round(rss_mb(pid), 1), round(process_rss_mb(pid), 1)))
            await asyncio.sleep(every)
        samples.append((round(time.perf_counter() - started), round(rss_mb(pid), 1), round(process_rss_mb(pid), 1)))

    await asyncio.gather(sampler(), *(client() for _ in range(connections)))
    third = max(1, len(samples) // 3)
    return {
        "duration_s": duration,
        "statuses": statuses,
        "rss_samples_mb": samples,
        "samples": "[seconds, server + model process MB, server alone MB]",
        "first_third_max_mb": max(sample[1] for sample in samples[:third]),
        "last_third_max_mb": max(sample[1] for sample in samples[-third:]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["hostile", "varied"])
    parser.add_argument("--checkpoint", required=True, help="checkpoint to serve (started on a free 127.0.0.1 port)")
    parser.add_argument("--requests", type=int, default=2000, help="hostile: batch requests to send")
    parser.add_argument("--duration", type=float, default=600.0, help="varied: seconds of traffic")
    parser.add_argument("--every", type=float, default=10.0, help="varied: seconds between memory samples")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=200, help="ordinary requests before the first sample")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server")
    args = parser.parse_args()
    port = free_port()
    env = {**os.environ, "SLOTFILL_LOG_LEVEL": "warning", **dict(item.split("=", 1) for item in args.env)}
    command = [sys.executable, "-m", "serving", "--checkpoint", args.checkpoint, "--port", str(port)]
    server = subprocess.Popen(command, cwd=REPO, env=env)
    try:
        wait_ready(port, server, timeout=120)
        sentences = load_sentences()
        for text in sentences[: args.warmup]:  # the caches of ordinary words, allocator pools and so on
            request = urllib.request.Request(
                f"http://{HOST}:{port}/v1/tag",
                json.dumps({"text": text}).encode(),
                {"Content-Type": "application/json"},
            )
            urllib.request.urlopen(request, timeout=30).read()
        if args.mode == "hostile":
            result = asyncio.run(hostile(port, server.pid, args.requests, args.connections))
        else:
            result = asyncio.run(varied(port, server.pid, args.duration, args.every, args.connections))
        print(json.dumps({"mode": args.mode, "checkpoint": Path(args.checkpoint).name, **result}, indent=1))
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
