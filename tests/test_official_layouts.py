"""HMDB51-layout data through the CLI: one store for all splits, training per split."""

import json
import shutil
from pathlib import Path

from conftest import TINY_MAPS, moving_square_frames, write_test_video

from tsmap.cli import main
from tsmap.data.datasets import official_dataset
from tsmap.videomap.store import VideoMapStore

FIXTURES = Path(__file__).parent / "fixtures" / "splits" / "hmdb51"


def hmdb51_layout(tmp_path: Path):
    """HMDB51-style videos and split files (the fixture's splits 1 and 2; split 3 = split 2)."""
    splits = tmp_path / "splits"
    shutil.copytree(FIXTURES, splits)
    for path in splits.glob("*_test_split2.txt"):  # the fixture carries splits 1 and 2
        shutil.copy(path, splits / path.name.replace("split2", "split3"))
    videos = tmp_path / "hmdb51"
    everything = official_dataset("hmdb51", videos, splits, None).clips()
    for i, clip in enumerate(everything):
        write_test_video(videos / clip.key, moving_square_frames(12, seed=i), lossless=False)
    return videos, splits, everything


def test_hmdb51_layout_end_to_end(tmp_path, capsys):
    videos, splits, everything = hmdb51_layout(tmp_path)

    store = tmp_path / "store"
    assert (
        main(
            [
                "--quiet",
                "extract",
                "--dataset",
                "hmdb51",
                "--videos",
                str(videos),
                "--splits",
                str(splits),
                "--store",
                str(store),
                *TINY_MAPS,
            ]
        )
        == 0
    )
    # Every clip that any split uses is mapped once; clips marked 0 in all splits are not.
    assert sorted(VideoMapStore.open(store).keys()) == sorted(c.key for c in everything)

    run = tmp_path / "run"
    for split in ("1", "2"):
        train = ["--quiet", "train", "--store", str(store), "--split", split, "--run", str(run), "--epochs", "1"]
        assert main(train) == 0
    capsys.readouterr()
    assert main(["evaluate", "--store", str(store), "--splits", "1", "2", "--run", str(run)]) == 0
    out = capsys.readouterr().out
    assert "split 1:" in out and "split 2:" in out and "mean top-1" in out

    # Heads and figures of each split live apart, so split 2 never scores with split 1's head.
    per_split = {s: json.loads((run / f"split{s}" / "results.json").read_text()) for s in (1, 2)}
    for s, results in per_split.items():
        assert results["num_videos"] == len(official_dataset("hmdb51", videos, splits, s).clips("test"))
    mean = json.loads((run / "results_mean.json").read_text())
    assert mean["splits"] == [1, 2]
    for kind, figures in mean["heads"].items():
        tops = [per_split[s]["heads"][kind]["top1"] for s in (1, 2)]
        assert figures["top1_per_split"] == tops
        assert abs(figures["top1"] - sum(tops) / 2) < 1e-9

    # A split that was never trained is a clear error, not a silent reuse of another split's head.
    assert main(["evaluate", "--store", str(store), "--splits", "3", "--run", str(run)]) == 2
    assert "split3" in capsys.readouterr().err

    assert main(["extract", "--dataset", "hmdb51", "--videos", str(videos), "--store", str(store)]) == 2
    assert "needs --splits" in capsys.readouterr().err


def test_list_dataset_end_to_end(tiny_demo, tmp_path, capsys):
    """mmaction2-style '<path> <label>' lists with integer labels and a classes file."""
    classes = sorted(p.name for p in tiny_demo.iterdir() if p.is_dir())
    lists = {}
    for split in ("train", "test"):
        keys = (tiny_demo / f"{split}.txt").read_text().split()
        lines = [f"{key} {classes.index(key.split('/')[0])}" for key in keys]
        if split == "train":
            lines.append(lines[0])  # a duplicate line is reported, not fatal
        lists[split] = tmp_path / f"{split}_list.txt"
        lists[split].write_text("\n".join(lines) + "\n")
    (tmp_path / "classes.txt").write_text("\n".join(classes) + "\n")

    store, run = tmp_path / "store", tmp_path / "run"
    extract = ["--quiet", "extract", "--dataset", "list", "--videos", str(tiny_demo), "--store", str(store)]
    lists_args = ["--train-list", str(lists["train"]), "--test-list", str(lists["test"])]
    assert main([*extract, *lists_args, "--classes", str(tmp_path / "classes.txt"), *TINY_MAPS]) == 0
    out = capsys.readouterr().out
    assert f"warning: {lists['train']}:" in out and "duplicate of line 1" in out
    assert main(["--quiet", "train", "--store", str(store), "--run", str(run), "--epochs", "1"]) == 0
    assert main(["--quiet", "evaluate", "--store", str(store), "--run", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["num_videos"] == len((tiny_demo / "test.txt").read_text().split())
    assert results["classes"] == classes

    assert main(["extract", "--dataset", "list", "--videos", str(tiny_demo), "--store", str(store)]) == 2
    assert "needs --train-list and --test-list" in capsys.readouterr().err
    per_class = results["heads"]["videomap"]["per_class_accuracy"]
    assert len(per_class) == len(classes) and all(a is None or 0 <= a <= 1 for a in per_class)


def test_per_split_stores_give_the_mean_over_splits(tmp_path, capsys):
    # A fine-tuned ConvNet needs one store per split (`extract --split N`); evaluate takes them
    # in the order of --splits and still writes the mean over the splits.
    videos, splits, _ = hmdb51_layout(tmp_path)
    run, stores = tmp_path / "run", {}
    data = ["--dataset", "hmdb51", "--videos", str(videos), "--splits", str(splits)]
    for split in ("1", "2"):
        stores[split] = str(tmp_path / f"store{split}")
        assert main(["--quiet", "extract", *data, "--split", split, "--store", stores[split], *TINY_MAPS]) == 0
        train = ["--quiet", "train", "--store", stores[split], "--split", split, "--run", str(run), "--epochs", "1"]
        assert main(train) == 0
    capsys.readouterr()
    evaluate = ["--quiet", "evaluate", "--run", str(run), "--store", stores["1"], stores["2"], "--splits", "1", "2"]
    assert main(evaluate) == 0
    mean = json.loads((run / "results_mean.json").read_text())
    assert mean["splits"] == [1, 2]
    for s in (1, 2):
        results = json.loads((run / f"split{s}" / "results.json").read_text())
        assert results["num_videos"] == len(official_dataset("hmdb51", videos, splits, s).clips("test"))
    # Two stores for one split, or the same split twice, are one clear line each.
    assert main(["evaluate", "--run", str(run), "--store", stores["1"], stores["2"], "--splits", "1"]) == 2
    assert "one per split" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(run), "--store", stores["1"], "--splits", "1", "1"]) == 2
    assert "each split once" in capsys.readouterr().err
    # Stores given in the wrong order: split 1 scored on split 2's store is refused, not mixed up.
    assert main(["evaluate", "--run", str(run), "--store", stores["2"], stores["1"], "--splits", "1", "2"]) == 2
    assert "holds the maps of hmdb51 split 2 only" in capsys.readouterr().err
