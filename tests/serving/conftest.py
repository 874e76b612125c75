"""Serving fixtures: apps built on the tiny checkpoint of the test run, and a second checkpoint that
differs from it (every word tagged `O`) for reload tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.serving.serving_helpers import biased_checkpoint, make_client


@pytest.fixture(scope="session")
def all_o_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return biased_checkpoint(tiny_checkpoint, "O", tmp_path_factory.mktemp("all_o") / "all_o.ckpt")


@pytest.fixture(scope="session")
def all_city_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every word's arg-max is `I-fromloc.city_name`; BIO-valid decoding must open the chunk with `B-`."""
    path = tmp_path_factory.mktemp("all_city") / "all_city.ckpt"
    return biased_checkpoint(tiny_checkpoint, "I-fromloc.city_name", path)


@pytest.fixture
def served_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint that a test may overwrite before a reload."""
    path = tmp_path / "served.ckpt"
    shutil.copyfile(tiny_checkpoint, path)
    return path


@pytest.fixture(scope="module")
def client(tiny_checkpoint: Path) -> Iterator[TestClient]:
    with make_client(tiny_checkpoint) as test_client:
        yield test_client
