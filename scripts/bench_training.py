"""Benchmark training configs: train each for several seeds, test the best checkpoint, append one
record per run to benchmarks/records.jsonl, and render tables from that file.

    python scripts/bench_training.py --runs atis-lstm:3            # seeds 1-3 of configs/atis-lstm.yaml
    python scripts/bench_training.py --runs atis-lstm:4-6          # seeds 4, 5 and 6
    python scripts/bench_training.py --runs "atis-lstm:1-1 --model.tagger.decoder=crf" --note "two at a time"
        # a config with CLI overrides, passed on to `python -m training` as they are
    python scripts/bench_training.py --table "atis-best:1-3,5-9"  # a table of recorded runs; trains nothing
    python scripts/bench_training.py --render                      # rewrite docs/benchmarks.md's tables
    python scripts/bench_training.py --runs atis-lstm:1-1 --records benchmarks/timing.jsonl --out-dir runs/timing
        # a timing run alone on the machine: recorded apart, so it stays out of the medians

A run is named by its label, the config and its overrides ("atis-lstm --model.tagger.decoder=crf"); a
record holds the label, the seed, the command, the commit and machine it ran on, the test figures,
the validation figures of the selected epoch and the fit time. `--render` writes, for every config
in configs/, the median and range over its recorded seeds (the newest record of each seed) into
the marked sections of docs/benchmarks.md. Each run's slot F1 is also recomputed with seqeval from
the `predictions.txt` that `test` writes, and the two must agree.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
RECORDS = REPO / "benchmarks" / "records.jsonl"
TIMING = REPO / "benchmarks" / "timing.jsonl"  # runs alone on the machine, kept out of the medians
CONFIGS = REPO / "configs"
FIGURES = (  # record key, column heading, digits
    ("test_slot_f1", "test slot F1", 2),
    ("test_intent_accuracy", "test intent %", 2),
    ("test_sentence_accuracy", "test sentence %", 2),
    ("val_slot_f1", "val slot F1", 2),
    ("val_intent_accuracy", "val intent %", 1),
    ("val_sentence_accuracy", "val sentence %", 1),
    ("fit_wall_seconds", "fit s", 0),
)


# ---- specs and labels ------------------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    """Seeds from "N" (seeds 1..N) or comma-separated seeds and ranges: "4-6", "1-3,5-9", "2,7"."""
    if text.isdigit():
        return list(range(1, int(text) + 1))
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise ValueError(f"bad seeds {text!r}: expected N, A-B or a comma-separated list of them")
        seeds.extend(range(int(first), int(last or first) + 1))
    return seeds


def seed_text(seeds: Iterable[int]) -> str:
    """The inverse of `parse_seeds`, as short as it goes: [1, 2, 3] -> "3", [1, 2, 3, 5] -> "1-3,5-5"."""
    ordered = sorted(set(seeds))
    if ordered == list(range(1, len(ordered) + 1)):
        return str(len(ordered))
    runs: list[list[int]] = []
    for seed in ordered:
        if runs and seed == runs[-1][1] + 1:
            runs[-1][1] = seed
        else:
            runs.append([seed, seed])
    return ",".join(f"{first}-{last}" for first, last in runs)


def parse_spec(spec: str) -> tuple[str, list[str], list[int]]:
    """`config[:seeds] [--key=value ...]` -> (config, ["--key=value", ...], seeds)."""
    head, *overrides = spec.split()
    config, _, seeds = head.partition(":")
    return config, overrides, parse_seeds(seeds or "1")


def spec_label(spec: str) -> str:
    """The spec without its seeds: how records and tables name a configuration."""
    config, overrides, _ = parse_spec(spec)
    return " ".join([config, *overrides])


# ---- one run -----------------------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def validation_rows(fit_rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows of a fit's metrics.csv that hold an epoch's validation metrics."""
    return [r for r in fit_rows if r.get("val/slot_f1")]


def best_validation_row(val_rows: list[dict[str, str]]) -> dict[str, str]:
    """The validation row of the epoch whose checkpoint is `best.ckpt`: the first epoch reaching the
    highest slot F1, since ModelCheckpoint replaces its best only on a strictly better score."""
    return max(val_rows, key=lambda r: (float(r["val/slot_f1"]), -int(r["epoch"])))


def seqeval_f1(predictions: Path) -> float:
    from seqeval.metrics import f1_score

    sys.path.insert(0, str(REPO))
    from training.data import read_conlleval_file

    rows = read_conlleval_file(predictions)
    return f1_score([gold for _, gold, _ in rows], [predicted for _, _, predicted in rows])


def parameter_count(checkpoint: dict) -> int:
    """Parameters of the tagger a checkpoint holds (the bundle's weights when it has one)."""
    state = checkpoint.get("slotfill_bundle", {}).get("state_dict") or checkpoint["state_dict"]
    return sum(t.numel() for t in state.values())


def run_figures(run_dir: Path, best: Path, fit_seconds: float) -> dict:
    """The figures of one finished run: `run_dir/fit/metrics.csv`, `run_dir/test/metrics.csv`,
    `run_dir/test/predictions.txt` and the checkpoint `best` that `test` scored."""
    import torch

    fit_rows = read_rows(run_dir / "fit" / "metrics.csv")
    val_rows = validation_rows(fit_rows)
    best_row = best_validation_row(val_rows)
    best_epoch = int(best_row["epoch"])
    epoch_seconds = [float(r["train/epoch_seconds"]) for r in fit_rows if r.get("train/epoch_seconds")]
    test_row = next(r for r in read_rows(run_dir / "test" / "metrics.csv") if r.get("test/slot_f1"))
    losses = [float(r["train/loss_step"]) for r in fit_rows if r.get("train/loss_step")]
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    if checkpoint["epoch"] != best_epoch:
        raise RuntimeError(f"{best} is from epoch {checkpoint['epoch']}, its metrics.csv says {best_epoch}")
    figures = {
        "test_slot_f1": 100 * float(test_row["test/slot_f1"]),
        "test_intent_accuracy": 100 * float(test_row["test/intent_accuracy"]),
        "test_sentence_accuracy": 100 * float(test_row["test/sentence_accuracy"]),
        "seqeval_slot_f1": 100 * seqeval_f1(run_dir / "test" / "predictions.txt"),
        "val_slot_f1": 100 * float(best_row["val/slot_f1"]),
        "val_intent_accuracy": 100 * float(best_row["val/intent_accuracy"]),
        "val_sentence_accuracy": 100 * float(best_row["val/sentence_accuracy"]),
        "best_epoch": best_epoch,
        "epochs": len(val_rows),
        "train_epoch_seconds": statistics.median(epoch_seconds),
        "fit_wall_seconds": fit_seconds,
        "parameters": parameter_count(checkpoint),
        "diverged": not all(math.isfinite(x) for x in losses),
    }
    if abs(figures["seqeval_slot_f1"] - figures["test_slot_f1"]) > 1e-4:
        raise SystemExit(f"{run_dir}: reported F1 {figures['test_slot_f1']} != seqeval {figures['seqeval_slot_f1']}")
    return figures


def git_commit() -> tuple[str | None, bool]:
    """HEAD's commit and whether the working tree differs from it (None when not in a git checkout)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                capture_output=True, text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None, False
    return commit.stdout.strip(), bool(status.stdout.strip())


def machine() -> dict:
    """Where a run ran: the fields every new record carries besides its figures."""
    import torch

    commit, dirty = git_commit()
    return {
        "commit": commit,
        "commit_role": "run",
        "dirty": dirty,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def run_one(spec: str, seed: int, out_dir: Path, note: str = "") -> dict | None:
    """Train and test one seed and return its record; None (after printing why) when the run fails."""
    config, overrides, _ = parse_spec(spec)
    label = spec_label(spec)
    name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{label}-s{seed}")
    common = [
        sys.executable, "-m", "training", "", "--config", f"configs/{config}.yaml",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={out_dir}", f"--trainer.logger.init_args.name={name}",
        f"--checkpoint.dirpath={out_dir / name / 'checkpoints'}", f"--seed_everything={seed}", *overrides,
    ]  # fmt: skip
    fit, test = list(common), list(common)
    fit[3], test[3] = "fit", "test"
    best = out_dir / name / "checkpoints" / "best.ckpt"
    started = time.perf_counter()
    try:
        subprocess.run([*fit, "--trainer.logger.init_args.version=fit"], cwd=REPO, check=True, capture_output=True)
        fit_seconds = time.perf_counter() - started
        subprocess.run([*test, "--trainer.logger.init_args.version=test", f"--ckpt_path={best}"], cwd=REPO,
                       check=True, capture_output=True)  # fmt: skip
    except subprocess.CalledProcessError as error:
        print(f"{name}: failed ({error.returncode}):\n{error.stderr.decode(errors='replace')[-2000:]}", flush=True)
        return None
    repeat = " ".join([f"{config}:{seed}-{seed}", *overrides])
    record = {
        "config": label,
        "config_file": f"configs/{config}.yaml",
        "overrides": overrides,
        "seed": seed,
        "command": f"python scripts/bench_training.py --runs {shlex.quote(repeat)}",
        **run_figures(out_dir / name, best, fit_seconds),
        **machine(),
    }
    if note:
        record["note"] = note
    return record


# ---- records -----------------------------------------------------------------------------------------


def append_record(record: dict, path: Path = RECORDS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_records(path: Path = RECORDS) -> list[dict]:
    """Every record of `path`, in file order; a line that is not a JSON object stops with its line number."""
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise SystemExit(f"{path}:{number}: not JSON ({error.msg})") from None
        if not isinstance(record, dict) or "config" not in record or "seed" not in record:
            raise SystemExit(f"{path}:{number}: a record needs at least 'config' and 'seed'")
        records.append(record)
    return records


def newest_by_seed(records: list[dict], label: str) -> list[dict]:
    """The newest record of each seed of `label` (a later line replaces an earlier one), by seed."""
    newest = {r["seed"]: r for r in records if r["config"] == label}
    return [newest[seed] for seed in sorted(newest)]


def select(records: list[dict], specs: list[str]) -> list[dict]:
    """The newest record of each seed that `specs` name; a missing one stops with its label and seed."""
    chosen = []
    for spec in specs:
        label, seeds = spec_label(spec), parse_spec(spec)[2]
        newest = {r["seed"]: r for r in newest_by_seed(records, label)}
        for seed in seeds:
            if seed not in newest:
                raise SystemExit(f"no record of {label!r} seed {seed}")
            chosen.append(newest[seed])
    return chosen


# ---- tables ------------------------------------------------------------------------------------------


def spread(values: list[float], digits: int = 2) -> str:
    """`median (min–max)`, or just the value when there is one."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def spread_of(runs: list[dict], key: str, digits: int = 2) -> str:
    """Median (range) of a figure over the runs that recorded it; — when none did."""
    values = [r[key] for r in runs if r.get(key) is not None]
    if not values:
        return "—"
    missing = len(runs) - len(values)
    return spread(values, digits) + (f" ({len(values)} of {len(runs)})" if missing else "")


def table(results: list[dict]) -> str:
    """One row per label: seeds and the median (range) of every figure over them."""
    lines = [
        "| config | seeds | " + " | ".join(heading for _, heading, _ in FIGURES) + " |",
        "|---|---|" + "---|" * len(FIGURES),
    ]
    for label in dict.fromkeys(r["config"] for r in results):
        runs = [r for r in results if r["config"] == label]
        cells = [spread_of(runs, key, digits) for key, _, digits in FIGURES]
        lines.append(f"| {label} | {seed_text(r['seed'] for r in runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def shipped_configs() -> list[str]:
    return sorted(path.stem for path in CONFIGS.glob("*.yaml"))


def provenance_table(records: list[dict], labels: list[str]) -> str:
    """How the rows of `table` were run: the command that repeats them, the commits, dates, machine, threads."""
    lines = [
        "| config | command | commits | dates | machine | torch threads | how the runs shared it |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in labels:
        runs = newest_by_seed(records, label)
        if not runs:
            continue
        config, *overrides = label.split()
        spec = " ".join([f"{config}:{seed_text(r['seed'] for r in runs)}", *overrides])
        commits = ", ".join(f"`{c[:7]}`" for c in dict.fromkeys(r.get("commit") or "?" for r in runs))
        dates = sorted({r.get("date") or "?" for r in runs})
        date_range = dates[0] if len(dates) == 1 else f"{dates[0]} – {dates[-1]}"
        machines = "; ".join(dict.fromkeys(r.get("machine") or "?" for r in runs))
        threads = ", ".join(dict.fromkeys("?" if r.get("threads") is None else str(r["threads"]) for r in runs))
        notes = "; ".join(dict.fromkeys(r["note"] for r in runs if r.get("note"))) or "—"
        lines.append(
            f"| {label} | `python scripts/bench_training.py --runs {shlex.quote(spec)}` | {commits} | {date_range} "
            f"| {machines} | {threads} | {notes} |"
        )
    return "\n".join(lines)


def timing_table(timing: list[dict], configs: list[str]) -> str:
    """One row per timing run of a shipped config: its fit time, epochs and scores, threads and commit."""
    lines = [
        "| config | command | fit s | s / epoch | epochs | test F1 / intent / sentence | torch threads | commit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in timing:
        if r["config"] not in configs:
            continue
        scores = " / ".join(
            f"{r[key]:.2f}" for key in ("test_slot_f1", "test_intent_accuracy", "test_sentence_accuracy")
        )
        lines.append(
            f"| {r['config']} | `{r['command']}` | {r['fit_wall_seconds']:.0f} | {r['train_epoch_seconds']:.1f} "
            f"| {r['epochs']} | {scores} | {r.get('threads') or '?'} | `{(r.get('commit') or '?')[:7]}` |"
        )
    return "\n".join(lines)


def render_sections(records: list[dict], configs: list[str], timing: list[dict] | None = None) -> dict[str, str]:
    """The generated sections of docs/benchmarks.md, by marker name (`shipped-timing` only with `timing`)."""
    labels = [c for c in configs if newest_by_seed(records, c)]
    shipped = [r for label in labels for r in newest_by_seed(records, label)]
    sections = {"shipped-configs": table(shipped), "shipped-provenance": provenance_table(records, labels)}
    if timing is not None:
        sections["shipped-timing"] = timing_table(timing, configs)
    return sections


def write_sections(doc: Path, sections: dict[str, str]) -> None:
    """Replace the text between `<!-- name:start -->` and `<!-- name:end -->` for each section; a
    section whose markers are missing stops with its name, so nothing is written to the wrong place."""
    text = doc.read_text()
    for name, body in sections.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise SystemExit(f"{doc}: no '{start}' ... '{end}' markers")
        text = pattern.sub(lambda _, body=body, start=start, end=end: f"{start}\n{body}\n{end}", text)
    doc.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--runs", nargs="+", metavar="SPEC", help="train and record 'config[:seeds] [--key=value ...]'")
    action.add_argument("--table", nargs="+", metavar="SPEC", help="print a table of recorded runs; train nothing")
    action.add_argument("--render", action="store_true", help="rewrite the generated tables of docs/benchmarks.md")
    parser.add_argument("--records", type=Path, default=RECORDS, help="the records file (JSON lines)")
    parser.add_argument("--timing", type=Path, default=TIMING, help="timing runs for --render (JSON lines)")
    parser.add_argument("--doc", type=Path, default=DOC, help="the document --render rewrites")
    parser.add_argument("--out-dir", default="runs/bench", help="where runs write logs and checkpoints")
    parser.add_argument("--note", default="", help="stored with each new record (e.g. how the runs shared the CPU)")
    parser.add_argument("--dry-run", action="store_true", help="print, but do not append or rewrite anything")
    args = parser.parse_args(argv)
    if args.runs:
        out_dir = REPO / args.out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        results = []
        for spec in args.runs:
            for seed in parse_spec(spec)[2]:
                record = run_one(spec, seed, out_dir, args.note)
                if record is None:
                    continue
                print(json.dumps(record), flush=True)
                if not args.dry_run:
                    append_record(record, args.records)
                results.append(record)
        if results:
            print(table(results))
        return
    records = read_records(args.records)
    if args.table:
        print(table(select(records, args.table)))
        return
    timing = read_records(args.timing) if args.timing.is_file() else None
    sections = render_sections(records, shipped_configs(), timing)
    for name, body in sections.items():
        print(f"<!-- {name} -->\n{body}\n")
    if not args.dry_run:
        write_sections(args.doc, sections)


if __name__ == "__main__":
    main()
