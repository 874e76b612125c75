"""Serving fixtures: apps built on the session's tiny checkpoint, and a second checkpoint that
differs from it (every word tagged `O`) for reload tests."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from models.checkpoint import read_bundle, save_bundle
from serving.app import create_app
from serving.settings import Settings

ADMIN_KEY = "test-admin-key"


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


@pytest.fixture(scope="session")
def all_o_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return biased_checkpoint(tiny_checkpoint, "O", tmp_path_factory.mktemp("all_o") / "all_o.ckpt")


@pytest.fixture(scope="session")
def all_city_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every word `I-fromloc.city_name`: conlleval opens one chunk at the first and extends it to the last."""
    path = tmp_path_factory.mktemp("all_city") / "all_city.ckpt"
    return biased_checkpoint(tiny_checkpoint, "I-fromloc.city_name", path)


@pytest.fixture
def served_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint that a test may overwrite before a reload."""
    path = tmp_path / "served.ckpt"
    shutil.copyfile(tiny_checkpoint, path)
    return path


def make_client(checkpoint: Path, **overrides: object) -> TestClient:
    settings = Settings(checkpoint=checkpoint, admin_api_key=ADMIN_KEY, **overrides)
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(tiny_checkpoint: Path) -> Iterator[TestClient]:
    with make_client(tiny_checkpoint) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def _torch_threads() -> None:
    torch.set_num_threads(1)
