"""`tsmap predict`: the top classes of new videos."""

from __future__ import annotations

import argparse

from tsmap.cli import options
from tsmap.cli.errors import EXIT_CODES, OK, SOME_FAILED


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "predict",
        help="top classes of new videos",
        description="Map each video with the run's extraction settings and print its top classes with "
        "probabilities. A video that cannot be read is named and skipped (exit status 1).",
        epilog=EXIT_CODES,
    )
    p.add_argument("videos", type=options.existing_file, nargs="+", metavar="VIDEO", help="video files")
    p.add_argument("--run", type=options.folder, required=True, help="run folder made by `tsmap train`")
    p.add_argument(
        "--head", choices=["videomap", "tsn"], default="videomap", help="which trained head. Default: videomap"
    )
    p.add_argument("--top", type=options.positive_int, default=5, help="how many classes to print. Default: 5")
    options.add_device(p)
    options.add_quiet(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tsmap import steps
    from tsmap.data.video import VideoError

    status = OK
    for video in args.videos:
        try:
            top = steps.predict_video(video, args.run, head=args.head, top=args.top, device=args.device)
        except VideoError as exc:
            print(f"{video}: cannot read: {exc.reason}")
            status = SOME_FAILED
            continue
        print(f"{video}:")
        for name, p in top:
            print(f"  {p:7.1%}  {name}")
    return status
