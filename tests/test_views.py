"""Multi-view stores (`tsmap extract --views N [--flip-views]`): view 0 is the single-view
map bit for bit, the other views are the corner crops (and mirrors) of the same frames,
training draws a view per map and epoch, and scoring averages the views."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import TINY_MAPS, moving_square_frames, write_test_video

from tsmap import steps
from tsmap.cli import main
from tsmap.data.datasets import folder_dataset
from tsmap.data.video import FrameGeometry, Views, read_distinct_frames, read_distinct_views
from tsmap.heads import create_head
from tsmap.steps.extract import ExtractOptions
from tsmap.steps.predict import load_run
from tsmap.steps.tables import format_extraction
from tsmap.training import score_maps
from tsmap.videomap.loader import MapDataset
from tsmap.videomap.store import StoreError, VideoMapStore

OPTIONS = dict(frames=8, image_size=64, resize=80, batch_size=8, device="cpu", engine="torch", decode_workers=1)


def make_videos(root: Path, names: range = range(3), classes: tuple[str, ...] = ("a", "b")) -> Path:
    for ci, cls in enumerate(classes):
        for i in names:
            frames = moving_square_frames(12 + i, seed=100 * ci + i, size=(120, 96))
            write_test_video(root / cls / f"v{i}.mp4", frames)
    return root


def extract(root: Path, store: Path, views: Views = Views()) -> tuple[VideoMapStore, object]:
    options = ExtractOptions(**OPTIONS, views=views)
    return steps.extract(folder_dataset(root, seed=0), store, options, show_progress=False)


def test_views_are_the_centre_then_the_corners_then_their_mirrors():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    geometry = FrameGeometry(size=60, resize=90)  # a 60 x 60 square: margins 30 (rows) and 60 (columns)
    crops = geometry.convert_views(frame, Views(5, flip=True))
    assert crops.shape == (10, 60, 60, 3)
    assert np.array_equal(crops[0], geometry.convert(frame))
    corners = [rgb[15:75, 30:90], rgb[:60, :60], rgb[:60, 60:], rgb[30:, :60], rgb[30:, 60:]]
    for got, want in zip(crops[:5], corners, strict=True):
        assert np.array_equal(got, want)
    assert np.array_equal(crops[5:], crops[:5, :, ::-1])
    assert Views(3).count == 3 and Views(3, flip=True).count == 6
    with pytest.raises(ValueError, match="1 to 5 crops"):
        Views(6)


def test_a_video_read_in_views_gives_the_single_view_frames_first(tmp_path):
    video = write_test_video(tmp_path / "v.mp4", moving_square_frames(9, size=(120, 96)))
    geometry = FrameGeometry(64, 80)
    frames, rows, count = read_distinct_frames(video, 12, geometry)
    views, view_rows, view_count = read_distinct_views(video, 12, geometry, Views(3))
    assert views.shape == (len(frames), 3, 64, 64, 3) and count == view_count == 9
    assert np.array_equal(views[:, 0], frames) and np.array_equal(view_rows, rows)
    assert not np.array_equal(views[:, 1], views[:, 0])


def test_a_multi_view_store_keeps_view_0_bit_for_bit_and_grows_from_a_single_view_one(tmp_path, capsys):
    root = make_videos(tmp_path / "videos")
    single, _ = extract(root, tmp_path / "single")
    multi, summary = extract(root, tmp_path / "multi", Views(3))
    keys = sorted(single.keys())
    assert summary.done == len(keys) == 6 and multi.views == 3
    assert json.loads((multi.root / "store.json").read_text())["views"] == {"crops": 3, "flip": False}
    assert "views" not in json.loads((single.root / "store.json").read_text())  # single-view stores unchanged
    for key in keys:
        views = multi.read_views(key)
        assert views.shape == (3, 8, single.feature_dim)
        assert np.array_equal(views[0], single.read(key))  # view 0 is the single-view map
        assert not np.array_equal(views[1], views[0]) and not np.array_equal(views[2], views[1])
        assert np.array_equal(multi.read_view(key, 2), views[2])

    # A single-view store takes more views: its maps stay byte-identical, the views are added.
    before = {k: single.path_of(k).read_bytes() for k in keys}
    grown, summary = extract(root, single.root, Views(3))
    assert summary.done == 6 and grown.views == 3 and summary.frames == 6 * 8 * 2  # views 1 and 2 only
    assert {k: grown.path_of(k).read_bytes() for k in keys} == before
    assert all(np.array_equal(grown.read_views(k), multi.read_views(k)) for k in keys)

    # Asking one view of a multi-view store maps its views for new videos; other views are refused.
    make_videos(root, range(3, 4))
    store, summary = extract(root, multi.root)
    assert summary.done == 2 and summary.skipped == 6 and store.views == 3
    assert all(store.complete(k) for k in store.keys())
    assert "3 crops" in format_extraction(summary, store)
    with pytest.raises(StoreError, match="holds 3 crops a video, not 2 crops, mirrored"):
        extract(root, multi.root, Views(2, flip=True))


def test_training_draws_a_view_per_epoch_and_scoring_averages_them(tmp_path):
    root = make_videos(tmp_path / "videos")
    store, _ = extract(root, tmp_path / "store", Views(3))
    clips = steps.store_dataset(store).clips("train")
    for in_memory in (False, True):
        data = MapDataset(store, clips, in_memory=in_memory, views=True)
        assert data.views == 3 and len(data) == len(clips)
        key = data.clips[1].key
        assert torch.equal(data[1][0], torch.from_numpy(np.array(store.read(key))).float())  # before set_epoch
        data.set_epoch(4, seed=0)
        drawn = [data._view_of(i) for i in range(len(data))]
        data.set_epoch(4, seed=0)
        assert drawn == [data._view_of(i) for i in range(len(data))]  # seeded: a resumed run draws the same
        assert torch.equal(data[1][0], torch.from_numpy(np.array(store.read_view(key, drawn[1]))).float())
        assert torch.equal(data.view(2)[1][0], torch.from_numpy(np.array(store.read_view(key, 2))).float())
    drawn_over_epochs = set()
    for epoch in range(8):
        data.set_epoch(epoch)
        drawn_over_epochs |= {data._view_of(i) for i in range(len(data))}
    assert drawn_over_epochs == {0, 1, 2}
    assert MapDataset(store, clips, views=False).views == 1

    torch.manual_seed(0)
    head = create_head("tsn", 2, 8, store.feature_dim)
    scores, labels = score_maps(head, data)
    each = [score_maps(head, data.view(v))[0] for v in range(3)]
    assert np.allclose(scores, np.mean(each, axis=0)) and not np.allclose(each[0], each[1])
    assert np.array_equal(labels, data.labels)


def test_cli_trains_and_evaluates_on_views_and_refuses_bad_view_options(tiny_demo, tmp_path, capsys):
    store, run = tmp_path / "store", tmp_path / "run"
    extract_args = ["--quiet", "extract", "--videos", str(tiny_demo), "--store", str(store), *TINY_MAPS]
    assert main([*extract_args, "--views", "6"]) == 2
    assert "--views takes 1 to 5 crops" in capsys.readouterr().err
    assert main([*extract_args, "--views", "2", "--stream", "flow"]) == 2
    assert "leave them out with --stream flow" in capsys.readouterr().err
    assert not store.exists()  # nothing written

    assert main([*extract_args, "--views", "2"]) == 0
    assert VideoMapStore.open(store).views == 2
    train = ["--quiet", "train", "--store", str(store), "--run", str(run), "--epochs", "2", "--batch-size", "8"]
    assert main([*train, "--head", "tsn"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--store", str(store), "--run", str(run)]) == 0
    assert "the scores of 2 views a video averaged" in capsys.readouterr().out
    results = json.loads((run / "results.json").read_text())
    assert results["views"] == 2

    # predict scores both views of a new video and averages, as evaluate does.
    key = (tiny_demo / "test.txt").read_text().split()[0]
    run_ = load_run(run, "tsn", "cpu")
    maps = torch.from_numpy(np.array(VideoMapStore.open(store).read_views(key))).float()
    with torch.inference_mode():
        scores = run_.head(maps)
    want = torch.softmax(scores.mean(0), 0)
    got = dict(run_.predict(tiny_demo / key, top=3))
    for i in want.topk(3).indices.tolist():
        assert got[run_.classes[i]] == pytest.approx(float(want[i]), abs=2e-3)
    assert not torch.allclose(torch.softmax(scores[0], 0), want, atol=1e-4)  # the views do count
