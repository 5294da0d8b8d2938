"""A store only serves maps of the videos it names: a seeded split is recorded once, a
replaced video (or another dataset with the same names) is never served an old map, a
moved dataset gets a fix, and failures.jsonl keeps one line a video."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import moving_square_frames, write_test_video

from tsmap import steps
from tsmap.data.datasets import DatasetError, folder_dataset
from tsmap.steps.extract import ExtractOptions
from tsmap.videomap.store import SOURCES_FILE, SPLIT_FILE, StoreError, VideoMapStore

OPTIONS = dict(frames=8, image_size=64, resize=64, batch_size=8, device="cpu", engine="torch", decode_workers=1)


def make_videos(root: Path, names: range = range(2), classes: tuple[str, ...] = ("a", "b")) -> Path:
    for ci, cls in enumerate(classes):
        for i in names:
            write_test_video(root / cls / f"v{i}.mp4", moving_square_frames(10 + i, seed=100 * ci + i))
    return root


def extract(root: Path, store: Path, seed: int = 0, **options) -> tuple[VideoMapStore, object]:
    dataset = folder_dataset(root, seed=seed)
    return steps.extract(dataset, store, ExtractOptions(**OPTIONS, **options), show_progress=False)


def split_keys(dataset) -> dict[str, set[str]]:
    return {name: {c.key for c in clips} for name, clips in dataset.splits.items()}


def test_a_seeded_split_is_recorded_once_and_new_videos_join_it(tmp_path, capsys):
    root = make_videos(tmp_path / "videos", range(3))
    store, _ = extract(root, tmp_path / "store")
    record = json.loads((store.root / SPLIT_FILE).read_text())
    assert record["seed"] == 0 and record["test_fraction"] == 0.3 and record["classes"] == ["a", "b"]
    first = split_keys(steps.store_dataset(store))
    assert first == {"train": set(record["train"]), "test": set(record["test"])} and len(first["test"]) == 2

    # Two more videos a class: before they are extracted, train and evaluate see the recorded split.
    make_videos(root, range(3, 5))
    before = steps.store_dataset(store)
    assert split_keys(before) == first
    assert any("came after its split was recorded" in line for line in before.problems)

    capsys.readouterr()
    store, summary = extract(root, tmp_path / "store")
    out = capsys.readouterr().out
    assert summary.done == 4 and summary.skipped == 6
    assert "note: 4 new videos in" in out and "a/v4.mp4 (" in out
    after = split_keys(steps.store_dataset(store))
    assert first["train"] <= after["train"] and first["test"] <= after["test"]  # nothing moved
    assert len(after["train"] | after["test"]) == 10 and not after["train"] & after["test"]
    # The new ones were drawn by the recorded rule among themselves: 0.3 of 2 a class rounds to 1.
    new_test = after["test"] - first["test"]
    assert sorted(k.split("/")[0] for k in new_test) == ["a", "b"]

    # A video that disappears keeps its place (and its map); another seed changes nothing.
    gone = sorted(first["train"])[0]
    (root / gone).unlink()
    capsys.readouterr()
    store, _ = extract(root, tmp_path / "store", seed=7)
    out = capsys.readouterr().out
    assert "1 videos of the recorded split are no longer in" in out and gone in out
    assert "recorded at the first extraction with test fraction 0.3 and seed 0" in out
    assert split_keys(steps.store_dataset(store)) == after and store.has(gone)


def test_a_replaced_video_is_refused_then_remapped_on_request(tmp_path, capsys):
    root = make_videos(tmp_path / "videos")
    store, _ = extract(root, tmp_path / "store")
    old = store.read("a/v0.mp4", mmap=False)
    shutil.copyfile(root / "b/v1.mp4", root / "a/v0.mp4")  # same path, new content
    with pytest.raises(StoreError) as err:
        extract(root, tmp_path / "store")
    message = str(err.value)
    assert "1 videos differ from the files their VideoMaps" in message and str(root / "a/v0.mp4") in message
    assert "--remap-changed" in message and "another --store" in message
    np.testing.assert_array_equal(VideoMapStore.open(store.root).read("a/v0.mp4", mmap=False), old)

    capsys.readouterr()
    store, summary = extract(root, tmp_path / "store", remap_changed=True)
    assert summary.done == 1 and "note: 1 changed videos are mapped again" in capsys.readouterr().out
    new = store.read("a/v0.mp4", mmap=False)
    assert not np.array_equal(new, old)
    np.testing.assert_allclose(new, store.read("b/v1.mp4", mmap=False), atol=1e-2)
    _, summary = extract(root, tmp_path / "store")  # the record follows the new file
    assert summary.done == 0 and summary.skipped == 4
    lines = (store.root / SOURCES_FILE).read_text().splitlines()
    assert len(lines) == 4  # one record a map, the latest


def test_another_dataset_with_the_same_names_is_refused_a_copy_is_not(tmp_path):
    root = make_videos(tmp_path / "videos")
    store, _ = extract(root, tmp_path / "store")
    other = tmp_path / "other"
    for key in (c.key for c in folder_dataset(root).clips()):
        (other / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / key, other / key)  # a copy: new mtime, same bytes
    shutil.copyfile(root / "a/v0.mp4", other / "a/v1.mp4")
    shutil.copyfile(root / "a/v1.mp4", other / "a/v0.mp4")
    shutil.copyfile(root / "a/v0.mp4", other / "b/v0.mp4")
    with pytest.raises(StoreError, match=r"^3 videos differ") as err:
        extract(other, tmp_path / "store")
    assert all(str(other / k) in str(err.value) for k in ("a/v0.mp4", "a/v1.mp4", "b/v0.mp4"))
    assert VideoMapStore.open(store.root).settings["source"]["root"] == str(root.resolve())  # not moved

    for key in ("a/v0.mp4", "a/v1.mp4", "b/v0.mp4"):
        shutil.copyfile(root / key, other / key)
    store, summary = extract(other, tmp_path / "store")
    assert summary.done == 0 and summary.skipped == 4
    assert store.settings["source"]["root"] == str(other.resolve())
    records = store.sources()  # refreshed: the copies' mtimes now take the fast path
    assert all(records[k]["mtime_ns"] == (other / k).stat().st_mtime_ns for k in records)


def test_an_old_store_without_records_gets_them_without_a_refusal(tmp_path):
    root = make_videos(tmp_path / "videos")
    store, _ = extract(root, tmp_path / "store")
    (store.root / SOURCES_FILE).unlink()
    (store.root / SPLIT_FILE).unlink()
    store, summary = extract(root, tmp_path / "store")
    assert summary.done == 0 and set(store.sources()) == set(store.keys())
    assert (store.root / SPLIT_FILE).is_file()


def test_a_moved_dataset_names_where_it_was_and_the_fix(tmp_path):
    root = make_videos(tmp_path / "videos")
    store, _ = extract(root, tmp_path / "store")
    moved = root.rename(tmp_path / "elsewhere")
    with pytest.raises(DatasetError) as err:
        steps.store_dataset(VideoMapStore.open(store.root))
    message = str(err.value)
    assert f"were in {root.resolve()}, which no longer exists" in message
    assert f"tsmap extract --videos NEW_PLACE --store {store.root}" in message and "keeps the maps" in message
    store, summary = extract(moved, tmp_path / "store")  # the fix
    assert summary.done == 0 and summary.skipped == 4
    assert len(steps.store_dataset(store).clips()) == 4


def test_failures_keep_one_line_per_video(tmp_path):
    root = make_videos(tmp_path / "videos")
    (root / "a/v1.mp4").write_bytes(b"not a video" * 10)
    for _ in range(2):
        store, summary = extract(root, tmp_path / "store")
        assert list(summary.failed) == ["a/v1.mp4"]
    lines = (store.root / "failures.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["video"] == "a/v1.mp4"
