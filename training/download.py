"""Fetch the standard ATIS/SNIPS split from its public home and verify every file's SHA-256.

Files are written to a temporary name and renamed only after their checksum matches, so a failed
or tampered download never leaves a partial or wrong file behind.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/MiuLab/SlotGated-SLU/master/data"

# The published files' SHA-256 sums, pinned: a changed upstream file is refused, not trusted.
SHA256 = {
    "atis/test/label": "ce4bfe6590d9498e1078f30b4137d3e8b3e94277b444b26360c0bf2e9e282761",
    "atis/test/seq.in": "4b2119fc59c37f9398c6605db435d4f467505009e6ee3e5af04fed09f39dc397",
    "atis/test/seq.out": "a4690d6bceadc06876d1ff99bc401744aa981cb321e598ae12a3859d7be53254",
    "atis/train/label": "d0a771547665eecbdf9f96ea015ef07d1f6ee9f063e861020dafabb3c2a04377",
    "atis/train/seq.in": "3a670980841b21ab39088b2595efc17d487cdc45769c075a3e5f9458bba28c7f",
    "atis/train/seq.out": "14c7131bd66562f797dbd7189bc7358f0cf354c6afb0785a9ab973c35b58f34c",
    "atis/valid/label": "06957cfe6fdffac84f8280bc3a1f8ca85c85631b363817aa4543aac611f8addf",
    "atis/valid/seq.in": "c7435b96e7948393608c34819628e863c5338f11ca68e8f896d2cc041d8e17f8",
    "atis/valid/seq.out": "83ccff3e36f83a993f8e5b5b82adf3256076f234abda4d784051381d7ac76922",
    "snips/test/label": "37a26da3ad079bb41c42c85a3a8f827eb47efec4c5917ce5d08f4b2736e4f830",
    "snips/test/seq.in": "c1e341173fcea2951a8ca371956a6f81c76de87b9583c62eb87edd6158fa3a7c",
    "snips/test/seq.out": "58c07c9097d5e1f78889765c2a535a160f6455b90b3142055c8051847afcca47",
    "snips/train/label": "bfd7df6cf9dd76c5da5d8b61bc85f90386197bdd3d7510c1d324c051537b962f",
    "snips/train/seq.in": "04ad1e3f2121d83c6478f9a4b17d2dbdc21d06d6127f73cb7af835ed733f9855",
    "snips/train/seq.out": "fd5f2121d8055827e5d6b3d3bac30f3d7e94e82a5d437751960cbdd9e1b4f6d3",
    "snips/valid/label": "9c1dd041216f647bcfca838aaf1a48eb5781e4404256d31ff07cd38a5436c52f",
    "snips/valid/seq.in": "64e0f6d8ad8aab3a3828164d7d53731a0993d3ca1aed437ceaca6d3d568d410e",
    "snips/valid/seq.out": "712e6d34feb8d52d208b820a5f8bae6e6ff990f08374507dfde22de389088319",
}
DATASETS = ("atis", "snips")


class DownloadError(Exception):
    """A file could not be fetched or did not match its pinned checksum."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_file(url: str, destination: Path, expected_sha256: str, timeout: float = 30.0) -> None:
    """Download `url` to `destination` only if its SHA-256 is `expected_sha256`."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent)
    tmp_path = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(1 << 16), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != expected_sha256:
            raise DownloadError(
                f"{url}: SHA-256 {digest.hexdigest()} does not match the pinned {expected_sha256}; refused"
            )
        os.replace(tmp_path, destination)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        raise DownloadError(f"{url}: download failed ({error})") from None
    finally:
        tmp_path.unlink(missing_ok=True)


def download(dataset: str, dest: str | Path = "data", base_url: str = DEFAULT_BASE_URL) -> list[Path]:
    """Fetch every file of `dataset` into `dest/dataset/...`; files already present and matching
    their checksum are kept. Returns the paths written or verified."""
    if dataset not in DATASETS:
        raise DownloadError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    paths = []
    for relative, expected in SHA256.items():
        if not relative.startswith(f"{dataset}/"):
            continue
        destination = Path(dest) / relative
        if not (destination.is_file() and sha256_of(destination) == expected):
            fetch_file(f"{base_url.rstrip('/')}/{relative}", destination, expected)
        paths.append(destination)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slotfill-download", description=__doc__)
    # no argparse `choices`: Python 3.11 checks a `nargs="*"` positional's whole default list against them
    parser.add_argument("datasets", nargs="*", metavar="{" + ",".join(DATASETS) + "}", help="default: atis")
    parser.add_argument("--dest", default="data", help="folder to write into (default: data)")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help="where the files live")
    args = parser.parse_args(argv)
    for dataset in args.datasets:
        if dataset not in DATASETS:
            parser.error(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    args.datasets = args.datasets or ["atis"]
    try:
        for dataset in args.datasets:
            paths = download(dataset, args.dest, args.base_url)
            print(f"{dataset}: {len(paths)} files verified in {Path(args.dest) / dataset}")
    except DownloadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
