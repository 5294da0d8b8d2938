"""What makes the report's figures trustworthy (issue 12): heads reused only on the same maps,
classes and clips (B4); the density store made like the main store (B5); TSN averaging
every frame at T' (B11); epochs picked on validation clips carved from training, test
measured once (B10). Tiny stores written directly (no videos) except for B5."""

import json

import numpy as np
import pytest
import torch

from tsmap import steps
from tsmap.data.datasets import Clip, VideoDataset, folder_dataset
from tsmap.data.video import uniform_indices
from tsmap.frames.backbones import FINETUNE_FORMAT, build_backbone
from tsmap.heads.checkpoint import load_head
from tsmap.heads.tsn import TSNHead
from tsmap.report import ReportOptions, build_report
from tsmap.report.analysis import main_heads
from tsmap.report.density import dense_store, density_curve
from tsmap.report.experiments import DESIGNS, carve_validation, train_or_reuse
from tsmap.videomap.loader import MapDataset
from tsmap.videomap.settings import MapSettings
from tsmap.videomap.store import StoreError, VideoMapStore

FLOW = {"stream": "flow", "flow_method": "dis", "flow_preset": "medium", "flow_bound": 20.0, "flow_stack": 5}


def _store(root, clips, frames=8, dim=16, seed=0, **settings) -> VideoMapStore:
    """A store of random maps (class c adds c to column c, so heads can learn something)."""
    store = VideoMapStore.create_or_open(root, MapSettings(frames=frames, feature_dim=dim, **settings))
    rng = np.random.default_rng(seed)
    for clip in clips:
        m = rng.normal(size=(frames, dim))
        m[:, clip.label] += 2.0
        store.write(clip.key, m)
    return store


def _clips(classes: int, per_class: int, prefix: str = "v") -> list[Clip]:
    return [Clip(f"c{c}/{prefix}{i:02d}.mp4", c) for c in range(classes) for i in range(per_class)]


# -- B4: a head is reused only when trained on the same maps, classes and clips --------------
def test_heads_trained_on_another_store_are_retrained(tmp_path, capsys):
    clips = _clips(3, 4)
    rgb = _store(tmp_path / "store_rgb", clips)
    flow = _store(tmp_path / "store_flow", clips, **FLOW)  # same keys, classes, T and L: only the maps differ
    options = ReportOptions(epochs=1, batch_size=4, show_progress=False, device="cpu")
    heads, classes = tmp_path / "report" / "heads", ["c0", "c1", "c2"]
    heads.mkdir(parents=True)
    _, _, _, reused = train_or_reuse("conv1", 0, MapDataset(rgb, clips, True), rgb, classes, options, heads)
    assert not reused
    _, _, _, reused = train_or_reuse("conv1", 0, MapDataset(rgb, clips, True), rgb, classes, options, heads)
    assert reused  # the same store, classes and clips: reused
    capsys.readouterr()
    # The old report reused the RGB head here: the flow store has the same clip keys and classes.
    model, _, _, reused = train_or_reuse("conv1", 0, MapDataset(flow, clips, True), flow, classes, options, heads)
    assert not reused
    assert "other maps" in capsys.readouterr().out  # and says why
    _, payload = load_head(heads / "conv1-seed0.pt")
    assert payload["store_settings"]["stream"] == "flow"  # the head saved now is the flow one
    # Other classes (the same maps): retrained too.
    _, _, _, reused = train_or_reuse("conv1", 0, MapDataset(flow, clips, True), flow, ["x", "y", "z"], options, heads)
    assert not reused


def test_explained_run_heads_must_match_the_store(tmp_path):
    clips = _clips(2, 3)
    rgb = _store(tmp_path / "rgb", clips)
    flow = _store(tmp_path / "flow", clips, **FLOW)
    dataset = VideoDataset(tmp_path, ["c0", "c1"], {"train": clips, "test": clips})
    options = ReportOptions(epochs=1, batch_size=4, tsn_epochs=1, show_progress=False, device="cpu")
    run = tmp_path / "run"
    run.mkdir()
    for kind, key in (("videomap", "A0A1A2"), ("tsn", "tsn")):
        train_or_reuse(key, 0, MapDataset(rgb, clips, True), rgb, dataset.classes, options, run)
        (run / f"{key}-seed0.pt").rename(run / f"{kind}.pt")
    assert set(main_heads(rgb, dataset, {}, run, "cpu")) == {"videomap", "tsn", "source"}
    with pytest.raises(StoreError, match="holds rgb VideoMaps, not flow"):
        main_heads(flow, dataset, {}, run, "cpu")


# -- B11: TSN averages all T' frames ------------------------------------------------------
def test_tsn_density_point_uses_every_frame(tmp_path):
    """Class evidence only on the rows that 25-row sampling skips: the old TSN (25 of the 256
    rows at T' = 256) saw none of it and was at chance whatever T'."""
    t, dim = 256, 4
    skipped = np.setdiff1d(np.arange(t), uniform_indices(t, 25))
    clips = [Clip("c0/a.mp4", 0), Clip("c1/b.mp4", 1)]
    store = VideoMapStore.create_or_open(tmp_path / "store", MapSettings(frames=t, feature_dim=dim))
    for clip in clips:
        m = np.zeros((t, dim))
        m[skipped, clip.label] = 1.0
        store.write(clip.key, m)
    tsn = DESIGNS["tsn"].build(2, t, dim).eval()
    with torch.no_grad():
        tsn.fc.weight.copy_(torch.eye(2, dim))
        tsn.fc.bias.zero_()
    maps = torch.stack([torch.from_numpy(store.read(c.key).astype(np.float32)) for c in clips])
    assert tsn(maps).argmax(1).tolist() == [0, 1]  # all 256 rows averaged
    dataset = VideoDataset(tmp_path, ["c0", "c1"], {"train": [], "test": clips})
    models = {"A0A1A2": [DESIGNS["A0A1A2"].build(2, 16, dim).eval()], "tsn": [tsn]}
    options = ReportOptions(densities=(25, 256), device="cpu", show_progress=False)
    curve = density_curve(store, dataset, models, options, {})
    assert curve["densities"] == [25, 256] and curve["num_videos"] == 2
    assert curve["tsn"]["256"]["mean"] == 1.0  # every one of the 256 frames counts
    assert curve["tsn"]["25"]["mean"] == 0.5  # the 25 frames carry no evidence: a tie, class 0 for both
    assert "TSN averages all T' rows" in curve["protocol"]


def test_tsn_test_frames():
    head = TSNHead(2, 3).eval()
    assert head.test_frames == 25 and head.config["test_frames"] == 25  # saved heads keep their 25 rows
    with pytest.raises(ValueError, match="test_frames"):
        TSNHead(2, 3, test_frames=-1)
    every = TSNHead(2, 3, test_frames=0).eval()
    every.load_state_dict(head.state_dict())
    maps = torch.randn(2, 40, 3)
    torch.testing.assert_close(every(maps), every.fc(every.standardize(maps)).mean(1))


# -- B5: the density store is made with the main store's weights -----------------------------
def test_density_store_is_made_like_the_main_store(tiny_demo, tmp_path):
    backbone, _ = build_backbone("efficientnet_lite0")
    with torch.no_grad():
        backbone._conv_head.weight.mul_(0.5)  # "fine-tuned": not the ImageNet weights
    weights = tmp_path / "finetuned.pt"
    state = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
    torch.save(
        {"format": FINETUNE_FORMAT, "backbone": "efficientnet_lite0", "stream": "rgb", "backbone_state": state}, weights
    )
    full = folder_dataset(tiny_demo)
    dataset = VideoDataset(full.root, full.classes, {"test": full.clips("test")[:3]}, full.spec)
    tiny = {"image_size": 64, "resize": 64, "device": "cpu", "engine": "torch"}
    store, _ = steps.extract(
        dataset, tmp_path / "store", steps.ExtractOptions(frames=8, weights=weights, **tiny), show_progress=False
    )
    assert store.map_settings.weights.startswith("finetuned")
    options = ReportOptions(device="cpu", engine="torch", show_progress=False)
    dense, source = dense_store(store, dataset, 16, options, lambda *a: None)
    assert dense.num_frames == 16 and str(dense.root) in source
    # The old report extracted these maps with the ImageNet weights and never compared.
    assert dense.map_settings.differences(store.map_settings, ignore=("frames",)) == []
    assert dense.map_settings.weights == store.map_settings.weights
    # A density store made otherwise (ImageNet weights) is refused when reused, naming the difference.
    other = tmp_path / "imagenet-T16"
    VideoMapStore.create_or_open(other, dense.map_settings.with_(weights=None, weights_file=None))
    options.density_store = other
    with pytest.raises(StoreError, match="weights"):
        dense_store(store, dataset, 16, options, lambda *a: None)


# -- B10: epochs are picked on validation clips carved from training ----------------------------
def test_carve_validation_is_stratified_seeded_and_disjoint():
    clips = _clips(3, 10) + _clips(1, 2, "w")  # class 0 has 12 clips
    train, val = carve_validation(clips, 3, 0.1)
    assert sorted(c.key for c in train + val) == sorted(c.key for c in clips)
    assert not {c.key for c in train} & {c.key for c in val}
    assert [sum(c.label == k for c in val) for k in range(3)] == [1, 1, 1]
    assert carve_validation(clips, 3, 0.1) == (train, val)  # seeded
    assert carve_validation(_clips(2, 2), 2, 0.1)[1] == []  # 10 % of 2 rounds to none
    assert carve_validation(_clips(1, 1), 1, 0.9)[1] == []  # never a whole class


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory):
    """A report on a store of random maps (3 classes x 10 train / 2 test, T = 16): no videos."""
    root = tmp_path_factory.mktemp("trust")
    videos = root / "videos"
    train, test = _clips(3, 10), _clips(3, 2, "t")
    for clip in train + test:
        (videos / clip.key).parent.mkdir(parents=True, exist_ok=True)
        (videos / clip.key).write_bytes(b"")
    (videos / "train.txt").write_text("".join(f"{c.key}\n" for c in train))
    (videos / "test.txt").write_text("".join(f"{c.key}\n" for c in test))
    dataset = folder_dataset(videos)
    settings = MapSettings(frames=16, feature_dim=32, source=dataset.spec)
    store = VideoMapStore.create_or_open(root / "store", settings, source=dataset.spec)
    _store(store.root, train + test, frames=16, dim=32)
    options = ReportOptions(
        seeds=1, epochs=2, batch_size=8, tsn_epochs=2, densities=(8, 16), device="cpu", show_progress=False
    )
    report = build_report(store.root, root / "report", options, log=lambda *a: None)
    return report, root / "report"


def test_report_picks_epochs_on_validation_and_tests_once(synthetic_report):
    report, out = synthetic_report
    assert (report["num_train_maps"], report["num_val_maps"], report["num_test_maps"]) == (27, 3, 6)
    val = set(report["val_videos"])
    assert len(val) == 3 and {k.split("/")[0] for k in val} == {"c0", "c1", "c2"}
    for row in [*report["table2"].values(), *report["table3"].values()]:
        assert len(row["val_top1"]["per_seed"]) == 1 and 0 <= row["val_top1"]["mean"] <= 1
    for path in (out / "heads").glob("*.pt"):
        _, payload = load_head(path)
        extra = payload["extra"]
        assert set(extra["val_keys"]) == val and not val & set(extra["train_keys"])
        assert not any("/t" in k for k in extra["train_keys"] + extra["val_keys"])  # no test clip
        assert (
            any("val_top1" in r for r in extra["history"]) and sum(r.get("kept", False) for r in extra["history"]) == 1
        )
    markdown = (out / "report.md").read_text()
    assert "val top-1 (%)" in markdown and "test top-1 (%)" in markdown
    assert "Nothing is chosen on test" in markdown and "Validation: 3 maps" in markdown
    csv_metrics = {line.split(",")[2] for line in (out / "table2_heads.csv").read_text().splitlines()[1:]}
    assert {"val_top1", "top1"} <= csv_metrics
    assert json.loads((out / "report.json").read_text())["num_val_maps"] == 3


def test_report_does_not_change_what_it_has_written(synthetic_report):
    report, out = synthetic_report
    on_disk = json.loads((out / "report.json").read_text())
    assert "_curves" not in json.dumps(on_disk) and on_disk["localization"] == report["localization"]
    assert report["density"]["tsn"]["16"]["per_seed"] and report["main_head_labels"]["tsn"] == DESIGNS["tsn"].label


def test_report_says_when_a_head_collapsed_and_was_trained_again(tmp_path, monkeypatch):
    """A design whose head was trained again at a smaller lr after a collapse is named in the log."""
    from tsmap.report import experiments

    clips = _clips(3, 4)
    store = _store(tmp_path / "store", clips)
    data = MapDataset(store, clips, True)
    real = experiments.train_or_reuse

    def restarted(*args, **kwargs):  # the real training; its records marked as after one restart
        model, history, seconds, reused = real(*args, **kwargs)
        return model, [r | {"lr_scale": 0.5} for r in history], seconds, reused

    monkeypatch.setattr(experiments, "train_or_reuse", restarted)
    lines: list[str] = []
    options = ReportOptions(epochs=1, batch_size=4, show_progress=False, device="cpu")
    splits = experiments.Splits(train=data, val=data, test=data)
    experiments.train_designs(
        ["conv1"], [0], splits, store, ["c0", "c1", "c2"], {}, options, tmp_path / "heads", lines.append
    )
    assert any("collapsed" in line and "0.5 x the learning rate" in line for line in lines), lines
