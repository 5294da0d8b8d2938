"""Training that a reviewer can trust: a validation split carved from training, the best epoch
on it kept, settings checked before anything is written, and runs that notice other maps."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import Dataset

from tsmap import steps
from tsmap.data.datasets import Clip
from tsmap.data.subsets import carve_validation, clips_digest
from tsmap.heads import create_head
from tsmap.train_config import ADDED_LATER, ConfigError, TrainConfig, recipe
from tsmap.training import WeightAverage, train_head, validate
from tsmap.videomap.settings import MapSettings
from tsmap.videomap.store import StoreError, VideoMapStore

T, L, CLASSES = 16, 32, 3


class Maps(Dataset):
    """Maps whose class shows as a bump on a few rows, plus noise."""

    def __init__(self, n: int, seed: int, noise: float = 1.0):
        rng = np.random.default_rng(seed)
        self.labels = rng.integers(0, CLASSES, n)
        maps = rng.normal(0, noise, (n, T, L)).astype(np.float32)
        for i, y in enumerate(self.labels):
            maps[i, 4 * y : 4 * y + 4, :8] += 1.5
        self.maps = torch.from_numpy(maps)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.maps[i], int(self.labels[i])


def _clips(per_class: dict[int, int]) -> list[Clip]:
    return [Clip(f"c{y}/v{i:03d}.mp4", y) for y, n in per_class.items() for i in range(n)]


def test_validation_is_carved_from_training_per_class_seeded_and_disjoint():
    clips = _clips({0: 20, 1: 10, 2: 3})
    train, val = carve_validation(clips, 0.1, seed=0)
    assert {c.key for c in train}.isdisjoint(c.key for c in val)
    assert sorted(train + val, key=lambda c: c.key) == sorted(clips, key=lambda c: c.key)
    counts = {y: sum(c.label == y for c in val) for y in range(3)}
    assert counts == {0: 2, 1: 1, 2: 0}  # a class of 3 keeps its videos for training
    again, _ = carve_validation(list(reversed(clips)), 0.1, seed=0)
    assert again == train  # the order of the list does not matter
    assert carve_validation(clips, 0.1, seed=1)[1] != val
    assert carve_validation(clips, 0.0)[1] == []
    assert clips_digest(train) != clips_digest(clips)


def test_training_keeps_the_epoch_best_on_validation():
    train, val = Maps(96, seed=0), Maps(30, seed=1, noise=2.5)
    model = create_head("videomap", CLASSES, T, L)
    config = TrainConfig(epochs=8, batch_size=16, lr=0.02, schedule="cosine", warmup_epochs=1, seed=0)
    history = train_head(model, train, config, show_progress=False, val_data=val)
    kept = [r for r in history if r["kept"]]
    assert len(kept) == 1
    assert kept[0]["val_top1"] == max(r["val_top1"] for r in history)
    now = validate(model, val)
    assert now["val_top1"] == pytest.approx(kept[0]["val_top1"])
    assert now["val_loss"] == pytest.approx(kept[0]["val_loss"], rel=1e-5)
    # The cosine schedule warms up, then decays towards zero.
    lrs = [r["lr"] for r in history]
    assert max(lrs) > lrs[-1] and lrs[-1] < 0.1 * config.lr


def test_patience_stops_a_run_that_no_longer_improves():
    train, val = Maps(32, seed=0), Maps(12, seed=1)
    model = create_head("tsn", CLASSES, T, L)
    config = TrainConfig(epochs=20, batch_size=16, lr=1e-12, patience=2, seed=0)
    history = train_head(model, train, config, show_progress=False, val_data=val)
    assert len(history) == 3  # epoch 1 is best; 2 and 3 do not improve on it


@pytest.mark.parametrize(
    "setting",
    [
        {"epochs": 0},
        {"batch_size": 0},
        {"lr": -1.0},
        {"lr": float("nan")},
        {"lr_step": 0},
        {"micro_batch": -1},
        {"temporal_crop": 0.0},
        {"schedule": "linear"},
        {"label_smoothing": 1.0},
        {"patience": -1},
        {"weight_average": -1.0},
        {"weight_average": float("inf")},
    ],
)
def test_training_settings_out_of_range_are_refused_before_anything_runs(setting):
    name = next(iter(setting))
    with pytest.raises(ConfigError, match=name):
        TrainConfig(**setting)


def test_recipes_are_named_and_overridable():
    assert recipe("paper") == TrainConfig()
    assert recipe("cosine", epochs=5, lr=None).epochs == 5
    with pytest.raises(ConfigError, match="recipe"):
        recipe("fastest")


def test_heads_with_batchnorm_get_the_whole_batch_update_whatever_the_micro_batch():
    """Micro-batches would give BatchNorm other batch statistics, so another update."""
    data = Maps(24, seed=0)
    weights = {}
    for micro in (0, 4):
        torch.manual_seed(0)
        model = create_head("alexnet", CLASSES, T, L, dropout=0.0)
        train_head(model, data, TrainConfig(epochs=1, batch_size=12, micro_batch=micro), show_progress=False)
        weights[micro] = model.state_dict()
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[4][key], value, rtol=1e-5, atol=1e-6, msg=key)


# -- the train and evaluate steps on a small hand-made store ------------------------------
def _make_store(root, videos, image_size: int = 64, frames: int = T) -> VideoMapStore:
    """A list dataset of 3 classes (the videos need not exist: only maps are read) and its store."""
    rng = np.random.default_rng(0)
    lines = {"train": [], "test": []}
    for y in range(CLASSES):
        for i in range(12):
            lines["train" if i < 9 else "test"].append(f"c{y}/v{i:02d}.mp4 {y}")
    videos.mkdir(parents=True, exist_ok=True)
    for split, rows in lines.items():
        (videos / f"{split}.txt").write_text("\n".join(rows) + "\n")
    spec = {
        "kind": "list",
        "root": str(videos),
        "train_list": str(videos / "train.txt"),
        "test_list": str(videos / "test.txt"),
        "classes_file": None,
    }
    settings = MapSettings(frames=frames, feature_dim=L, image_size=image_size, resize=image_size)
    store = VideoMapStore.create_or_open(root, settings, source=spec)
    for rows in lines.values():
        for row in rows:
            key, label = row.split()
            m = rng.normal(0, 1, (frames, L)).astype(np.float32)
            m[4 * int(label) : 4 * int(label) + 4, :8] += 1.5
            store.write(key, m)
    return store


def _config(epochs=2):
    return {"videomap": TrainConfig(epochs=epochs, batch_size=8, seed=0), "tsn": TrainConfig(epochs=epochs, seed=0)}


def test_a_trained_head_is_not_reused_for_a_store_of_other_maps(tmp_path, capsys):
    videos = tmp_path / "videos"
    a = _make_store(tmp_path / "a", videos, image_size=64)
    b = _make_store(tmp_path / "b", videos, image_size=96)  # same T and L, other maps
    run = tmp_path / "run"
    steps.train(a, run, ["tsn"], _config(), show_progress=False)
    first = (run / "tsn.pt").read_bytes()
    capsys.readouterr()
    steps.train(b, run, ["tsn"], _config(), show_progress=False)
    assert "already trained" not in capsys.readouterr().out
    assert (run / "tsn.pt").read_bytes() != first
    # The same store again: kept.
    steps.train(b, run, ["tsn"], _config(), show_progress=False)
    assert "already trained" in capsys.readouterr().out


def test_train_reports_validation_and_the_checkpoint_records_its_videos(tmp_path):
    store = _make_store(tmp_path / "s", tmp_path / "videos")
    run = tmp_path / "run"
    history = steps.train(store, run, ["videomap"], _config(3), show_progress=False, val_fraction=0.2)["videomap"]
    assert all("val_top1" in r for r in history)
    extra = torch.load(run / "videomap.pt", weights_only=True)["extra"]
    assert len(extra["val_keys"]) == CLASSES * 2 and len(extra["train_keys"]) == CLASSES * 7
    assert set(extra["val_keys"]).isdisjoint(extra["train_keys"])
    results = steps.evaluate(store, run, split="val")
    assert results["num_videos"] == CLASSES * 2
    kept = next(r for r in history if r["kept"])
    assert results["heads"]["videomap"]["top1"] == pytest.approx(kept["val_top1"])


def test_evaluate_counts_what_it_scored_and_refuses_heads_trained_on_test_videos(tmp_path):
    store = _make_store(tmp_path / "s", tmp_path / "videos")
    run = tmp_path / "run"
    steps.train(store, run, ["tsn"], _config(), show_progress=False)
    store.path_of("c0/v11.mp4").unlink()  # a test video without a map
    results = steps.evaluate(store, run)
    assert (results["num_videos"], results["num_listed"]) == (CLASSES * 3 - 1, CLASSES * 3)
    assert results["missing_videos"] == ["c0/v11.mp4"]
    # A head whose training videos include test ones is refused, whatever moved them there.
    payload = torch.load(run / "tsn.pt", weights_only=True)
    payload["extra"]["train_keys"].append("c1/v10.mp4")
    torch.save(payload, run / "tsn.pt")
    before = (run / "results.json").read_bytes()
    with pytest.raises(StoreError, match="trained on 1 of the"):
        steps.evaluate(store, run)
    assert (run / "results.json").read_bytes() == before


def test_the_evaluate_table_says_how_many_listed_videos_it_scored(tmp_path):
    from tsmap.steps.tables import format_table

    store = _make_store(tmp_path / "s", tmp_path / "videos")
    run = tmp_path / "run"
    steps.train(store, run, ["tsn"], _config(), show_progress=False)
    store.path_of("c2/v09.mp4").unlink()
    table = format_table(steps.evaluate(store, run))
    assert table.splitlines()[-1].startswith(f"scored {CLASSES * 3 - 1} of {CLASSES * 3} test videos (1 have no")


# -- a head that collapses (every ReLU of a block dead) starts again at half the lr, or says so
def _kill_block3_after(model, steps: int, times: int = 10**9):
    """After ``steps`` training passes, block3's biases are made so negative that all its
    ReLUs die (what a few too-large SGD steps did on real footage, BENCHMARKS.md (g)); at
    most ``times`` times (a killed head stays dead by itself)."""
    calls = {"n": 0, "kills": 0}

    def hook(module, inputs):
        if module.training:
            calls["n"] += 1
            if calls["n"] > steps and calls["kills"] < times:
                calls["kills"] += 1
                with torch.no_grad():
                    module[0].bias.fill_(-1e4)

    model.block3.register_forward_pre_hook(hook)
    return model


def test_constant_scores_are_what_a_dead_head_gives():
    from tsmap.training import constant_scores

    assert constant_scores(torch.tensor([[0.3, -1.0], [0.3, -1.0], [0.3, -1.0]]))
    assert not constant_scores(torch.tensor([[0.3, -1.0], [0.3, -0.99]]))
    model = _kill_block3_after(create_head("videomap", CLASSES, T, L), 0).train()
    scores = model(Maps(8, seed=0).maps)
    assert constant_scores(scores.detach())  # dropout of zeros is zeros: the FC's bias for every map


COLLAPSING = TrainConfig(epochs=8, batch_size=16, lr=0.02, schedule="cosine", warmup_epochs=1, seed=0)


def test_a_collapsed_head_is_trained_again_from_its_initial_weights_at_half_the_lr(capsys):
    train, val = Maps(48, seed=0), Maps(24, seed=1)
    torch.manual_seed(0)
    model = _kill_block3_after(create_head("videomap", CLASSES, T, L), steps=2 * 3, times=1)  # 3 batches an epoch
    history = train_head(model, train, COLLAPSING, show_progress=False, val_data=val)
    assert "collapsed at epoch 3" in capsys.readouterr().out
    assert len(history) == COLLAPSING.epochs and not any(r.get("collapsed") for r in history)
    assert all(r["lr_scale"] == 0.5 for r in history)
    assert_same_as_half_the_lr_from_the_start(model, history, train, val)


def assert_same_as_half_the_lr_from_the_start(model, history: list[dict], train, val) -> None:
    """The same head as a run at half the lr from the start: same initial weights, same seeds."""
    torch.manual_seed(0)
    again = create_head("videomap", CLASSES, T, L)
    expected = train_head(again, train, replace(COLLAPSING, lr=0.01), show_progress=False, val_data=val)
    assert [r["val_top1"] for r in history] == [r["val_top1"] for r in expected]
    for key, value in again.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, msg=key)


def test_a_run_killed_while_training_again_resumes_at_the_smaller_lr(tmp_path, capsys):
    train, val = Maps(48, seed=0), Maps(24, seed=1)
    state = tmp_path / "videomap.training-state.pt"

    def kill_after(model, passes: int):
        calls = {"n": 0}

        def hook(module, inputs):
            if module.training:
                calls["n"] += 1
                if calls["n"] > passes:
                    raise KeyboardInterrupt

        model.register_forward_pre_hook(hook)
        return model

    torch.manual_seed(0)
    model = _kill_block3_after(create_head("videomap", CLASSES, T, L), steps=2 * 3, times=1)
    # Collapsed epochs 3-5 (15 passes), then 4 epochs of the restart at half the lr, then killed.
    with pytest.raises(KeyboardInterrupt):
        killed = kill_after(model, 15 + 4 * 3)
        train_head(killed, train, COLLAPSING, state_path=state, val_data=val, show_progress=False)
    capsys.readouterr()
    torch.manual_seed(0)
    rerun = create_head("videomap", CLASSES, T, L)
    history = train_head(rerun, train, COLLAPSING, state_path=state, val_data=val, show_progress=False)
    assert "resuming videomap.training-state.pt after epoch 4 of 8" in capsys.readouterr().out
    assert all(r["lr_scale"] == 0.5 for r in history)
    assert_same_as_half_the_lr_from_the_start(rerun, history, train, val)


def test_a_head_that_keeps_collapsing_stops_and_keeps_the_best_epoch_before_it(monkeypatch):
    from tsmap import training

    monkeypatch.setattr(training, "COLLAPSE_RESTARTS", 0)
    train, val = Maps(48, seed=0), Maps(24, seed=1)
    model = _kill_block3_after(create_head("videomap", CLASSES, T, L), steps=2 * 3)
    history = train_head(model, train, replace(COLLAPSING, epochs=12), show_progress=False, val_data=val)
    assert [r.get("collapsed", False) for r in history] == [False, False] + [True] * training.COLLAPSE_EPOCHS
    assert training.collapse_epoch(history) == 3
    assert training.collapse_epoch(history[:2]) is None
    kept = next(r for r in history if r["kept"])
    assert kept["epoch"] <= 2
    assert float(model.block3[0].bias.detach().min()) > -1e3  # the kept weights are from before the collapse


def test_a_collapse_with_no_epoch_to_keep_raises_instead_of_saving_a_dead_head():
    from tsmap.training import TrainingCollapsed

    model = _kill_block3_after(create_head("videomap", CLASSES, T, L), steps=3)  # every restart dies too
    with pytest.raises(TrainingCollapsed, match="--lr"):
        train_head(model, Maps(48, seed=0), COLLAPSING, show_progress=False)


def test_tsmap_train_says_when_a_head_collapsed(tmp_path, monkeypatch, capsys):
    import importlib

    from tsmap import training
    from tsmap.cli import main

    train_step = importlib.import_module("tsmap.steps.train")  # the module (tsmap.steps.train is also a function)
    store = _make_store(tmp_path / "s", tmp_path / "videos")
    real_create = train_step.create_head
    common = ["--head", "videomap", "--epochs", "10", "--batch-size", "8", "--lr", "0.02", "--quiet"]
    # Once: trained again at half the lr, and the summary says so.
    monkeypatch.setattr(train_step, "create_head", lambda *a, **k: _kill_block3_after(real_create(*a, **k), 4, 1))
    assert main(["train", "--store", str(store.root), "--run", str(tmp_path / "once"), *common]) == 0
    out = capsys.readouterr().out
    assert "note: videomap: the head collapsed at --lr 0.02; the one kept was trained at 0.01" in out
    # Every time, with no restart left: stopped, and the summary says what to do.
    monkeypatch.setattr(training, "COLLAPSE_RESTARTS", 0)
    monkeypatch.setattr(train_step, "create_head", lambda *a, **k: _kill_block3_after(real_create(*a, **k), 4))
    assert main(["train", "--store", str(store.root), "--run", str(tmp_path / "run"), *common]) == 0
    out = capsys.readouterr().out
    history = torch.load(tmp_path / "run" / "videomap.pt", weights_only=True)["extra"]["history"]
    assert len(history) < 10 and history[-1]["collapsed"]
    first = min(r["epoch"] for r in history if r.get("collapsed"))
    assert f"warning: videomap: training collapsed at epoch {first} and stopped" in out
    assert "--lr 0.01 --force" in out
    # Without validation maps there is no epoch to keep: one line, exit 2, no head saved.
    run = tmp_path / "run-noval"
    assert main(["train", "--store", str(store.root), "--run", str(run), "--val-fraction", "0", *common]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tsmap: error: training collapsed at epoch") and err.count("\n") == 1
    assert not (run / "videomap.pt").exists()


def _steps_recorded(model) -> tuple[list[dict], object]:
    """The model's weights after every optimizer step of the training that follows."""
    seen: list[dict] = []

    def record(optimizer, args, kwargs):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    return seen, register_optimizer_step_post_hook(record)


def test_the_weight_average_is_what_is_kept_and_training_is_otherwise_unchanged():
    train = Maps(48, seed=0)
    config = TrainConfig(epochs=3, batch_size=16, lr=0.02, seed=0)
    torch.manual_seed(0)
    plain = create_head("videomap", CLASSES, T, L)
    trajectory, handle = _steps_recorded(plain)
    try:
        plain_history = train_head(plain, train, config, show_progress=False)
    finally:
        handle.remove()
    torch.manual_seed(0)
    averaged = create_head("videomap", CLASSES, T, L)
    history = train_head(averaged, train, replace(config, weight_average=1.0), show_progress=False)
    # The average does not steer training: the same losses step for step.
    assert [r["loss"] for r in history] == [r["loss"] for r in plain_history]
    # What is kept is the moving average of the weights after each step (3 steps an epoch).
    decay = 1 - 1 / 3
    expected = {k: v.clone() for k, v in create_initial(config).items()}
    for n, weights in enumerate(trajectory):
        d = min(decay, (1 + n) / (10 + n))
        for k, v in weights.items():
            expected[k] = expected[k] * d + v * (1 - d) if v.is_floating_point() else v
    for k, v in averaged.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=1e-5, atol=1e-6, msg=k)
    assert not torch.allclose(averaged.fc.weight, plain.fc.weight)


def create_initial(config: TrainConfig) -> dict:
    """The weights a head starts from under ``torch.manual_seed(0)`` (the standardizer as training fits it)."""
    torch.manual_seed(0)
    model = create_head("videomap", CLASSES, T, L)
    model.standardize.fit([Maps(48, seed=0).maps])
    return model.state_dict()


def test_a_killed_run_with_a_weight_average_resumes_to_the_same_head(tmp_path):
    train, val = Maps(48, seed=0), Maps(24, seed=1)
    config = TrainConfig(epochs=4, batch_size=16, lr=0.02, seed=0, weight_average=2.0)
    torch.manual_seed(0)
    reference = create_head("videomap", CLASSES, T, L)
    expected = train_head(reference, train, config, val_data=val, show_progress=False)

    state = tmp_path / "videomap.training-state.pt"
    torch.manual_seed(0)
    killed = create_head("videomap", CLASSES, T, L)
    passes = {"n": 0}

    def kill(module, inputs):
        passes["n"] += module.training
        if passes["n"] > 2 * 3 + 1:  # in the third epoch
            raise KeyboardInterrupt

    killed.register_forward_pre_hook(kill)
    with pytest.raises(KeyboardInterrupt):
        train_head(killed, train, config, state_path=state, val_data=val, show_progress=False)
    assert torch.load(state, weights_only=True)["average"]["updates"] == 2 * 3
    torch.manual_seed(0)
    resumed = create_head("videomap", CLASSES, T, L)
    history = train_head(resumed, train, config, state_path=state, val_data=val, show_progress=False)
    assert [r["val_loss"] for r in history] == pytest.approx([r["val_loss"] for r in expected], rel=1e-6)
    for k, v in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=1e-6, msg=k)


def test_settings_without_a_weight_average_read_as_before_it_existed():
    # A head or training state saved before the option carries no such key: it must still match.
    assert "weight_average" not in recipe("cosine").to_dict()
    on = recipe("cosine", weight_average=5.0)
    assert TrainConfig.from_dict(on.to_dict()) == on
    assert TrainConfig.from_dict(recipe("cosine").to_dict()) == recipe("cosine")
    # Each later setting's "off" is its default, so a record without the key reads back as off.
    assert all(getattr(TrainConfig(), name) == off for name, off in ADDED_LATER.items())


def test_the_weight_average_starts_from_the_weights_and_weighs_early_steps_more():
    model = torch.nn.Linear(2, 1)
    average = WeightAverage(model, steps=100)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update(model)  # first update: decay 1/10, so 90 % of the new weights
    torch.testing.assert_close(average.state["weight"], start + 0.9)
    with average.applied(model):
        torch.testing.assert_close(model.weight.detach(), start + 0.9)
    torch.testing.assert_close(model.weight.detach(), start + 1.0)  # its own weights come back
