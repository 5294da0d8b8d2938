"""What each CLI command does, on top of ``tsmap.steps``."""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import torch
from tqdm import tqdm

from tsmap import distributed, steps
from tsmap.data.datasets import DatasetError, VideoDataset, dataset_for_extraction
from tsmap.data.synthetic import DemoConfig, generate_demo_dataset
from tsmap.data.video import VideoError
from tsmap.evaluation.fusion import FusionError
from tsmap.fileio import write_json
from tsmap.frames.backbones import BackboneError
from tsmap.frames.flow import PRESETS, make_flow
from tsmap.frames.onnx_runtime import usable_cores
from tsmap.report_cli import cmd_explain, cmd_report
from tsmap.steps import tables
from tsmap.training import TrainConfig
from tsmap.videomap.extract import ExtractionAborted, ExtractionSummary
from tsmap.videomap.store import StoreError, VideoMapStore

# Mistakes a user can make: reported in one line, without a traceback.


class UsageError(Exception):
    """A command used in a way it does not support."""


USER_ERRORS = (
    DatasetError,
    StoreError,
    VideoError,
    ExtractionAborted,
    FileNotFoundError,
    FloatingPointError,
    UsageError,
    FusionError,
    BackboneError,
)

# The demo's videos are 112-160 pixels on a side: encode them at 128 rather than
# upscaling to 224 (3x fewer FLOPs per frame, same information).
DEMO_IMAGE_SIZE = 128
DEMO_BATCH = 16


def print_problems(dataset: VideoDataset) -> None:
    """What did not stop the dataset but deserves a look (duplicates, overlaps, missing videos)."""
    for line in dataset.problems:
        print(f"warning: {line}")


def print_extraction(summary: ExtractionSummary, store: VideoMapStore) -> None:
    size = sum(p.stat().st_size for p in store.maps_dir.rglob("*.npy")) if store.maps_dir.is_dir() else 0
    unit = "flow stacks" if store.settings.get("stream") == "flow" else "frames"
    print(
        f"extraction: {summary.done} mapped, {summary.skipped} already in the store, {len(summary.failed)} failed; "
        f"{summary.seconds:.1f} s ({summary.frames_per_second:.0f} {unit}/s on {summary.engine}); "
        f"store {store.root} is {size / 2**20:.1f} MiB"
    )
    for key, reason in summary.failed.items():
        print(f"  failed: {key}: {reason}")
    if summary.failed:
        print(f"  (listed in {store.root / 'failures.jsonl'})")


def dataset_from_args(args: argparse.Namespace, split: int | None = None) -> VideoDataset:
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
    print_problems(dataset)
    return dataset


def check_flow_options(args: argparse.Namespace) -> None:
    if args.stream != "flow":
        return
    if args.flow_preset is not None and args.flow_preset not in PRESETS[args.flow]:
        choices = ", ".join(PRESETS[args.flow])
        raise UsageError(f"--flow {args.flow} has the presets {choices}, not {args.flow_preset}")


def cmd_extract(args: argparse.Namespace) -> int:
    dataset = dataset_from_args(args)
    check_flow_options(args)
    options = steps.ExtractOptions(
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
    )
    try:
        store, summary = steps.extract(dataset, args.store, options, show_progress=not args.quiet)
    except ImportError as exc:  # TV-L1 without OpenCV's contrib modules: the message names the package
        raise UsageError(str(exc)) from exc
    print_extraction(summary, store)
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from tsmap.frames.backbones import build_backbone
    from tsmap.frames.finetune import FinetuneConfig, finetune, save_finetuned
    from tsmap.frames.finetune_data import SCALES, SnippetDataset

    check_flow_options(args)
    dataset = dataset_from_args(args, split=args.split if args.dataset in ("hmdb51", "ucf101") else None)
    clips = dataset.clips("train")
    if not clips:
        raise UsageError(f"{args.videos} has no training videos to fine-tune on")
    for name, value in (("--segments", args.segments), ("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    if args.image_size > args.resize:
        raise UsageError(f"--image-size {args.image_size} is larger than --resize {args.resize}")
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
        flip=not args.no_flip,
        seed=args.seed,
    )
    flow = make_flow(args.flow, args.flow_preset) if args.stream == "flow" else None
    data = SnippetDataset(
        clips, dataset.root, config.segments, args.image_size, args.resize, flow, config.scales, config.flip, args.seed
    )
    out = args.out / f"{args.stream}-{args.backbone}.pt"
    print(
        f"fine-tuning {args.backbone} ({base_weights}) on {len(clips)} {args.stream} training videos of "
        f"{len(dataset.classes)} classes, {config.segments} snippets each, {args.image_size} px, on {device}"
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
        state_path=args.out / f".{out.stem}.training-state.pt",
        show_progress=not args.quiet,
    )
    save_finetuned(out, model, args.backbone, args.stream, dataset.classes, base_weights, config, history, data)
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
    return 0


def train_configs(args: argparse.Namespace) -> dict[str, TrainConfig]:
    base = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_step=args.lr_step,
        temporal_crop=args.temporal_crop,
        micro_batch=args.micro_batch,
        seed=args.seed,
    )
    return {"videomap": base, "tsn": base}


def cmd_train(args: argparse.Namespace) -> int:
    store = VideoMapStore.open(args.store)
    heads = list(steps.HEADS) if args.head == "both" else [args.head]
    run = steps.run_folder(args.run, store, args.split)
    histories = steps.train(
        store,
        run,
        heads,
        train_configs(args),
        attention=args.attention,
        attention_scoring=args.attention_scoring,
        device=args.device,
        show_progress=not args.quiet,
        official_split=args.split,
        force=args.force,
        memory_budget_gib=args.memory_budget,
    )
    for kind, history in histories.items():
        last = history[-1]
        print(
            f"{kind}: {len(history)} epochs, final loss {last['loss']:.3f}, train top-1 {last['train_top1']:.1%} "
            f"-> {run / (kind + '.pt')}"
        )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    store = VideoMapStore.open(args.store)
    per_split = {}
    for split in args.split:
        run = steps.run_folder(args.run, store, split)
        per_split[split] = steps.evaluate(store, run, split=args.subset, device=args.device, official_split=split)
        if len(args.split) > 1:
            print(f"split {split}:")
        print(tables.format_table(per_split[split]))
        print(f"results: {run / 'results.json'}; confusion matrices: {run}/confusion_*.png")
    if len(per_split) > 1:
        summary = steps.mean_over_splits(per_split)
        write_json(args.run / "results_mean.json", summary)
        print("\ntop-1 per split and means over the splits:")
        print(tables.format_splits_table(summary))
        print(f"results: {args.run / 'results_mean.json'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    status = 0
    for video in args.videos:
        try:
            top = steps.predict_video(video, args.run, head=args.head, top=args.top, device=args.device)
        except VideoError as exc:
            print(f"{video}: cannot read: {exc.reason}")
            status = 1
            continue
        print(f"{video}:")
        for name, p in top:
            print(f"  {p:7.1%}  {name}")
    return status


def cmd_fuse(args: argparse.Namespace) -> int:
    rgb_run, flow_run = args.runs
    out = args.out if args.out is not None else rgb_run.parent / "fusion"
    summary = steps.fuse(rgb_run, flow_run, out, tuple(args.weights), args.scores)
    print(tables.format_fusion_table(summary))
    print(
        f"fused {args.scores} scores of {summary['num_videos']} {summary['split']} videos; "
        f"results: {out / 'fusion.json'}; confusion matrix: {out / 'confusion_fusion_videomap.png'}"
    )
    return 0


def demo_train_configs(num_train: int, args: argparse.Namespace) -> dict[str, TrainConfig]:
    # A short schedule for ~770 maps: the paper's SGD at half its lr (batches of 16, not
    # 128), stronger weight decay for the small set, and one step decay after 70 %.
    steps_per_epoch = -(-num_train // DEMO_BATCH)
    return {
        "videomap": TrainConfig(
            epochs=args.epochs,
            batch_size=DEMO_BATCH,
            lr=0.005,
            weight_decay=2e-3,
            lr_step=max(1, int(0.7 * args.epochs)) * steps_per_epoch,
            seed=args.seed,
        ),
        "tsn": TrainConfig(epochs=60, batch_size=32, lr=0.01, lr_step=10_000, seed=args.seed),
    }


def cmd_demo(args: argparse.Namespace) -> int:
    if "flow" in args.streams:
        return demo_two_streams(args)
    out: Path = args.out
    start = time.perf_counter()
    config = DemoConfig(train_per_class=args.train_per_class, test_per_class=args.test_per_class, seed=args.seed)
    total = len(config.classes) * (config.train_per_class + config.test_per_class)
    print(f"[1/4] generating {total} videos of {len(config.classes)} classes in {out / 'videos'}")
    with tqdm(total=total, desc="videos", unit="video", disable=args.quiet, dynamic_ncols=True) as bar:
        generate_demo_dataset(out / "videos", config, progress=bar.update)

    print(f"[2/4] extracting VideoMaps (T = {args.frames}, EfficientNet-Lite0 at {DEMO_IMAGE_SIZE} px)")
    dataset = dataset_for_extraction("folder", out / "videos")
    options = steps.ExtractOptions(
        frames=args.frames, image_size=DEMO_IMAGE_SIZE, resize=DEMO_IMAGE_SIZE, device=args.device
    )
    store, summary = steps.extract(dataset, out / "store", options, show_progress=not args.quiet)
    print_extraction(summary, store)

    print("[3/4] training the VideoMap head (A0A1A2 attention) and the TSN baseline on the same features")
    configs = demo_train_configs(len(dataset.clips("train")), args)
    run = out / "run"
    steps.train(store, run, list(steps.HEADS), configs, device=args.device, show_progress=not args.quiet)

    print("[4/4] evaluating on the test split")
    results = steps.evaluate(store, run, device=args.device)
    print()
    print(tables.format_table(results))
    print()
    print("'order pairs': classes whose videos are time reversals of each other (grow/shrink, ...);")
    print("frame averaging cannot tell them apart, a VideoMap read in time order can.")
    print(
        f"done in {time.perf_counter() - start:.0f} s. results: {run / 'results.json'}, "
        f"confusion matrices: {run}/confusion_*.png, checkpoints: {run}/videomap.pt, {run}/tsn.pt"
    )
    example = next(iter(dataset.clips("test"))).key
    print(f"try: tsmap predict {out / 'videos' / example} --run {run}")
    return 0


def _train_demo_stream(store_dir: Path, run_dir: Path, configs: dict[str, TrainConfig], threads: int) -> None:
    """Both heads on one stream's store, on CPU with ``threads`` PyTorch threads (run in a child process)."""
    torch.set_num_threads(threads)
    store = VideoMapStore.open(store_dir)
    steps.train(store, run_dir, list(steps.HEADS), configs, device="cpu", show_progress=False)


def demo_two_streams(args: argparse.Namespace) -> int:
    """The demo with motion classes added, both streams mapped, trained, evaluated and fused."""
    out: Path = args.out / "two_stream"
    start = time.perf_counter()
    stages: dict[str, float] = {}
    config = DemoConfig(
        train_per_class=args.train_per_class, test_per_class=args.test_per_class, seed=args.seed, motion=True
    )
    total = len(config.classes) * (config.train_per_class + config.test_per_class)
    print(
        f"[1/6] generating {total} videos of {len(config.classes)} classes in {out / 'videos'} "
        "(the arrow-of-time classes, and 4 that only the direction of motion tells apart)"
    )
    with tqdm(total=total, desc="videos", unit="video", disable=args.quiet, dynamic_ncols=True) as bar:
        generate_demo_dataset(out / "videos", config, progress=bar.update)
    stages["generate videos"] = time.perf_counter() - start
    dataset = dataset_for_extraction("folder", out / "videos")

    stores = {}
    for step, stream in ((2, "rgb"), (3, "flow")):
        what = (
            f"RGB VideoMaps (T = {args.frames}, EfficientNet-Lite0 at {DEMO_IMAGE_SIZE} px)"
            if stream == "rgb"
            else f"flow VideoMaps (T = {args.frames} stacks of 5 DIS flow fields at {DEMO_IMAGE_SIZE} px, "
            "EfficientNet-Lite0 with cross-modality initialisation)"
        )
        print(f"[{step}/6] extracting {what}")
        t = time.perf_counter()
        options = steps.ExtractOptions(
            frames=args.frames, image_size=DEMO_IMAGE_SIZE, resize=DEMO_IMAGE_SIZE, device=args.device, stream=stream
        )
        stores[stream], summary = steps.extract(
            dataset, out / f"store_{stream}", options, show_progress=not args.quiet
        )
        print_extraction(summary, stores[stream])
        stages[f"extract {stream}"] = time.perf_counter() - t

    configs = demo_train_configs(len(dataset.clips("train")), args)
    runs = {stream: out / f"run_{stream}" for stream in stores}
    t = time.perf_counter()
    if steps.resolve_device(args.device) == "cpu":
        # The two streams' heads train side by side, in a process each with half the cores:
        # on 2 cores, one PyTorch thread per head ran 1.3-1.9x faster per map than two threads
        # (their OpenMP threads wait for each other whenever a core is busy), and the two
        # trainings keep both cores busy. Each process seeds itself, so results do not depend
        # on the interleaving.
        threads = max(1, usable_cores() // 2)
        print(
            "[4/6] training the VideoMap head and the TSN baseline on each stream "
            f"(a process per stream, {threads} thread(s) each)"
        )
        with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
            jobs = {
                pool.submit(_train_demo_stream, stores[stream].root, runs[stream], configs, threads): stream
                for stream in stores
            }
            for job in as_completed(jobs):
                job.result()  # a child's error is raised here
                print(f"  {jobs[job]} heads trained in {time.perf_counter() - t:.0f} s -> {runs[jobs[job]]}")
    else:
        print("[4/6] training the VideoMap head and the TSN baseline on each stream")
        for stream, store in stores.items():
            steps.train(
                store, runs[stream], list(steps.HEADS), configs, device=args.device, show_progress=not args.quiet
            )
    stages["train both streams"] = time.perf_counter() - t

    print("[5/6] evaluating each stream on the test split")
    t = time.perf_counter()
    for stream, store in stores.items():
        results = steps.evaluate(store, runs[stream], device=args.device)
        print(f"\n{'RGB' if stream == 'rgb' else 'flow'} stream:")
        print(tables.format_table(results))
    stages["evaluate"] = time.perf_counter() - t

    weights = (1.0, 1.5)
    print(f"\n[6/6] fusing the two streams' scores, RGB : flow = {weights[0]:g} : {weights[1]:g} (TSN's)")
    summary = steps.fuse(runs["rgb"], runs["flow"], out / "fusion", weights)
    print()
    print(tables.format_fusion_table(summary))
    print()
    print(tables.format_fusion_groups(summary, "videomap"))
    print()
    print("'motion pairs': same appearance, opposite motion (turning clockwise / anticlockwise, panning right / left);")
    print(
        "RGB frames cannot tell them apart, in order or not; optical flow can. The VideoMap head reads both in order."
    )
    stages["total"] = time.perf_counter() - start
    print("times: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stages.items()))
    write_json(out / "fusion" / "demo_times.json", {k: round(v, 1) for k, v in stages.items()})
    print(
        f"results: {out / 'fusion' / 'fusion.json'}, {runs['rgb'] / 'results.json'}, {runs['flow'] / 'results.json'}; "
        f"fused confusion matrix: {out / 'fusion' / 'confusion_fusion_videomap.png'}"
    )
    return 0


COMMANDS = {
    "demo": cmd_demo,
    "extract": cmd_extract,
    "finetune": cmd_finetune,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "fuse": cmd_fuse,
    "report": cmd_report,
    "explain": cmd_explain,
}


def run_command(args: argparse.Namespace) -> int:
    if not distributed.launched_by_torchrun():
        return COMMANDS[args.command](args)
    if args.command not in ("extract", "train"):
        raise UsageError(f"`tsmap {args.command}` runs in one process; only extract and train run under torchrun")
    _, args.device = distributed.setup(steps.resolve_device(args.device))
    try:
        if distributed.current().is_main:
            return COMMANDS[args.command](args)
        # The other ranks work silently; rank 0 prints the progress and the summary.
        args.quiet = True
        with contextlib.redirect_stdout(io.StringIO()):
            return COMMANDS[args.command](args)
    finally:
        distributed.teardown()
