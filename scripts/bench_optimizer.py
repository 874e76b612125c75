"""One Adam step on a real tagger's parameters, side by side: torch's per-parameter loop, `foreach`
and `fused` (the one the training module uses).

    python scripts/bench_optimizer.py --data data/snips --char-channels 50 [--repeats 50]

The tagger is built as in training (vocabulary and labels from the data's training split), so the
parameter count is close to the shipped config's; gradients are random, since only the update's cost
is measured.
"""

from __future__ import annotations

import argparse
import time

import torch

from models.tagger import TaggerOptions
from training.datamodule import SlotDataModule
from training.module import SlotTaggerModule

VARIANTS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def step_ms(parameters: list[torch.nn.Parameter], options: dict, repeats: int) -> float:
    optimizer = torch.optim.Adam(parameters, lr=1e-3, **options)
    for _ in range(5):
        optimizer.step()
    started = time.perf_counter()
    for _ in range(repeats):
        optimizer.step()
    return (time.perf_counter() - started) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/atis")
    parser.add_argument("--char-channels", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2, help="each variant is timed this many times, interleaved")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = SlotDataModule(data_dir=args.data)
    module = SlotTaggerModule(
        data.vocabulary.to_list(),
        data.slot_tags,
        data.intents,
        characters=data.characters.to_list(),
        tagger=TaggerOptions(char_channels=args.char_channels),
    )
    parameters = list(module.parameters())
    for parameter in parameters:
        parameter.grad = torch.randn_like(parameter)
    count = sum(p.numel() for p in parameters)
    print(f"{args.data}: {count:,} parameters, 1 torch thread, mean of {args.repeats} steps")
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, options in VARIANTS.items():
            times[name].append(step_ms(parameters, options, args.repeats))
    for name, values in times.items():
        ratio = min(values) / min(times["fused"])
        print(f"{name:8s} {' / '.join(f'{v:.2f}' for v in values)} ms per step  ({ratio:.1f}x fused)")


if __name__ == "__main__":
    main()
