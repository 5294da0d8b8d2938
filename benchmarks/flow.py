"""Optical flow pairs/s on CPU: DIS FAST, DIS MEDIUM and TV-L1 at HMDB51's frame size.

    python benchmarks/flow.py [--width 340] [--height 256] [--pairs 40] [--tvl1-pairs 3] [--threads N]

Frames are a seeded synthetic sequence (band-limited texture panning by (+2, -1) px per
frame, with a square moving against it at (-4, +3)), converted to grayscale beforehand:
the figures are the bare ``FlowMethod`` calls, no decoding or encoding. Each method gets
one warm-up pair. Also printed: the implied cost of one clip at TSN's test sampling
(25 stacks x 5 pairs, every pair distinct) and of HMDB51 (6,766 clips). Figures go to
benchmarks/results/flow.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from tsmap.frames.flow import FLOW_STACK, make_flow

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=340, help="frame width. Default: 340 (TSN's HMDB51 frames)")
    parser.add_argument("--height", type=int, default=256, help="frame height. Default: 256")
    parser.add_argument("--pairs", type=int, default=40, help="timed pairs for each DIS preset. Default: 40")
    parser.add_argument("--tvl1-pairs", type=int, default=3, help="timed pairs for TV-L1 (slow). Default: 3")
    parser.add_argument("--threads", type=int, help="cv2.setNumThreads (default: OpenCV's choice)")
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
    }
    (RESULTS / "flow.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
