"""The report's PNG figures; each function returns the file name(s) it wrote in ``out_dir``.

They read the report (the dict written to report.json) and never change it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from tsmap.data.datasets import VideoDataset
from tsmap.data.video import FrameGeometry, VideoError, read_frames, uniform_indices
from tsmap.evaluation import plots
from tsmap.evaluation.explain import describe_shares, explain_maps, head_row_frames, interval_shares, plot_explained
from tsmap.heads.videomap_head import VideoMapHead
from tsmap.report.analysis import Curves
from tsmap.report.experiments import DESIGNS
from tsmap.videomap.loader import MapDataset

BARS = "bar = mean of {} seed(s), black line = 1 standard deviation, dots = the seeds"


@dataclass
class FigureInputs:
    """What the figures need beside the report: the explained head, its test maps, the videos."""

    dataset: VideoDataset
    geometry: FrameGeometry
    main_model: nn.Module
    test: MapDataset
    histories: dict[str, list[list[dict]]]
    intervals: dict
    curves: Curves
    top_classes: int = 25


def write_figures(report: dict, out_dir: Path, inputs: FigureInputs) -> dict:
    figs: dict[str, object] = table_figures(report, out_dir, inputs.histories)
    if report["density"]["densities"]:
        figs["density"] = density_figure(report, out_dir)
    figs["class_gain"] = class_gain_figure(report, out_dir, inputs.top_classes)
    figs["confusion"] = confusion_figures(report, out_dir)
    if report["failures"]:
        figs["failures"] = failures_figure(report, out_dir, inputs.dataset.root, inputs.geometry)
    if inputs.curves.grad_cam:
        figs["time_profile"] = time_profile_figure(inputs.curves, out_dir)
    figs["explained"] = explain_figures(report, out_dir, inputs)
    return figs


def table_figures(report: dict, out_dir: Path, histories: dict[str, list[list[dict]]]) -> dict[str, str]:
    seeds, tested = len(report["seeds"]), f"top-1 on {report['num_test_maps']} test videos"
    return {
        "table2": plots.plot_seed_bars(
            [(row["label"], row["top1"]["per_seed"]) for row in report["table2"].values()],
            out_dir / "table2_heads.png",
            f"Table II: head designs on the same VideoMaps ({tested})\n{BARS.format(seeds)}",
            "top-1 accuracy (%)",
        ).name,
        "table3": plots.plot_seed_bars(
            [(row["label"], row["top1"]["per_seed"]) for row in report["table3"].values()],
            out_dir / "table3_attention.png",
            f"Table III: temporal attention variants of the 3-layer head ({tested})\n{BARS.format(seeds)}",
            "top-1 accuracy (%)",
        ).name,
        "training": plots.plot_training_curves(
            {DESIGNS[k].label: histories[k] for k in histories},
            out_dir / "training_loss.png",
            "Training loss of every head design (one line per seed)",
        ).name,
    }


def density_figure(report: dict, out_dir: Path) -> str:
    d = report["density"]
    series = {
        "VideoMap head (A0A1A2)": np.array([d["videomap"][str(t)]["per_seed"] for t in d["densities"]]).T,
        "TSN (all T' frames)": np.array([d["tsn"][str(t)]["per_seed"] for t in d["densities"]]).T,
    }
    names = {"videomap": "VideoMap head", "tsn": "TSN"}
    dashed = {f"{names[kind]} from {report['run_dir']}": v for kind, v in d["run"].items()}
    frames = report["store_settings"]["frames"]
    return plots.plot_density_curve(
        d["densities"],
        series,
        out_dir / "fig5_density.png",
        f"Fig. 5: accuracy against the frames per video at test time (heads trained at T = {frames})",
        dashed=dashed,
    ).name


def class_gain_figure(report: dict, out_dir: Path, top_classes: int) -> str:
    measured = (r for r in report["per_class"] if r["gain"] is not None)
    gains = sorted(measured, key=lambda r: (-r["gain"], r["class"]))[:top_classes]
    return plots.plot_class_gain(
        [r["class"] for r in gains],
        [r["gain"] for r in gains],
        out_dir / "fig6_class_gain.png",
        f"Fig. 6: per-class top-1 gain of the VideoMap head over TSN (top {len(gains)} classes by gain)",
    ).name


def confusion_figures(report: dict, out_dir: Path) -> list[str]:
    cms = {
        "TSN": np.array(report["confusion_matrices"]["tsn"]),
        "VideoMap head": np.array(report["confusion_matrices"]["videomap"]),
    }
    classes = report["classes"]
    names = []
    for n, group in enumerate(report["confusion_groups"]):
        name = f"fig9_confusion_{n + 1}.png"
        plots.plot_partial_confusion(
            cms,
            classes,
            [classes.index(c) for c in group],
            out_dir / name,
            f"Partial confusion matrix of {', '.join(group)} (share of each true class's test videos)",
        )
        names.append(name)
    return names


def _display_frames(video: Path, rows: int, shown: np.ndarray, geometry: FrameGeometry):
    """Frames of the head's rows ``shown`` (as sampled for a map of ``rows``) and their video indices."""
    frames, count = read_frames(video, rows, geometry)
    return frames[shown], uniform_indices(count, rows)[shown].tolist(), count


def failures_figure(report: dict, out_dir: Path, videos: Path, geometry: FrameGeometry) -> str:
    cases = []
    for case in report["failures"]:
        try:
            frames, _, _ = _display_frames(videos / case["video"], 4, np.arange(4), geometry)
        except VideoError:
            frames = None
        cases.append({**case, "frames": frames})
    return plots.plot_failures(
        cases,
        out_dir / "fig11_failures.png",
        "Fig. 11: failure cases of the VideoMap head: 4 frames and its top-5 classes",
    ).name


def time_profile_figure(curves: Curves, out_dir: Path) -> str:
    cams = {"conv-3": np.array(curves.grad_cam)}
    if curves.early.get("conv1"):
        cams["conv-1"] = np.array(curves.early["conv1"])
    return plots.plot_time_profile(
        np.array(curves.attention) if curves.attention else None,
        cams,
        np.array(curves.inside),
        out_dir / "fig8_time_profile.png",
        f"Attention and Grad-CAM by position, over the {len(curves.grad_cam)} test videos (explained VideoMap head)",
    ).name


def explain_figures(report: dict, out_dir: Path, inputs: FigureInputs) -> list[dict]:
    """Fig. 8 for each explained video: frames, VideoMap, attention a0 and Grad-CAM over time."""
    model, test = inputs.main_model, inputs.test
    if not isinstance(model, VideoMapHead):
        return []
    names = []
    keys = [c.key for c in test.clips]
    classes = report["classes"]
    for n, key in enumerate(report["explained_videos"]):
        m, y = test[keys.index(key)]
        ex = explain_maps(model, m[None])
        iv = inputs.intervals.get(key)
        try:
            shown = uniform_indices(m.shape[0], 8)
            frames, ids, count = _display_frames(inputs.dataset.root / key, m.shape[0], shown, inputs.geometry)
        except VideoError:
            continue  # the figure needs the frames; the shares are in the JSON anyway
        rows = head_row_frames(count, m.shape[0], model.num_frames)
        pred = int(ex.probs[0].argmax())
        text = (
            f"{key}: true class {classes[y]}, predicted {classes[pred]} ({ex.probs[0, pred]:.0%}); "
            "Grad-CAM of the predicted class"
        )
        if iv is not None:
            text += "\n" + describe_shares(interval_shares(ex, 0, rows, iv.start, iv.end, iv.frames), iv.start, iv.end)
        name = f"fig8_explain_{n + 1}.png"
        plot_explained(ex, frames, ids, rows, count, out_dir / name, text, iv)
        names.append({"video": key, "file": name})
    return names
