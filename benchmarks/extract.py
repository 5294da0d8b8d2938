"""End-to-end extraction frames/s next to the bare backbone forward and an eager loop, in one run.

    python benchmarks/extract.py [--videos 48] [--frames 64] [--image-size 224] [--engine auto]
                                 [--rounds R] [--background-load N] [--legacy-threads]

Generates demo videos (or reads --video-root), then measures
  backbone    FrameEncoder.encode on frames already in memory (the ceiling)
  end-to-end  decode + sample + resize/crop + encode + store write, via extract_clips
  eager loop  the usual PyTorch recipe (mmaction2-style): decode the sampled frames to PIL
              images, per-frame resize / centre crop / to-tensor / normalise, stack NCHW
              batches of 32, eager forward of the same network without channels_last
and prints frames/s with ratios; also the process's peak memory. Figures go to
benchmarks/results/extract.json.

``--rounds R`` alternates the backbone and the end-to-end measurements R times (each
round on 1/R of the videos) and adds them up, so that load from other processes that
comes and goes weighs on both. ``--background-load N`` first starts N busy processes of
its own (plain Python spin loops, each in a session of its own as a job from another
terminal would be, bounded by ``--background-seconds`` and killed at the end) and waits
``--background-warmup`` seconds, so that every path above is measured on cores shared
with a job that has been running a while; the figures then go to
benchmarks/results/extract_loadN.json. ``--legacy-threads`` also measures, in the same
rounds, an engine with tsmap's thread settings before issue 16 (ONNX Runtime on every
usable core and spinning, as many decode threads as asked).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import save_results

from tsmap.data.datasets import folder_dataset
from tsmap.data.synthetic import DemoConfig, generate_demo_dataset
from tsmap.data.video import FrameGeometry, Views, uniform_indices
from tsmap.frames import onnx_runtime
from tsmap.frames.efficientnet_lite import load_pretrained_lite0
from tsmap.frames.encoder import FrameEncoder
from tsmap.frames.onnx_runtime import busy_cores_of_others, usable_cores
from tsmap.videomap import extract as extract_module
from tsmap.videomap.extract import ExtractionSummary, extract_clips, extraction_settings
from tsmap.videomap.store import VideoMapStore


def bare_backbone_fps(encoder: FrameEncoder, size: int, frames: int) -> float:
    x = np.random.default_rng(0).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    encoder.encode(x[: encoder.batch_size])  # warm-up: oneDNN picks its kernels
    start = time.perf_counter()
    encoder.encode(x)
    return frames / (time.perf_counter() - start)


@torch.inference_mode()
def eager_loop_fps(paths: list[Path], frames: int, size: int, resize: int, batch: int = 32) -> float:
    """The common eager recipe: PIL frames, per-frame torchvision-like transforms, NCHW batches."""
    import av

    model = load_pretrained_lite0().eval()  # BatchNorm not folded, NCHW: as a training codebase runs it
    mean = torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1)
    start, count, pending = time.perf_counter(), 0, []

    def flush() -> None:
        if pending:
            model.features(torch.stack(pending))
            pending.clear()

    for path in paths:
        with av.open(str(path)) as container:
            decoded = [f.to_image() for f in container.decode(video=0)]
        for i in uniform_indices(len(decoded), frames):
            img = decoded[int(i)]
            scale = resize / min(img.size)
            img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))))
            left, top = (img.width - size) // 2, (img.height - size) // 2
            img = img.crop((left, top, left + size, top + size))
            x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
            pending.append((x - mean) / mean)
            count += 1
            if len(pending) == batch:
                flush()
    flush()
    return count / (time.perf_counter() - start)


SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@contextlib.contextmanager
def background_load(processes: int, seconds: float, warmup: float = 0.5):
    """``processes`` busy Python loops for the duration of the block (each stops by itself after ``seconds``).

    The block starts ``warmup`` seconds after them: tsmap counts a job that competes for
    the cores only once the 1-minute load average shows it (60 s: 0.63 of it).
    """
    procs = [
        subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=seconds)], start_new_session=True)
        for _ in range(processes)
    ]
    try:
        if procs:
            time.sleep(warmup)
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


@contextlib.contextmanager
def legacy_threads():
    """tsmap's thread settings before issue 16, for sessions made and extractions run inside the block."""
    saved = onnx_runtime.free_cores, extract_module.free_cores, os.environ.get("TSMAP_ORT_SPINNING")
    onnx_runtime.free_cores = onnx_runtime.usable_cores
    extract_module.free_cores = lambda: 1 << 10  # decode threads as asked
    os.environ["TSMAP_ORT_SPINNING"] = "1"
    try:
        yield
    finally:
        onnx_runtime.free_cores, extract_module.free_cores = saved[:2]
        if saved[2] is None:
            os.environ.pop("TSMAP_ORT_SPINNING", None)
        else:
            os.environ["TSMAP_ORT_SPINNING"] = saved[2]


def encoder_threads(encoder: FrameEncoder) -> int | None:
    """Intra-op threads of the encoder's ONNX Runtime session (None on the PyTorch engine)."""
    runners = getattr(encoder, "_runners", {})
    for runner in runners.values():
        return runner.session.get_session_options().intra_op_num_threads
    return None


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video-root", type=Path, help="folder-per-class videos to use instead of generated ones")
    parser.add_argument("--videos", type=int, default=48, help="generated videos (4 per demo class). Default: 48")
    parser.add_argument("--frames", type=int, default=64, help="frames sampled per video, T. Default: 64")
    parser.add_argument("--image-size", type=int, default=224, help="ConvNet input size. Default: 224")
    parser.add_argument("--batch-size", type=int, default=16, help="frames per ConvNet batch. Default: 16")
    parser.add_argument("--engine", default="auto", help="auto, torch or onnx (see tsmap extract). Default: auto")
    parser.add_argument("--decode-workers", type=int, default=2, help="decoding threads. Default: 2 (tsmap's)")
    parser.add_argument("--no-eager", action="store_true", help="skip the eager-loop baseline")
    parser.add_argument(
        "--views",
        type=int,
        default=1,
        help="crops mapped per frame (tsmap extract --views): end to end then counts every view's ConvNet input. "
        "Default: 1",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate the backbone and end-to-end measurements this many times, each on a share of the videos "
        "(steadier ratios on a shared machine). Default: 1",
    )
    parser.add_argument(
        "--background-load", type=int, default=0, metavar="N", help="busy processes competing for the cores. Default: 0"
    )
    parser.add_argument(
        "--background-seconds", type=float, default=900, help="longest the busy processes run. Default: 900"
    )
    parser.add_argument(
        "--background-warmup",
        type=float,
        default=60,
        help="seconds the busy processes run before the measurements, as a job that has been running a while. "
        "Default: 60",
    )
    parser.add_argument(
        "--legacy-threads",
        action="store_true",
        help="also measure tsmap's thread settings before issue 16 (ORT on every core, spinning), same rounds",
    )
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as tmp,
        background_load(args.background_load, args.background_seconds, args.background_warmup),
    ):
        root = args.video_root
        if root is None:
            per_class = max(1, args.videos // 12)
            # At least T frames per video: every sampled frame is distinct, so the ConvNet
            # encodes T frames per map and frames/s means the same on every path.
            low = max(40, args.frames)
            config = DemoConfig(train_per_class=per_class, test_per_class=0, min_frames=low, max_frames=max(160, low))
            root = generate_demo_dataset(Path(tmp) / "videos", config)
        dataset = folder_dataset(root)
        clips = dataset.clips()
        load_start = list(os.getloadavg())
        busy = busy_cores_of_others()
        encoder = FrameEncoder(batch_size=args.batch_size, engine=args.engine, image_size=args.image_size)
        geometry = FrameGeometry(args.image_size, max(args.image_size, round(args.image_size * 256 / 224)))
        settings = extraction_settings(encoder, args.frames, geometry, views=Views(args.views))
        policies = {"now": (encoder, contextlib.nullcontext)}
        if args.legacy_threads:
            with legacy_threads():
                old = FrameEncoder(batch_size=args.batch_size, engine=args.engine, image_size=args.image_size)
            policies["before issue 16"] = (old, legacy_threads)
        # Rounds alternate the paths, so that a load that comes and goes weighs on all alike.
        rounds = max(1, min(args.rounds, len(clips)))
        bare_frames = min(len(clips) * args.frames // rounds, 512)
        bare_seconds = dict.fromkeys(policies, 0.0)
        parts: dict[str, list[ExtractionSummary]] = {name: [] for name in policies}
        for r in range(rounds):
            for name, (enc, context) in policies.items():
                with context():
                    bare_seconds[name] += bare_frames / bare_backbone_fps(enc, args.image_size, frames=bare_frames)
                    store = VideoMapStore.create_or_open(Path(tmp) / f"store-{name}-{r}", settings)
                    parts[name].append(
                        extract_clips(
                            clips[r::rounds],
                            root,
                            store,
                            enc,
                            geometry,
                            show_progress=False,
                            decode_workers=args.decode_workers,
                        )
                    )
        backbones = {name: bare_frames * rounds / seconds for name, seconds in bare_seconds.items()}
        summaries = {name: ExtractionSummary.combine(p) for name, p in parts.items()}
        for name, summary in summaries.items():
            summary.seconds = sum(p.seconds for p in parts[name])
        summary, backbone = summaries["now"], backbones["now"]
        if summary.failed:
            raise SystemExit(f"benchmark videos failed to decode: {summary.failed}")
        peak = peak_rss_mib()
        eager = None
        if not args.no_eager:
            paths = [root / c.key for c in clips][: max(4, len(clips) // 4)]  # the slow path: a quarter
            eager = eager_loop_fps(paths, args.frames, geometry.size, geometry.resize)
        load_end = list(os.getloadavg())

    # ConvNet inputs per second: the same as map rows/s unless videos shorter than T repeat frames.
    end_to_end = summary.encoded / summary.seconds
    rows = [
        ("bare backbone forward", backbone, backbone),
        ("end-to-end extraction", end_to_end, backbone),
    ] + ([("eager loop (mmaction2-style)", eager, backbone)] if eager else [])
    legacy = None
    if args.legacy_threads:
        name = "before issue 16"
        legacy = {
            "backbone_frames_per_s": backbones[name],
            "end_to_end_frames_per_s": summaries[name].encoded / summaries[name].seconds,
            "ort_threads": usable_cores(),
        }
        legacy["end_to_end_over_backbone"] = legacy["end_to_end_frames_per_s"] / legacy["backbone_frames_per_s"]
        rows += [
            ("backbone, threads before #16", legacy["backbone_frames_per_s"], legacy["backbone_frames_per_s"]),
            ("end to end, threads before #16", legacy["end_to_end_frames_per_s"], legacy["backbone_frames_per_s"]),
        ]
    print(
        f"EfficientNet-Lite0 at {args.image_size} px on {encoder.engine}, batch {args.batch_size}, "
        f"T = {args.frames}, {len(clips)} videos, {args.views} view(s) a frame, {torch.get_num_threads()} threads; "
        f"peak memory {peak:.0f} MiB"
    )
    print(
        f"{args.background_load} busy background process(es); {busy:.2f} of {usable_cores()} cores busy with other "
        f"processes when the engine started; load average {load_start[0]:.2f} at the start, "
        f"{load_end[0]:.2f} at the end"
    )
    print(f"ONNX Runtime threads: {encoder_threads(encoder)}; decode threads asked: {args.decode_workers}")
    print(f"{'path':<32}{'frames/s':>10}{'x backbone':>12}{'x eager':>10}")
    for name, fps, base in rows:
        vs_eager = f"{fps / eager:>10.2f}" if eager else f"{'-':>10}"
        print(f"{name:<32}{fps:>10.1f}{fps / base:>12.2f}{vs_eager}")
    record = {
        "settings": vars(args) | {"video_root": str(args.video_root) if args.video_root else None},
        "videos": len(clips),
        "engine": encoder.engine,
        "backbone_frames_per_s": backbone,
        "end_to_end_frames_per_s": end_to_end,
        "eager_loop_frames_per_s": eager,
        "end_to_end_over_backbone": end_to_end / backbone,
        "end_to_end_over_eager": end_to_end / eager if eager else None,
        "peak_rss_mib": peak,
        "cores_busy_with_others_at_start": busy,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "ort_threads": encoder_threads(encoder),
        "before_issue_16_threads": legacy,
    }
    name = "extract" + (f"_load{args.background_load}" if args.background_load else "")
    save_results(name + (f"_views{args.views}" if args.views > 1 else ""), record)


if __name__ == "__main__":
    main()
