"""`tsmap fuse`: two-stream fusion of an evaluated RGB run and flow run (the paper's Table I)."""

from __future__ import annotations

import argparse

from tsmap.cli import options
from tsmap.cli.errors import EXIT_CODES_NO_FAILURES, OK


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "fuse",
        help="two-stream fusion of an evaluated RGB run and flow run (the paper's Table I)",
        description="Fuse the test scores of an RGB run and a flow run, each evaluated with `tsmap evaluate`, "
        "head by head: a weighted sum of each stream's scores, aligned by video. Prints top-1 of RGB, "
        "flow and fusion for the VideoMap head and TSN, and writes OUT/fusion.json (also top-5 and mean "
        "class accuracy) and the fused VideoMap head's confusion matrix.",
        epilog=EXIT_CODES_NO_FAILURES,
    )
    p.add_argument(
        "--runs",
        type=options.folder,
        nargs=2,
        required=True,
        metavar=("RGB_RUN", "FLOW_RUN"),
        help="the RGB run folder, then the flow run folder (for HMDB51/UCF101, RUN/split<N>)",
    )
    weights = p.add_mutually_exclusive_group()
    weights.add_argument(
        "--weights",
        type=options.non_negative_float,
        nargs=2,
        default=[1.0, 1.5],
        metavar=("W_RGB", "W_FLOW"),
        help="stream weights, finite numbers >= 0. Default: 1 1.5 (TSN's)",
    )
    weights.add_argument(
        "--choose-weights",
        action="store_true",
        help="choose each head's flow weight (RGB's is 1) on validation scores instead: of 0 (RGB alone), 0.25, "
        "0.5, ... 4 (tsmap.evaluation.fusion.FLOW_WEIGHT_GRID), the one with the best top-1, then log-loss. "
        "Both runs must have been evaluated with `tsmap evaluate --subset val` (test scores are refused: a "
        "weight chosen on them would make the test figure a tuned one); then evaluate test and fuse with "
        "--weights 1 W",
    )
    p.add_argument(
        "--scores",
        choices=["softmax", "raw"],
        default="raw",
        help="what is summed: 'raw' (the pre-softmax scores, as TSN's eval_scores.py: ranks classes as the sum "
        "of the streams' log-probabilities, so a stream counts in proportion to how sure it is) or 'softmax' "
        "(each stream's probabilities: a weighted mean). Default: raw",
    )
    p.add_argument(
        "--out",
        type=options.folder,
        help="where fusion.json and the plots go. Default: a folder 'fusion' next to RGB_RUN",
    )
    options.add_quiet(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tsmap import steps
    from tsmap.steps import tables
    from tsmap.steps.common import HEAD_LABELS

    rgb_run, flow_run = args.runs
    out = args.out if args.out is not None else rgb_run.parent / "fusion"
    options.check_writable(out, "--out")
    summary = steps.fuse(rgb_run, flow_run, out, tuple(args.weights), args.scores, choose=args.choose_weights)
    print(tables.format_fusion_table(summary))
    if args.choose_weights:
        chosen = " and ".join(
            f"{HEAD_LABELS[h]} --weights 1 {f['weights']['flow']:g}" for h, f in summary["heads"].items()
        )
        print(f"chosen on {summary['num_videos']} validation videos; fuse the test scores with {chosen}")
    print(
        f"fused {args.scores} scores of {summary['num_videos']} {summary['split']} videos; "
        f"results: {out / 'fusion.json'}; confusion matrix: {out / 'confusion_fusion_videomap.png'}"
    )
    return OK
