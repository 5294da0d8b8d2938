"""A fine-tuned frame ConvNet knows its training videos: no split scores videos it saw, no run
resumes or overwrites another split's (issue 12 B1, B2), on tiny HMDB51-layout data."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest
import torch
from conftest import moving_square_frames, write_test_video

from tsmap.cli import main
from tsmap.data.datasets import official_dataset
from tsmap.data.splits import hmdb51_dataset
from tsmap.data.video import FrameGeometry
from tsmap.finetune.data import SnippetDataset
from tsmap.finetune.provenance import (
    TRAIN_KEYS_FILE,
    TrainedOnError,
    check_extraction,
    check_store,
    check_trained_on,
    keys_digest,
    read_trained_keys,
    trained_keys_of,
    write_trained_keys,
)
from tsmap.finetune.train import FinetuneConfig, finetune, finetune_output, finetune_state_path, save_finetuned
from tsmap.frames.backbones import build_backbone
from tsmap.frames.encoder import FrameEncoder
from tsmap.videomap.extract import extraction_settings
from tsmap.videomap.store import StoreError, VideoMapStore

CLASSES = ("clap", "jump", "wave")
# Clip i of each class: 1 = train, 2 = test in split 1, 2, 3. Each split trains on 6 clips
# (as many in every split, so only the lists tell the runs apart), as the official files
# do, every split's test videos lie in another split's training set.
MARKS = {1: (1, 1, 2, 2), 2: (2, 2, 1, 1), 3: (1, 2, 1, 2)}
CONFIG = FinetuneConfig(epochs=1, batch_size=6, lr=0.001, lr_steps=[100], dropout=0.5, flip=False)


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory) -> tuple[Path, Path]:
    """(videos, split files) of a 3-class HMDB51 in the official layout, 4 clips a class."""
    base = tmp_path_factory.mktemp("hmdb")
    videos, splits = base / "videos", base / "splits"
    splits.mkdir()
    for c, cls in enumerate(CLASSES):
        for split, marks in MARKS.items():
            lines = [f"{cls}_v{i}.avi {mark} \n" for i, mark in enumerate(marks)]
            (splits / f"{cls}_test_split{split}.txt").write_text("".join(lines))
        for i in range(len(MARKS[1])):
            write_test_video(videos / cls / f"{cls}_v{i}.avi", moving_square_frames(12, seed=4 * c + i), lossless=False)
    return videos, splits


def _snippets(dataset) -> SnippetDataset:
    return SnippetDataset(dataset.clips("train"), dataset.root, segments=2, size=48, resize=56, flip=False)


def _finetune(dataset, state_path: Path | None = None):
    backbone, _ = build_backbone("efficientnet_lite0")
    data = _snippets(dataset)
    model, history, _ = finetune(
        backbone,
        "efficientnet_lite0",
        "rgb",
        data,
        len(dataset.classes),
        CONFIG,
        workers=0,
        state_path=state_path,
        show_progress=False,
        source=dataset.spec,
    )
    return model, history, data


@pytest.fixture(scope="module")
def split1_weights(hmdb, tmp_path_factory) -> Path:
    """A ConvNet fine-tuned on split 1's training videos, where ``tsmap finetune`` puts it."""
    videos, splits = hmdb
    ds1 = official_dataset("hmdb51", videos, splits, 1)
    model, history, data = _finetune(ds1)
    path = finetune_output(tmp_path_factory.mktemp("ft"), "rgb", "efficientnet_lite0", 1)
    save_finetuned(path, model, "efficientnet_lite0", "rgb", ds1.classes, "imagenet", CONFIG, history, data, ds1.spec)
    return path


# -- B1: what a fine-tuned ConvNet was trained on -----------------------------------------------
def test_finetuned_checkpoint_records_its_split_and_training_videos(hmdb, split1_weights):
    videos, splits = hmdb
    train = sorted(c.key for c in official_dataset("hmdb51", videos, splits, 1).clips("train"))
    encoder = FrameEncoder(weights=split1_weights, engine="torch")
    want = {"dataset": "hmdb51", "split": 1, "videos": 6, "digest": keys_digest(train)}
    assert encoder.trained_on == want
    assert want["digest"] == keys_digest(reversed(train))  # the list's order does not matter
    # ... and extraction records it in the store's settings.
    assert extraction_settings(encoder, 8, FrameGeometry(48, 56)).weights_trained_on == want
    assert trained_keys_of(split1_weights) == train
    state = torch.load(split1_weights, weights_only=True)
    assert state["train_root"] == str(videos.resolve()) and state["train_keys"] == train
    # Weights not fine-tuned here record no training set: nothing to check them against.
    assert FrameEncoder(engine="torch").trained_on is None
    assert (
        trained_keys_of(None) is None and check_extraction(official_dataset("hmdb51", videos, splits, 2), None) is None
    )


def _one_line_error(error_type, call, *args) -> str:
    with pytest.raises(error_type) as info:
        call(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_weights_fine_tuned_on_split_1_refuse_the_test_videos_of_the_other_splits(hmdb, split1_weights):
    videos, splits = hmdb
    ds = {s: official_dataset("hmdb51", videos, splits, s) for s in (1, 2, 3)}
    assert check_extraction(ds[1], split1_weights) == trained_keys_of(split1_weights)  # its own split: fine
    message = _one_line_error(TrainedOnError, check_extraction, ds[2], split1_weights)
    assert str(split1_weights) in message and "fine-tuned on hmdb51 split 1" in message
    assert "saw 6 of the 6 test videos of hmdb51 split 2" in message
    assert "3 of the 6 test videos of hmdb51 split 3" in _one_line_error(
        TrainedOnError, check_extraction, ds[3], split1_weights
    )
    # Mapping every split into one store with them is refused: they serve split 1 alone.
    everything = official_dataset("hmdb51", videos, splits, None)
    message = _one_line_error(TrainedOnError, check_extraction, everything, split1_weights)
    assert "test videos of hmdb51 split 2" in message and "map split 1 alone, into a store of its own" in message


def _store(path: Path, encoder: FrameEncoder, source: dict) -> VideoMapStore:
    return VideoMapStore.create_or_open(path, extraction_settings(encoder, 8, FrameGeometry(48, 56)), source=source)


def test_train_and_evaluate_check_the_store_against_the_split(hmdb, split1_weights, tmp_path):
    videos, splits = hmdb
    ds = {s: official_dataset("hmdb51", videos, splits, s) for s in (1, 2, 3)}
    encoder = FrameEncoder(weights=split1_weights, engine="torch")
    # A store of every split mapped with split 1's ConvNet serves split 1, not 2 nor 3.
    shared = _store(tmp_path / "all", encoder, official_dataset("hmdb51", videos, splits, None).spec)
    write_trained_keys(shared.root, trained_keys_of(split1_weights))
    assert read_trained_keys(shared.root) == trained_keys_of(split1_weights)
    check_store(shared, ds[1])
    message = _one_line_error(TrainedOnError, check_store, shared, ds[2])
    assert str(split1_weights.resolve()) in message and "split 1" in message
    assert "saw 6 of the 6 test videos of hmdb51 split 2" in message
    assert "3 of the 6 test videos of hmdb51 split 3" in _one_line_error(TrainedOnError, check_store, shared, ds[3])
    (shared.root / TRAIN_KEYS_FILE).unlink()  # the list is how the store is checked: without it, no heads
    assert "is missing" in _one_line_error(StoreError, check_store, shared, ds[1])
    # A store of one split serves that split only.
    own = _store(tmp_path / "split1", encoder, ds[1].spec)
    write_trained_keys(own.root, trained_keys_of(split1_weights))
    check_store(own, ds[1])
    assert "holds the maps of hmdb51 split 1 only" in _one_line_error(StoreError, check_store, own, ds[2])
    # ImageNet features saw no video of the dataset: every split of one store is fine.
    everything = official_dataset("hmdb51", videos, splits, None).spec
    imagenet = _store(tmp_path / "imagenet", FrameEncoder(engine="torch"), everything)
    for s in (1, 2, 3):
        check_store(imagenet, ds[s])


def _real_hmdb51_splits() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "shared" / "data" / "splits", here.parents[1] / "shared" / "data" / "splits"):
        if (candidate / "hmdb51_splits").is_dir():
            return candidate / "hmdb51_splits"
    pytest.skip("official split files (shared/data/splits) are not on this machine")


def test_real_hmdb51_split_1_training_set_holds_most_of_split_2s_test_set():
    folder = _real_hmdb51_splits()
    train1 = [c.key for c in hmdb51_dataset("/nonexistent", folder, 1).clips("train")]
    test2 = [c.key for c in hmdb51_dataset("/nonexistent", folder, 2).clips("test")]
    assert len(train1) == 3570
    message = _one_line_error(
        TrainedOnError, check_trained_on, train1, test2, "test videos of hmdb51 split 2", "W (hmdb51 split 1)"
    )
    assert message.startswith("W (hmdb51 split 1) saw 1175 of the 1530 test videos of hmdb51 split 2")


# -- B2: each split's fine-tuning run is its own -------------------------------------------------
def test_finetune_never_resumes_another_splits_run(hmdb, tmp_path, capsys):
    videos, splits = hmdb
    ds1, ds2 = (official_dataset("hmdb51", videos, splits, s) for s in (1, 2))
    state = tmp_path / "state.pt"
    _finetune(ds1, state)
    capsys.readouterr()
    # Same recipe, same number of videos and classes: only the list and the split differ.
    _finetune(ds2, state)
    out = capsys.readouterr().out
    assert "left by a run with other settings" in out and "resuming" not in out
    _finetune(ds1, state)
    assert "left by a run with other settings" in capsys.readouterr().out


def test_each_split_has_its_own_checkpoint_and_state(tmp_path):
    out = tmp_path / "FT"
    paths = [finetune_output(out, "rgb", "efficientnet_lite0", s) for s in (1, 2, 3)]
    assert paths[0] == out / "split1" / "rgb-efficientnet_lite0.pt" and len(set(paths)) == 3
    assert len({finetune_state_path(p) for p in paths}) == 3
    assert finetune_state_path(paths[1]) == out / "split2" / ".rgb-efficientnet_lite0.training-state.pt"
    assert finetune_output(out, "flow", "bninception", None) == out / "flow-bninception.pt"  # folder/list datasets


# -- the CLI, once it calls the above -------------------------------------------------------------
def _extract_takes_split() -> bool:
    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
        main(["extract", "--help"])
    return re.search(r"--split(?![-\w])", text.getvalue()) is not None


@pytest.mark.skipif(not _extract_takes_split(), reason="tsmap extract has no --split yet (the CLI wiring)")
def test_cli_one_store_per_split_with_fine_tuned_weights(hmdb, tmp_path, capsys):
    videos, splits = hmdb
    data = ["--dataset", "hmdb51", "--videos", str(videos), "--splits", str(splits)]
    tiny = ["--image-size", "48", "--resize", "56"]
    out = tmp_path / "FT"
    ft = ["--quiet", "finetune", *data, "--out", str(out), "--epochs", "1", "--batch-size", "6", "--workers", "0"]
    assert main([*ft, "--split", "1", "--no-flip", *tiny]) == 0
    ckpt1 = out / "split1" / "rgb-efficientnet_lite0.pt"
    before = ckpt1.read_bytes()
    assert main([*ft, "--split", "2", "--no-flip", *tiny]) == 0
    assert (out / "split2" / "rgb-efficientnet_lite0.pt").is_file() and ckpt1.read_bytes() == before
    assert not (out / "rgb-efficientnet_lite0.pt").exists()
    capsys.readouterr()

    extract = ["--quiet", "extract", *data, "--frames", "8", *tiny, "--weights", str(ckpt1)]
    for split in ([], ["--split", "2"]):  # every split in one store, or split 2: both hold videos ckpt1 saw
        assert main([*extract, *split, "--store", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert str(ckpt1) in err and "split 1" in err and "6 of the 6 test videos of hmdb51 split 2" in err
    store = tmp_path / "maps1"
    assert main([*extract, "--split", "1", "--store", str(store)]) == 0
    settings = json.loads((store / "store.json").read_text())
    assert settings["weights_trained_on"]["split"] == 1 and settings["weights_trained_on"]["videos"] == 6
    assert read_trained_keys(store) == trained_keys_of(ckpt1)

    run = tmp_path / "run"
    train = ["--quiet", "train", "--store", str(store), "--run", str(run), "--epochs", "1", "--head", "videomap"]
    assert main([*train, "--split", "1"]) == 0
    assert main([*train, "--split", "2"]) == 2
    assert "split 1 only" in capsys.readouterr().err
    assert main(["--quiet", "evaluate", "--store", str(store), "--run", str(run), "--splits", "1", "2"]) == 2
