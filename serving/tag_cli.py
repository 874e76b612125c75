"""`slotfill-tag "some text"`: tag utterances in the terminal with a checkpoint, no server needed."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from models.checkpoint import CheckpointError
from models.text import tokenize
from serving.inference import Prepared
from serving.predictor import Predictor


def format_result(result: dict[str, Any]) -> str:
    """Words with their tags and confidences, then the slots and the intent, as aligned text."""
    width = max(len(word["text"]) for word in result["words"])
    lines = [f"{word['text']:<{width}}  {word['tag']:<28} {word['confidence']:.3f}" for word in result["words"]]
    lines.append("slots:" if result["slots"] else "slots: none")
    for slot in result["slots"]:
        lines.append(f"  {slot['slot']:<28} {slot['value']!r} [{slot['start']}:{slot['end']}] {slot['confidence']:.3f}")
    if result["intent"] is not None:
        lines.append(f"intent: {result['intent']['name']} {result['intent']['confidence']:.3f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="slotfill-tag", description="Tag utterances with a slotfill checkpoint.")
    parser.add_argument("text", nargs="*", help="utterances to tag (default: one per line from stdin)")
    parser.add_argument("--checkpoint", default=os.environ.get("SLOTFILL_CHECKPOINT"), help="env SLOTFILL_CHECKPOINT")
    parser.add_argument("--json", action="store_true", help="print the same JSON as POST /v1/tag")
    args = parser.parse_args(argv)
    if not args.checkpoint:
        parser.error("no checkpoint; pass --checkpoint PATH or set SLOTFILL_CHECKPOINT")
    texts = args.text or [line for line in sys.stdin.read().splitlines() if line.strip()]
    items = [Prepared(text, tokenize(text)) for text in texts]
    empty = [text for text, item in zip(texts, items, strict=True) if not item.words]
    if empty:
        parser.error(f"no words in {empty[0]!r}")
    if not items:
        parser.error("nothing to tag")

    predictor = Predictor()
    try:
        predictor.load(args.checkpoint)
    except CheckpointError as error:
        sys.exit(f"slotfill-tag: {error}")
    predictor.start()
    try:
        results = predictor.predict(items)
    finally:
        predictor.stop()
    for index, result in enumerate(results):
        if args.json:
            print(json.dumps(result, ensure_ascii=False))
        else:
            if index:
                print()
            print(format_result(result))


if __name__ == "__main__":
    main()
