"""Training killed with SIGKILL resumes from its last finished epoch and ends where an uninterrupted run ends."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import TINY_MAPS

from tsmap.cli import main
from tsmap.heads.videomap_head import VideoMapHead
from tsmap.steps import store_dataset
from tsmap.train_config import TrainConfig
from tsmap.training import train_head
from tsmap.videomap.loader import MapDataset
from tsmap.videomap.store import VideoMapStore

EPOCHS = 80


@pytest.fixture(scope="module")
def store(tiny_demo, tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "store"
    assert main(["--quiet", "extract", "--videos", str(tiny_demo), "--store", str(path), *TINY_MAPS]) == 0
    return path


def _train_cmd(store, run):
    return [
        sys.executable,
        "-m",
        "tsmap",
        "--quiet",
        "train",
        "--store",
        str(store),
        "--run",
        str(run),
        "--head",
        "videomap",
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        "4",
        "--device",
        "cpu",
    ]


# One thread in every process, so the interrupted and the uninterrupted run do the same arithmetic.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _weights(run):
    return torch.load(run / "videomap.pt", weights_only=True)


def test_killed_training_resumes_to_the_same_weights(store, tmp_path):
    reference = tmp_path / "reference"
    done = subprocess.run(_train_cmd(store, reference), env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    run = tmp_path / "killed"
    state = run / "videomap.training-state.pt"
    proc = subprocess.Popen(_train_cmd(store, run), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not state.exists():
        time.sleep(0.002)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    assert not (run / "videomap.pt").exists()
    saved = torch.load(state, weights_only=True)  # the state on disk is whole
    finished = len(saved["history"])
    assert 1 <= finished < EPOCHS

    again = subprocess.run(_train_cmd(store, run), env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    resumed_at = int(again.stdout.split("after epoch ")[1].split()[0])
    assert resumed_at >= finished
    assert not state.exists()

    ours, theirs = _weights(run), _weights(reference)
    assert len(ours["extra"]["history"]) == EPOCHS
    for key, value in theirs["state_dict"].items():
        torch.testing.assert_close(ours["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    assert [h["loss"] for h in ours["extra"]["history"]] == pytest.approx(
        [h["loss"] for h in theirs["extra"]["history"]], rel=1e-5
    )
    # Each epoch's wall clock counts on from the killed run's (time-to-accuracy reads it).
    seconds = [h["seconds"] for h in ours["extra"]["history"]]
    assert seconds[0] > 0 and all(b > a for a, b in zip(seconds, seconds[1:], strict=False))

    # Rerunning a finished training keeps the head instead of redoing it.
    mtime = (run / "videomap.pt").stat().st_mtime_ns
    kept = subprocess.run(_train_cmd(store, run), env=ENV, capture_output=True, text=True, timeout=300)
    assert kept.returncode == 0, kept.stderr
    assert "already trained with these settings" in kept.stdout
    assert (run / "videomap.pt").stat().st_mtime_ns == mtime


def test_state_from_other_settings_is_not_resumed(store, tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--quiet", "train", "--store", str(store), "--run", str(run), "--head", "videomap"]
    assert main([*common, "--epochs", "2", "--batch-size", "4"]) == 0
    # Fake a killed run of a different configuration by keeping the finished state around.
    payload = torch.load(run / "videomap.pt", weights_only=True)
    torch.save({"identity": {"config": "other"}, "history": [{}]}, run / "videomap.training-state.pt")
    capsys.readouterr()
    assert main([*common, "--epochs", "3", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "other settings; starting afresh" in out
    retrained = torch.load(run / "videomap.pt", weights_only=True)
    assert len(retrained["extra"]["history"]) == 3
    assert len(payload["extra"]["history"]) == 2


def test_memory_mapped_training_matches_in_memory(store, tmp_path):
    weights = {}
    for name, extra in [("memory", []), ("mmap", ["--memory-budget", "0"]), ("crop", ["--temporal-crop", "0.7"])]:
        run = tmp_path / name
        args = ["--quiet", "train", "--store", str(store), "--run", str(run), "--head", "videomap"]
        assert main([*args, "--epochs", "2", "--batch-size", "4", *extra]) == 0
        weights[name] = torch.load(run / "videomap.pt", weights_only=True)["state_dict"]
    for key, value in weights["memory"].items():
        assert torch.equal(weights["mmap"][key], value), key
    # The crop changes what the head sees, so it changes the weights it learns.
    assert not torch.equal(weights["crop"]["fc.weight"], weights["memory"]["fc.weight"])


def test_micro_batches_give_the_same_update(store):
    """Gradient accumulation over micro-batches equals the whole batch (dropout off: its masks
    are drawn per forward pass, so they would differ)."""
    opened = VideoMapStore.open(store)
    dataset = store_dataset(opened)
    data = MapDataset(opened, dataset.clips("train"), in_memory=True)
    weights = {}
    for micro in (0, 3):
        torch.manual_seed(0)
        model = VideoMapHead(len(dataset.classes), opened.num_frames, opened.feature_dim, dropout=0.0)
        config = TrainConfig(epochs=2, batch_size=8, micro_batch=micro)
        train_head(model, data, config, show_progress=False)
        weights[micro] = model.state_dict()
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[3][key], value, rtol=1e-4, atol=1e-5)
