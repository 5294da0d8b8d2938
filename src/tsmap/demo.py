"""The demo: generate the built-in dataset, extract, train both heads, evaluate (and fuse).

``run_demo(DemoOptions(...))`` runs the whole method offline on the "arrow of time"
dataset and prints each stage and the tables; with ``streams=("rgb", "flow")`` it adds
classes only motion tells apart, maps both streams, trains and evaluates each and fuses
them. It returns what was measured and the videos that failed, if any.
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from tsmap import steps
from tsmap.data.datasets import dataset_for_extraction
from tsmap.data.synthetic import DemoConfig, generate_demo_dataset
from tsmap.fileio import write_json
from tsmap.progress import progress
from tsmap.steps import tables
from tsmap.train_config import TrainConfig
from tsmap.videomap.store import VideoMapStore

# The demo's videos are 112-160 pixels on a side: encode them at 128 rather than
# upscaling to 224 (3x fewer FLOPs per frame, same information).
DEMO_IMAGE_SIZE = 128
DEMO_BATCH = 16
FUSION_WEIGHTS = (1.0, 1.5)  # RGB : flow, TSN's


@dataclass
class DemoOptions:
    out: Path = Path("tsmap-demo")
    frames: int = 32  # T (real datasets use 256)
    train_per_class: int = 64
    test_per_class: int = 12
    epochs: int = 15  # of the VideoMap head
    seed: int = 0  # of the generated videos and of training
    streams: tuple[str, ...] = ("rgb",)  # or ("rgb", "flow")
    device: str = "auto"
    show_progress: bool = True


@dataclass
class DemoOutcome:
    results: dict  # rgb: the run's results; two streams: the fusion summary
    failed: dict[str, str]  # videos that could not be mapped (key -> reason), all streams together
    seconds: float


def demo_train_configs(epochs: int, seed: int) -> dict[str, TrainConfig]:
    """The demo's schedule, chosen on the demo's validation videos (README, "Training
    recipe"): batches of 16, lr 0.005 warmed up over one epoch then decayed on a cosine,
    weight decay 2e-3; TSN, a linear classifier on frames, takes 60 short epochs."""
    return {
        "videomap": TrainConfig(
            epochs=epochs,
            batch_size=DEMO_BATCH,
            lr=0.005,
            weight_decay=2e-3,
            schedule="cosine",
            warmup_epochs=1.0,
            seed=seed,
        ),
        "tsn": TrainConfig(epochs=60, batch_size=32, lr=0.01, lr_step=10_000, seed=seed),
    }


def _generate(videos: Path, config: DemoConfig, show_progress: bool) -> None:
    total = len(config.classes) * (config.train_per_class + config.test_per_class)
    with progress(total=total, desc="videos", unit="video", disable=not show_progress, dynamic_ncols=True) as bar:
        generate_demo_dataset(videos, config, progress=bar.update)


def run_demo(options: DemoOptions) -> DemoOutcome:
    """The demo; the two-stream one when ``options.streams`` has flow."""
    if "flow" in options.streams:
        return run_two_stream_demo(options)
    out = options.out
    start = time.perf_counter()
    config = DemoConfig(
        train_per_class=options.train_per_class, test_per_class=options.test_per_class, seed=options.seed
    )
    total = len(config.classes) * (config.train_per_class + config.test_per_class)
    print(f"[1/4] generating {total} videos of {len(config.classes)} classes in {out / 'videos'}")
    _generate(out / "videos", config, options.show_progress)

    print(f"[2/4] extracting VideoMaps (T = {options.frames}, EfficientNet-Lite0 at {DEMO_IMAGE_SIZE} px)")
    dataset = dataset_for_extraction("folder", out / "videos")
    extract_options = steps.ExtractOptions(
        frames=options.frames, image_size=DEMO_IMAGE_SIZE, resize=DEMO_IMAGE_SIZE, device=options.device
    )
    store, summary = steps.extract(dataset, out / "store", extract_options, show_progress=options.show_progress)
    print(tables.format_extraction(summary, store))

    print("[3/4] training the VideoMap head (A0A1A2 attention) and the TSN baseline on the same features")
    configs = demo_train_configs(options.epochs, options.seed)
    run = out / "run"
    steps.train(store, run, list(steps.HEADS), configs, device=options.device, show_progress=options.show_progress)

    print("[4/4] evaluating on the test split")
    results = steps.evaluate(store, run, device=options.device)
    print()
    print(tables.format_table(results))
    print()
    print("'order pairs': classes whose videos are time reversals of each other (grow/shrink, ...);")
    print("frame averaging cannot tell them apart, a VideoMap read in time order can.")
    seconds = time.perf_counter() - start
    print(
        f"done in {seconds:.0f} s. results: {run / 'results.json'}, "
        f"confusion matrices: {run}/confusion_*.png, checkpoints: {run}/videomap.pt, {run}/tsn.pt"
    )
    example = next(iter(dataset.clips("test"))).key
    print(f"try: tsmap predict {out / 'videos' / example} --run {run}")
    return DemoOutcome(results, dict(summary.failed), seconds)


def _train_stream(store_dir: Path, run_dir: Path, configs: dict[str, TrainConfig], threads: int) -> None:
    """Both heads on one stream's store, on CPU with ``threads`` PyTorch threads (run in a
    spawned child process, which does not inherit the parent's malloc settings)."""
    import torch

    from tsmap.malloc import tune_malloc

    tune_malloc()
    torch.set_num_threads(threads)
    store = VideoMapStore.open(store_dir)
    steps.train(store, run_dir, list(steps.HEADS), configs, device="cpu", show_progress=False)


def _train_both_streams(stores: dict[str, VideoMapStore], runs: dict[str, Path], options: DemoOptions) -> None:
    """Both heads on each stream's store; on a CPU the two streams train side by side."""
    from tsmap.frames.onnx_runtime import usable_cores

    configs = demo_train_configs(options.epochs, options.seed)
    t = time.perf_counter()
    if steps.resolve_device(options.device) == "cpu":
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
                pool.submit(_train_stream, stores[stream].root, runs[stream], configs, threads): stream
                for stream in stores
            }
            for job in as_completed(jobs):
                job.result()  # a child's error is raised here
                print(f"  {jobs[job]} heads trained in {time.perf_counter() - t:.0f} s -> {runs[jobs[job]]}")
    else:
        print("[4/6] training the VideoMap head and the TSN baseline on each stream")
        for stream, store in stores.items():
            steps.train(
                store,
                runs[stream],
                list(steps.HEADS),
                configs,
                device=options.device,
                show_progress=options.show_progress,
            )


def run_two_stream_demo(options: DemoOptions) -> DemoOutcome:
    """The demo with motion classes added, both streams mapped, trained, evaluated and fused."""
    out = options.out / "two_stream"
    start = time.perf_counter()
    stages: dict[str, float] = {}
    config = DemoConfig(
        train_per_class=options.train_per_class, test_per_class=options.test_per_class, seed=options.seed, motion=True
    )
    total = len(config.classes) * (config.train_per_class + config.test_per_class)
    print(
        f"[1/6] generating {total} videos of {len(config.classes)} classes in {out / 'videos'} "
        "(the arrow-of-time classes, and 4 that only the direction of motion tells apart)"
    )
    _generate(out / "videos", config, options.show_progress)
    stages["generate videos"] = time.perf_counter() - start
    dataset = dataset_for_extraction("folder", out / "videos")

    stores: dict[str, VideoMapStore] = {}
    failed: dict[str, str] = {}
    for step, stream in ((2, "rgb"), (3, "flow")):
        what = (
            f"RGB VideoMaps (T = {options.frames}, EfficientNet-Lite0 at {DEMO_IMAGE_SIZE} px)"
            if stream == "rgb"
            else f"flow VideoMaps (T = {options.frames} stacks of 5 DIS flow fields at {DEMO_IMAGE_SIZE} px, "
            "EfficientNet-Lite0 with cross-modality initialisation)"
        )
        print(f"[{step}/6] extracting {what}")
        t = time.perf_counter()
        extract_options = steps.ExtractOptions(
            frames=options.frames,
            image_size=DEMO_IMAGE_SIZE,
            resize=DEMO_IMAGE_SIZE,
            device=options.device,
            stream=stream,
        )
        stores[stream], summary = steps.extract(
            dataset, out / f"store_{stream}", extract_options, show_progress=options.show_progress
        )
        print(tables.format_extraction(summary, stores[stream]))
        failed |= {f"{key} ({stream})": reason for key, reason in summary.failed.items()}
        stages[f"extract {stream}"] = time.perf_counter() - t

    runs = {stream: out / f"run_{stream}" for stream in stores}
    t = time.perf_counter()
    _train_both_streams(stores, runs, options)
    stages["train both streams"] = time.perf_counter() - t

    print("[5/6] evaluating each stream on the test split")
    t = time.perf_counter()
    for stream, store in stores.items():
        results = steps.evaluate(store, runs[stream], device=options.device)
        print(f"\n{'RGB' if stream == 'rgb' else 'flow'} stream:")
        print(tables.format_table(results))
    stages["evaluate"] = time.perf_counter() - t

    weights = FUSION_WEIGHTS
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
    return DemoOutcome(summary, failed, stages["total"])
