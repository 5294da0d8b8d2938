"""`tsmap report` and `tsmap explain` end to end on tiny demo data, the Table II heads, and the
report's building blocks."""

import argparse
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY_MAPS

from tsmap import steps
from tsmap.cli import main
from tsmap.cli.explain import add_parser as add_explain_parser
from tsmap.cli.explain import run as cmd_explain
from tsmap.cli.report import add_parser as add_report_parser
from tsmap.cli.report import run as cmd_report
from tsmap.data.datasets import Clip, DatasetError
from tsmap.heads.ablation_heads import AlexNetHead, LSTMHead, OneLayerHead
from tsmap.heads.checkpoint import load_head, save_head
from tsmap.report import ReportOptions
from tsmap.report.analysis import confusion_groups, failure_cases
from tsmap.report.density import RowSubset
from tsmap.report.experiments import (
    DESIGNS,
    TABLE_II,
    TABLE_III,
    balanced_subset,
    spread,
    train_or_reuse,
    within_spread,
)
from tsmap.videomap.loader import MapDataset
from tsmap.videomap.store import StoreError, VideoMapStore

PNG = b"\x89PNG\r\n\x1a\n"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tsmap")
    parser.add_argument("--quiet", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    add_report_parser(sub)
    add_explain_parser(sub)
    return parser


def test_every_option_has_help():
    parser = _parser()
    for name in ("report", "explain"):
        sub = parser._subparsers._group_actions[0].choices[name]
        assert sub.description
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"tsmap {name} {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("head_class", [OneLayerHead, AlexNetHead, LSTMHead])
def test_table2_heads_shapes_other_t_and_checkpoints(head_class, tmp_path):
    torch.manual_seed(0)
    head = head_class(5, 16, 40).eval()
    maps = torch.randn(3, 16, 40)
    assert head(maps).shape == (3, 5)
    assert head(torch.randn(2, 37, 40)).shape == (2, 5)  # another T is resampled to the trained 16 rows
    save_head(tmp_path / "h.pt", head, list("abcde"), {"frames": 16})
    loaded, payload = load_head(tmp_path / "h.pt")
    assert type(loaded) is head_class and payload["config"] == head.config
    torch.testing.assert_close(loaded(maps), head(maps))


def test_balanced_subset_and_spread():
    clips = [Clip(f"c{label}/v{i:02d}", label) for label in range(3) for i in range(10)]
    sub = balanced_subset(clips, 3, 4)
    assert [sum(c.label == k for c in sub) for k in range(3)] == [4, 4, 4]
    assert [c.key for c in sub if c.label == 0] == ["c0/v01", "c0/v03", "c0/v06", "c0/v08"]  # spread evenly
    assert balanced_subset(clips, 3, 0) == clips
    s = spread([0.5, 0.7, 0.6])
    assert s["mean"] == pytest.approx(0.6) and s["std"] == pytest.approx(0.1) and (s["min"], s["max"]) == (0.5, 0.7)
    assert spread([0.4])["std"] == 0.0
    assert within_spread(spread([0.6, 0.8]), spread([0.6, 0.6]))  # 0.6 >= 0.7 - 0.141
    assert not within_spread(spread([0.8, 0.8]), spread([0.5, 0.5]))


def test_row_subset_takes_rows():
    data = [(torch.arange(8.0)[:, None].expand(8, 3), 1)]
    rows, label = RowSubset(data, np.array([1, 4, 6]))[0]
    assert rows[:, 0].tolist() == [1, 4, 6] and label == 1


def test_confusion_groups_and_failures():
    classes = ["a", "b", "c", "d", "e"]
    cm = np.diag([5, 5, 5, 5, 5])
    cm[0, 1] = cm[1, 0] = 3  # a <-> b most confused, then c with them
    cm[2, 1] = 1
    cm[3, 4] = 2
    groups = confusion_groups({"x": cm}, classes, [])
    assert groups[0][:2] in ([0, 1], [1, 0]) and 2 in groups[0] and groups[1][:2] in ([3, 4], [4, 3])
    assert confusion_groups({"x": cm}, classes, [["e", "a"]]) == [[4, 0]]
    with pytest.raises(DatasetError, match="unknown class"):
        confusion_groups({"x": cm}, classes, [["a", "zebra"]])
    assert confusion_groups({"x": np.diag([3, 3])}, ["a", "b"], []) == []

    class Test:
        clips = [Clip(f"v{i}", i % 2) for i in range(4)]

    scores = np.array([[5.0, 0.0], [0.0, 1.0], [0.0, 9.0], [2.0, 0.0]])  # v2 wrong (sure), v3 wrong (less sure)
    cases = failure_cases(scores, np.array([0, 1, 0, 1]), Test(), ["p", "q"], 5)
    assert [c["video"] for c in cases] == ["v2", "v3"]
    assert cases[0]["truth"] == "p" and cases[0]["top5"][0][0] == "q" and cases[0]["top5"][0][1] > 0.99


@pytest.fixture(scope="module")
def tiny_report(tiny_demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    store = out / "store"
    video_key = (tiny_demo / "test.txt").read_text().split()[0]
    assert main(["--quiet", "extract", "--videos", str(tiny_demo), "--store", str(store), *TINY_MAPS]) == 0
    args = _parser().parse_args(
        [
            "--quiet",
            "report",
            "--store",
            str(store),
            "--out",
            str(out / "report"),
            "--seeds",
            "2",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--tsn-epochs",
            "1",
            "--densities",
            "4",
            "8",
            "16",
            "--failures",
            "2",
            "--videos",
            video_key,
        ]
    )
    assert cmd_report(args) == 0
    return out, store


def test_report_end_to_end(tiny_report, tiny_demo):
    out, store = tiny_report
    report_dir = out / "report"
    report = json.loads((report_dir / "report.json").read_text())
    classes = json.loads((tiny_demo / "dataset.json").read_text())["classes"]
    # Tables II and III: every design, two seeds each, mean/std/range/per-seed.
    assert list(report["table2"]) == list(TABLE_II) and list(report["table3"]) == list(TABLE_III)
    for row in [*report["table2"].values(), *report["table3"].values()]:
        top1 = row["top1"]
        assert len(top1["per_seed"]) == 2 and top1["min"] <= top1["mean"] <= top1["max"] and top1["std"] >= 0
        assert 0 <= row["order_pairs_top1"]["mean"] <= 1  # the demo's time-reversal classes
    assert report["heads_reused"] == 0 and report["heads_total"] == 2 * 9  # 9 designs x 2 seeds
    assert sorted(p.name for p in (report_dir / "heads").glob("*.pt")) == sorted(
        f"{k}-seed{s}.pt" for k in DESIGNS for s in (0, 1)
    )
    # Fig. 5: the tiny store has T = 8; a dense store at T = 16 was extracted beside it.
    density = report["density"]
    assert density["densities"] == [4, 8, 16] and density["num_videos"] == len(classes)
    assert (out / "store-T16" / "store.json").is_file()
    assert json.loads((out / "store-T16" / "store.json").read_text())["frames"] == 16
    for kind in ("videomap", "tsn"):
        assert all(len(density[kind][str(t)]["per_seed"]) == 2 for t in (4, 8, 16))
    # Per class, failures.
    assert sorted(r["class"] for r in report["per_class"]) == sorted(classes)
    assert all(r["test_videos"] == 1 for r in report["per_class"])
    assert len(report["failures"]) <= 2
    for case in report["failures"]:
        assert case["truth"] != case["top5"][0][0] and len(case["top5"]) == 5
    # Attention and Grad-CAM on the demo's recorded action intervals.
    loc = report["localization"]
    assert loc["available"] and loc["main"]["videos"] == len(classes) and len(loc["a0a1a2_seeds"]) == 2
    assert len(loc["a0a1a2_global_seeds"]) == 2
    for r in loc["main_per_video"]:
        assert 0 <= r["attention_share"] <= 1 and 0 < r["interval_share_rows"] <= 1
        assert r["grad_cam_share"] is None or 0 <= r["grad_cam_share"] <= 1  # None: a Grad-CAM without mass
    assert {c["claim"].split(" ")[1] for c in report["checks"]} >= {"VideoMap", "A0A1A2", "five"}
    # Every figure is a PNG; the documents show every head and link every figure.
    figures = report["figures"]
    names = [figures[k] for k in ("table2", "table3", "training", "density", "class_gain")]
    names += figures["confusion"] + [f["file"] for f in figures["explained"]] + [figures["time_profile"]]
    names += [figures["failures"]] if "failures" in figures else []
    assert report["explained_videos"] == [(tiny_demo / "test.txt").read_text().split()[0]]
    assert [f["video"] for f in figures["explained"]] == report["explained_videos"]
    assert len(loc["main_profile"]["attention_mean"]) == 8
    markdown = (report_dir / "report.md").read_text()
    page = (report_dir / "report.html").read_text()
    for name in names:
        assert (report_dir / name).read_bytes()[:8] == PNG
        assert f"]({name})" in markdown and f'src="{name}"' in page
    for key in TABLE_II:
        assert DESIGNS[key].label in markdown
    for name in ("table2_heads.csv", "table3_attention.csv", "density.csv", "per_class.csv", "localization.csv"):
        assert len((report_dir / name).read_text().splitlines()) > 1


def test_report_reuses_heads_and_names_mistakes(tiny_report, tmp_path):
    out, store_dir = tiny_report
    heads = out / "report" / "heads"
    before = (heads / "conv3-seed1.pt").stat().st_mtime_ns
    store = VideoMapStore.open(store_dir)
    dataset = steps.store_dataset(store)
    train = MapDataset(store, balanced_subset(dataset.clips("train"), len(dataset.classes), 24), in_memory=True)
    options = ReportOptions(epochs=1, batch_size=8, show_progress=False, device="cpu")
    model, history, _, reused = train_or_reuse("conv3", 1, train, store, dataset.classes, options, heads)
    assert reused and len(history) == 1
    assert (heads / "conv3-seed1.pt").stat().st_mtime_ns == before  # not retrained
    saved, _ = load_head(heads / "conv3-seed1.pt")
    torch.testing.assert_close(model.state_dict(), saved.state_dict())
    # Other settings retrain (into another folder here, to leave the report's heads alone).
    shutil.copy(heads / "conv3-seed1.pt", tmp_path / "conv3-seed1.pt")
    options.epochs = 2
    _, history, _, reused = train_or_reuse("conv3", 1, train, store, dataset.classes, options, tmp_path)
    assert not reused and len(history) == 2
    # Mistakes are named before any training.
    base = ["--quiet", "report", "--store", str(store_dir), "--out", str(tmp_path / "r")]
    with pytest.raises(DatasetError, match="unknown class"):
        cmd_report(_parser().parse_args([*base, "--confusion-classes", "grow,zebra"]))
    with pytest.raises(DatasetError, match="no test VideoMap"):
        cmd_report(_parser().parse_args([*base, "--videos", "grow/nothing.mp4"]))
    assert not (tmp_path / "r" / "heads").exists() or not any((tmp_path / "r" / "heads").iterdir())
    with pytest.raises(StoreError, match="not a VideoMap store"):
        cmd_report(_parser().parse_args(["report", "--store", str(tmp_path / "nothing")]))
    with pytest.raises(SystemExit):
        _parser().parse_args(["report", "--confusion-classes", "grow"])  # one class is no group


def test_explain_one_video(tiny_report, tiny_demo, tmp_path, capsys):
    out, _ = tiny_report
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(out / "report" / "heads" / "A0A1A2-seed0.pt", run / "videomap.pt")
    record = json.loads((tiny_demo / "dataset.json").read_text())["videos"][0]
    video = tiny_demo / record["path"]
    args = _parser().parse_args(["explain", str(video), "--run", str(run), "--out", str(tmp_path / "x")])
    assert cmd_explain(args) == 0
    result = json.loads((tmp_path / "x" / f"{video.stem}.json").read_text())
    assert (tmp_path / "x" / f"{video.stem}.png").read_bytes()[:8] == PNG
    assert len(result["attention"]) == len(result["grad_cam"]) == len(result["row_frames"]) == 8
    assert result["action"] == record["action"] and result["frames"] == record["frames"]
    assert 0 <= result["attention_share"] <= 1 and (
        result["grad_cam_share"] is None or 0 <= result["grad_cam_share"] <= 1
    )
    probs = [p for _, p in result["top5"]]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    printed = capsys.readouterr().out
    assert "of the Grad-CAM" in printed and result["top5"][0][0] in printed
    # Another class and a given interval.
    args = _parser().parse_args(
        ["explain", str(video), "--run", str(run), "--out", str(tmp_path / "y"), "--class", "dim", "--action", "0", "5"]
    )
    assert cmd_explain(args) == 0
    result = json.loads((tmp_path / "y" / f"{video.stem}.json").read_text())
    assert result["explained_class"] == "dim" and result["action"] == [0, 5]
    with pytest.raises(DatasetError, match="unknown class"):
        cmd_explain(_parser().parse_args(["explain", str(video), "--run", str(run), "--class", "zebra"]))
