"""`training.download` against a local HTTP server serving ../shared/data (or a tampered copy)."""

from __future__ import annotations

import functools
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from training import download as dl
from training.download import DATASETS, SHA256, DownloadError, download, fetch_file, sha256_of

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ATIS_FILES = sorted(name for name in SHA256 if name.startswith("atis/"))


class Server:
    """A ThreadingHTTPServer on 127.0.0.1 serving `root`, counting the GET requests it answers."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def shared_root(shared_atis: Path) -> Path:
    """../shared/data itself (`shared_atis` fails loudly when it is absent)."""
    assert shared_atis.parent == SHARED_DATA
    return SHARED_DATA


@pytest.fixture
def server(shared_root: Path) -> Iterator[Server]:
    with Server(shared_root) as running:
        yield running


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_pinned_sums_equal_shared_sha256sums(shared_root: Path):
    pinned = {}
    for line in (shared_root / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        name = name.lstrip("*")
        pinned[name.removeprefix("./")] = digest
    assert dl.SHA256 == pinned
    assert {name.split("/")[0] for name in pinned} == set(DATASETS)


@pytest.mark.parametrize("dataset", DATASETS)
def test_shared_files_match_their_pinned_sums(shared_root: Path, dataset: str):
    names = [name for name in SHA256 if name.startswith(f"{dataset}/")]
    assert len(names) == 9
    for name in names:
        assert sha256_of(shared_root / name) == SHA256[name], name


@pytest.mark.parametrize("dataset", DATASETS)
def test_download(server: Server, tmp_path: Path, shared_root: Path, dataset: str):
    dest = tmp_path / "data"
    names = sorted(name for name in SHA256 if name.startswith(f"{dataset}/"))
    paths = download(dataset, dest, server.url)
    assert sorted(paths) == sorted(dest / name for name in names)
    assert len(paths) == 9
    assert files_under(dest) == sorted(paths)  # nothing else, no temp files
    for name in names:
        assert (dest / name).read_bytes() == (shared_root / name).read_bytes(), name
    assert sorted(server.requests) == sorted(f"/{name}" for name in names)


def test_trailing_slash_in_base_url(server: Server, tmp_path: Path):
    download("atis", tmp_path, server.url + "/")
    assert sorted(server.requests) == sorted(f"/{name}" for name in ATIS_FILES)


def test_second_run_reuses_verified_files(server: Server, tmp_path: Path):
    download("atis", tmp_path, server.url)
    before = {p: p.stat().st_mtime_ns for p in files_under(tmp_path)}
    count = len(server.requests)
    paths = download("atis", tmp_path, server.url)
    assert len(server.requests) == count == 9
    assert sorted(paths) == sorted(before)
    assert {p: p.stat().st_mtime_ns for p in files_under(tmp_path)} == before


def test_a_changed_local_file_is_fetched_again(server: Server, tmp_path: Path, shared_root: Path):
    download("atis", tmp_path, server.url)
    changed = tmp_path / "atis" / "valid" / "label"
    changed.write_bytes(b"atis_flight\n")
    server.requests.clear()
    download("atis", tmp_path, server.url)
    assert server.requests == ["/atis/valid/label"]
    assert changed.read_bytes() == (shared_root / "atis" / "valid" / "label").read_bytes()


@pytest.fixture
def tampered_root(tmp_path: Path, shared_root: Path) -> Path:
    root = tmp_path / "served"
    shutil.copytree(shared_root / "atis", root / "atis")
    return root


@pytest.mark.parametrize("name", ["atis/test/label", "atis/train/seq.out", "atis/valid/seq.out"])
def test_tampered_file_is_refused_and_leaves_nothing(tampered_root: Path, tmp_path: Path, name: str):
    target = tampered_root / name
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    target.write_bytes(bytes(data))
    dest = tmp_path / "dest"
    with Server(tampered_root) as server, pytest.raises(DownloadError) as caught:
        download("atis", dest, server.url)
    message = str(caught.value)
    assert name in message and "refused" in message
    assert not (dest / name).exists()
    leftovers = files_under(dest)
    assert not [p for p in leftovers if p.name.startswith(".") or p.suffix == ".part"]
    for path in leftovers:  # whatever was fetched before the bad file is verified
        assert sha256_of(path) == SHA256[path.relative_to(dest).as_posix()]


def test_all_files_tampered_leaves_no_file_at_all(tampered_root: Path, tmp_path: Path):
    for name in ATIS_FILES:
        (tampered_root / name).write_bytes((tampered_root / name).read_bytes() + b"extra\n")
    dest = tmp_path / "dest"
    with Server(tampered_root) as server, pytest.raises(DownloadError, match="does not match"):
        download("atis", dest, server.url)
    assert files_under(dest) == []


def test_fetch_file_refuses_mismatch_without_leftovers(server: Server, tmp_path: Path):
    destination = tmp_path / "out" / "label"
    with pytest.raises(DownloadError, match="does not match"):
        fetch_file(f"{server.url}/atis/test/label", destination, "0" * 64)
    assert files_under(tmp_path) == []
    fetch_file(f"{server.url}/atis/test/label", destination, SHA256["atis/test/label"])
    assert files_under(tmp_path) == [destination]


def test_404_is_a_download_error(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    dest = tmp_path / "dest"
    with Server(empty) as server, pytest.raises(DownloadError) as caught:
        download("atis", dest, server.url)
    assert "404" in str(caught.value)
    assert "atis/" in str(caught.value)
    assert files_under(dest) == []


def test_unreachable_server_is_a_download_error(tmp_path: Path):
    with Server(tmp_path) as server:
        url = server.url
    with pytest.raises(DownloadError, match="download failed"):
        download("atis", tmp_path / "dest", url)
    assert files_under(tmp_path / "dest") == []


def test_unknown_dataset(tmp_path: Path):
    with pytest.raises(DownloadError, match="unknown dataset 'geoquery'"):
        download("geoquery", tmp_path, "http://127.0.0.1:9")
    assert files_under(tmp_path) == []


# --- command line ------------------------------------------------------------------------------


def test_main_success(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert dl.main(["atis", "--base-url", server.url, "--dest", str(tmp_path)]) == 0
    assert "atis: 9 files verified" in capsys.readouterr().out
    assert len(files_under(tmp_path / "atis")) == 9


def test_main_defaults_to_atis(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert dl.main(["--base-url", server.url, "--dest", str(tmp_path)]) == 0
    assert "atis: 9 files verified" in capsys.readouterr().out
    assert sorted(server.requests) == sorted(f"/{name}" for name in ATIS_FILES)


def test_main_failure(tampered_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tampered_root / "atis" / "train" / "label").write_bytes(b"atis_flight\n")
    dest = tmp_path / "dest"
    with Server(tampered_root) as server:
        assert dl.main(["atis", "--base-url", server.url, "--dest", str(dest)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "atis/train/label" in err and "Traceback" not in err
    assert not (dest / "atis" / "train" / "label").exists()


def test_main_unknown_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as caught:
        dl.main(["geoquery", "--dest", str(tmp_path)])
    assert caught.value.code == 2
    assert "geoquery" in capsys.readouterr().err
    assert files_under(tmp_path) == []


def test_training_cli_download(server: Server, tmp_path: Path, shared_root: Path, capsys: pytest.CaptureFixture[str]):
    from training.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["download", "atis", "--base-url", server.url, "--dest", str(tmp_path)])
    assert caught.value.code == 0
    assert "atis: 9 files verified" in capsys.readouterr().out
    for name in ATIS_FILES:
        assert (tmp_path / name).read_bytes() == (shared_root / name).read_bytes()


def test_training_cli_download_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    empty = tmp_path / "empty"
    empty.mkdir()
    from training.cli import main

    with Server(empty) as server, pytest.raises(SystemExit) as caught:
        main(["download", "atis", "--base-url", server.url, "--dest", str(tmp_path / "dest")])
    assert caught.value.code == 1
    assert "error: " in capsys.readouterr().err
