"""Shared fixtures: small synthetic videos written by the tests themselves."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tsmap.data.synthetic import DemoConfig, generate_demo_dataset, write_video

torch.set_num_threads(2)

# ONNX exports of the frame ConvNet go to a folder of this test session, never to the
# user's ~/.cache. Set at import, before test modules copy os.environ for subprocesses.
os.environ["TSMAP_CACHE"] = tempfile.mkdtemp(prefix="tsmap-test-cache-")
atexit.register(shutil.rmtree, os.environ["TSMAP_CACHE"], True)

# Extraction options that keep test stores tiny: 8 frames per map, 64-pixel frames.
TINY_MAPS = ["--frames", "8", "--image-size", "64", "--resize", "64"]


def moving_square_frames(n: int, seed: int = 0, size: tuple[int, int] = (96, 80)) -> list[np.ndarray]:
    """A square that grows and changes colour: every frame is different."""
    rng = np.random.default_rng(seed)
    w, h = size
    frames = []
    base = rng.uniform(30, 220, 3)
    for t in range(n):
        img = np.full((h, w, 3), base, dtype=np.float32)
        r = 4 + int(30 * t / max(n - 1, 1))
        cy, cx = h // 2, w // 2
        img[max(cy - r, 0) : cy + r, max(cx - r, 0) : cx + r] = (
            255 * t / max(n - 1, 1),
            80,
            255 - 200 * t / max(n - 1, 1),
        )
        frames.append(img.astype(np.uint8))
    return frames


@pytest.fixture(scope="session")
def encoder():
    from tsmap.frames.encoder import FrameEncoder

    return FrameEncoder(batch_size=16)


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """The demo dataset at its smallest: 12 classes x (2 train + 1 test) short videos."""
    root = tmp_path_factory.mktemp("demo") / "videos"
    return generate_demo_dataset(root, DemoConfig(train_per_class=2, test_per_class=1, min_frames=20, max_frames=40))


def write_test_video(path: Path, frames: list[np.ndarray], lossless: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, frames, crf=0 if lossless else 18)
    return path
