"""`tsmap explain`: where in time a trained VideoMap head looks (the paper's Fig. 8)."""

from __future__ import annotations

import argparse
from pathlib import Path

from tsmap.cli import options
from tsmap.cli.errors import EXIT_CODES, OK, SOME_FAILED, UsageError

DEMO = Path("tsmap-demo")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "explain",
        help="where in time a trained VideoMap head looks: frames, VideoMap, attention, Grad-CAM (Fig. 8)",
        description="Map each video with the run's extraction settings and draw the paper's Fig. 8: sampled "
        "frames, the VideoMap (time across), the attention weights a0 and the Grad-CAM of the head's conv-3 "
        "layer over time, with the top-5 classes. When the action interval is known (--action, or the demo's "
        "dataset.json above the video), the shares of attention and Grad-CAM on it are printed. Writes "
        "OUT/<video>.png and OUT/<video>.json. A video that cannot be read is named and skipped (exit status 1).",
        epilog=EXIT_CODES,
    )
    p.add_argument("videos", type=options.existing_file, nargs="+", metavar="VIDEO", help="video files")
    p.add_argument(
        "--run",
        type=options.folder,
        default=DEMO / "run",
        help="run folder with videomap.pt (`tsmap train` or `tsmap demo`). Default: tsmap-demo/run",
    )
    p.add_argument("--out", type=options.folder, help="output folder. Default: RUN/explain")
    p.add_argument(
        "--class",
        dest="target",
        metavar="NAME",
        help="class whose Grad-CAM to show. Default: the predicted class",
    )
    p.add_argument(
        "--action",
        type=options.non_negative_int,
        nargs=2,
        metavar=("START", "END"),
        help="the action's frames [START, END) in the video, to measure attention and Grad-CAM on it. "
        "Default: from a dataset.json in a folder above the video (the demo's), else none",
    )
    p.add_argument(
        "--layer",
        choices=["conv1", "conv2", "conv3", "block3"],
        default="conv3",
        help="Grad-CAM layer: conv3 (the 3rd conv's ReLU output, T/4 time cells, the paper's 'Conv-3'), "
        "block3 (after its pool, T/8 cells), or the earlier conv1 (T cells, one per row) or conv2 (T/2 cells), "
        "whose cells see fewer rows and so place the evidence more sharply in time. Default: conv3",
    )
    p.add_argument("--frames-shown", type=options.positive_int, default=8, help="video frames drawn on top. Default: 8")
    options.add_device(p)
    options.add_quiet(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tsmap import steps
    from tsmap.data.video import VideoError
    from tsmap.evaluation.explain import explain_video, load_explainer

    if args.action is not None and args.action[0] >= args.action[1]:
        raise UsageError(f"--action {args.action[0]} {args.action[1]}: START must be less than END")
    out = args.out or args.run / "explain"
    options.check_writable(out, "--out")
    explainer = load_explainer(args.run, steps.resolve_device(args.device))
    explainer.class_index(args.target)  # an unknown class is named before any video is read
    status = OK
    for video in args.videos:
        try:
            result = explain_video(
                video,
                explainer,
                out,
                target=args.target,
                layer=args.layer,
                action=tuple(args.action) if args.action is not None else None,
                frames_shown=args.frames_shown,
            )
        except VideoError as exc:
            print(f"{video}: cannot read: {exc.reason}")
            status = SOME_FAILED
            continue
        print(f"{video}:")
        for name, p in result["top5"]:
            print(f"  {p:7.1%}  {name}")
        if result["summary"] is not None:
            print("  " + result["summary"])
        print(f"  figure: {result['figure']}; numbers: {result['numbers']}")
    return status
