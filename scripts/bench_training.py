"""Benchmark the shipped training configs: train each for several seeds, test the best checkpoint,
and write median/range of test scores and wall times into docs/benchmarks.md.

    python scripts/bench_training.py                       # ATIS LSTM + GRU x 3 seeds, SNIPS LSTM once
    python scripts/bench_training.py --runs atis-lstm:1    # one config, one seed
    python scripts/bench_training.py --runs "atis-lstm:3 --model.decoder=crf" --section ablation
        # a config with CLI overrides (passed on to the CLI as they are), seeds 1-3 (`:2-3`: seeds 2 and 3)

Every run's figures are appended to `<out-dir>/results.jsonl`; `--collect` rebuilds the table from
that file for the given specs (the newest run of each spec and seed) without training again.
`runs/` is not in git: on a fresh clone `--restore-records` rebuilds that file from the per-run
figures that docs/benchmarks.md keeps under each table, so `--collect` works there too.

Each run's F1 is also recomputed with seqeval from the `predictions.txt` that `test` writes, and
the two must agree.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from seqeval.metrics import f1_score

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
sys.path.insert(0, str(REPO))

from training.data import read_conlleval_file  # noqa: E402


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
    rows = read_conlleval_file(predictions)
    return f1_score([gold for _, gold, _ in rows], [predicted for _, _, predicted in rows])


def parse_spec(spec: str) -> tuple[str, list[str], list[int]]:
    """`config[:seeds] [--key=value ...]` -> (config, ["--key=value", ...], seeds); seeds is N (seeds
    1..N) or A-B (seeds A..B)."""
    head, *overrides = spec.split()
    config, _, seeds = head.partition(":")
    first, _, last = (seeds or "1").partition("-")
    return config, overrides, list(range(int(first), int(last) + 1)) if last else list(range(1, int(first) + 1))


def spec_label(spec: str) -> str:
    """The spec without its seed count: how the tables and results.jsonl name a configuration."""
    config, overrides, _ = parse_spec(spec)
    return " ".join([config, *overrides])


def run_one(spec: str, seed: int, out_dir: Path) -> dict | None:
    """Train and test one seed; None (after printing why) when the run fails."""
    config, overrides, _ = parse_spec(spec)
    name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", f"{spec_label(spec)}-s{seed}")
    common = [
        sys.executable, "-m", "training", "", "--config", f"configs/{config}.yaml",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--trainer.logger.init_args.save_dir={out_dir}", f"--trainer.logger.init_args.name={name}",
        f"--checkpoint.dirpath={out_dir / name / 'checkpoints'}", f"--seed_everything={seed}", *overrides,
    ]  # fmt: skip
    fit, test = list(common), list(common)
    fit[3], test[3] = "fit", "test"
    started = time.perf_counter()
    best = out_dir / name / "checkpoints" / "best.ckpt"
    try:
        subprocess.run([*fit, "--trainer.logger.init_args.version=fit"], cwd=REPO, check=True, capture_output=True)
        fit_seconds = time.perf_counter() - started
        subprocess.run([*test, "--trainer.logger.init_args.version=test", f"--ckpt_path={best}"], cwd=REPO,
                       check=True, capture_output=True)  # fmt: skip
    except subprocess.CalledProcessError as error:
        print(f"{name}: failed ({error.returncode}):\n{error.stderr.decode(errors='replace')[-2000:]}", flush=True)
        return None
    fit_rows = read_rows(out_dir / name / "fit" / "metrics.csv")
    val_rows = validation_rows(fit_rows)
    best_row = best_validation_row(val_rows)
    best_epoch = int(best_row["epoch"])
    epoch_seconds = [float(r["train/epoch_seconds"]) for r in fit_rows if r.get("train/epoch_seconds")]
    test_row = next(r for r in read_rows(out_dir / name / "test" / "metrics.csv") if r.get("test/slot_f1"))
    losses = [float(r["train/loss_step"]) for r in fit_rows if r.get("train/loss_step")]
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    if checkpoint["epoch"] != best_epoch:
        raise RuntimeError(f"{best} is from epoch {checkpoint['epoch']}, its metrics.csv says {best_epoch}")
    bundle = checkpoint["slotfill_bundle"]
    result = {
        "config": spec_label(spec),
        "seed": seed,
        "test_slot_f1": 100 * float(test_row["test/slot_f1"]),
        "test_intent_accuracy": 100 * float(test_row["test/intent_accuracy"]),
        "test_sentence_accuracy": 100 * float(test_row["test/sentence_accuracy"]),
        "seqeval_slot_f1": 100 * seqeval_f1(out_dir / name / "test" / "predictions.txt"),
        "val_slot_f1": 100 * float(best_row["val/slot_f1"]),
        "val_intent_accuracy": 100 * float(best_row["val/intent_accuracy"]),
        "val_sentence_accuracy": 100 * float(best_row["val/sentence_accuracy"]),
        "best_epoch": best_epoch,
        "epochs": len(val_rows),
        "train_epoch_seconds": statistics.median(epoch_seconds),
        "fit_wall_seconds": fit_seconds,
        "parameters": sum(t.numel() for t in bundle["state_dict"].values()),
        "diverged": not all(math.isfinite(x) for x in losses),
    }
    if abs(result["seqeval_slot_f1"] - result["test_slot_f1"]) > 1e-4:
        raise SystemExit(f"{name}: reported F1 {result['test_slot_f1']} != seqeval {result['seqeval_slot_f1']}")
    print(json.dumps(result), flush=True)
    with open(out_dir / "results.jsonl", "a") as handle:
        handle.write(json.dumps(result) + "\n")
    return result


def collect(specs: list[str], out_dir: Path) -> list[dict]:
    """The newest recorded run of each spec's seeds, from `<out-dir>/results.jsonl`."""
    newest = {}
    for line in (out_dir / "results.jsonl").read_text().splitlines():
        run = json.loads(line)
        newest[(run["config"], run["seed"])] = run
    results = []
    for spec in specs:
        _, _, seeds = parse_spec(spec)
        for seed in seeds:
            key = (spec_label(spec), seed)
            if key not in newest:
                raise SystemExit(f"no recorded run for {key[0]} seed {seed} in {out_dir / 'results.jsonl'}")
            results.append(newest[key])
    return results


def restore_records(out_dir: Path) -> int:
    """Append to `<out-dir>/results.jsonl` every per-run record that docs/benchmarks.md holds and the
    file lacks (each once, in the order the docs list them); returns how many were added."""
    path = out_dir / "results.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    known = {json.dumps(json.loads(line), sort_keys=True) for line in lines if line.strip()}
    added = []
    for block in re.findall(r"Per-run figures:\n\n```\n(.*?)```", DOC.read_text(), re.S):
        for line in block.splitlines():
            if not line.startswith("{"):
                continue
            record = json.loads(line)
            key = json.dumps(record, sort_keys=True)
            if key not in known:
                known.add(key)
                added.append(record)
    with path.open("a") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in added)
    return len(added)


def spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def spread_of(runs: list[dict], key: str, digits: int = 2) -> str:
    """Median (range) of a figure over runs, or — when an older record lacks it."""
    if not all(key in r for r in runs):
        return "—"
    return spread([r[key] for r in runs], digits)


def table(results: list[dict]) -> str:
    lines = [
        "| config | seeds | test slot F1 | intent acc % | sentence acc % | val slot F1 | val intent % | val sentence % "
        "| s / train epoch | fit wall s | best epoch | parameters | diverged |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for config in dict.fromkeys(r["config"] for r in results):
        runs = [r for r in results if r["config"] == config]
        parameters = f"{runs[0]['parameters']:,}" if "parameters" in runs[0] else "—"  # older records lack it
        lines.append(
            f"| {config} | {len(runs)} | {spread([r['test_slot_f1'] for r in runs])} "
            f"| {spread([r['test_intent_accuracy'] for r in runs])} "
            f"| {spread([r['test_sentence_accuracy'] for r in runs])} "
            f"| {spread_of(runs, 'val_slot_f1')} | {spread_of(runs, 'val_intent_accuracy', 1)} "
            f"| {spread_of(runs, 'val_sentence_accuracy', 1)} "
            f"| {spread([r['train_epoch_seconds'] for r in runs], 1)} "
            f"| {spread([r['fit_wall_seconds'] for r in runs], 0)} "
            f"| {', '.join(str(r['best_epoch']) for r in runs)} | {parameters} "
            f"| {'yes' if any(r.get('diverged') for r in runs) else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=["atis-lstm:3", "atis-gru:3", "snips-lstm:1"],
                        help="'config[:seeds] [--key=value ...]', config: a file in configs/ minus .yaml")  # fmt: skip
    parser.add_argument("--out-dir", default="runs/bench", help="where runs write logs and checkpoints")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--section", default="training-bench", help="marker of the docs/benchmarks.md section")
    parser.add_argument("--collect", action="store_true", help="table from results.jsonl; train nothing")
    parser.add_argument("--restore-records", action="store_true",
                        help="rebuild <out-dir>/results.jsonl from docs/benchmarks.md's per-run records")  # fmt: skip
    parser.add_argument("--note", default="", help="a line to add under the table (e.g. how the runs shared the CPU)")
    args = parser.parse_args()
    out_dir = REPO / args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.restore_records:
        print(f"{restore_records(out_dir)} records added to {out_dir / 'results.jsonl'}")
        return
    if args.collect:
        results = collect(args.runs, out_dir)
    else:
        runs = [run_one(spec, seed, out_dir) for spec in args.runs for seed in parse_spec(spec)[2]]
        results = [run for run in runs if run is not None]
    body = (
        f"{table(results)}\n\nMachine: {platform.machine()}, "
        f"{'' if args.collect else f'{torch.get_num_threads()} torch threads, '}"
        f"torch {torch.__version__}, Python {platform.python_version()}; "
        f"run {time.strftime('%Y-%m-%d')} with `python scripts/bench_training.py {shlex.join(sys.argv[1:])}`.\n"
        + (f"{args.note}\n" if args.note else "")
        + "Per-run figures:\n\n```\n"
        + "\n".join(json.dumps(r) for r in results)
        + "\n```"
    )
    print(body)
    if not args.no_doc and DOC.is_file():
        text = DOC.read_text()
        start, end = f"<!-- {args.section}:start -->", f"<!-- {args.section}:end -->"
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        if not pattern.search(text):
            text += f"\n{start}\n{end}\n"
        DOC.write_text(pattern.sub(lambda _: f"{start}\n{body}\n{end}", text))


if __name__ == "__main__":
    main()
