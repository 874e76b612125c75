"""Time one ATIS training epoch (forward, backward, Adam step) of bidirectional taggers, in the
same process, alternating between variants so machine noise hits all alike:

- `packed`: torch's bidirectional `nn.LSTM` over `pack_padded_sequence`;
- each cell of `--cells`: our encoder (backward direction over per-sequence-reversed inputs).

Prints seconds per epoch (median of `--repeats`) and each variant's ratio to our `lstm`.

    python scripts/bench_encoder.py [--data-dir data/atis] [--repeats 3] [--cells lstm gru clockwork scrn]
    python scripts/bench_encoder.py --render      # the doc's table from the newest record, no timing

Each run appends one record (the seconds of every repeat, the commit, machine and threads) to
benchmarks/encoder.jsonl and rewrites the encoder table of docs/benchmarks.md from it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch
from bench_training import DOC, append_record, machine, write_sections
from torch import nn

from models.loss import slot_loss

RECORDS = Path(__file__).resolve().parents[1] / "benchmarks" / "encoder.jsonl"


def read_records(path: Path) -> list[dict]:
    """The encoder records of `path`, in file order; none stops with the file's name."""
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not records:
        raise SystemExit(f"{path}: no encoder records")
    return records


class PackedTagger(nn.Module):
    """The LSTM tagger's shape, with torch's own bidirectional LSTM over packed sequences."""

    def __init__(self, config) -> None:
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden_size, batch_first=True, bidirectional=True)
        self.tag_head = nn.Linear(2 * config.hidden_size, config.num_tags)

    def forward(self, token_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embedding(token_ids), lengths, batch_first=True, enforce_sorted=False
        )
        states, _ = nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True)
        return self.tag_head(states)


def epoch_seconds(model: nn.Module, batches: list[dict], tag_logits) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    started = time.perf_counter()
    for batch in batches:
        optimizer.zero_grad()
        loss = slot_loss(tag_logits(model, batch), batch["tag_ids"])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def table(record: dict) -> str:
    """The Markdown table of one encoder record: seconds per epoch and the ratio to our LSTM."""
    times = record["seconds"]
    baseline = statistics.median(times["lstm"])
    lines = ["| encoder | s / epoch (median) | × our lstm | runs (s) |", "|---|---|---|---|"]
    for name, runs in times.items():
        label = "packed nn.LSTM (torch)" if name == "packed" else f"{name} (ours)"
        median = statistics.median(runs)
        lines.append(f"| {label} | {median:.2f} | {median / baseline:.2f} | {', '.join(f'{t:.2f}' for t in runs)} |")
    commit = (record.get("commit") or "?")[:7]
    lines.append(
        f"\n{record['machine']}, torch {record['torch']}, {record['threads']} threads, {record['batches']} batches of "
        f"{record['batch_size']}, hidden {record['hidden_size']}/direction; commit `{commit}`, {record['date']}; "
        f"`{record['command']}`."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data/atis")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cells", nargs="+", default=["lstm"], help="our encoders to time (lstm is the baseline)")
    parser.add_argument("--hidden-size", type=int, default=200)
    parser.add_argument("--records", type=Path, default=RECORDS, help="the encoder records file (JSON lines)")
    parser.add_argument("--dry-run", action="store_true", help="time and print, but append and rewrite nothing")
    parser.add_argument("--render", action="store_true", help="only rewrite docs/benchmarks.md from the newest record")
    args = parser.parse_args(argv)
    if not args.render:
        record = measure(args)
        print(table(record))
        if args.dry_run:
            return
        append_record(record, args.records)
    newest = read_records(args.records)[-1]
    write_sections(DOC, {"encoder-bench": table(newest)})


def measure(args: argparse.Namespace) -> dict:
    """Time every encoder `args.repeats` times, alternating, and return the record of the run."""
    from models.tagger import TaggerConfig, build_tagger
    from training.datamodule import SlotDataModule

    torch.manual_seed(0)
    data = SlotDataModule(args.data_dir, batch_size=32)
    batches = list(data.train_dataloader())
    cells = ["lstm", *[c for c in args.cells if c != "lstm"]]
    models: dict[str, nn.Module] = {}
    for cell in cells:
        config = TaggerConfig(
            len(data.vocabulary), len(data.slot_tags), len(data.intents), cell=cell, hidden_size=args.hidden_size,
            intent_head=False, dropout=0.0,
        )  # fmt: skip
        models[cell] = build_tagger(config)
    models["packed"] = PackedTagger(config)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            if name == "packed":
                times[name].append(epoch_seconds(model, batches, lambda m, b: m(b["token_ids"], b["mask"])))
            else:
                run = lambda m, b: m(b["token_ids"], b["mask"]).tag_logits  # noqa: E731
                times[name].append(epoch_seconds(model, batches, run))
    return {
        "benchmark": "encoder",
        "command": f"python scripts/bench_encoder.py {shlex.join(sys.argv[1:])}".strip(),
        "seconds": times,
        "batches": len(batches),
        "batch_size": 32,
        "hidden_size": args.hidden_size,
        **machine(),
    }


if __name__ == "__main__":
    main()
