"""`tsmap evaluate`: trained heads scored on the test split; table, JSON, confusion PNG/CSV."""

from __future__ import annotations

import argparse

from tsmap.cli import options
from tsmap.cli.errors import EXIT_CODES_NO_FAILURES, OK


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate",
        help="score trained heads on the test split; table, JSON, confusion PNG/CSV",
        description="Top-1, top-5 and mean class accuracy of every head in RUN, written to RUN/results.json "
        "with confusion matrices (PNG and CSV).",
        epilog=EXIT_CODES_NO_FAILURES,
    )
    options.add_store(p, several_splits=True)
    p.add_argument("--run", type=options.folder, required=True, help="run folder made by `tsmap train`")
    p.add_argument(
        "--subset",
        choices=["test", "val", "train"],
        default="test",
        help="which videos to score: test, val (the validation videos the heads held out) or train. Default: test",
    )
    options.add_device(p)
    options.add_quiet(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tsmap import steps
    from tsmap.cli.errors import UsageError
    from tsmap.fileio import write_json
    from tsmap.steps import tables
    from tsmap.videomap.store import VideoMapStore

    if len(args.store) not in (1, len(args.split)):
        raise UsageError(
            f"--store: give one store, or one per split of --splits ({len(args.split)}), not {len(args.store)}"
        )
    if len(set(args.split)) != len(args.split):
        raise UsageError(f"--splits: each split once, got {' '.join(map(str, args.split))}")
    opened = [VideoMapStore.open(s) for s in args.store]
    stores = dict(zip(args.split, opened if len(opened) > 1 else opened * len(args.split), strict=True))
    for split in args.split:
        options.check_writable(steps.run_folder(args.run, stores[split], split), "--run")
    per_split = {}
    for split in args.split:
        store = stores[split]
        run_dir = steps.run_folder(args.run, store, split)
        per_split[split] = steps.evaluate(store, run_dir, split=args.subset, device=args.device, official_split=split)
        if len(args.split) > 1:
            print(f"split {split}:")
        print(tables.format_table(per_split[split]))
        print(f"results: {run_dir / 'results.json'}; confusion matrices: {run_dir}/confusion_*.png")
    if len(per_split) > 1:
        summary = steps.mean_over_splits(per_split)
        write_json(args.run / "results_mean.json", summary)
        print("\ntop-1 per split and means over the splits:")
        print(tables.format_splits_table(summary))
        print(f"results: {args.run / 'results_mean.json'}")
    return OK
