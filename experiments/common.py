"""What every experiment shares: command-line basics, seeding and threads, writing figures and JSON."""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never a window

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIGURES_DIR = REPO / "docs" / "figures"
DATA_DIR = REPO / "data" / "atis"


def base_parser(description: str) -> argparse.ArgumentParser:
    """Options every experiment has; the defaults are the documented full run."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=Path, default=FIGURES_DIR, help="folder for the PNG and JSON")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="a seconds-long run for tests (numbers meaningless)")
    return parser


def atis_parser(description: str, epochs: int) -> argparse.ArgumentParser:
    """`base_parser` plus the options of the experiments that train on ATIS."""
    parser = base_parser(description)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--train-limit", type=int, default=None, help="first N training sentences (default: all)")
    parser.add_argument("--epochs", type=int, default=epochs)
    return parser


def repo_relative(path: Path) -> str:
    """`path` relative to the repository when it lies inside it, so recorded settings carry no
    machine-specific prefix."""
    absolute = Path(os.path.abspath(path))  # not resolve(): data/atis may be a link out of the repository
    return str(absolute.relative_to(REPO)) if absolute.is_relative_to(REPO) else str(path)


def start(args: argparse.Namespace) -> float:
    """Apply threads and seed; returns the start time for `finish`."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    return time.perf_counter()


def run_info(module: str, args: argparse.Namespace, started: float) -> dict[str, Any]:
    """How the numbers were produced: command, settings, threads, machine, wall time."""
    settings = {k: (repo_relative(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"}
    return {
        "command": f"python -m {module} " + " ".join(sys.argv[1:]),
        "settings": settings,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "wall_seconds": round(time.perf_counter() - started, 2),
    }


def _clean(value: Any) -> Any:
    """JSON-safe: tensors to lists, floats to 7 significant digits, non-finite floats to strings (JSON has
    no NaN/inf)."""
    if isinstance(value, torch.Tensor):
        return _clean(value.tolist())
    if isinstance(value, float):
        return float(f"{value:.7g}") if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(_clean(data), indent=1) + "\n", encoding="utf-8")
    return path


def save_figure(figure: plt.Figure, path: Path, dpi: int = 100) -> Path:
    """PNG at a small dpi, reduced to a 256-colour palette, so committed figures stay under 200 KB."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(colors=256).save(path, optimize=True)
    return path


def log_every(count: int, points: int = 400) -> int:
    """Stride that keeps about `points` entries of a long per-step series in the JSON."""
    return max(1, math.ceil(count / points))


def window_max(values: list[float], points: int = 300) -> tuple[list[int], list[float]]:
    """(step, max) over about `points` consecutive windows: a light curve that keeps every spike."""
    size = max(1, math.ceil(len(values) / points))
    steps = list(range(0, len(values), size))
    return steps, [max(values[i : i + size]) for i in steps]


def thin_series(runs: list[dict[str, Any]]) -> None:
    """Keep the JSON small: each run's per-step `loss`, `grad_norm`, `grad_max` keep every k-th step
    (k in `series_stride`), and their maxima over all steps in `<key>_max`."""
    for item in runs:
        stride = log_every(len(item["loss"]))
        for key in ("loss", "grad_norm", "grad_max"):
            item[f"{key}_max"] = max(item[key]) if item[key] else None
            item[key] = item[key][::stride]
        item["series_stride"] = stride
