"""`tsmap extract`: every video of a dataset into a VideoMap store."""

from __future__ import annotations

import argparse

from tsmap.cli import options
from tsmap.cli.errors import EXIT_CODES, OK, SOME_FAILED, UsageError


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "extract",
        help="turn every video of a dataset into a VideoMap in a store",
        description="Decode T frames per video (uniformly over the whole video), encode each with the "
        "frame ConvNet, and store the T x L map. Resumable: videos already in the store are skipped; "
        "unreadable videos are reported and skipped (exit status 1), or stop the run with --strict.",
        epilog=EXIT_CODES,
    )
    options.add_videos(p)
    p.add_argument("--store", type=options.folder, required=True, help="VideoMap store folder (created if missing)")
    p.add_argument(
        "--frames", type=options.positive_int, default=256, help="frames per VideoMap, T. Default: 256 (the paper's)"
    )
    options.add_backbone(p)
    options.add_frame_geometry(p)
    p.add_argument("--batch-size", type=options.positive_int, default=16, help="frames per ConvNet batch. Default: 16")
    options.add_engine(p)
    options.add_dataset(p)
    p.add_argument(
        "--split",
        type=int,
        choices=[1, 2, 3],
        help="--dataset hmdb51/ucf101: map only this official split's videos, into a store of its own (as a "
        "ConvNet fine-tuned on one split's training videos must). Default: the videos of every split, in one store",
    )
    p.add_argument(
        "--remap-changed",
        action="store_true",
        help="map again the videos whose file changed since their map was made (another size or content); "
        "without it, extraction into a store whose videos changed stops and lists them",
    )
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable video instead of skipping it")
    p.add_argument(
        "--views",
        type=options.positive_int,
        default=1,
        metavar="N",
        help="map N crops of every video (RGB only): the centre one, then the top-left, top-right, "
        "bottom-left and bottom-right corners, up to 5. `tsmap train` then trains on a view drawn at random "
        "each epoch, and validation and `tsmap evaluate` average the scores of every view (TSN's multi-crop "
        "testing). Costs N times the extraction. A store keeps the views it was made with; a single-view "
        "store takes more. Default: 1",
    )
    p.add_argument(
        "--flip-views",
        action="store_true",
        help="also map each view mirrored left to right (2N views). A mirror turns a pan right into a pan "
        "left and a clockwise turn into an anticlockwise one: leave it off when classes differ by direction",
    )
    options.add_stream(p)
    options.add_device(p)
    options.add_quiet(p)
    return p


def check_flow_options(args: argparse.Namespace) -> None:
    """A --flow-preset the --flow method has (only with --stream flow)."""
    from tsmap.frames.flow import PRESETS

    if args.stream != "flow":
        return
    if args.flow_preset is not None and args.flow_preset not in PRESETS[args.flow]:
        choices = ", ".join(PRESETS[args.flow])
        raise UsageError(f"--flow {args.flow} has the presets {choices}, not {args.flow_preset}")


def views_from_args(args: argparse.Namespace):
    """The views --views and --flip-views ask for (RGB only)."""
    from tsmap.data.video import CROP_POSITIONS, Views

    if args.views > len(CROP_POSITIONS):
        raise UsageError(f"--views takes 1 to {len(CROP_POSITIONS)} crops (the centre and 4 corners), not {args.views}")
    if args.stream == "flow" and (args.views > 1 or args.flip_views):
        raise UsageError("--views and --flip-views map RGB crops; leave them out with --stream flow")
    return Views(args.views, args.flip_views)


def check_engine(args: argparse.Namespace) -> None:
    if args.engine == "onnx" and args.device not in ("auto", "cpu"):
        raise UsageError(f"--engine onnx runs on the CPU only, not --device {args.device}; use --engine torch")


def dataset_from_args(args: argparse.Namespace, split: int | None = None):
    """The dataset the --videos/--dataset options name; warnings (duplicates, overlaps) printed."""
    from tsmap.data.datasets import dataset_for_extraction

    dataset = dataset_for_extraction(
        args.dataset,
        args.videos,
        splits_dir=args.splits,
        test_fraction=args.test_fraction,
        seed=args.split_seed,
        train_list=args.train_list,
        test_list=args.test_list,
        classes_file=args.classes,
        split=split,
    )
    for line in dataset.problems:
        print(f"warning: {line}")
    return dataset


def run(args: argparse.Namespace) -> int:
    from tsmap import steps
    from tsmap.steps import tables

    check_flow_options(args)
    check_engine(args)
    views = views_from_args(args)
    dataset = dataset_from_args(args, split=args.split if args.dataset in ("hmdb51", "ucf101") else None)
    options.check_writable(args.store, "--store")
    extract_options = steps.ExtractOptions(
        frames=args.frames,
        backbone=args.backbone,
        weights=args.weights,
        image_size=args.image_size,
        resize=args.resize,
        batch_size=args.batch_size,
        device=args.device,
        strict=args.strict,
        engine=args.engine,
        stream=args.stream,
        flow=args.flow,
        flow_preset=args.flow_preset,
        remap_changed=args.remap_changed,
        views=views,
    )
    try:
        store, summary = steps.extract(dataset, args.store, extract_options, show_progress=not args.quiet)
    except ImportError as exc:  # TV-L1 without OpenCV's contrib modules: the message names the package
        raise UsageError(str(exc)) from exc
    print(tables.format_extraction(summary, store))
    if summary.failed:
        print(f"{len(summary.failed)} video(s) failed: the store lacks their maps (exit status 1)")
        return SOME_FAILED
    return OK
