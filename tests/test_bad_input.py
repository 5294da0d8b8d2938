"""Bad input to every command: exit status 2, one line on stderr naming the option or file, no
traceback, and nothing written before is changed (issue 13).

The fixtures (3 classes of tiny videos, a store, a trained and evaluated run) are built once;
each case runs ``tsmap.cli.main`` in-process. Cases about permissions run without root's
rights: as a normal user the files are chmod-ed; as root (where chmod does not block
anything) the process also takes the effective uid of ``nobody`` for the call.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import moving_square_frames, write_test_video

from tsmap.cli import main

CLASSES = ("grow", "shrink", "still")
MAPS = ["--frames", "8", "--image-size", "64", "--resize", "64", "--engine", "torch"]
NOBODY = 65534
LOCK = ".tsmap.lock"


@pytest.fixture(scope="module")
def f():
    """Paths of the module's data, in a folder every user can read (see the module's docstring)."""
    base = Path(tempfile.mkdtemp(prefix="tsmap-bad-input-"))
    base.chmod(0o755)
    videos, store, run, flow_run = base / "videos", base / "store", base / "run", base / "run_flow"
    for c, name in enumerate(CLASSES):
        for i in range(3):
            write_test_video(videos / name / f"{name}{i}.mp4", moving_square_frames(10, seed=3 * c + i, size=(64, 48)))
    (videos / "train.txt").write_text("".join(f"{n}/{n}{i}.mp4\n" for n in CLASSES for i in (0, 1)))
    (videos / "test.txt").write_text("".join(f"{n}/{n}2.mp4\n" for n in CLASSES))
    quiet = ["--quiet", "--device", "cpu"]
    assert main(["extract", "--videos", str(videos), "--store", str(store), *MAPS, *quiet]) == 0
    assert main(["train", "--store", str(store), "--run", str(run), "--epochs", "1", "--batch-size", "4", *quiet]) == 0
    assert main(["evaluate", "--store", str(store), "--run", str(run), *quiet]) == 0
    # A "flow" run for fuse: the RGB run's scores, labelled as the flow stream's.
    shutil.copytree(run, flow_run)
    results = json.loads((flow_run / "results.json").read_text())
    (flow_run / "results.json").write_text(json.dumps(results | {"stream": "flow"}))
    (base / "a-file.txt").write_text("not a folder\n")
    (base / "scratch").mkdir()
    paths = {
        "base": base,
        "videos": videos,
        "store": store,
        "run": run,
        "flow_run": flow_run,
        "video": videos / "grow" / "grow2.mp4",
        "file": base / "a-file.txt",
        "missing": base / "no-such-thing",
    }
    yield paths
    shutil.rmtree(base, ignore_errors=True)


# -- helpers -------------------------------------------------------------------------------
def snapshot(folder: Path) -> dict[str, str]:
    """Every file (sha256) and folder under ``folder``, but lock files."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.name == LOCK:
            continue
        rel = str(path.relative_to(folder))
        if path.is_dir():
            out[rel + "/"] = "dir"
        elif path.is_file():
            try:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            except PermissionError:
                out[rel] = "unreadable"
    return out


def assert_nothing_written(before: dict[str, str], after: dict[str, str]) -> None:
    """Every file and folder of ``before`` unchanged, no new file (an empty new folder is tolerated:
    e.g. extraction locks a new store folder before it builds the frame ConvNet)."""
    changed = {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v}
    added = [k for k in after if k not in before and not k.endswith("/")]
    assert not changed and not added, f"changed: {changed}; new files: {added}"


def others_can_reach(path: Path) -> bool:
    """Every folder above ``path`` lets other users through (a checkout under ``mktemp -d``,
    mode 0700, does not: as ``nobody`` the command could not even import tsmap or read the
    ConvNet's weights, and would fail for that reason instead of the one under test)."""
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.resolve().parents)


@contextlib.contextmanager
def without_root():
    """The effective rights of a normal user (``nobody``) while root; nothing otherwise."""
    if os.geteuid() != 0:
        yield
        return
    import tsmap

    for path in (Path(tsmap.__file__), Path(sys.prefix)):
        if not others_can_reach(path):
            pytest.skip(f"the permission case runs as nobody, who cannot reach {path}; clone where others can")
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def run_cli(argv: list[str], capsys, unprivileged: bool = False) -> tuple[int, str, str]:
    capsys.readouterr()
    with without_root() if unprivileged else contextlib.nullcontext():
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def emptied(path: Path) -> None:
    path.write_bytes(b"")


def garbage(path: Path) -> None:
    path.write_bytes(b"this is not what tsmap wrote\n" * 20)


DAMAGE = {"truncated": truncated, "empty": emptied, "garbage": garbage}


def copy_run(p: dict, name: str = "run", source: str = "run") -> Path:
    dst = p["scratch"] / name
    shutil.copytree(p[source], dst)
    return dst


def read_only(path: Path) -> None:
    """No write permission on ``path`` and below (folders keep r-x, files r--)."""
    for sub in [path, *path.rglob("*")] if path.is_dir() else [path]:
        sub.chmod(0o555 if sub.is_dir() else 0o444)


# -- the cases ----------------------------------------------------------------------------
@dataclass
class Case:
    argv: str  # formatted with the fixture's paths ({store}, {run}, ... and {scratch}, {new})
    names: tuple[str, ...]  # each must appear in the one line on stderr
    setup: object = None  # setup(paths) before the snapshot: damaged copies in {scratch}
    unprivileged: bool = False
    marks: list = field(default_factory=list)


CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")

EXTRACT = "extract --videos {videos} --store {new}"
TRAIN = "train --store {store} --run {new}"
EVALUATE = "evaluate --store {store} --run {run}"
PREDICT = "predict {video} --run {run}"
EXPLAIN = "explain {video} --run {run} --out {new}"
FUSE = "fuse --runs {run} {flow_run} --out {new}"
REPORT = "report --store {store} --out {new}"
FINETUNE = "finetune --videos {videos} --out {new}"
DEMO = "demo --out {new}"

CASES: dict[str, Case] = {}


def numeric(command: str, base: str, option: str, values: tuple[str, ...], extra: str = "") -> None:
    for value in values:
        CASES[f"{command} {option} {value}"] = Case(f"{base} {option} {value} {extra}", (option,))


INTS = ("0", "-3", "abc", "2.5")
for command, base, options in (
    ("extract", EXTRACT, ("--frames", "--image-size", "--resize", "--batch-size")),
    ("train", TRAIN, ("--epochs", "--batch-size", "--lr-step")),
    ("predict", PREDICT, ("--top",)),
    ("demo", DEMO, ("--frames", "--train-per-class", "--test-per-class", "--epochs")),
    ("finetune", FINETUNE, ("--segments", "--epochs", "--batch-size", "--image-size", "--resize", "--lr-steps")),
    ("report", REPORT, ("--seeds", "--epochs", "--batch-size", "--tsn-epochs", "--top-classes", "--densities")),
    ("explain", EXPLAIN, ("--frames-shown",)),
):
    for option in options:
        numeric(command, base, option, INTS)
for command, base, options in (
    ("extract", EXTRACT, ("--split-seed",)),
    ("train", TRAIN, ("--micro-batch", "--seed", "--val-seed")),
    ("demo", DEMO, ("--seed",)),
    ("finetune", FINETUNE, ("--workers", "--seed")),
    ("report", REPORT, ("--seed", "--train-per-class", "--failures")),
):
    for option in options:
        numeric(command, base, option, ("-1", "x"))
numeric("train", TRAIN, "--lr", ("0", "-1", "x", "nan", "inf"))
numeric("train", TRAIN, "--temporal-crop", ("0", "1.5", "-0.5", "x"))
numeric("train", TRAIN, "--val-fraction", ("1", "-0.1", "x"))
numeric("train", TRAIN, "--memory-budget", ("-1", "x"))
numeric("extract", EXTRACT, "--test-fraction", ("1.5", "-1", "1", "x", "nan"))
numeric("finetune", FINETUNE, "--lr", ("0", "-1e-3", "x"))
numeric("finetune", FINETUNE, "--dropout", ("1", "-0.1", "x"))
numeric("report", REPORT, "--lr", ("0", "-1"))
numeric("report", REPORT, "--lstm-lr", ("0", "x"))
numeric("report", REPORT, "--weight-decay", ("-1", "x"))
numeric("fuse", FUSE, "--weights", ("1 -1", "x 1", "nan 1", "1 inf"))
numeric("evaluate", EVALUATE, "--split", ("4", "x"))
numeric("evaluate", EVALUATE, "--subset", ("validation",))
numeric("extract", EXTRACT, "--backbone", ("resnet50",))
numeric("demo", DEMO, "--streams", ("flow", "rgb,depth"))
CASES["explain --action -1 5"] = Case(f"{EXPLAIN} --action -1 5", ("--action",))
CASES["explain --action 5 2"] = Case(f"{EXPLAIN} --action 5 2", ("--action",))

# Devices: every command that has --device.
for command, base in (
    ("extract", EXTRACT),
    ("train", TRAIN),
    ("evaluate", EVALUATE),
    ("predict", PREDICT),
    ("explain", EXPLAIN),
    ("report", REPORT),
    ("finetune", FINETUNE),
    ("demo", DEMO),
):
    CASES[f"{command} --device bogus"] = Case(f"{base} --device bogus", ("--device", "bogus"))
    CASES[f"{command} --device cuda"] = Case(f"{base} --device cuda", ("--device", "CUDA"), marks=[CUDA])
CASES["predict --device cuda:x"] = Case(f"{PREDICT} --device cuda:x", ("--device",))
CASES["extract --engine onnx --device cuda"] = Case(
    f"{EXTRACT} --engine onnx --device cuda:0", ("--device",), marks=[CUDA]
)

# Paths: a file where a folder goes, a folder where a file goes, missing ones.
for command, argv, option in (
    ("extract", "extract --videos {videos} --store {file}", "--store"),
    ("extract", "extract --videos {file} --store {new}", "--videos"),
    ("train", "train --store {file} --run {new}", "--store"),
    ("train", "train --store {store} --run {file}", "--run"),
    ("evaluate", "evaluate --store {file} --run {run}", "--store"),
    ("evaluate", "evaluate --store {store} --run {file}", "--run"),
    ("predict", "predict {video} --run {file}", "--run"),
    ("explain", "explain {video} --run {file}", "--run"),
    ("explain", "explain {video} --run {run} --out {file}", "--out"),
    ("fuse", "fuse --runs {file} {flow_run} --out {new}", "--runs"),
    ("fuse", "fuse --runs {run} {flow_run} --out {file}", "--out"),
    ("report", "report --store {file} --out {new}", "--store"),
    ("report", "report --store {store} --out {file}", "--out"),
    ("report", "report --store {store} --out {new} --density-store {file}", "--density-store"),
    ("finetune", "finetune --videos {file} --out {new}", "--videos"),
    ("finetune", "finetune --videos {videos} --out {file}", "--out"),
    ("demo", "demo --out {file}", "--out"),
):
    CASES[f"{command} {option} is a file"] = Case(argv, (option, "a-file.txt"))
for command, argv, option, name in (
    ("extract", "extract --videos {videos} --store {new} --weights {run}", "--weights", "run"),
    ("extract", "extract --videos {videos} --store {new} --weights {missing}", "--weights", "no-such-thing"),
    ("extract", f"{EXTRACT} --dataset list --train-list {{missing}} --test-list {{file}}", "--train-list", "no-such"),
    ("extract", f"{EXTRACT} --dataset hmdb51 --splits {{file}}", "--splits", "a-file.txt"),
    ("extract", f"{EXTRACT} --dataset hmdb51 --splits {{missing}}", "--splits", "no-such-thing"),
    ("predict", "predict {missing} --run {run}", "VIDEO", "no-such-thing"),
    ("predict", "predict {videos} --run {run}", "VIDEO", "videos"),
    ("explain", "explain {missing} --run {run}", "VIDEO", "no-such-thing"),
):
    CASES[f"{command} {option} {name}"] = Case(argv, (option, name))
# Missing stores, runs and results: named by the library, one line.
CASES["extract --videos missing"] = Case("extract --videos {missing} --store {new}", ("no-such-thing",))
CASES["train --store missing"] = Case("train --store {missing} --run {new}", ("no-such-thing", "not a VideoMap store"))
CASES["evaluate --run missing"] = Case("evaluate --store {store} --run {missing}", ("no-such-thing",))
CASES["predict --run missing"] = Case("predict {video} --run {missing}", ("no-such-thing",))
CASES["explain --run missing"] = Case("explain {video} --run {missing}", ("no-such-thing",))
CASES["fuse --runs missing"] = Case("fuse --runs {run} {missing} --out {new}", ("no-such-thing",))
CASES["report --store missing"] = Case("report --store {missing}", ("no-such-thing",))


# Damaged checkpoints, score files, store files.
def damaged_checkpoint(how: str, head: str = "videomap"):
    def setup(p: dict) -> None:
        run = copy_run(p, "damaged")
        DAMAGE[how](run / f"{head}.pt")
        if head == "videomap":  # evaluate reads every head: both damaged
            DAMAGE[how](run / "tsn.pt")

    return setup


for how in DAMAGE:
    ckpt = "{scratch}/damaged/videomap.pt"
    CASES[f"evaluate {how} checkpoint"] = Case(
        "evaluate --store {store} --run {scratch}/damaged", ("damaged/", ".pt"), damaged_checkpoint(how)
    )
    CASES[f"predict {how} checkpoint"] = Case(
        "predict {video} --run {scratch}/damaged", ("damaged/videomap.pt",), damaged_checkpoint(how)
    )
    CASES[f"predict --head tsn {how} checkpoint"] = Case(
        "predict {video} --run {scratch}/damaged --head tsn", ("damaged/tsn.pt",), damaged_checkpoint(how, "tsn")
    )
    CASES[f"explain {how} checkpoint"] = Case(
        "explain {video} --run {scratch}/damaged --out {new}", ("damaged/videomap.pt",), damaged_checkpoint(how)
    )
    CASES[f"extract --weights {how}"] = Case(
        f"{EXTRACT} {' '.join(MAPS)} --weights {{scratch}}/weights.pt",
        ("weights.pt",),
        lambda p, how=how: DAMAGE[how](Path(shutil.copy(p["run"] / "videomap.pt", p["scratch"] / "weights.pt"))),
    )

    def damaged_scores(p: dict, how: str = how) -> None:
        copy_run(p, "rgb")
        copy_run(p, "flow", "flow_run")
        DAMAGE[how](p["scratch"] / "flow" / "scores_videomap.npy")

    CASES[f"fuse {how} scores"] = Case(
        "fuse --runs {scratch}/rgb {scratch}/flow --out {new}", ("flow/scores_videomap.npy",), damaged_scores
    )

    def damaged_store_json(p: dict, how: str = how) -> None:
        shutil.copytree(p["store"], p["scratch"] / "store")
        DAMAGE[how](p["scratch"] / "store" / "store.json")

    for command, argv in (
        ("extract", "extract --videos {videos} --store {scratch}/store"),
        ("train", "train --store {scratch}/store --run {new}"),
        ("evaluate", "evaluate --store {scratch}/store --run {run}"),
        ("report", "report --store {scratch}/store --out {new}"),
    ):
        CASES[f"{command} {how} store.json"] = Case(argv, ("store.json",), damaged_store_json)

    def damaged_results(p: dict, how: str = how) -> None:
        copy_run(p, "rgb")
        copy_run(p, "flow", "flow_run")
        DAMAGE[how](p["scratch"] / "flow" / "results.json")

    CASES[f"fuse {how} results.json"] = Case(
        "fuse --runs {scratch}/rgb {scratch}/flow --out {new}", ("flow/results.json",), damaged_results
    )


# Permissions: read-only output folders, unreadable inputs.
def read_only_copy(name: str, source: str):
    def setup(p: dict) -> None:
        read_only(copy_run(p, name, source))

    return setup


def unreadable(relative: str, source: str = "run", name: str = "locked"):
    def setup(p: dict) -> None:
        (copy_run(p, name, source) / relative).chmod(0)

    return setup


def permission_case(case_id: str, argv: str, names: tuple[str, ...], setup) -> None:
    CASES[case_id] = Case(argv, names, setup, unprivileged=True)


RO_RUN = read_only_copy("run", "run")
permission_case(
    "extract into a read-only store",
    f"extract --videos {{videos}} --store {{scratch}}/store {' '.join(MAPS)}",
    ("--store", "read-only-store/store", "cannot write"),
    read_only_copy("store", "store"),
)
permission_case("train into a read-only run", "train --store {store} --run {scratch}/run", ("--run",), RO_RUN)
permission_case("evaluate a read-only run", "evaluate --store {store} --run {scratch}/run", ("--run",), RO_RUN)
permission_case("fuse into read-only --out", "fuse --runs {run} {flow_run} --out {scratch}/run", ("--out",), RO_RUN)
permission_case("explain into read-only --out", "explain {video} --run {run} --out {scratch}/run", ("--out",), RO_RUN)
permission_case("report into read-only --out", "report --store {store} --out {scratch}/run", ("--out",), RO_RUN)
permission_case("demo into read-only --out", "demo --out {scratch}/run/demo", ("--out",), RO_RUN)
permission_case("finetune into read-only --out", "finetune --videos {videos} --out {scratch}/run", ("--out",), RO_RUN)
permission_case(
    "predict an unreadable video",
    "predict {scratch}/locked/grow/grow2.mp4 --run {run}",
    ("grow2.mp4",),
    unreadable("grow/grow2.mp4", "videos"),
)
permission_case(
    "extract with unreadable --weights",
    f"{EXTRACT} --weights {{scratch}}/locked/videomap.pt",
    ("--weights", "videomap.pt"),
    unreadable("videomap.pt"),
)
permission_case(
    "predict with an unreadable checkpoint",
    "predict {video} --run {scratch}/locked",
    ("locked/videomap.pt",),
    unreadable("videomap.pt"),
)
permission_case(
    "train with an unreadable store.json",
    "train --store {scratch}/locked --run {new}",
    ("store.json",),
    unreadable("store.json", "store"),
)


@pytest.mark.parametrize("case_id", [pytest.param(k, marks=c.marks, id=k.replace(" ", "_")) for k, c in CASES.items()])
def test_bad_input_is_one_line_and_changes_nothing(case_id, f, capsys):
    case = CASES[case_id]
    slug = "".join(ch if ch.isalnum() else "-" for ch in case_id)
    scratch = f["base"] / "scratch" / slug
    scratch.mkdir()
    paths = {**f, "scratch": scratch, "new": f["base"] / "new" / slug}
    if case.setup is not None:
        case.setup(paths)
    before = snapshot(f["base"])
    argv = case.argv.format(**paths).split()
    code, out, err = run_cli(["--quiet", *argv], capsys, case.unprivileged)
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}; stdout: {out[-2000:]} stderr: {err[-2000:]}"
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith("tsmap"), err
    for name in case.names:
        assert name.format(**paths) in lines[0], f"{name!r} not named in: {lines[0]}"
    assert_nothing_written(before, snapshot(f["base"]))


def test_a_folder_where_a_checkpoint_should_be_is_named(f, capsys):
    run = f["base"] / "scratch" / "folder-checkpoint"
    (run / "videomap.pt").mkdir(parents=True)
    code, _, err = run_cli(["predict", str(f["video"]), "--run", str(run)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "videomap.pt" in err and "folder" in err


def test_a_truncated_map_in_the_store_is_named_by_train(f, capsys):
    store = f["base"] / "scratch" / "truncated-map"
    shutil.copytree(f["store"], store)
    victim = next((store / "maps").rglob("*.npy"))
    truncated(victim)
    before = snapshot(f["base"])
    code, out, err = run_cli(["--quiet", "train", "--store", str(store), "--run", str(store.parent / "r")], capsys)
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and victim.name in err
    assert snapshot(f["base"]) == before


def test_extract_exits_1_when_some_videos_failed_and_says_which(f, capsys, tmp_path):
    videos, store = tmp_path / "videos", tmp_path / "store"
    shutil.copytree(f["videos"], videos)
    shutil.copytree(f["store"], store)  # the good videos are mapped already
    (videos / "shrink" / "shrink9.mp4").write_bytes(b"not a video")
    with open(videos / "train.txt", "a") as lines:
        lines.write("shrink/shrink9.mp4\n")
    code, out, err = run_cli(["--quiet", "extract", "--videos", str(videos), "--store", str(store), *MAPS], capsys)
    assert code == 1, err
    assert "0 mapped, 9 already in the store, 1 failed" in out and "failed: shrink/shrink9.mp4" in out
    assert "exit status 1" in out


def test_every_help_documents_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "exit status" in text and "130" in text and "user error" in text
    for command in ("demo", "extract", "finetune", "train", "evaluate", "predict", "fuse", "report", "explain"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "exit status: 0" in capsys.readouterr().out, command


def test_help_quotes_no_measurements(capsys):
    for command in ("demo", "extract", "finetune", "train", "evaluate", "predict", "fuse", "report", "explain"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert not re.search(r"~\d|\d(\.\d+)?x\b|\bmeasured\b|faster", text), command


@pytest.mark.parametrize(
    "argv, name",
    [
        (["extract", "--videos", "{videos}", "--store", "{new}", "--frames", "0"], "--frames"),
        (["predict", "{video}", "--run", "{scratch}"], "videomap.pt"),
    ],
    ids=["parse-time", "run-time"],
)
def test_no_traceback_reaches_stderr_of_the_real_command(argv, name, f):
    scratch = f["base"] / "scratch" / f"subprocess-{name}"
    scratch.mkdir()
    garbage(scratch / "videomap.pt")
    paths = {**f, "scratch": scratch, "new": f["base"] / "new" / "subprocess"}
    before = snapshot(f["base"])
    result = subprocess.run(
        [sys.executable, "-m", "tsmap", *(a.format(**paths) for a in argv)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr and name in lines[0], result.stderr
    assert snapshot(f["base"]) == before  # not even a folder for the store
    assert not (f["base"] / "new" / "subprocess").exists()


def test_a_numpy_array_in_a_checkpoint_file_is_not_taken_for_a_head(f, capsys):
    run = f["base"] / "scratch" / "numpy-checkpoint"
    run.mkdir()
    np.save(run / "videomap.npy", np.zeros(3))
    (run / "videomap.npy").rename(run / "videomap.pt")
    code, _, err = run_cli(["predict", str(f["video"]), "--run", str(run)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "videomap.pt" in err


def test_permission_cases_really_lack_rights(f):
    """The permission cases above are meaningful: without root's rights a read-only folder refuses writes."""
    folder = f["base"] / "scratch" / "rights"
    folder.mkdir()
    read_only(folder)
    with without_root(), pytest.raises(PermissionError):
        (folder / "x").write_text("x")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o555


def test_a_write_that_fails_midway_is_one_line_and_keeps_the_maps(f, capsys):
    """Not caught up front: the store folder can be written, one of its map folders cannot (WriteError)."""
    store = f["base"] / "scratch" / "write-error-store"
    shutil.copytree(f["store"], store)
    (store / LOCK).unlink(missing_ok=True)
    victim = store / "maps" / "still" / "still2.mp4.npy"
    victim.unlink()
    store.chmod(0o777)
    read_only(store / "maps" / "still")
    before = snapshot(f["base"])
    argv = ["--quiet", "extract", "--videos", str(f["videos"]), "--store", str(store), *MAPS]
    code, out, err = run_cli(argv, capsys, unprivileged=True)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and "maps/still" in lines[0] and "cannot write" in lines[0], err
    assert_nothing_written(before, snapshot(f["base"]))
    assert not victim.exists()
