"""The explained pair of heads (Figs. 6, 8-11): per-class gains, partial confusions, failure
cases, the share of attention and Grad-CAM on the action, and the report's checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tsmap.data.datasets import DatasetError, VideoDataset
from tsmap.data.video import uniform_indices
from tsmap.evaluation.explain import explain_maps, head_row_frames, interval_shares, rows_in_interval
from tsmap.evaluation.metrics import per_class_accuracy
from tsmap.heads.checkpoint import load_head
from tsmap.heads.videomap_head import VideoMapHead
from tsmap.report.experiments import within_spread
from tsmap.report.options import ReportOptions
from tsmap.steps.common import HEADS
from tsmap.videomap.loader import MapDataset
from tsmap.videomap.settings import MapSettings
from tsmap.videomap.store import StoreError, VideoMapStore, require_same_maps

# Grad-CAM layers measured besides the paper's conv-3 (on the explained head only).
EARLY_CAM_LAYERS = ("conv1", "conv2")


# -- the explained heads ----------------------------------------------------------
def main_heads(
    store: VideoMapStore, dataset: VideoDataset, models: dict[str, list[nn.Module]], run_dir: Path | None, device: str
) -> dict:
    """The heads the figures explain: ``run_dir``'s videomap.pt and tsn.pt (checked to be
    trained on this store's maps and classes), else the report's first-seed A0A1A2 and TSN."""
    if run_dir is None:
        return {
            "videomap": models["A0A1A2"][0],
            "tsn": models["tsn"][0],
            "source": "the report's first-seed A0A1A2 and TSN heads",
        }
    out = {"source": f"{run_dir}/videomap.pt and tsn.pt"}
    for kind in HEADS:
        path = run_dir / f"{kind}.pt"
        model, meta = load_head(path, device)
        fix = f"give --run a run trained on {store.root}, or leave --run out"
        require_same_maps(
            MapSettings.from_dict(meta["store_settings"]),
            store.map_settings,
            str(path),
            fix,
            ("head trained on", "store has"),
        )
        if meta["classes"] != dataset.classes:
            raise StoreError(f"{path} was trained on other classes than the dataset of {store.root}; {fix}")
        out[kind] = model
    return out


def per_class(cms: dict[str, np.ndarray], classes: list[str]) -> list[dict]:
    """Top-1 of each class for both heads and the VideoMap head's gain (None: no test video)."""
    acc = {k: per_class_accuracy(cm) for k, cm in cms.items()}
    return [
        {
            "class": name,
            "videomap_top1": _num(acc["videomap"][i]),
            "tsn_top1": _num(acc["tsn"][i]),
            "gain": _num(acc["videomap"][i] - acc["tsn"][i]),
            "test_videos": int(cms["tsn"][i].sum()),
        }
        for i, name in enumerate(classes)
    ]


def _num(x: float) -> float | None:
    return None if x is None or np.isnan(x) else float(x)


def confusion_groups(cms: dict[str, np.ndarray], classes: list[str], asked: list[list[str]]) -> list[list[int]]:
    """Class groups for partial confusion matrices: the ones asked, else up to two of the most confused."""
    index = {c: i for i, c in enumerate(classes)}
    if asked:
        unknown = [name for group in asked for name in group if name not in index]
        if unknown:
            raise DatasetError(f"unknown class name(s) {', '.join(unknown)}; the classes are {', '.join(classes)}")
        return [[index[name] for name in group] for group in asked]
    total = sum(cms.values()).astype(float)
    pair = total + total.T
    np.fill_diagonal(pair, 0)
    groups: list[list[int]] = []
    used: set[int] = set()
    for _ in range(2):
        masked = pair.copy()
        masked[list(used), :] = 0
        masked[:, list(used)] = 0
        if masked.max() <= 0:
            break
        i, j = np.unravel_index(np.argmax(masked), masked.shape)
        group = [int(i), int(j)]
        while len(group) < 4:
            link = masked[:, group].sum(1)
            link[group] = 0
            if link.max() <= 0:
                break
            group.append(int(np.argmax(link)))
        groups.append(group)
        used.update(group)
    return groups


def failure_cases(scores: np.ndarray, labels: np.ndarray, test: MapDataset, classes, count: int) -> list[dict]:
    """The most confident wrong predictions with their top-5 classes (the paper's Fig. 11)."""
    probs = torch.softmax(torch.from_numpy(scores), 1).numpy()
    wrong = np.flatnonzero(probs.argmax(1) != labels)
    wrong = wrong[np.argsort(-probs[wrong].max(1), kind="stable")][:count]
    cases = []
    for i in wrong:
        top = np.argsort(-probs[i], kind="stable")[:5]
        cases.append(
            {
                "video": test.clips[i].key,
                "truth": classes[labels[i]],
                "top5": [(classes[k], float(probs[i, k])) for k in top],
                "truth_probability": float(probs[i, labels[i]]),
            }
        )
    return cases


def pick_explain_videos(test: MapDataset, options: ReportOptions) -> list[str]:
    """The videos asked for, else the first test video of ``num_explain`` classes spread over the list."""
    keys = [c.key for c in test.clips]
    if options.explain_videos:
        unknown = [k for k in options.explain_videos if k not in keys]
        if unknown:
            raise DatasetError(f"no test VideoMap for {', '.join(unknown)} (give keys as in test.txt: <class>/<video>)")
        return list(options.explain_videos)
    labels = np.array([c.label for c in test.clips])
    present = sorted(set(labels.tolist()))
    chosen = [present[i] for i in uniform_indices(len(present), min(options.num_explain, len(present)))]
    return [keys[int(np.flatnonzero(labels == c)[0])] for c in dict.fromkeys(chosen)]


# -- attention and Grad-CAM on the action ------------------------------------------
@dataclass
class Curves:
    """Row-by-row curves of the explained head over the test videos (for the time-profile figure)."""

    attention: list[np.ndarray] = field(default_factory=list)
    grad_cam: list[np.ndarray] = field(default_factory=list)
    inside: list[np.ndarray] = field(default_factory=list)  # which rows show the action
    early: dict[str, list[np.ndarray]] = field(default_factory=dict)  # Grad-CAM at EARLY_CAM_LAYERS


def explain_batches(model, data: MapDataset, batch: int = 32, layer: str = "conv3"):
    for start in range(0, len(data), batch):
        items = [data[i] for i in range(start, min(start + batch, len(data)))]
        maps = torch.stack([m for m, _ in items])
        yield start, maps, explain_maps(model, maps, torch.tensor([y for _, y in items]), layer=layer)


def interval_rows(
    model, test: MapDataset, intervals: dict, device: str, curves: Curves | None = None, layer: str = "conv3"
) -> list[dict]:
    """Per test video with a known action interval: the shares of a0 and Grad-CAM on it."""
    if not isinstance(model, VideoMapHead):
        return []
    model.to(device)
    rows = []
    for start, maps, ex in explain_batches(model, test, layer=layer):
        for j in range(len(maps)):
            clip = test.clips[start + j]
            iv = intervals.get(clip.key)
            if iv is None:
                continue
            frames = head_row_frames(iv.frames, maps.shape[1], model.num_frames)
            # A share is None (null in the JSON, left out of the means) for a curve without mass.
            rows.append({"video": clip.key, **interval_shares(ex, j, frames, iv.start, iv.end, iv.frames)})
            if curves is not None:
                curves.grad_cam.append(ex.grad_cam[j])
                curves.inside.append(rows_in_interval(frames, iv.start, iv.end))
                if ex.attention is not None:
                    curves.attention.append(ex.attention[j])
    return rows


def summarize_shares(rows: list[dict]) -> dict:
    """Means of the shares over videos, and on how many videos each curve beats the rows' share."""
    out = {"videos": len(rows)}
    measured = ["attention_share", "grad_cam_share"]
    measured += [
        f"grad_cam_share_{layer}" for layer in EARLY_CAM_LAYERS if rows and f"grad_cam_share_{layer}" in rows[0]
    ]
    for key in measured + ["interval_share_rows", "interval_share_frames"]:
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = float(np.mean(values)) if values else None
    for key in measured:
        above = [r[key] > r["interval_share_rows"] for r in rows if r[key] is not None]
        out[f"{key}_above_interval"] = float(np.mean(above)) if above else None
        out[f"{key}_videos"] = len(above)
    return out


def localize(
    main_model, a0a1a2_models, test: MapDataset, intervals: dict, device: str, global_models=()
) -> tuple[dict, Curves]:
    """Shares of attention and Grad-CAM (for the true class) on each test video's action
    interval, and the explained head's curves row by row.

    ``global_models`` (A0A1A2 heads with the paper's global attention FC) are measured too,
    for the contrast with the per-row branch."""
    curves = Curves()
    if not intervals or not any(c.key in intervals for c in test.clips):
        return {"available": False, "reason": "the dataset records no action intervals (dataset.json)"}, curves
    main_rows = interval_rows(main_model, test, intervals, device, curves)
    # The explained head's Grad-CAM at the earlier convs too: the same videos in the same order.
    for layer in EARLY_CAM_LAYERS:
        layer_curves = Curves()
        for row, other in zip(
            main_rows, interval_rows(main_model, test, intervals, device, layer_curves, layer), strict=True
        ):
            row[f"grad_cam_share_{layer}"] = other["grad_cam_share"]
        curves.early[layer] = layer_curves.grad_cam
    main = summarize_shares(main_rows)
    if curves.attention:
        # Does a0 respond to the video? Its spread between videos at the same row, against its
        # spread between the rows of one video (a prior over positions has the first near 0).
        a0 = np.array(curves.attention)
        main["attention_spread_between_videos"] = float(a0.std(0).mean())
        main["attention_spread_within_video"] = float(a0.std(1).mean())
    found = {
        "available": True,
        "target": "the true class",
        "main": main,
        "main_per_video": main_rows,
        "a0a1a2_seeds": [summarize_shares(interval_rows(m, test, intervals, device)) for m in a0a1a2_models],
        "a0a1a2_global_seeds": [summarize_shares(interval_rows(m, test, intervals, device)) for m in global_models],
        "main_profile": {
            "attention_mean": _mean(curves.attention),
            "grad_cam_mean": _mean(curves.grad_cam),
            "action_cover": _mean(curves.inside),
        },
    }
    return found, curves


def localization(main_model, a0a1a2_models, test: MapDataset, intervals: dict, device: str, global_models=()) -> dict:
    """``localize`` without the curves: what report.json keeps."""
    return localize(main_model, a0a1a2_models, test, intervals, device, global_models)[0]


def _mean(curves: list[np.ndarray]) -> list[float] | None:
    return np.mean(curves, 0).tolist() if curves else None


# -- checks ------------------------------------------------------------------------
def checks(report: dict) -> list[dict]:
    """The report's claims, each with the numbers it rests on and whether it holds."""
    out = density_checks(report["density"])
    none, full = report["table3"]["conv3"]["top1"], report["table3"]["A0A1A2"]["top1"]
    out.append(
        {
            "claim": "the A0A1A2 row is not below the no-attention row beyond the seed spread",
            "holds": within_spread(none, full),
            "numbers": f"w/o {none['mean']:.1%} +- {none['std']:.1%}, A0A1A2 {full['mean']:.1%} +- {full['std']:.1%}",
        }
    )
    out.append(
        {
            "claim": "all five heads of Table II were trained and plotted",
            "holds": len(report["table2"]) == 5 and "table2" in report.get("figures", {}),
            "numbers": ", ".join(r["label"] for r in report["table2"].values()),
        }
    )
    return out + localization_checks(report["localization"])


def density_checks(d: dict) -> list[dict]:
    if len(d["densities"]) < 2:
        return []
    lo, hi = str(d["densities"][0]), str(d["densities"][-1])
    vm_lo, vm_hi = d["videomap"][lo], d["videomap"][hi]
    tsn = [d["tsn"][str(t)] for t in d["densities"]]
    base = tsn[0]
    # Two test videos of slack: with one seed there is no spread.
    slack = 2 / d["num_videos"]
    flat = all(abs(s["mean"] - base["mean"]) <= s["std"] + base["std"] + slack + 1e-9 for s in tsn)
    return [
        {
            "claim": f"the VideoMap head's top-1 at T' = {hi} is not below T' = {lo} beyond the seed spread",
            "holds": within_spread(vm_lo, vm_hi),
            "numbers": f"{vm_lo['mean']:.1%} +- {vm_lo['std']:.1%} -> {vm_hi['mean']:.1%} +- {vm_hi['std']:.1%}",
        },
        {
            "claim": "TSN (averaging all T' frames) stays flat: its top-1 at every T' is within the seed spread "
            f"(plus two test videos) of T' = {lo}",
            "holds": flat,
            "numbers": ", ".join(f"{t}: {s['mean']:.1%}" for t, s in zip(d["densities"], tsn, strict=True)),
        },
    ]


def localization_checks(loc: dict) -> list[dict]:
    if not loc.get("available"):
        return []
    m = loc["main"]
    out = []
    for key, what in (
        ("attention_share", "attention a0"),
        ("grad_cam_share", "Grad-CAM (conv-3, the paper's layer)"),
        ("grad_cam_share_conv2", "Grad-CAM at conv-2"),
        ("grad_cam_share_conv1", "Grad-CAM at conv-1"),
    ):
        if m.get(key) is None:
            continue
        out.append(
            {
                "claim": f"{what} puts more mass on the action interval than its share of the rows "
                "(explained head, mean over test videos)",
                "holds": m[key] > m["interval_share_rows"],
                "numbers": f"{m[key]:.1%} on the action vs {m['interval_share_rows']:.1%} of the rows; "
                f"above it on {m[key + '_above_interval']:.0%} of {m['videos']} videos",
            }
        )
    return out
