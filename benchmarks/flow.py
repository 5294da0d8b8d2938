"""Optical flow pairs/s on CPU: DIS FAST, DIS MEDIUM and TV-L1 at HMDB51's frame size.

    python benchmarks/flow.py [--width 340] [--height 256] [--pairs 40] [--tvl1-pairs 3] [--threads N]

Frames are a seeded synthetic sequence (band-limited texture panning by (+2, -1) px per
frame, with a square moving against it at (-4, +3)), converted to grayscale beforehand:
the figures are the bare ``FlowMethod`` calls, no decoding or encoding. Each method gets
one warm-up pair. Also printed: the implied cost of one clip at TSN's test sampling
(25 stacks x 5 pairs, every pair distinct) and of HMDB51 (6,766 clips).

Then the flow stream end to end (``--videos`` > 0): ``tsmap extract --stream flow`` on
generated demo videos of at least T + 6 frames (so every stack is distinct), for each
ConvNet engine: decode, grayscale, DIS, TSN encoding, the 10-channel ConvNet, store
write. Flow stacks/s = map rows/s here. Figures go to benchmarks/results/flow.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from tsmap.frames.flow import FLOW_STACK, make_flow
from tsmap.frames.onnx_runtime import missing_packages

RESULTS = Path(__file__).parent / "results"
HMDB51_CLIPS = 6766
STACKS_PER_CLIP = 25


def synthetic_sequence(n: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` grayscale uint8 frames with two motions, so that no method converges trivially."""
    rng = np.random.default_rng(seed)
    margin = 4 * n + 8
    noise = rng.uniform(0, 255, (height + 2 * margin, width + 2 * margin)).astype(np.float32)
    big = cv2.GaussianBlur(noise, (0, 0), 2.0)
    big = cv2.normalize(big, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    square = cv2.GaussianBlur(rng.uniform(0, 255, (64, 64)).astype(np.float32), (0, 0), 1.0).astype(np.uint8)
    frames = []
    for k in range(n):
        top, left = margin + k, margin - 2 * k  # background content moves right 2 px, up 1 px per frame
        frame = big[top : top + height, left : left + width].copy()
        y, x = (height // 3 + 3 * k) % (height - 64), (width // 2 - 4 * k) % (width - 64)  # wraps around
        frame[y : y + 64, x : x + 64] = square
        frames.append(frame)
    return frames


def pairs_per_second(method_name: str, preset: str, frames: list[np.ndarray], pairs: int) -> dict:
    method = make_flow(method_name, preset)
    method(frames[0], frames[1])  # warm-up: allocations, thread pool
    start = time.perf_counter()
    for k in range(pairs):
        method(frames[k], frames[k + 1])
    seconds = time.perf_counter() - start
    rate = pairs / seconds
    clip_s = STACKS_PER_CLIP * FLOW_STACK / rate
    return {
        "method": method_name,
        "preset": preset,
        "pairs": pairs,
        "pairs_per_s": rate,
        "ms_per_pair": 1000 / rate,
        "s_per_clip_25x5": clip_s,
        "hmdb51_hours": clip_s * HMDB51_CLIPS / 3600,
    }


def flow_stream(args: argparse.Namespace) -> list[dict]:
    """Flow-stream extraction (``tsmap extract --stream flow``) on generated videos, per engine."""
    from tsmap import steps
    from tsmap.data.datasets import folder_dataset
    from tsmap.data.synthetic import DemoConfig, generate_demo_dataset

    engines = ["torch"] + ([] if missing_packages() else ["onnx"])
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        low = max(40, args.frames + FLOW_STACK + 1)
        per_class = max(1, args.videos // 16)
        config = DemoConfig(per_class, 0, min_frames=low, max_frames=max(160, low), motion=True)
        root = generate_demo_dataset(Path(tmp) / "videos", config)
        dataset = folder_dataset(root)
        resize = round(args.image_size * 256 / 224)
        for engine in engines:
            options = steps.ExtractOptions(
                frames=args.frames,
                image_size=args.image_size,
                resize=resize,
                engine=engine,
                device="cpu",
                stream="flow",
                flow="dis",
                flow_preset=args.preset,
            )
            _, summary = steps.extract(dataset, Path(tmp) / f"store-{engine}", options, show_progress=False)
            if summary.failed:
                raise SystemExit(f"benchmark videos failed: {summary.failed}")
            out.append({"engine": engine, "videos": summary.done, "stacks_per_s": summary.encoded / summary.seconds})
    print(
        f"\nflow stream end to end: {len(dataset.clips())} videos, T = {args.frames}, {args.image_size} px, "
        f"DIS {args.preset}"
    )
    print(f"{'engine':<10}{'stacks/s':>10}{'x torch':>9}")
    for r in out:
        print(f"{r['engine']:<10}{r['stacks_per_s']:>10.1f}{r['stacks_per_s'] / out[0]['stacks_per_s']:>9.2f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=340, help="frame width. Default: 340 (TSN's HMDB51 frames)")
    parser.add_argument("--height", type=int, default=256, help="frame height. Default: 256")
    parser.add_argument("--pairs", type=int, default=40, help="timed pairs for each DIS preset. Default: 40")
    parser.add_argument("--tvl1-pairs", type=int, default=3, help="timed pairs for TV-L1 (slow). Default: 3")
    parser.add_argument("--threads", type=int, help="cv2.setNumThreads (default: OpenCV's choice)")
    parser.add_argument("--videos", type=int, default=24, help="videos for the end-to-end run (0: skip). Default: 24")
    parser.add_argument("--frames", type=int, default=32, help="end to end: T. Default: 32")
    parser.add_argument("--image-size", type=int, default=224, help="end to end: ConvNet input size. Default: 224")
    parser.add_argument("--preset", default="medium", help="end to end: DIS preset. Default: medium (tsmap's)")
    args = parser.parse_args()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)

    frames = synthetic_sequence(max(args.pairs, args.tvl1_pairs) + 2, args.width, args.height)
    runs = [("dis", "fast", args.pairs), ("dis", "medium", args.pairs), ("tvl1", "default", args.tvl1_pairs)]
    rows = [pairs_per_second(name, preset, frames, pairs) for name, preset, pairs in runs]

    print(
        f"optical flow at {args.width} x {args.height}, OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'method':<14}{'pairs':>6}{'pairs/s':>10}{'ms/pair':>10}{'s/clip':>9}{'HMDB51 h':>10}")
    for r in rows:
        print(
            f"{r['method'] + ' ' + r['preset']:<14}{r['pairs']:>6}{r['pairs_per_s']:>10.1f}{r['ms_per_pair']:>10.1f}"
            f"{r['s_per_clip_25x5']:>9.2f}{r['hmdb51_hours']:>10.1f}"
        )
    print(f"s/clip: {STACKS_PER_CLIP} stacks x {FLOW_STACK} pairs; HMDB51 h: {HMDB51_CLIPS} clips, one process")
    end_to_end = flow_stream(args) if args.videos > 0 else []
    RESULTS.mkdir(exist_ok=True)
    record = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "opencv": cv2.__version__,
            "threads": cv2.getNumThreads(),
        },
        "settings": vars(args),
        "results": rows,
        "end_to_end": end_to_end,
    }
    (RESULTS / "flow.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
