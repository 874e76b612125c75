"""The deployment files: the compose file validates, and what its containers run works outside them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def compose_config() -> dict:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed; .ci/run installs Debian's docker-compose to validate the file")
    result = subprocess.run(
        ["docker-compose", "--profile", "train", "config"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def volume_mount(service: dict, source: str) -> tuple[str, bool]:
    """(target, read_only) of a service's mount of `source`, in compose's short or long syntax."""
    for volume in service["volumes"]:
        if isinstance(volume, str):
            parts = volume.split(":")
            if parts[0] == source:
                return parts[1], parts[2:] == ["ro"]
        elif volume["source"] == source:
            return volume["target"], bool(volume.get("read_only"))
    raise AssertionError(f"no mount of {source!r}")


def test_compose_file_is_valid_and_wires_train_to_api() -> None:
    config = compose_config()
    api, train = config["services"]["api"], config["services"]["train"]
    assert train["profiles"] == ["train"]
    assert api["healthcheck"]["test"][-2:] == ["-m", "serving.healthcheck"]
    # The api reads, read-only, the volume the train service writes its checkpoints into.
    api_mount = volume_mount(api, "checkpoints")
    train_mount = volume_mount(train, "checkpoints")
    assert api_mount == ("/app/checkpoints", True) and train_mount == ("/app/checkpoints", False)
    # The train service trains the best ATIS configuration, whose checkpoint the api serves.
    config_path = train["command"][train["command"].index("--config") + 1]
    assert config_path == "configs/atis-best.yaml"
    shipped = yaml.safe_load((REPO / config_path).read_text())
    expected = f"/app/{shipped['checkpoint']['dirpath']}/best.ckpt"
    assert api["environment"]["SLOTFILL_CHECKPOINT"] == expected


def test_train_container_command_parses() -> None:
    config = compose_config()
    train = config["services"]["train"]
    entrypoint = Path(sys.executable).parent / train["entrypoint"][0]  # the installed console script
    command = [str(entrypoint), *train["command"], "--print_config"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert yaml.safe_load(result.stdout)["model"]["tagger"]["cell"] == "lstm"


def test_dockerfile_is_multi_stage_cpu_only_and_non_root() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.count("FROM python:3.11-slim") == 2
    assert "download.pytorch.org/whl/cpu" in dockerfile
    final_stage = dockerfile.split("FROM python:3.11-slim\n", 1)[1]
    assert "USER slotfill" in final_stage and "gcc" not in final_stage


class _Ready(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("status, exit_code", [(200, 0), (503, 1)])
def test_healthcheck_follows_readyz(status: int, exit_code: int) -> None:
    handler = type("Handler", (_Ready,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "SLOTFILL_HEALTHCHECK_URL": f"http://127.0.0.1:{server.server_port}/readyz"}
        result = subprocess.run([sys.executable, "-m", "serving.healthcheck"], env=env, cwd=REPO, check=False)
        assert result.returncode == exit_code
    finally:
        server.shutdown()


def test_healthcheck_fails_when_nothing_listens() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    port = server.server_port
    server.server_close()
    env = {**os.environ, "SLOTFILL_HEALTHCHECK_URL": f"http://127.0.0.1:{port}/readyz"}
    assert subprocess.run([sys.executable, "-m", "serving.healthcheck"], env=env, cwd=REPO, check=False).returncode == 1
