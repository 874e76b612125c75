"""`python -m tests.deploy.make_corpus DIR`: write a small generated ATIS-format corpus into DIR/atis.

The deployment test mounts DIR into the `train` container as its data folder. The sentences come
from tests/conftest.py's generator (flights and fares between seven cities, BIO slot tags).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.conftest import write_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_corpus(args.dest / "atis", {"train": args.train, "valid": 40, "test": 40}, seed=args.seed)


if __name__ == "__main__":
    main()
