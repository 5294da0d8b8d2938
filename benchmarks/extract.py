"""End-to-end extraction frames/s next to the bare backbone forward, in the same run.

    python benchmarks/extract.py [--videos 48] [--frames 64] [--image-size 224]

Generates demo videos (or reads --video-root), then measures
  backbone   FrameEncoder.encode on frames already in memory (the ceiling)
  end-to-end decode + sample + resize/crop + encode + store write, via extract_clips
and prints both with their ratio; figures go to benchmarks/results/extract.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tsmap.data.datasets import folder_dataset
from tsmap.data.synthetic import DemoConfig, generate_demo_dataset
from tsmap.data.video import FrameGeometry
from tsmap.frames.encoder import FrameEncoder
from tsmap.videomap.extract import extract_clips, extraction_settings
from tsmap.videomap.store import VideoMapStore

RESULTS = Path(__file__).parent / "results"


def bare_backbone_fps(encoder: FrameEncoder, size: int, frames: int) -> float:
    x = np.random.default_rng(0).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    encoder.encode(x[: encoder.batch_size])  # warm-up: oneDNN picks its kernels
    start = time.perf_counter()
    encoder.encode(x)
    return frames / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video-root", type=Path, help="folder-per-class videos to use instead of generated ones")
    parser.add_argument("--videos", type=int, default=48, help="generated videos (4 per demo class). Default: 48")
    parser.add_argument("--frames", type=int, default=64, help="frames sampled per video, T. Default: 64")
    parser.add_argument("--image-size", type=int, default=224, help="ConvNet input size. Default: 224")
    parser.add_argument("--batch-size", type=int, default=16, help="frames per ConvNet batch. Default: 16")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.video_root
        if root is None:
            per_class = max(1, args.videos // 12)
            root = generate_demo_dataset(Path(tmp) / "videos", DemoConfig(train_per_class=per_class, test_per_class=0))
        dataset = folder_dataset(root)
        clips = dataset.clips()
        encoder = FrameEncoder(batch_size=args.batch_size)
        geometry = FrameGeometry(args.image_size, max(args.image_size, round(args.image_size * 256 / 224)))
        backbone = bare_backbone_fps(encoder, args.image_size, frames=min(len(clips) * args.frames, 512))
        store = VideoMapStore.create_or_open(Path(tmp) / "store", extraction_settings(encoder, args.frames, geometry))
        summary = extract_clips(clips, root, store, encoder, geometry, show_progress=False)
        if summary.failed:
            raise SystemExit(f"benchmark videos failed to decode: {summary.failed}")

    rows = [
        ("bare backbone forward", backbone, 1.0),
        ("end-to-end extraction", summary.frames_per_second, summary.frames_per_second / backbone),
    ]
    print(
        f"EfficientNet-Lite0 at {args.image_size} px, batch {args.batch_size}, T = {args.frames}, "
        f"{len(clips)} videos, {torch.get_num_threads()} threads"
    )
    print(f"{'path':<24}{'frames/s':>10}{'x backbone':>12}")
    for name, fps, ratio in rows:
        print(f"{name:<24}{fps:>10.1f}{ratio:>12.2f}")
    RESULTS.mkdir(exist_ok=True)
    record = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "settings": vars(args) | {"video_root": str(args.video_root) if args.video_root else None},
        "videos": len(clips),
        "backbone_frames_per_s": backbone,
        "end_to_end_frames_per_s": summary.frames_per_second,
        "ratio": summary.frames_per_second / backbone,
    }
    (RESULTS / "extract.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
