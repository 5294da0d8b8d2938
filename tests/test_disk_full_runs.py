"""A full disk stops `tsmap train` and `tsmap evaluate` with one line naming the run folder,
leaves no temporary file (the old code left a `.tmp-PID-*.training-state.pt` at every failed
train, so the disk stayed full), and a rerun with space finishes. Same child-process file
size limit as tests/test_disk_full.py."""

from __future__ import annotations

import sys

from test_disk_full import EXTRACT, FILL_UP, assert_one_line_disk_full, make_videos, run, temporaries

LIMIT = 4 * 1024  # below a checkpoint and a confusion-matrix PNG


def test_train_and_evaluate_stop_on_a_full_disk_and_resume(tmp_path):
    videos, store, runs = make_videos(tmp_path / "videos"), tmp_path / "store", tmp_path / "run"
    done = run([sys.executable, "-m", "tsmap", *EXTRACT, "--videos", str(videos), "--store", str(store)])
    assert done.returncode == 0, done.stderr
    train = ["--quiet", "train", "--store", str(store), "--run", str(runs), "--epochs", "2", "--head", "videomap"]
    full = run([sys.executable, "-c", FILL_UP, str(LIMIT), "0", str(runs), *train])
    assert_one_line_disk_full(full, runs)
    assert not temporaries(runs) and not (runs / "videomap.pt").exists()
    again = run([sys.executable, "-m", "tsmap", *train])
    assert again.returncode == 0, again.stderr
    trained = (runs / "videomap.pt").read_bytes()

    evaluate = ["--quiet", "evaluate", "--store", str(store), "--run", str(runs)]
    full = run([sys.executable, "-c", FILL_UP, str(LIMIT), "0", str(runs), *evaluate])
    assert_one_line_disk_full(full, runs)
    assert not temporaries(runs) and not (runs / "results.json").exists()
    assert (runs / "videomap.pt").read_bytes() == trained
    again = run([sys.executable, "-m", "tsmap", *evaluate])
    assert again.returncode == 0, again.stderr
    assert (runs / "results.json").is_file()
