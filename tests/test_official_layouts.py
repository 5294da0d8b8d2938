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
    assert main(["--quiet", "train", "--store", str(store), "--split", "2", "--run", str(run), "--epochs", "1"]) == 0
    assert main(["evaluate", "--store", str(store), "--split", "2", "--run", str(run)]) == 0
    results = json.loads((run / "results.json").read_text())
    assert results["num_videos"] == len(official_dataset("hmdb51", videos, splits, 2).clips("test"))

    assert main(["extract", "--dataset", "hmdb51", "--videos", str(videos), "--store", str(store)]) == 2
    assert "needs --splits" in capsys.readouterr().err
