"""Bounded load test of the serving app on 127.0.0.1: req/s and p50/p99 latency of POST /v1/tag and of
the constant GET /livez of the same server, at each concurrency, plus sentences/s via /v1/tag/batch.

The server runs as a subprocess (`python -m serving`); this process is the client: one keep-alive
HTTP/1.1 connection per concurrent user, written on raw asyncio streams so that the client costs
far less CPU than the server. Every phase runs for a fixed time. Each phase also reports the CPU
time spent per request by the server (its event-loop thread, its other threads, its model process)
and by this client (Linux /proc), which shows whether the two cores, rather than waiting, are the limit.

    python scripts/bench_serving.py --checkpoint /tmp/serve_bench_ckpt/best.ckpt --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # never anything else
FALLBACK = [
    "show me flights from boston to denver on monday",
    "what is the fare from new york city to st. louis",
    "i'd like a morning flight from dallas to san francisco",
    "which airlines fly from pittsburgh to atlanta tomorrow evening",
]


def stop_server(server: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate the server process, killing it if it does not exit within `timeout` seconds."""
    server.terminate()
    try:
        server.wait(timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def load_sentences(limit: int = 500) -> list[str]:
    path = REPO / "data" / "atis" / "test" / "seq.in"
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()][:limit]
    return FALLBACK


def request_bytes(method: str, path: str, payload: object | None) -> bytes:
    body = b"" if payload is None else json.dumps(payload).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len(body)}\r\n"
    if payload is not None:
        head += "Content-Type: application/json\r\n"
    return head.encode() + b"\r\n" + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    """Send one request on a keep-alive connection and read its whole answer; returns the status code."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return int(head[9:12])


async def one_user(port: int, requests: list[bytes], offset: int, stop_at: float, latencies: list[float]) -> int:
    """Send requests back to back on one connection until `stop_at`; returns the count of non-200s."""
    reader, writer = await asyncio.open_connection(HOST, port)
    failures = 0
    index = offset
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            status = await exchange(reader, writer, requests[index % len(requests)])
            index += 1
            latencies.append(time.perf_counter() - started)
            if status != 200:
                failures += 1
    finally:
        writer.close()
    return failures


def _cpu_seconds(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _child_pids(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:  # the parent pid field
                children.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):  # it exited while we looked
            continue
    return children


def server_cpu_seconds(pid: int) -> dict[str, float] | None:
    """User + system CPU seconds used so far by the server: its main thread (the event loop), its other
    threads (the inference thread, uvicorn's helpers) and its child processes (the model process).
    Linux /proc; None elsewhere."""
    try:
        whole = _cpu_seconds(Path(f"/proc/{pid}/stat"))
        main = _cpu_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))
    except OSError:
        return None
    children = 0.0
    for child in _child_pids(pid):
        with contextlib.suppress(OSError):
            children += _cpu_seconds(Path(f"/proc/{child}/stat"))
    return {"event_loop": main, "other_threads": whole - main, "model_process": children}


async def phase(
    port: int, requests: list[bytes], concurrency: int, duration: float, warmup: float, server_pid: int | None = None
) -> dict:
    """Load for `duration` s after `warmup` s; req/s, p50/p99 and, when `server_pid` is given, the CPU
    each side spent per request (server process, and this client process), from the measured part only."""
    if warmup > 0:
        await asyncio.gather(
            *(one_user(port, requests, i, time.perf_counter() + warmup, []) for i in range(concurrency))
        )
    latencies: list[float] = []
    server_cpu = None if server_pid is None else server_cpu_seconds(server_pid)
    client_cpu = time.process_time()
    started = time.perf_counter()
    failures = await asyncio.gather(
        *(one_user(port, requests, i * 7, started + duration, latencies) for i in range(concurrency))
    )
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    latencies.sort()
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    result = {
        "requests": len(latencies),
        "failures": sum(failures),
        "rps": len(latencies) / elapsed,
        "p50_ms": quantiles[49] * 1000,
        "p99_ms": quantiles[98] * 1000,
        "client_cpu_ms_per_request": client_cpu / len(latencies) * 1000,
        "client_cores": client_cpu / elapsed,
    }
    server_after = None if server_pid is None else server_cpu_seconds(server_pid)
    if server_cpu is not None and server_after is not None:
        spent = {part: server_after[part] - server_cpu[part] for part in server_cpu}
        for part, seconds in spent.items():
            result[f"server_{part}_cpu_ms_per_request"] = seconds / len(latencies) * 1000
        result["server_cpu_ms_per_request"] = sum(spent.values()) / len(latencies) * 1000
        result["server_cores"] = sum(spent.values()) / elapsed
    return result


def batch_counters(port: int) -> tuple[float, float, float]:
    """(forward passes, sentences, seconds in forward passes) so far, from the server's /metrics."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    values = {"slotfill_batch_sentences_count": 0.0, "slotfill_batch_sentences_sum": 0.0}
    values["slotfill_inference_seconds_sum"] = 0.0
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in values:
            values[name] = float(value)
    return tuple(values.values())


def cpu_line(result: dict) -> str:
    """Where the CPU went, per request: the server's event loop, its other threads, its model process,
    and this client process."""
    if "server_cpu_ms_per_request" not in result:
        return f"\n    CPU per request: client {result['client_cpu_ms_per_request']:.3f} ms"
    return (
        f"\n    CPU per request: server {result['server_cpu_ms_per_request']:.3f} ms (event loop "
        f"{result['server_event_loop_cpu_ms_per_request']:.3f}, other threads "
        f"{result['server_other_threads_cpu_ms_per_request']:.3f}, model process "
        f"{result['server_model_process_cpu_ms_per_request']:.3f}), "
        f"client {result['client_cpu_ms_per_request']:.3f} ms; "
        f"cores busy: server {result['server_cores']:.2f}, client {result['client_cores']:.2f}"
    )


def wait_ready(port: int, server: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit("server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=os.environ.get("SLOTFILL_CHECKPOINT"), required=False)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load before each phase")
    parser.add_argument("--concurrency", default="1,16", help="comma-separated concurrent connections")
    parser.add_argument("--batch-items", type=int, default=32, help="sentences per /v1/tag/batch request")
    parser.add_argument("--http", default="auto", choices=["auto", "h11", "httptools"])
    parser.add_argument("--loop", default="auto", choices=["auto", "asyncio", "uvloop"])
    parser.add_argument("--batch-wait-ms", type=float, default=None, help="SLOTFILL_BATCH_WAIT_MS for the server")
    parser.add_argument("--batches-in-flight", type=int, help="SLOTFILL_MODEL_BATCHES_IN_FLIGHT for the server")
    parser.add_argument(
        "--model-process", choices=["true", "false"], help="SLOTFILL_MODEL_PROCESS for the server (default: its own)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if not args.checkpoint:
        parser.error("pass --checkpoint or set SLOTFILL_CHECKPOINT")

    port = free_port()
    env = {**os.environ, "SLOTFILL_HTTP": args.http, "SLOTFILL_LOOP": args.loop, "SLOTFILL_LOG_LEVEL": "warning"}
    if args.batch_wait_ms is not None:
        env["SLOTFILL_BATCH_WAIT_MS"] = str(args.batch_wait_ms)
    if args.model_process is not None:
        env["SLOTFILL_MODEL_PROCESS"] = args.model_process
    if args.batches_in_flight is not None:
        env["SLOTFILL_MODEL_BATCHES_IN_FLIGHT"] = str(args.batches_in_flight)
    command = [sys.executable, "-m", "serving", "--checkpoint", args.checkpoint, "--host", HOST, "--port", str(port)]
    server = subprocess.Popen(command, env=env, cwd=REPO)
    try:
        wait_ready(port, server)
        sentences = load_sentences()
        tag_requests = [request_bytes("POST", "/v1/tag", {"text": s}) for s in sentences]
        constant = [request_bytes("GET", "/livez", None)]
        n = args.batch_items
        batch_requests = [
            request_bytes("POST", "/v1/tag/batch", {"items": [{"text": s} for s in (sentences * 2)[i : i + n]]})
            for i in range(0, len(sentences), n)
        ]
        try:
            import uvloop

            run = uvloop.run
        except ImportError:
            run = asyncio.run
        rows = []
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            for name, requests in (("GET /livez (constant)", constant), ("POST /v1/tag", tag_requests)):
                passes, sentences, busy = batch_counters(port)
                result = run(phase(port, requests, concurrency, args.duration, args.warmup, server.pid))
                passes_after, sentences_after, busy_after = batch_counters(port)
                per_pass = ""
                if passes_after > passes:
                    result["sentences_per_forward"] = (sentences_after - sentences) / (passes_after - passes)
                    # includes the warm-up, so the share is approximate
                    result["inference_busy"] = (busy_after - busy) / (args.duration + args.warmup)
                    per_pass = (
                        f", {result['sentences_per_forward']:.1f} sentences/forward,"
                        f" inference thread busy {result['inference_busy']:.0%}"
                    )
                rows.append({"endpoint": name, "concurrency": concurrency, **result})
                print(
                    f"{name:<24} c={concurrency:<3} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:6.2f} ms  "
                    f"p99 {result['p99_ms']:6.2f} ms  ({result['requests']} requests, {result['failures']} failures"
                    f"{per_pass}){cpu_line(result)}",
                    flush=True,
                )
        batch = run(phase(port, batch_requests, 4, args.duration, args.warmup, server.pid))
        batch["sentences_per_s"] = batch["rps"] * n
        rows.append({"endpoint": f"POST /v1/tag/batch ({n} sentences)", "concurrency": 4, **batch})
        print(
            f"POST /v1/tag/batch x{n}    c=4   {batch['sentences_per_s']:8.0f} sentences/s  "
            f"p50 {batch['p50_ms']:6.2f} ms  p99 {batch['p99_ms']:6.2f} ms{cpu_line(batch)}",
            flush=True,
        )
        for concurrency in sorted({row["concurrency"] for row in rows[:-1]}):
            by = {row["endpoint"]: row for row in rows if row["concurrency"] == concurrency}
            ratio = by["POST /v1/tag"]["rps"] / by["GET /livez (constant)"]["rps"]
            print(f"c={concurrency}: /v1/tag serves {ratio:.0%} of the constant endpoint's req/s")
        machine = (
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        )
        print(
            f"machine: {machine}; http={args.http} loop={args.loop} model_process={args.model_process or 'default'} "
            f"batches_in_flight={args.batches_in_flight or 'default'}"
        )
        if args.json:
            args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    finally:
        stop_server(server)


if __name__ == "__main__":
    main()
