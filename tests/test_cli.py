"""The command line, end to end on tiny demo data, and its handling of user mistakes."""

import argparse
import json
import re
import subprocess
import sys

import pytest
import torch
from conftest import TINY_MAPS

from tsmap.cli import COMMANDS, build_parser, main, options


@pytest.fixture(scope="module")
def trained(tiny_demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    store, run = out / "store", out / "run"
    common = ["--quiet"]
    assert (
        main(
            [
                *common,
                "extract",
                "--videos",
                str(tiny_demo),
                "--store",
                str(store),
                *TINY_MAPS,
            ]
        )
        == 0
    )
    assert main([*common, "train", "--store", str(store), "--run", str(run), "--epochs", "2", "--batch-size", "8"]) == 0
    return store, run


def test_extract_train_evaluate_predict(trained, tiny_demo, capsys):
    store, run = trained
    assert (run / "videomap.pt").is_file() and (run / "tsn.pt").is_file()
    capsys.readouterr()
    assert main(["evaluate", "--store", str(store), "--run", str(run)]) == 0
    table = capsys.readouterr().out
    assert "VideoMap head" in table and "TSN" in table
    results = json.loads((run / "results.json").read_text())
    classes = json.loads((tiny_demo / "dataset.json").read_text())["classes"]
    assert results["num_videos"] == len(classes)  # one test video per class
    for figures in results["heads"].values():
        assert 0 <= figures["top1"] <= figures["top5"] <= 1
        assert 0 <= figures["order_pairs_top1"] <= 1
    for kind in ("videomap", "tsn"):
        assert (run / f"confusion_{kind}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        rows = (run / f"confusion_{kind}.csv").read_text().splitlines()
        assert len(rows) == len(classes) + 1 and rows[0].split(",")[1:] == sorted(classes)
        assert sum(int(v) for row in rows[1:] for v in row.split(",")[1:]) == len(classes)

    video = tiny_demo / (tiny_demo / "test.txt").read_text().split()[0]
    assert main(["predict", str(video), "--run", str(run)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    probs = [float(re.match(r"\s*([\d.]+)%", line).group(1)) for line in lines[1:]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and sum(probs) <= 100.01
    assert all(line.split()[-1] in classes for line in lines[1:])


def test_train_with_the_papers_global_attention_branch(trained, tmp_path):
    store, run = trained
    other = tmp_path / "global"
    args = ["--quiet", "train", "--store", str(store), "--run", str(other), "--head", "videomap", "--epochs", "1"]
    assert main([*args, "--attention-scoring", "global"]) == 0
    payloads = [torch.load(r / "videomap.pt", weights_only=True) for r in (run, other)]
    assert [p["config"]["attention_scoring"] for p in payloads] == ["rows", "global"]
    # Its FC maps every position to every position; the per-row one has one weight per channel.
    assert payloads[1]["state_dict"]["attention.fc.weight"].shape[0] > 1
    assert payloads[0]["state_dict"]["attention.fc.weight"].shape[0] == 1


def test_user_errors_are_one_line_without_traceback(trained, tmp_path, tiny_demo, capsys):
    store, run = trained
    assert main(["train", "--store", str(tmp_path / "nowhere"), "--run", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "not a VideoMap store" in err and "nowhere" in err and "Traceback" not in err

    assert (
        main(
            [
                "--quiet",
                "extract",
                "--videos",
                str(tiny_demo),
                "--store",
                str(store),
                "--frames",
                "16",
                "--image-size",
                "64",
                "--resize",
                "64",
            ]
        )
        == 2
    )
    assert "frames: store has 8, asked 16" in capsys.readouterr().err

    assert main(["extract", "--videos", str(tmp_path / "no-videos"), "--store", str(tmp_path / "s")]) == 2
    assert "does not exist" in capsys.readouterr().err

    (tmp_path / "empty").mkdir()
    assert main(["extract", "--videos", str(tmp_path / "empty"), "--store", str(tmp_path / "s")]) == 2
    assert "no class folders" in capsys.readouterr().err

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    assert main(["predict", str(broken), "--run", str(run)]) == 1
    assert "broken.mp4: cannot read" in capsys.readouterr().out

    assert main(["evaluate", "--store", str(store), "--run", str(tmp_path)]) == 2
    assert "no trained head" in capsys.readouterr().err


@pytest.mark.parametrize(
    "command", ["demo", "extract", "train", "evaluate", "predict", "finetune", "fuse", "report", "explain"]
)
def test_help_explains_every_option(command):
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 10, f"{command} {action.option_strings} has no help"


def test_demo_command_small(tmp_path, capsys):
    out = tmp_path / "demo"
    args = [
        "--quiet",
        "demo",
        "--out",
        str(out),
        "--frames",
        "8",
        "--train-per-class",
        "1",
        "--test-per-class",
        "1",
        "--epochs",
        "1",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "VideoMap head" in printed and "TSN (25-frame average)" in printed and "order pairs" in printed
    results = json.loads((out / "run" / "results.json").read_text())
    assert set(results["heads"]) == {"videomap", "tsn"}
    assert (out / "run" / "confusion_videomap.png").is_file() and (out / "run" / "videomap.pt").is_file()
    # A second run resumes: the videos and maps are already there and are not redone.
    assert main(args) == 0
    assert "0 mapped, 24 already in the store" in capsys.readouterr().out


def test_every_command_is_a_module_with_a_parser_and_a_run():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert (
        set(commands)
        == set(COMMANDS)
        == {
            "demo",
            "extract",
            "finetune",
            "train",
            "evaluate",
            "predict",
            "fuse",
            "join",
            "report",
            "explain",
        }
    )
    for name, module in COMMANDS.items():
        assert callable(module.add_parser) and callable(module.run), name
        assert "exit status" in (commands[name].epilog or ""), name


def test_value_checks():
    assert options.positive_int("3") == 3 and options.non_negative_int("0") == 0
    assert options.fraction("1") == 1.0 and options.probability("0") == 0.0
    assert options.positive_float("1e-3") == 1e-3 and options.non_negative_float("0") == 0.0
    assert options.device("auto") == "auto" and options.device("CPU") == "cpu"
    bad = [
        (options.positive_int, "0"),
        (options.positive_int, "1.5"),
        (options.non_negative_int, "-1"),
        (options.fraction, "0"),
        (options.fraction, "1.01"),
        (options.probability, "1"),
        (options.positive_float, "0"),
        (options.positive_float, "nan"),
        (options.non_negative_float, "-inf"),
        (options.device, "gpu"),
        (options.device, "cuda:"),
    ]
    if not torch.cuda.is_available():
        bad.append((options.device, "cuda:0"))
    for check, text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            check(text)


def test_quiet_goes_before_or_after_the_command():
    args = build_parser().parse_args(["train", "--store", "s", "--run", "r", "--quiet"])
    assert args.quiet is True
    args = build_parser().parse_args(["--quiet", "train", "--store", "s", "--run", "r"])
    assert args.quiet is True
    assert build_parser().parse_args(["train", "--store", "s", "--run", "r"]).quiet is False


def test_the_parser_is_built_without_pytorch():
    # `tsmap --help` answers at once: building the parser imports neither PyTorch nor the library.
    code = "import sys; from tsmap.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
