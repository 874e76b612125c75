"""Time one ATIS training epoch (forward, backward, Adam step) of bidirectional taggers, in the
same process, alternating between variants so machine noise hits all alike:

- `packed`: torch's bidirectional `nn.LSTM` over `pack_padded_sequence`;
- each cell of `--cells`: our encoder (backward direction over per-sequence-reversed inputs).

Prints seconds per epoch (median of `--repeats`) and each variant's ratio to our `lstm`.

    python scripts/bench_encoder.py [--data-dir data/atis] [--repeats 3] [--cells lstm gru clockwork scrn] [--doc]
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from models.loss import slot_loss
from models.tagger import TaggerConfig, build_tagger
from training.datamodule import SlotDataModule


class PackedTagger(nn.Module):
    """The LSTM tagger's shape, with torch's own bidirectional LSTM over packed sequences."""

    def __init__(self, config: TaggerConfig) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data/atis")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cells", nargs="+", default=["lstm"], help="our encoders to time (lstm is the baseline)")
    parser.add_argument("--hidden-size", type=int, default=200)
    parser.add_argument("--doc", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()
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
    baseline = statistics.median(times["lstm"])
    lines = [
        "| encoder | s / epoch (median) | × our lstm | runs (s) |",
        "|---|---|---|---|",
    ]
    for name, runs in times.items():
        label = "packed nn.LSTM (torch)" if name == "packed" else f"{name} (ours)"
        median = statistics.median(runs)
        lines.append(f"| {label} | {median:.2f} | {median / baseline:.2f} | {', '.join(f'{t:.2f}' for t in runs)} |")
    lines.append(
        f"\nMachine: {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{len(batches)} batches of 32, hidden {args.hidden_size}/direction; run {time.strftime('%Y-%m-%d')} with "
        f"`python scripts/bench_encoder.py {' '.join(sys.argv[1:])}`."
    )
    body = "\n".join(lines)
    print(body)
    if args.doc:
        doc = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
        start, end = "<!-- encoder-bench:start -->", "<!-- encoder-bench:end -->"
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        doc.write_text(pattern.sub(lambda _: f"{start}\n{body}\n{end}", doc.read_text()))


if __name__ == "__main__":
    main()
