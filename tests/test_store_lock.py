"""One extraction at a time writes a store: a second `tsmap extract` on the same store
(other settings or the same) stops at once with one line, and the store stays consistent."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import moving_square_frames, write_test_video

from tsmap import steps
from tsmap.data.datasets import folder_dataset
from tsmap.fileio import LOCK_FILE, FolderBusy, folder_lock
from tsmap.videomap.store import VideoMapStore

EXTRACT = ["--quiet", "extract", "--image-size", "64", "--resize", "64", "--engine", "torch"]

# Runs the CLI, but lets it map videos only once the file argv[1] exists: the store is
# created and locked, and stays so while the test starts other extractions.
HOLD = r"""
import sys, time
from pathlib import Path
import tsmap.steps

step = sys.modules["tsmap.steps.extract"]  # the module: tsmap.steps.extract is also the function
go, real = Path(sys.argv[1]), step.extract_clips

def extract_clips(*args, **kwargs):
    while not go.exists():
        time.sleep(0.01)
    return real(*args, **kwargs)

step.extract_clips = extract_clips
from tsmap.cli import main
sys.exit(main(sys.argv[2:]))
"""


def make_videos(root: Path) -> Path:
    for ci, cls in enumerate(("a", "b")):
        for i in range(2):
            write_test_video(root / cls / f"v{i}.mp4", moving_square_frames(10, seed=10 * ci + i))
    return root


def test_a_second_extraction_stops_at_once_with_one_line(tmp_path):
    videos, store, go = make_videos(tmp_path / "videos"), tmp_path / "store", tmp_path / "go"
    args = [*EXTRACT, "--videos", str(videos), "--store", str(store)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(go), *args, "--frames", "8"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 240
        while not (store / "store.json").is_file() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()
        assert (store / LOCK_FILE).read_text() == str(first.pid)
        # Other frames (the race that once left store.json at 8 frames over 16-row maps),
        # and the same settings (the race that mapped every video twice), side by side.
        others = [
            subprocess.Popen(
                [sys.executable, "-m", "tsmap", *args, "--frames", frames],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for frames in ("16", "8")
        ]
        for other in others:
            _, err = other.communicate(timeout=240)
            assert other.returncode == 2, err
            assert err.strip() == (
                f"tsmap: error: another tsmap process (pid {first.pid}) is using the store {store}; "
                "wait for it to finish or use another folder"
            )
        assert not list(store.glob("maps/*/*.npy"))  # nothing written by the refused ones
        go.touch()
        _, err = first.communicate(timeout=240)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    opened = VideoMapStore.open(store)
    assert opened.num_frames == 8 and sorted(opened.keys()) == ["a/v0.mp4", "a/v1.mp4", "b/v0.mp4", "b/v1.mp4"]
    assert all(opened.read(k).shape == (8, 1280) for k in opened.keys())
    assert len((store / "sources.jsonl").read_text().splitlines()) == 4  # each video mapped once
    assert np.isfinite(opened.read("a/v0.mp4", mmap=False)).all()


def test_extract_refuses_a_store_whose_lock_is_held(tmp_path):
    videos, store = make_videos(tmp_path / "videos"), tmp_path / "store"
    options = steps.ExtractOptions(frames=8, image_size=64, resize=64, engine="torch", device="cpu")
    with folder_lock(store, "store"), pytest.raises(FolderBusy, match=f"pid {os.getpid()}.* the store {store}"):
        steps.extract(folder_dataset(videos), store, options, show_progress=False)
    assert not (store / "store.json").exists()  # stopped before anything was written
