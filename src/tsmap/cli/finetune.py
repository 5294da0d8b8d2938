"""`tsmap finetune`: stage 1, the frame ConvNet fine-tuned TSN-style on the training videos."""

from __future__ import annotations

import argparse
import time

from tsmap.cli import options
from tsmap.cli.errors import OK, UsageError
from tsmap.cli.extract import check_flow_options, dataset_from_args

FLIP_CHOICES = ("auto", "on", "off")
# Datasets whose classes keep their meaning mirrored left-right (no direction-specific classes).
MIRROR_SAFE_DATASETS = ("hmdb51", "ucf101")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "finetune",
        help="stage 1: fine-tune the frame ConvNet TSN-style on the training split, for one stream",
        description="The paper's first stage: train the frame ConvNet as TSN does on the dataset's training "
        "videos (K snippets per video from K equal segments, their class scores averaged; partial BN: only the "
        "first BatchNorm layer keeps adapting; dropout before a new linear classifier; multi-scale corner crops "
        "and flips (--flip) drawn once per video; SGD with momentum). Writes OUT/<stream>-<backbone>.pt (for an "
        "official split OUT/split<N>/...), which `tsmap extract --weights` then maps videos with. Resumable: the "
        "state is saved after every epoch. Runs in mixed precision on CUDA; on a CPU only small datasets and image "
        "sizes are practical.",
        epilog="exit status: 0 done (unreadable training videos are skipped and named); 2 user error; 130 interrupted",
    )
    p.add_argument("--videos", type=options.folder, required=True, help="dataset root (as for `tsmap extract`)")
    p.add_argument("--out", type=options.folder, required=True, help="folder for the checkpoint and its training state")
    options.add_dataset(p)
    options.add_split(
        p, "official HMDB51/UCF101 split whose training videos are used (ignored for other datasets). Default: 1"
    )
    options.add_backbone(p)
    options.add_stream(p)
    options.add_frame_geometry(p)
    p.add_argument("--segments", type=options.positive_int, default=3, help="snippets per video, K. Default: 3 (TSN's)")
    p.add_argument(
        "--epochs", type=options.positive_int, default=80, help="training epochs. Default: 80 (TSN's RGB schedule)"
    )
    p.add_argument("--batch-size", type=options.positive_int, default=32, help="videos per mini-batch. Default: 32")
    p.add_argument(
        "--lr", type=options.positive_float, default=0.001, help="base learning rate of SGD. Default: 0.001 (TSN's)"
    )
    p.add_argument(
        "--lr-steps",
        type=options.positive_int,
        nargs="+",
        default=[30, 60],
        metavar="EPOCH",
        help="epochs after which the learning rate is divided by 10. Default: 30 60",
    )
    p.add_argument(
        "--dropout",
        type=options.probability,
        help="dropout before the classifier, in [0, 1). Default: 0.8 for rgb, 0.7 for flow (TSN's)",
    )
    p.add_argument(
        "--no-partial-bn",
        action="store_true",
        help="let every BatchNorm layer adapt (default: partial BN, only the first one does)",
    )
    p.add_argument(
        "--flip",
        choices=FLIP_CHOICES,
        default="auto",
        help="random horizontal flips of the training videos (TSN's augmentation; flow stacks get their x "
        "fields negated). A flip turns a pan right into a pan left, so 'auto' flips on --dataset hmdb51 and "
        "ucf101 (whose classes mean the same mirrored) and not on folder or list datasets, whose classes may "
        "be direction-specific; 'on' if yours are not. Default: auto",
    )
    p.add_argument("--no-flip", dest="flip", action="store_const", const="off", help="the same as --flip off")
    p.add_argument(
        "--workers",
        type=options.non_negative_int,
        default=2,
        help="processes decoding (and computing flow) ahead of training; 0 decodes in the main process. Default: 2",
    )
    options.add_seed(p, "seed of sampling, crops and initialisation. Default: 0")
    options.add_device(p)
    options.add_quiet(p)
    return p


def use_flips(choice: str, dataset: str) -> bool:
    """Whether to flip training videos: 'auto' only where mirrored classes mean the same (HMDB51, UCF101)."""
    return choice == "on" or (choice == "auto" and dataset in MIRROR_SAFE_DATASETS)


def run(args: argparse.Namespace) -> int:
    from tsmap import steps
    from tsmap.finetune.data import SCALES, SnippetDataset
    from tsmap.finetune.train import FinetuneConfig, finetune, finetune_output, finetune_state_path, save_finetuned
    from tsmap.frames.backbones import build_backbone
    from tsmap.frames.flow import make_flow

    check_flow_options(args)
    if args.image_size > args.resize:
        raise UsageError(f"--image-size {args.image_size} is larger than --resize {args.resize}")
    official = args.dataset in ("hmdb51", "ucf101")
    dataset = dataset_from_args(args, split=args.split if official else None)
    clips = dataset.clips("train")
    if not clips:
        raise UsageError(f"--videos {args.videos} has no training videos to fine-tune on")
    options.check_writable(args.out, "--out")
    device = steps.resolve_device(args.device)
    backbone, base_weights = build_backbone(args.backbone, args.stream, args.weights)
    config = FinetuneConfig(
        segments=args.segments,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_steps=sorted(args.lr_steps),
        dropout=args.dropout if args.dropout is not None else (0.7 if args.stream == "flow" else 0.8),
        partial_bn=not args.no_partial_bn,
        scales=list(SCALES),
        flip=use_flips(args.flip, args.dataset),
        seed=args.seed,
    )
    try:
        flow = make_flow(args.flow, args.flow_preset) if args.stream == "flow" else None
    except ImportError as exc:  # TV-L1 without OpenCV's contrib modules: the message names the package
        raise UsageError(str(exc)) from exc
    data = SnippetDataset(
        clips, dataset.root, config.segments, args.image_size, args.resize, flow, config.scales, config.flip, args.seed
    )
    out = finetune_output(args.out, args.stream, args.backbone, args.split if official else None)
    print(
        f"fine-tuning {args.backbone} ({base_weights}) on {len(clips)} {args.stream} training videos of "
        f"{len(dataset.classes)} classes, {config.segments} snippets each, {args.image_size} px, "
        f"flips {'on' if config.flip else 'off'} (--flip {args.flip}), on {device}"
    )
    start = time.perf_counter()
    model, history, skipped = finetune(
        backbone,
        args.backbone,
        args.stream,
        data,
        len(dataset.classes),
        config,
        device=device,
        workers=args.workers,
        state_path=finetune_state_path(out),
        show_progress=not args.quiet,
        source=dataset.spec,
    )
    save_finetuned(
        out, model, args.backbone, args.stream, dataset.classes, base_weights, config, history, data, dataset.spec
    )
    first, last = history[0], history[-1]
    print(
        f"fine-tuned in {time.perf_counter() - start:.0f} s: training loss {first['loss']:.3f} -> {last['loss']:.3f}, "
        f"training top-1 {first['train_top1'] * 100:.1f}% -> {last['train_top1'] * 100:.1f}% "
        f"(epoch 1 -> {last['epoch']})"
    )
    for path, reason in skipped.items():
        print(f"  skipped (unreadable): {path}: {reason}")
    stream = f" --stream {args.stream}" if args.stream == "flow" else ""
    print(f"wrote {out}")
    print(f"next: tsmap extract --videos {args.videos} --store MAPS --backbone {args.backbone}{stream} --weights {out}")
    return OK
