"""`tsmap join`: one store of an RGB and a flow store's maps side by side, and one head on both."""

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY_MAPS

from tsmap.cli import main
from tsmap.finetune.provenance import TRAIN_KEYS_FILE, keys_digest
from tsmap.steps.predict import load_run
from tsmap.videomap.store import VideoMapStore


@pytest.fixture(scope="module")
def two_stores(tiny_demo, tmp_path_factory):
    """An RGB and a flow store of the tiny demo (T = 8, 64 px)."""
    out = tmp_path_factory.mktemp("join")
    for stream in ("rgb", "flow"):
        args = ["--quiet", "extract", "--videos", str(tiny_demo), "--store", str(out / stream), *TINY_MAPS]
        assert main([*args, "--stream", stream]) == 0
    return out


def test_join_puts_the_maps_side_by_side_and_trains_evaluates_predicts(two_stores, tiny_demo, tmp_path, capsys):
    rgb, flow, both = two_stores / "rgb", two_stores / "flow", tmp_path / "both"
    assert main(["join", "--stores", str(rgb), str(flow), "--store", str(both)]) == 0
    assert "maps written, 0 unchanged" in capsys.readouterr().out
    store = VideoMapStore.open(both)
    s = store.settings
    assert s["stream"] == "rgb+flow" and s["feature_dim"] == 2560 and s["frames"] == 8
    assert [p["stream"] for p in s["parts"]] == ["rgb", "flow"] and s["source"] == VideoMapStore.open(rgb).settings[
        "source"
    ]
    keys = list(store.keys())
    assert keys == list(VideoMapStore.open(rgb).keys())
    for key in keys[:3]:
        parts = [np.asarray(VideoMapStore.open(d).read(key)) for d in (rgb, flow)]
        np.testing.assert_array_equal(np.asarray(store.read(key)), np.concatenate(parts, axis=1))
    # A rerun writes nothing and leaves every map byte-identical.
    before = {k: store.path_of(k).read_bytes() for k in keys}
    assert main(["join", "--stores", str(rgb), str(flow), "--store", str(both)]) == 0
    assert "0 maps written" in capsys.readouterr().out
    assert {k: store.path_of(k).read_bytes() for k in keys} == before
    # A part's map made again is joined again; a video no longer mapped in a part leaves the joined store.
    flow_store = VideoMapStore.open(flow)
    kept = [shutil.copy(flow_store.path_of(k), tmp_path / f"kept{i}.npy") for i, k in enumerate(keys[:2])]
    flow_store.write(keys[0], np.asarray(flow_store.read(keys[0]), np.float32) + 1)
    flow_store.discard(keys[1])
    assert main(["join", "--stores", str(rgb), str(flow), "--store", str(both)]) == 0
    assert "1 maps written" in capsys.readouterr().out
    assert np.asarray(store.read(keys[0]))[:, 1280:].tolist() == np.asarray(flow_store.read(keys[0])).tolist()
    assert not store.has(keys[1]) and {k: store.path_of(k).read_bytes() for k in keys[2:]} == {
        k: before[k] for k in keys[2:]
    }
    for key, path in zip(keys[:2], kept, strict=True):  # the fixture's store as it was
        shutil.copy(path, flow_store.path_of(key))
    assert main(["--quiet", "join", "--stores", str(rgb), str(flow), "--store", str(both)]) == 0

    run = tmp_path / "run"
    assert main(["--quiet", "train", "--store", str(both), "--run", str(run), "--epochs", "2"]) == 0
    assert main(["--quiet", "evaluate", "--store", str(both), "--run", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    test_keys = (tiny_demo / "test.txt").read_text().split()
    assert results["stream"] == "rgb+flow" and results["num_videos"] == len(test_keys)
    # Predict maps a new video with each part's settings: the same scores as the stored joined map.
    key = test_keys[0]
    loaded = load_run(run, device="cpu")
    predicted = dict(loaded.predict(tiny_demo / key, top=12))
    with torch.inference_mode():
        stored = torch.softmax(loaded.head(torch.from_numpy(np.asarray(store.read(key), np.float32))[None])[0], 0)
    for i, name in enumerate(loaded.classes):
        assert predicted[name] == pytest.approx(float(stored[i]), abs=0.02)
    # Explain reads RGB frames only, and says so.
    assert main(["explain", str(tiny_demo / key), "--run", str(run), "--out", str(tmp_path / "x")]) == 2
    assert "rgb+flow" in capsys.readouterr().err


def test_join_refuses_stores_that_do_not_fit(two_stores, tiny_demo, tmp_path, capsys):
    rgb, flow = two_stores / "rgb", two_stores / "flow"
    out = tmp_path / "out"
    other_t = tmp_path / "rgb_t4"
    args = ["--quiet", "extract", "--videos", str(tiny_demo), "--store", str(other_t), "--frames", "4"]
    assert main([*args, "--image-size", "64", "--resize", "64"]) == 0
    cases = [
        ([str(rgb), str(other_t)], "frames", "--frames"),
        ([str(rgb)], "two stores or more", None),
        ([str(rgb), str(flow)], "is one of the --stores", None),
    ]
    for stores, message, option in cases:
        target = str(rgb) if "one of the" in message else str(out)
        before = sorted(p.name for p in rgb.iterdir())
        assert main(["join", "--stores", *stores, "--store", target]) == 2
        err = capsys.readouterr().err
        assert message in err and (option is None or option in err) and "Traceback" not in err
        assert not out.exists() and sorted(p.name for p in rgb.iterdir()) == before
    # A joined store is not a part; another set of parts does not go into an existing joined store.
    assert main(["--quiet", "join", "--stores", str(rgb), str(flow), "--store", str(out)]) == 0
    assert main(["join", "--stores", str(out), str(flow), "--store", str(tmp_path / "again")]) == 2
    assert "joined store already" in capsys.readouterr().err
    assert main(["join", "--stores", str(flow), str(rgb), "--store", str(out)]) == 2
    assert "flow+rgb" in capsys.readouterr().err


def test_a_fine_tuned_part_keeps_its_test_checks_in_the_joined_store(two_stores, tiny_demo, tmp_path, capsys):
    """A part mapped by a ConvNet fine-tuned on a test video: the joined store is refused too."""
    flow = shutil.copytree(two_stores / "flow", tmp_path / "flow_ft")
    seen = (tiny_demo / "test.txt").read_text().split()[0]
    settings = json.loads((flow / "store.json").read_text())
    settings["weights_trained_on"] = {"dataset": "folder", "split": None, "videos": 1, "digest": keys_digest([seen])}
    (flow / "store.json").write_text(json.dumps(settings))
    (flow / TRAIN_KEYS_FILE).write_text(f"{seen}\n")
    both = tmp_path / "both"
    assert main(["--quiet", "join", "--stores", str(two_stores / "rgb"), str(flow), "--store", str(both)]) == 0
    assert json.loads((both / "store.json").read_text())["weights_trained_on"]["digest"] == keys_digest([seen])
    assert main(["--quiet", "train", "--store", str(both), "--run", str(tmp_path / "run"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "fine-tuned on" in err and "Traceback" not in err


def test_report_does_not_extract_denser_maps_for_a_joined_store(two_stores, tmp_path):
    from tsmap.report.density import dense_store
    from tsmap.report.options import ReportOptions
    from tsmap.steps.common import store_dataset

    both = tmp_path / "both"
    parts = [str(two_stores / "rgb"), str(two_stores / "flow")]
    assert main(["--quiet", "join", "--stores", *parts, "--store", str(both)]) == 0
    store = VideoMapStore.open(both)
    options = ReportOptions(density_store=tmp_path / "dense")
    dense, why = dense_store(store, store_dataset(store), 16, options, log=print)
    assert dense is None and "joins other stores" in why and "--density-store" in why
    assert not (tmp_path / "dense").exists()


def test_rejoining_after_a_part_s_weights_moved_keeps_the_maps_and_records_the_new_place(two_stores, tmp_path, capsys):
    """Where a part's fine-tuned weights lie says where they are, not what the maps are (as for
    one store): a moved checkpoint must not make the joined store 'other maps'."""
    flow = shutil.copytree(two_stores / "flow", tmp_path / "flow_ft")
    settings = json.loads((flow / "store.json").read_text())
    settings |= {"weights": "flow_ft.pt sha256:0123", "weights_file": "/old/place/flow_ft.pt"}
    (flow / "store.json").write_text(json.dumps(settings))
    both = tmp_path / "both"
    join = ["--quiet", "join", "--stores", str(two_stores / "rgb"), str(flow), "--store", str(both)]
    assert main(join) == 0
    maps = {p: p.read_bytes() for p in (both / "maps").rglob("*") if p.is_file()}
    settings["weights_file"] = "/new/place/flow_ft.pt"  # the checkpoint moved; the flow store says so
    (flow / "store.json").write_text(json.dumps(settings))
    capsys.readouterr()
    assert main(join) == 0, capsys.readouterr().err
    assert {p: p.read_bytes() for p in (both / "maps").rglob("*") if p.is_file()} == maps
    parts = json.loads((both / "store.json").read_text())["parts"]
    assert parts[1]["weights_file"] == "/new/place/flow_ft.pt"  # what `tsmap predict` reads
    settings["weights"] = "flow_ft.pt sha256:4567"  # other weights: other maps, still refused
    (flow / "store.json").write_text(json.dumps(settings))
    assert main(join) == 2
    assert "Traceback" not in capsys.readouterr().err
