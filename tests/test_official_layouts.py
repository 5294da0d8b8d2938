"""HMDB51-layout data through the CLI: one store for all splits, training per split."""

import json
import shutil
from pathlib import Path

from conftest import TINY_MAPS, moving_square_frames, write_test_video

from tsmap.cli import main
from tsmap.data.datasets import official_dataset
from tsmap.videomap.store import VideoMapStore

FIXTURES = Path(__file__).parent / "fixtures" / "splits" / "hmdb51"


def test_hmdb51_layout_end_to_end(tmp_path, capsys):
    splits = tmp_path / "splits"
    shutil.copytree(FIXTURES, splits)
    for path in splits.glob("*_test_split2.txt"):  # the fixture carries splits 1 and 2
        shutil.copy(path, splits / path.name.replace("split2", "split3"))
    videos = tmp_path / "hmdb51"
    everything = official_dataset("hmdb51", videos, splits, None).clips()
    for i, clip in enumerate(everything):
        write_test_video(videos / clip.key, moving_square_frames(12, seed=i), lossless=False)

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
