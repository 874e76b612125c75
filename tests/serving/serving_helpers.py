"""Helpers shared by the serving tests (imported as `tests.serving.serving_helpers`)."""

from __future__ import annotations

import socket
from pathlib import Path

from fastapi.testclient import TestClient

from models.checkpoint import read_bundle, save_bundle
from serving.app import create_app
from serving.settings import Settings

ADMIN_KEY = "test-admin-key-0123456789"


def biased_checkpoint(source: Path, tag: str, path: Path) -> Path:
    """A copy of `source` whose slot head is biased so hard towards `tag` that every word gets it:
    a model with a known answer, whatever the tiny training run learnt."""
    bundle = read_bundle(source)
    state = dict(bundle["state_dict"])
    bias = state["tag_head.bias"].clone()
    bias[bundle["slot_tags"].index(tag)] = 1000.0
    state["tag_head.bias"] = bias
    bundle["state_dict"] = state
    save_bundle(bundle, path)
    return path


def make_client(checkpoint: Path, **overrides: object) -> TestClient:
    settings = Settings(checkpoint=checkpoint, admin_api_key=ADMIN_KEY, **overrides)
    return TestClient(create_app(settings), raise_server_exceptions=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
