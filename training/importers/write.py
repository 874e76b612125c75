"""Write an imported data set: `{train,valid,test}/{seq.in,seq.out[,label]}`, `import.json` and, when
there are any, `synonyms.json`. Everything is written into a temporary folder beside the target that
is renamed into place at the end, so a failed import leaves nothing behind.

A data set without intents has no `label` files: `training.data` reads such splits as intent-less.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.data import DataError
from training.importers.common import Sentence

REPORT = "import.json"
SYNONYMS = "synonyms.json"


def _lines(values: Sequence[str]) -> str:
    return "".join(value + "\n" for value in values)


def write_split(folder: Path, sentences: Sequence[Sentence], with_intents: bool) -> None:
    folder.mkdir(parents=True)
    (folder / "seq.in").write_text(_lines([" ".join(s.words) for s in sentences]), encoding="utf-8")
    (folder / "seq.out").write_text(_lines([" ".join(s.tags) for s in sentences]), encoding="utf-8")
    if with_intents:
        (folder / "label").write_text(_lines([s.intent or "" for s in sentences]), encoding="utf-8")


def _json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_dataset(
    out: Path,
    splits: dict[str, list[Sentence]],
    report: dict[str, Any],
    synonyms: dict[str, dict[str, str]],
) -> None:
    """Write the data set to `out`, replacing an earlier import there; a folder that holds something
    else is refused (`DataError`)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / REPORT).is_file())):
        raise DataError(f"{out}: exists and is not an earlier import; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    with_intents = any(s.intent is not None for sentences in splits.values() for s in sentences)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, sentences in splits.items():
            write_split(staging / name, sentences, with_intents)
        _json(staging / REPORT, report)
        if synonyms:
            _json(staging / SYNONYMS, synonyms)
        if out.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            out.rename(previous / out.name)
            staging.rename(out)
            shutil.rmtree(previous)
        else:
            staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
