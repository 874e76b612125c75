"""The deployment files: the compose file validates, the image's package builds from exactly what the
Dockerfile copies, and what the containers run works outside them. scripts/test-deploy.sh (run by
.ci/run) builds the image and runs the compose deployment end to end on a Docker engine."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
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
    # Defaults of the knobs the deployment test turns: ./data, port 8000, the image slotfill:latest.
    assert volume_mount(train, str(REPO / "data")) == ("/app/data", True)
    assert api["ports"][0]["published"] in (8000, "8000") and api["ports"][0]["target"] == 8000
    assert api["image"] == train["image"] == "slotfill:latest"
    assert api["build"]["args"]["BASE_IMAGE"] == "python:3.11-slim"
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


def test_the_deployment_tests_tiny_config_parses() -> None:
    """scripts/test-deploy.sh trains with configs/atis-best.yaml and tests/deploy/tiny.yaml on top."""
    configs = ["--config", "configs/atis-best.yaml", "--config", "tests/deploy/tiny.yaml"]
    command = [sys.executable, "-m", "training", "fit", *configs, "--print_config"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    tagger = yaml.safe_load(result.stdout)["model"]["tagger"]
    assert (tagger["embedding_dim"], tagger["hidden_size"], tagger["char_channels"]) == (16, 24, 8)


def stages(dockerfile: str) -> list[str]:
    return re.split(r"^FROM ", dockerfile, flags=re.M)[1:]


def test_dockerfile_is_multi_stage_cpu_only_and_non_root() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    # Real-world defaults: the slim Python image for both stages, torch from PyTorch's CPU index.
    assert "ARG BASE_IMAGE=python:3.11-slim\n" in dockerfile
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu\n" in dockerfile
    build, final = stages(dockerfile)
    assert build.startswith("${BASE_IMAGE} AS build") and final.startswith("${BASE_IMAGE}\n")
    # A Debian base has `python3` only, so `python` exists only inside the venv.
    assert "python3 -m venv /opt/venv" in build and "RUN python " not in dockerfile
    # The final stage takes the venv and the configs only: no compilers, no wheels/ (CA bundle), not root.
    assert "USER slotfill" in final and "gcc" not in final and "/wheels" not in final
    copies = re.findall(r"^COPY .*", final, flags=re.M)
    assert copies == ["COPY --from=build /opt/venv /opt/venv", "COPY configs configs"]
    assert "HEALTHCHECK" in final


def test_docker_build_context_holds_the_packages_and_wheels_but_no_data() -> None:
    patterns = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    assert patterns[0] == "*"  # everything else is left out: data, checkpoints, runs, .venv, .git
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    copied = set(re.findall(r"^COPY (?!--from)(.*) \S+$", (REPO / "Dockerfile").read_text(), flags=re.M))
    sources = {source.rstrip("*") for line in copied for source in line.split()}
    assert sources <= allowed, sources - allowed
    assert allowed == {"pyproject.toml", "README.md", "models", "training", "serving", "configs", "wheels"}
    assert "/wheels/" in (REPO / ".gitignore").read_text().splitlines()


def test_the_package_builds_from_what_the_dockerfile_copies(tmp_path: Path) -> None:
    """`pip install .` in the image sees pyproject.toml, README.md, models/, training/ and serving/ only."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    for package in ("models", "training", "serving"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", "dist", "."]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("slotfill-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packages = {name.split("/")[0] for name in archive.namelist() if name.endswith(".py")}
        metadata = next(archive.read(n).decode() for n in archive.namelist() if n.endswith("/METADATA"))
    assert packages == {"models", "training", "serving"}
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: ")]
    assert any(line.startswith("Requires-Dist: torch==2.13.0") for line in requires)


def test_installed_packages_do_not_import_experiments_and_serving_no_matplotlib() -> None:
    """The lecture experiments are not installed; matplotlib draws training's reports only, so the service
    never loads it."""
    for package in ("models", "training", "serving"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                else:
                    continue
                for name in names:
                    banned = {"experiments", "matplotlib"} if package != "training" else {"experiments"}
                    assert name.split(".")[0] not in banned, f"{path}:{node.lineno}: {name}"


def test_ci_runs_the_deployment_test_after_the_unit_tests() -> None:
    steps = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines() if line.startswith("bash ")]
    assert steps == ["bash scripts/test.sh", "bash scripts/test-deploy.sh"]


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
