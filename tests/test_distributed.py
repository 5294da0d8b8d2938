"""torchrun with 2 CPU processes (gloo): sharded extraction and data-parallel training."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import TINY_MAPS

from tsmap.cli import main
from tsmap.data.datasets import Clip, folder_dataset
from tsmap.videomap.extract import shard
from tsmap.videomap.store import VideoMapStore

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def torchrun(*args: str, expect: int = 0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "tsmap", "--quiet", *args]
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == expect, result.stderr[-3000:]
    return result


def test_shards_are_disjoint_and_cover_everything():
    clips = [Clip(f"c/v{i}.mp4", 0) for i in range(11)]
    parts = [shard(clips, rank, 3) for rank in range(3)]
    keys = [c.key for part in parts for c in part]
    assert sorted(keys) == sorted(c.key for c in clips) and len(keys) == len(set(keys))


def test_two_process_extraction_maps_every_video_once(tiny_demo, tmp_path):
    videos = tmp_path / "videos"
    shutil.copytree(tiny_demo, videos)
    bad = folder_dataset(videos).clips()[5].key
    (videos / bad).write_bytes(b"not a video")
    store = tmp_path / "store"
    # Exit status 1: done, but a video failed.
    out = torchrun("extract", "--videos", str(videos), "--store", str(store), *TINY_MAPS, expect=1).stdout
    total = len(folder_dataset(videos).clips())
    # Rank 0 prints one summary for both shards: every good video mapped once, the bad one failed once.
    assert f"extraction: {total - 1} mapped, 0 already in the store, 1 failed" in out
    assert out.count("extraction:") == 1
    opened = VideoMapStore.open(store)
    assert len(list(opened.keys())) == total - 1 and list(opened.failures()) == [bad]
    assert not any(p.name.startswith(".tmp-") for p in (store / "maps").rglob("*"))


def _order_store(root, per_class: int = 24, frames: int = 16, features: int = 32):
    """A store whose 4 classes differ only in time order: a feature block rising or falling.

    Labels come from list files (the videos themselves are never read by training).
    """
    rng = np.random.default_rng(0)
    settings = {"stream": "rgb", "backbone": "synthetic", "feature_dim": features, "frames": frames}
    lists = {"train": root / "train.txt", "test": root / "test.txt"}
    spec = {"kind": "list", "root": str(root), "classes_file": None, **{f"{k}_list": str(v) for k, v in lists.items()}}
    store = VideoMapStore.create_or_open(root / "store", settings | {"dtype": "float16"}, source=spec)
    ramp = np.linspace(-1, 1, frames)[:, None]
    lines = {"train": [], "test": []}
    for label in range(4):
        block = slice(8 * (label // 2), 8 * (label // 2) + 8)
        sign = 1 if label % 2 == 0 else -1
        for i in range(per_class):
            m = rng.standard_normal((frames, features)).astype(np.float32) * 0.5
            m[:, block] += sign * ramp * rng.uniform(0.8, 1.5)
            key = f"c{label}/v{i}.mp4"
            store.write(key, m)
            lines["train" if i < per_class * 3 // 4 else "test"].append(f"{key} c{label}")
    for split, path in lists.items():
        path.write_text("\n".join(lines[split]) + "\n")
    return store.root


def test_two_process_training_matches_one_process(tmp_path):
    store = _order_store(tmp_path)
    common = ["--store", str(store), "--head", "videomap", "--epochs", "15", "--batch-size", "8", "--lr", "0.01"]
    assert main(["--quiet", "train", *common, "--run", str(tmp_path / "one")]) == 0
    torchrun("train", *common, "--run-dir", str(tmp_path / "two"))
    top1 = {}
    for run in ("one", "two"):
        assert main(["--quiet", "evaluate", "--store", str(store), "--run", str(tmp_path / run)]) == 0
        top1[run] = json.loads((tmp_path / run / "results.json").read_text())["heads"]["videomap"]["top1"]
    assert torch.load(tmp_path / "two" / "videomap.pt", weights_only=True)["extra"]["world_size"] == 2
    # Same global batch and schedule: both learn the order task; 1 test video of 24 is 4 points.
    assert top1["one"] >= 0.9 and top1["two"] >= 0.9
    assert abs(top1["one"] - top1["two"]) <= 0.1


@pytest.mark.parametrize("command", ["evaluate"])
def test_single_process_commands_refuse_torchrun(command, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main([command, "--store", "s", "--run", "r"]) == 2
    assert "only extract and train run under torchrun" in capsys.readouterr().err
