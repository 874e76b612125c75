"""Time one ATIS training epoch (forward, backward, Adam step) of the BiLSTM encoder two ways, in
the same process, alternating: our reversed-input backward direction vs torch's bidirectional
`nn.LSTM` over `pack_padded_sequence`. Prints seconds per epoch and the ratio.

    python scripts/bench_encoder.py [--data-dir data/atis] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from models.loss import slot_loss
from models.tagger import TaggerConfig, build_tagger
from training.datamodule import SlotDataModule


class PackedTagger(nn.Module):
    """The same tagger shape, with torch's own bidirectional LSTM over packed sequences."""

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
    args = parser.parse_args()
    torch.manual_seed(0)
    data = SlotDataModule(args.data_dir, batch_size=32)
    batches = list(data.train_dataloader())
    config = TaggerConfig(len(data.vocabulary), len(data.slot_tags), len(data.intents), intent_head=False, dropout=0.0)
    ours, packed = build_tagger(config), PackedTagger(config)
    times: dict[str, list[float]] = {"reversed": [], "packed": []}
    for _ in range(args.repeats):
        times["reversed"].append(epoch_seconds(ours, batches, lambda m, b: m(b["token_ids"], b["mask"]).tag_logits))
        times["packed"].append(epoch_seconds(packed, batches, lambda m, b: m(b["token_ids"], b["mask"])))
    reversed_s, packed_s = statistics.median(times["reversed"]), statistics.median(times["packed"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(batches)} batches of 32")
    for name, label in (("reversed", "reversed-input BiLSTM"), ("packed", "packed nn.LSTM")):
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{label:22s} {statistics.median(times[name]):.2f} s/epoch  (runs: {runs})")
    print(f"packed / reversed: {packed_s / reversed_s:.2f}x")


if __name__ == "__main__":
    main()
