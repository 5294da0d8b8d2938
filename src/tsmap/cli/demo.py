"""`tsmap demo`: the whole method, offline, on the built-in "arrow of time" dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from tsmap.cli import options
from tsmap.cli.errors import EXIT_CODES, OK, SOME_FAILED


def _streams(text: str) -> tuple[str, ...]:
    streams = {s.strip() for s in text.split(",") if s.strip()}
    if streams not in ({"rgb"}, {"rgb", "flow"}):
        raise argparse.ArgumentTypeError(f"must be 'rgb' or 'rgb,flow', got {text!r}")
    return tuple(s for s in ("rgb", "flow") if s in streams)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="generate the built-in dataset, extract, train both heads, evaluate",
        description="Run the whole method offline on the built-in 'arrow of time' dataset: classes "
        "whose videos are each other's time reversal, which only a model that reads frames in order "
        "can tell apart. Prints the VideoMap head vs TSN table and writes results, plots and checkpoints.",
        epilog=EXIT_CODES,
    )
    p.add_argument(
        "--out",
        type=options.folder,
        default=Path("tsmap-demo"),
        help="output folder (videos, store, run). Default: ./tsmap-demo",
    )
    p.add_argument(
        "--frames",
        type=options.positive_int,
        default=32,
        help="frames per VideoMap, T. Default: 32 (real datasets use 256)",
    )
    p.add_argument(
        "--train-per-class", type=options.positive_int, default=64, help="training videos per class. Default: 64"
    )
    p.add_argument("--test-per-class", type=options.positive_int, default=12, help="test videos per class. Default: 12")
    p.add_argument("--epochs", type=options.positive_int, default=15, help="epochs of the VideoMap head. Default: 15")
    options.add_seed(p, "seed of the generated videos and of training. Default: 0")
    p.add_argument(
        "--streams",
        type=_streams,
        default=("rgb",),
        metavar="rgb|rgb,flow",
        help="'rgb': the arrow-of-time demo; 'rgb,flow': it adds classes that only motion tells apart, maps "
        "both streams (flow: DIS at the demo's size), trains both heads on each, evaluates and fuses them "
        "(RGB : flow = 1 : 1.5). Outputs in OUT/two_stream. Default: rgb",
    )
    options.add_device(p)
    options.add_quiet(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tsmap.demo import DemoOptions, run_demo

    options.check_writable(args.out, "--out")
    outcome = run_demo(
        DemoOptions(
            out=args.out,
            frames=args.frames,
            train_per_class=args.train_per_class,
            test_per_class=args.test_per_class,
            epochs=args.epochs,
            seed=args.seed,
            streams=args.streams,
            device=args.device,
            show_progress=not args.quiet,
        )
    )
    if outcome.failed:
        print(f"{len(outcome.failed)} video(s) could not be mapped (listed above); the figures leave them out")
        return SOME_FAILED
    return OK
