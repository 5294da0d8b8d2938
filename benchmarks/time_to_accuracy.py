"""Time to accuracy: wall time until validation top-1 is within a point of its best, paper vs default schedule.

    python benchmarks/time_to_accuracy.py [--out DIR] [--per-class 250] [--frames 256]
        [--schedules paper cosine] [--epochs paper=100] [--tolerance 1.0]
    python benchmarks/time_to_accuracy.py --store MAPS ...      # any store with a train/test split

Without ``--store`` it builds one: the built-in demo dataset at scale (``--per-class`` videos a
class, 80 % training, 12 classes: 250 gives 3,000 videos, about HMDB51's 3,570 training
videos), extracted by ``tsmap extract`` at T = ``--frames`` (EfficientNet-Lite0, 128 px, as the
demo). Building is skipped for videos and maps already there.

Then, for each schedule, it runs ``tsmap train --schedule S --head videomap`` in a fresh process,
as a user does: the head keeps its best epoch on the validation videos that ``tsmap train``
carves from the training list (10 %). From the checkpoint's history (every epoch's validation
top-1 and the wall seconds since training began) it reports

  the best validation top-1 and its epoch; the wall time (and epoch) at which validation first
  came within ``--tolerance`` points of that best ("time to plateau"); the same against the
  best of all schedules; the whole run's time; and the test top-1 of the kept head
  (``tsmap evaluate``), read once, after every schedule has trained.

The ratio "paper / default" of the times to plateau is the speed-up the speed issue asks for.
``--epochs paper=40`` caps a schedule to fit a session (the figure is then a lower bound on its
time, and says so). The machine's load average is recorded with the figures, which go to
``benchmarks/results/time_to_accuracy.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from machine import machine_record, save_results, saved_runs

from tsmap.data.synthetic import DemoConfig, generate_demo_dataset

TSMAP = [sys.executable, "-m", "tsmap"]
IMAGE_SIZE = 128  # the demo's


def build_store(out: Path, per_class: int, frames: int) -> Path:
    """The demo dataset at ``per_class`` videos a class (80 % training), mapped at T = ``frames``."""
    test = max(1, per_class // 5)
    config = DemoConfig(train_per_class=per_class - test, test_per_class=test)
    videos, store = out / "videos", out / f"store-T{frames}"
    start = time.perf_counter()
    generate_demo_dataset(videos, config)
    made = time.perf_counter() - start
    start = time.perf_counter()
    command = ["extract", "--videos", str(videos), "--store", str(store), "--frames", str(frames)]
    run([*command, "--image-size", str(IMAGE_SIZE), "--resize", str(IMAGE_SIZE)])
    print(f"videos: {made:.0f} s, extraction: {time.perf_counter() - start:.0f} s", flush=True)
    return store


def run(args: list[str]) -> None:
    """One tsmap command; its output streams to ours; stops on a failure."""
    done = subprocess.run([*TSMAP, *args])
    if done.returncode:
        raise SystemExit(f"time_to_accuracy: `tsmap {' '.join(args)}` exited with {done.returncode}")


def plateau(history: list[dict], best: float, tolerance: float) -> dict:
    """The first epoch whose validation top-1 is within ``tolerance`` points of ``best`` (%)."""
    for record in history:
        if record["val_top1"] * 100 >= best - tolerance:
            return {"epoch": record["epoch"], "seconds": record["seconds"]}
    return {"epoch": None, "seconds": None}


def train(store: Path, runs: Path, schedule: str, epochs: int | None) -> dict:
    """``tsmap train --schedule`` in its own process; the history of the head it saved."""
    folder = runs / schedule
    command = ["train", "--store", str(store), "--run", str(folder), "--schedule", schedule, "--head", "videomap"]
    run([*command, *(["--epochs", str(epochs)] if epochs else [])])
    extra = torch.load(folder / "videomap.pt", weights_only=True, map_location="cpu")["extra"]
    if not all("val_top1" in r for r in extra["history"]):
        raise SystemExit(f"time_to_accuracy: {folder} has no validation figures (too few training videos a class)")
    return {"run": str(folder), "history": extra["history"], "config": extra["train_config"]}


def test_top1(store: Path, folder: Path) -> float:
    """Test top-1 of the kept VideoMap head (``tsmap evaluate``), in %."""
    run(["evaluate", "--store", str(store), "--run", str(folder)])
    results = json.loads((folder / "results.json").read_text())
    return float(results["heads"]["videomap"]["top1"]) * 100


def summarize(name: str, entry: dict, tolerance: float, overall_best: float) -> dict:
    history = entry["history"]
    best = max(r["val_top1"] for r in history) * 100
    best_epoch = next(r["epoch"] for r in history if r["val_top1"] * 100 == best)
    return {
        "schedule": name,
        "epochs_run": len(history),
        "epochs_planned": entry["config"]["epochs"],
        "best_val_top1": best,
        "best_epoch": best_epoch,
        "to_own_plateau": plateau(history, best, tolerance),
        "to_overall_plateau": plateau(history, overall_best, tolerance),
        "train_seconds": history[-1]["seconds"],
        "seconds_per_epoch": history[-1]["seconds"] / len(history),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--out", type=Path, default=Path("time-to-accuracy"), help="working folder (default ./time-to-accuracy)"
    )
    p.add_argument("--store", type=Path, default=None, help="an existing store to train on (default: build one)")
    p.add_argument("--per-class", type=int, default=250, help="videos a class when building (default 250: 3,000)")
    p.add_argument("--frames", type=int, default=256, help="T when building (default 256, the paper's)")
    p.add_argument("--schedules", nargs="+", default=["paper", "cosine"], choices=["paper", "cosine"])
    p.add_argument(
        "--epochs",
        nargs="+",
        default=[],
        metavar="SCHEDULE=N",
        help="cap a schedule's epochs, e.g. paper=40 (default: each schedule's own)",
    )
    p.add_argument("--tolerance", type=float, default=1.0, help="points below the best that count (default 1)")
    p.add_argument("--tag", default=None, help="results entry name (default: the store's folder name)")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()
    caps = {}
    for item in args.epochs:
        name, _, value = item.partition("=")
        if name not in args.schedules or not value.isdigit():
            p.error(f"--epochs {item}: expected SCHEDULE=N with SCHEDULE one of {', '.join(args.schedules)}")
        caps[name] = int(value)

    load_start = os.getloadavg()
    store = args.store or build_store(args.out, args.per_class, args.frames)
    trained = {s: train(store, args.out / "runs" / store.name, s, caps.get(s)) for s in args.schedules}
    # The test split, once, after every schedule has been trained and its epoch kept.
    tests = {s: test_top1(store, Path(t["run"])) for s, t in trained.items()}
    overall = max(r["val_top1"] for t in trained.values() for r in t["history"]) * 100
    rows = {s: summarize(s, t, args.tolerance, overall) | {"test_top1": tests[s]} for s, t in trained.items()}
    load_end = os.getloadavg()

    print(f"\nstore {store}; validation plateau = within {args.tolerance} point of the best")
    print(
        f"{'schedule':8s} {'epochs':>9s} {'s/epoch':>8s} {'best val':>9s} {'(epoch)':>7s} "
        f"{'to plateau':>14s} {'to overall':>14s} {'test':>6s}"
    )
    for name, r in rows.items():
        own, over = r["to_own_plateau"], r["to_overall_plateau"]
        capped = "*" if name in caps else " "
        over_text = f"{over['seconds']:7.0f} s (ep {over['epoch']})" if over["seconds"] else "not reached"
        print(
            f"{name:8s} {r['epochs_run']:>8d}{capped} {r['seconds_per_epoch']:8.1f} {r['best_val_top1']:9.1f} "
            f"{r['best_epoch']:>7d} {own['seconds']:7.0f} s (ep {own['epoch']}) {over_text:>14s} {r['test_top1']:6.1f}"
        )
    if caps:
        print("* capped by --epochs: its plateau is not known to be reached, its time is a lower bound")
    if "paper" in rows and "cosine" in rows:
        ratio = rows["paper"]["to_own_plateau"]["seconds"] / rows["cosine"]["to_own_plateau"]["seconds"]
        print(f"paper / default, time to its own plateau: {ratio:.2f} x")
    print(f"load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end")
    if not args.no_save:
        record = {
            "store": str(store),
            "tolerance": args.tolerance,
            "caps": caps,
            "rows": rows,
            "histories": {s: t["history"] for s, t in trained.items()},
            "load_average": {"start": list(load_start), "end": list(load_end)},
            "machine_at_end": machine_record(),
        }
        save_results("time_to_accuracy", {"runs": saved_runs("time_to_accuracy") | {args.tag or store.name: record}})


if __name__ == "__main__":
    main()
