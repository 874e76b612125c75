"""The service as it runs for real: no Lightning import, uvicorn on a free 127.0.0.1 port called with
httpx, SIGHUP reload, several workers sharing Prometheus metrics, and the terminal tool."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from models.checkpoint import file_sha256
from serving import tag_cli
from tests.serving.serving_helpers import free_port, metric_value

REPO = Path(__file__).resolve().parents[2]


def test_serving_never_imports_lightning(tiny_checkpoint: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from fastapi.testclient import TestClient
        from serving.app import create_app
        from serving.settings import Settings
        with TestClient(create_app(Settings(checkpoint={str(tiny_checkpoint)!r}))) as client:
            assert client.post("/v1/tag", json={{"text": "flights from boston"}}).status_code == 200
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("lightning", "pytorch_lightning", "training"))
        print("LEAKED", leaked)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LEAKED []" in result.stdout


@contextmanager
def running_server(checkpoint: Path, **env: str) -> Iterator[str]:
    port = free_port()
    environment = {**os.environ, "SLOTFILL_LOG_LEVEL": "warning", **env}
    command = [sys.executable, "-m", "serving", "--checkpoint", str(checkpoint), "--port", str(port)]
    server = subprocess.Popen(command, cwd=REPO, env=environment)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"server exited with {server.returncode}"
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_real_uvicorn_serves_and_reloads_on_sighup(
    tiny_checkpoint: Path, all_o_checkpoint: Path, tmp_path: Path
) -> None:
    served = tmp_path / "served.ckpt"
    shutil.copyfile(tiny_checkpoint, served)
    port = free_port()
    environment = {**os.environ, "SLOTFILL_LOG_LEVEL": "warning", "SLOTFILL_PORT": str(port)}
    server = subprocess.Popen([sys.executable, "-m", "serving", "--checkpoint", str(served)], cwd=REPO, env=environment)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, f"server exited with {server.returncode}"
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server never became ready"
                time.sleep(0.2)
            text = "Flights from Boston to Denver?"
            body = client.post("/v1/tag", json={"text": text}).json()
            assert [w["text"] for w in body["words"]] == ["Flights", "from", "Boston", "to", "Denver"]
            batch = client.post("/v1/tag/batch", json={"items": [{"text": "a b"}, {"text": "c"}]}).json()
            assert [len(r["words"]) for r in batch["results"]] == [2, 1]
            assert client.post("/v1/tag", json={"text": " "}).status_code == 422
            assert metric_value(client.get("/metrics").text, "slotfill_http_requests_total", route="/v1/tag") >= 2
            old = client.get("/v1/model").json()["checkpoint_sha256"]

            staged = tmp_path / "staged.ckpt"
            shutil.copyfile(all_o_checkpoint, staged)
            os.replace(staged, served)
            server.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while client.get("/v1/model").json()["checkpoint_sha256"] == old:
                assert time.monotonic() < deadline, "SIGHUP did not reload the checkpoint"
                time.sleep(0.1)
            assert {w["tag"] for w in client.post("/v1/tag", json={"text": text}).json()["words"]} == {"O"}

            served.write_bytes(b"broken")  # a broken file on SIGHUP: still serving, still alive
            server.send_signal(signal.SIGHUP)
            time.sleep(1.0)
            assert server.poll() is None
            assert client.post("/v1/tag", json={"text": text}).status_code == 200
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def test_two_workers_share_prometheus_metrics(tiny_checkpoint: Path) -> None:
    with running_server(tiny_checkpoint, SLOTFILL_WORKERS="2") as base:
        requests = 30
        # a fresh connection per request, so both workers take some of them
        for _ in range(requests):
            assert httpx.post(f"{base}/v1/tag", json={"text": "boston to denver"}, timeout=10).status_code == 200
        counted = [
            metric_value(
                httpx.get(f"{base}/metrics", timeout=10).text,
                "slotfill_http_requests_total",
                route="/v1/tag",
                status="200",
            )
            for _ in range(4)
        ]
        # whichever worker answers /metrics, it reports every worker's requests
        assert counted == [requests] * 4


def test_entry_point_on_a_missing_checkpoint_is_up_but_not_ready_until_reload(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    served = tmp_path / "nope.ckpt"
    port = free_port()
    env = {**os.environ, "SLOTFILL_LOG_LEVEL": "info", "SLOTFILL_LOG_FORMAT": "json"}
    command = [sys.executable, "-m", "serving", "--checkpoint", str(served), "--port", str(port)]
    server = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                response = httpx.get(f"{base}/readyz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server never answered"
                time.sleep(0.2)
        assert response.status_code == 503
        assert response.json()["error"]["message"] == "not ready: the checkpoint could not be loaded"  # no path
        assert httpx.post(f"{base}/v1/tag", json={"text": "boston"}, timeout=5).status_code == 503
        big_head = httpx.get(f"{base}/livez", headers={"x-pad": "a" * 20_000}, timeout=5)
        assert big_head.status_code == 431, big_head.text
        shutil.copyfile(tiny_checkpoint, served)  # the checkpoint arrives; SIGHUP loads it
        server.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while httpx.get(f"{base}/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "reload did not make the service ready"
            time.sleep(0.2)
        assert httpx.post(f"{base}/v1/tag", json={"text": "boston"}, timeout=5).status_code == 200
    finally:
        server.terminate()
        server.wait(20)
    lines = [json.loads(line) for line in server.stderr.read().splitlines() if line.strip()]  # JSON, every one
    ours = [(line["level"], line["message"]) for line in lines if line["logger"].startswith("serving")]
    (started,) = [message for level, message in ours if level == "ERROR" and message.startswith("started, not ready:")]
    assert "nope.ckpt" in started  # the reason and the file: in the log
    assert ("INFO", "reloaded: serving slotfill-bilstm version " + file_sha256(served)[:12]) in ours
    assert all(line["time"].endswith("Z") for line in lines)


def test_tag_cli_prints_words_and_slots(all_city_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tag_cli.main(["--checkpoint", str(all_city_checkpoint), "From New York City?"])
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:2] == ["From", "B-fromloc.city_name"]
    assert "'From New York City'" in out and "[0:18]" in out
    tag_cli.main(["--checkpoint", str(all_city_checkpoint), "--json", "new  york"])
    assert json.loads(capsys.readouterr().out)["slots"][0]["value"] == "new  york"


def test_load_with_a_hot_reload_in_the_middle_loses_nothing(tiny_checkpoint: Path, all_o_checkpoint: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from load_reload import run
    finally:
        sys.path.pop(0)
    figures = run(tiny_checkpoint, all_o_checkpoint, workers=2, duration=4.0, concurrency=4)
    assert figures["requests"] > 20
    assert figures["failed"] == 0, figures["failures_sample"]
    assert len(figures["answers_per_model_version"]) == 2  # answers from the old and the new model


def test_bench_serving_reports_rates_ratios_and_cpu_per_request(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The load benchmark runs end to end against a real server (short phases) and accounts for the
    CPU both processes spent on the measured requests."""
    figures = tmp_path / "figures.json"
    command = [sys.executable, str(REPO / "scripts" / "bench_serving.py"), "--checkpoint", str(tiny_checkpoint)]
    command += ["--duration", "0.8", "--warmup", "0", "--concurrency", "1,4", "--batch-items", "3"]
    command += ["--json", str(figures)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "c=4: /v1/tag serves" in result.stdout
    rows = json.loads(figures.read_text())["rows"]
    assert [(row["endpoint"], row["concurrency"]) for row in rows] == [
        ("GET /livez (constant)", 1),
        ("POST /v1/tag", 1),
        ("GET /livez (constant)", 4),
        ("POST /v1/tag", 4),
        ("POST /v1/tag/batch (3 sentences)", 4),
    ]
    for row in rows:
        assert row["requests"] > 0 and row["failures"] == 0
        assert row["p50_ms"] <= row["p99_ms"]
        assert 0 < row["client_cpu_ms_per_request"] < 1000
        assert 0 < row["server_cpu_ms_per_request"] < 1000
        # /proc counts CPU in clock ticks (10 ms), read for the process and its main thread one after
        # the other: in a phase this short the two may differ by a few ticks
        slack = 5 * 1000 / os.sysconf("SC_CLK_TCK") / row["requests"]
        assert 0 < row["server_event_loop_cpu_ms_per_request"] <= row["server_cpu_ms_per_request"] + slack
        assert 0 < row["server_cores"] <= os.cpu_count() + 0.1  # ticks again
    tagging = [row for row in rows if row["endpoint"] == "POST /v1/tag"]
    assert all(row["sentences_per_forward"] >= 1 for row in tagging)
    # the forward passes run in the server's model process, whose CPU is counted with the server's
    # (summed over the tagging phases: one short phase may not reach a whole clock tick)
    assert sum(row["server_model_process_cpu_ms_per_request"] for row in tagging) > 0
