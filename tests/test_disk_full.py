"""A full disk or a read-only store stops `tsmap extract` with one line, leaves no temporary
file and no false per-video failure, and a rerun with space resumes.

The disk fills up without root tricks: the extraction runs in a child process whose
RLIMIT_FSIZE (largest file it may write) drops below the size of a map, with SIGXFSZ
ignored, so a write past the limit fails with EFBIG, which tsmap treats as a full disk.
"""

from __future__ import annotations

import builtins
import errno
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import moving_square_frames, write_test_video

from tsmap.cli import main

MAP_BYTES = 8 * 1280 * 2  # one 8-frame float16 map, without the .npy header
LIMIT = 16 * 1024  # smaller than a map, larger than store.json and the JSON-lines files
EXTRACT = ["--quiet", "extract", "--frames", "8", "--image-size", "64", "--resize", "64", "--engine", "torch"]

# Runs the CLI; once `after` maps exist (0: from the start) no file may grow past `limit`.
FILL_UP = r"""
import resource, signal, sys, threading, time
from pathlib import Path

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit, after, store = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])

def fill_up():
    while sum(not p.name.startswith(".tmp-") for p in store.glob("maps/*/*.npy")) < after:
        time.sleep(0.002)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

threading.Thread(target=fill_up, daemon=True).start()
from tsmap.cli import main
sys.exit(main(sys.argv[4:]))
"""


def make_videos(root: Path, per_class: int = 3) -> Path:
    for ci, cls in enumerate(("a", "b", "c")):
        for i in range(per_class):
            write_test_video(root / cls / f"v{i}.mp4", moving_square_frames(10, seed=10 * ci + i))
    return root


def maps_of(store: Path) -> dict[str, bytes]:
    return {p.relative_to(store).as_posix(): p.read_bytes() for p in store.glob("maps/*/*.npy")}


def temporaries(store: Path) -> list[Path]:
    return [p for p in store.rglob("*") if p.name.startswith(".tmp-")]


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, **kwargs)


def assert_one_line_disk_full(result: subprocess.CompletedProcess, store: Path) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tsmap: error: disk full while writing to {store}"), result.stderr


def test_disk_full_midway_stops_at_once_and_a_rerun_resumes(tmp_path):
    assert LIMIT < MAP_BYTES
    videos, store = make_videos(tmp_path / "videos"), tmp_path / "store"
    args = [*EXTRACT, "--videos", str(videos), "--store", str(store)]
    full = run([sys.executable, "-c", FILL_UP, str(LIMIT), "3", str(store), *args])
    assert_one_line_disk_full(full, store)
    assert not temporaries(store)
    # A write that failed is no bad video: nothing is recorded as a failure.
    assert not (store / "failures.jsonl").exists() or not (store / "failures.jsonl").read_text().strip()
    before = maps_of(store)
    assert 3 <= len(before) < 9

    again = run([sys.executable, "-m", "tsmap", *args])
    assert again.returncode == 0, again.stderr
    after = maps_of(store)
    assert len(after) == 9 and all(after[k] == v for k, v in before.items())
    assert not temporaries(store)
    sources = (store / "sources.jsonl").read_text().splitlines()
    assert len(sources) == 9


def test_disk_full_from_the_start_leaves_nothing_half_written(tmp_path):
    videos, store = make_videos(tmp_path / "videos", per_class=1), tmp_path / "store"

    def limited() -> None:  # in the child, before it runs Python
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))

    args = [*EXTRACT, "--videos", str(videos), "--store", str(store)]
    full = run([sys.executable, "-m", "tsmap", *args], preexec_fn=limited)
    assert_one_line_disk_full(full, store)
    assert not temporaries(store) and not maps_of(store)
    assert (store / "store.json").is_file()  # what fitted is whole


def _read_only(folder: Path, monkeypatch) -> None:
    """Every write under ``folder`` fails as on a read-only file system (root ignores chmod)."""
    inside = str(folder.resolve())

    def refused(path) -> bool:
        return os.path.abspath(os.fspath(path)).startswith(inside)

    real_open, real_os_open = builtins.open, os.open

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+") and refused(file):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and refused(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)


def test_a_read_only_store_gives_one_line(tmp_path, capsys, monkeypatch):
    videos, store = make_videos(tmp_path / "videos", per_class=1), tmp_path / "store"
    args = [*EXTRACT, "--videos", str(videos), "--store", str(store)]
    assert main(args) == 0
    write_test_video(videos / "a" / "new.mp4", moving_square_frames(10, seed=99))
    capsys.readouterr()
    with monkeypatch.context() as m:
        _read_only(store, m)
        assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"tsmap: error: cannot write to {store}: permission denied or read-only; " + (
        "choose a folder you can write to"
    )
    assert not temporaries(store)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_store_without_write_permission_gives_one_line(tmp_path, capsys):
    videos, store = make_videos(tmp_path / "videos", per_class=1), tmp_path / "store"
    args = [*EXTRACT, "--videos", str(videos), "--store", str(store)]
    assert main(args) == 0
    write_test_video(videos / "a" / "new.mp4", moving_square_frames(10, seed=99))
    for folder in (store, *store.rglob("*")):
        if folder.is_dir():
            folder.chmod(0o555)
    try:
        capsys.readouterr()
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("tsmap: error: cannot write to") and "\n" not in err
    finally:
        for folder in (store, *store.rglob("*")):
            if folder.is_dir():
                folder.chmod(0o755)
