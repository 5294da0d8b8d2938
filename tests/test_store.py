"""The VideoMap store: atomic entries, resume, settings checks, killed runs."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_MAPS

from tsmap.cli import main
from tsmap.data.datasets import folder_dataset
from tsmap.data.video import FrameGeometry
from tsmap.fileio import WriteError
from tsmap.videomap.extract import ExtractionAborted, extract_clips, extraction_settings
from tsmap.videomap.store import StoreError, VideoMapStore

SETTINGS = {"stream": "rgb", "backbone": "test", "feature_dim": 4, "frames": 3, "dtype": "float16"}


def test_write_read_roundtrip_and_keys(tmp_path):
    store = VideoMapStore.create_or_open(tmp_path / "s", SETTINGS, source={"kind": "folder", "root": "/x"})
    m = np.arange(12, dtype=np.float32).reshape(3, 4)
    store.write("walk/v1.avi", m)
    assert store.has("walk/v1.avi") and not store.has("walk/v2.avi")
    np.testing.assert_array_equal(store.read("walk/v1.avi"), m.astype(np.float16))
    assert list(store.keys()) == ["walk/v1.avi"]
    with pytest.raises(StoreError, match="shape"):
        store.write("walk/v2.avi", np.zeros((4, 4)))
    with pytest.raises(StoreError, match="invalid video key"):
        store.path_of("../escape.avi")


def test_settings_mismatch_is_a_clear_error(tmp_path):
    VideoMapStore.create_or_open(tmp_path / "s", SETTINGS)
    with pytest.raises(StoreError, match="frames: store has 3, asked 8"):
        VideoMapStore.create_or_open(tmp_path / "s", {**SETTINGS, "frames": 8})
    # The source may move; the settings that shaped the maps may not.
    store = VideoMapStore.create_or_open(tmp_path / "s", SETTINGS, source={"kind": "folder", "root": "/moved"})
    assert VideoMapStore.open(tmp_path / "s").settings["source"]["root"] == "/moved"
    assert store.num_frames == 3


def test_write_killed_midway_leaves_no_entry(tmp_path, monkeypatch):
    store = VideoMapStore.create_or_open(tmp_path / "s", SETTINGS)

    def broken_fsync(fd):  # the bytes are in the temporary file; then the disk goes
        raise OSError(errno.EIO, "disk vanished")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(WriteError, match="disk vanished"):
        store.write("a/b.mp4", np.zeros((3, 4)))
    monkeypatch.undo()
    assert not store.has("a/b.mp4")
    assert list(store.keys()) == []
    # A failed write removes its own temporary file; one left by a killed writer is swept.
    assert not list(store.maps_dir.rglob(".tmp-*"))
    (store.maps_dir / "a" / ".tmp-999-b.mp4.npy").write_bytes(b"\x93NUMPY partial")
    assert store.remove_stale_temporaries() == 1


def _copy_dataset(src: Path, dst: Path, classes: int = 4) -> Path:
    for name in sorted(p.name for p in src.iterdir() if p.is_dir())[:classes]:
        shutil.copytree(src / name, dst / name)
    return dst


def test_corrupt_video_is_reported_by_name_and_skipped(tmp_path, tiny_demo, encoder):
    root = _copy_dataset(tiny_demo, tmp_path / "videos")
    dataset = folder_dataset(root)
    bad = dataset.clips()[1].key
    (root / bad).write_bytes(b"\x00\x01garbage" * 50)
    geometry = FrameGeometry(64, 64)
    store = VideoMapStore.create_or_open(tmp_path / "store", extraction_settings(encoder, 8, geometry))
    summary = extract_clips(dataset.clips(), root, store, encoder, geometry, show_progress=False)
    assert set(summary.failed) == {bad}
    assert summary.done == len(dataset.clips()) - 1
    assert bad in store.failures() and not store.has(bad)
    # Strict mode stops at the bad video and keeps what was written.
    store2 = VideoMapStore.create_or_open(tmp_path / "store2", extraction_settings(encoder, 8, geometry))
    with pytest.raises(ExtractionAborted, match=Path(bad).name):
        extract_clips(dataset.clips(), root, store2, encoder, geometry, strict=True, show_progress=False)
    assert store2.has(dataset.clips()[0].key)


def test_killed_extraction_resumes_without_loss(tmp_path, tiny_demo):
    root = _copy_dataset(tiny_demo, tmp_path / "videos", classes=12)
    store_dir = tmp_path / "store"
    cmd = [
        sys.executable,
        "-m",
        "tsmap",
        "--quiet",
        "extract",
        "--videos",
        str(root),
        "--store",
        str(store_dir),
        "--frames",
        "16",
        "--image-size",
        "64",
        "--resize",
        "64",
        "--batch-size",
        "8",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    maps = store_dir / "maps"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if maps.is_dir() and sum(not p.name.startswith(".tmp-") for p in maps.rglob("*.npy")) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "extraction finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    store = VideoMapStore.open(store_dir)
    before = list(store.keys())
    total = len(folder_dataset(root).clips())
    assert 3 <= len(before) < total
    for key in before:  # every visible entry is whole
        assert store.read(key, mmap=False).shape == (16, 1280)

    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{len(before)} already in the store" in result.stdout
    assert f"{total - len(before)} mapped" in result.stdout
    after = list(VideoMapStore.open(store_dir).keys())
    assert len(after) == total
    assert not any(p.name.startswith(".tmp-") for p in maps.rglob("*"))


def _audio_only(path: Path) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_every_kind_of_bad_video_is_reported_and_the_rest_finish(tmp_path, tiny_demo, capsys):
    root = _copy_dataset(tiny_demo, tmp_path / "videos", classes=12)
    for name in ("train.txt", "test.txt"):
        shutil.copy(tiny_demo / name, root / name)
    keys = (root / "train.txt").read_text().split()
    good = (root / keys[0]).read_bytes()
    bad = {
        keys[1]: lambda p: p.write_bytes(b""),  # zero bytes
        keys[2]: lambda p: p.write_bytes(good[: len(good) // 2]),  # truncated mid-file
        keys[3]: lambda p: p.write_text("this is not a video\n"),  # unsupported content
        keys[4]: lambda p: (p.unlink(), _audio_only(p.with_suffix(".mkv")), p.with_suffix(".mkv").rename(p)),
        keys[5]: lambda p: p.unlink(),  # listed in train.txt, missing on disk
    }
    for key, damage in bad.items():
        damage(root / key)
    store = tmp_path / "store"
    code = main(["--quiet", "extract", "--videos", str(root), "--store", str(store), *TINY_MAPS])
    assert code == 1  # done, but some videos failed: exit status 1
    out = capsys.readouterr().out
    failures = VideoMapStore.open(store).failures()
    assert set(failures) == set(bad)
    for key in bad:  # the end summary names every bad file with its reason
        assert f"failed: {key}: {failures[key]}" in out
    assert "no video stream" in failures[keys[4]] and "not found" in failures[keys[5]]
    total = len(folder_dataset(root).clips())
    assert len(list(VideoMapStore.open(store).keys())) == total - len(bad)
    assert f"{total - len(bad)} mapped" in out and f"{len(bad)} failed" in out
    assert "listed videos do not exist" in out  # the dataset check warned before extracting
