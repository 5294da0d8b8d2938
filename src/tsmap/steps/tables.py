"""What the commands print: an extraction's summary, figures of a run, of several splits, of a fusion."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tsmap.steps.common import HEAD_LABELS
from tsmap.videomap.store import describe_views

if TYPE_CHECKING:
    from tsmap.videomap.extract import ExtractionSummary
    from tsmap.videomap.store import VideoMapStore

GROUP_COLUMNS = {
    "order_pairs_top1": "order pairs top-1",
    "motion_pairs_top1": "motion pairs top-1",
    "appearance_top1": "appearance top-1",
}


def format_extraction(summary: ExtractionSummary, store: VideoMapStore) -> str:
    """One line of counts, speed and size, then one line per failed video and where they are listed."""
    size = sum(p.stat().st_size for d in (store.maps_dir, store.root / "views") for p in d.rglob("*.npy"))
    views = f" ({describe_views(store.map_settings.view_spec)} a video)" if store.views > 1 else ""
    lines = [
        f"extraction: {summary.done} mapped{views}, {summary.skipped} already in the store, "
        f"{len(summary.failed)} failed; {summary.seconds:.1f} s ({summary.frames_per_second:.0f} "
        f"{store.map_settings.unit}/s on {summary.engine}); store {store.root} is {size / 2**20:.1f} MiB"
    ]
    lines += [f"  failed: {key}: {reason}" for key, reason in summary.failed.items()]
    if summary.failed:
        lines.append(f"  (listed in {store.root / 'failures.jsonl'})")
    return "\n".join(lines)


def format_table(results: dict) -> str:
    heads = results["heads"]
    groups = [k for k in GROUP_COLUMNS if any(k in f for f in heads.values())]
    cols = ["top-1", "top-5", "mean class acc."] + [GROUP_COLUMNS[k] for k in groups]
    keys = ["top1", "top5", "mean_class_accuracy"] + groups
    width = max(len(HEAD_LABELS[k]) for k in heads) + 2
    lines = [f"{'model':<{width}}" + "".join(f"{c:>20}" for c in cols)]
    for kind, figures in heads.items():
        cells = "".join(f"{figures[k] * 100:>19.1f}%" if figures.get(k) is not None else f"{'-':>20}" for k in keys)
        lines.append(f"{HEAD_LABELS[kind]:<{width}}{cells}")
    return "\n".join([*lines, scored_line(results)])


def scored_line(results: dict) -> str:
    """How many of the listed videos were scored: figures over a subset must say so."""
    listed = results.get("num_listed", results["num_videos"])
    line = f"scored {results['num_videos']} of {listed} {results['split']} videos"
    if results.get("views", 1) > 1:
        line += f", the scores of {results['views']} views a video averaged"
    if results["num_videos"] < listed:
        line += f" ({listed - results['num_videos']} have no VideoMap: listed in results.json as missing_videos)"
    return line


def format_splits_table(summary: dict) -> str:
    splits = summary["splits"]
    width = max(len(HEAD_LABELS[k]) for k in summary["heads"]) + 2
    cols = [f"split {s}" for s in splits] + ["mean top-1", "mean top-5", "mean class acc."]
    lines = [f"{'model':<{width}}" + "".join(f"{c:>17}" for c in cols)]
    for kind, f in summary["heads"].items():
        cells = [v * 100 for v in f["top1_per_split"]] + [
            f["top1"] * 100,
            f["top5"] * 100,
            f["mean_class_accuracy"] * 100,
        ]
        lines.append(f"{HEAD_LABELS[kind]:<{width}}" + "".join(f"{c:>16.1f}%" for c in cells))
    return "\n".join(lines)


def format_fusion_table(summary: dict) -> str:
    """The paper's Table I layout: rows = heads, columns = RGB, Flow, Fusion (top-1)."""
    heads = summary["heads"]
    width = max(len(HEAD_LABELS[k]) for k in heads) + 2
    w = summary["weights"]
    fusion = f"Fusion ({w['rgb']:g} : {w['flow']:g})" if w else "Fusion (weights)"
    lines = [f"{'top-1':<{width}}" + "".join(f"{c:>20}" for c in ["RGB", "Flow", fusion])]
    for kind, figures in heads.items():
        cells = "".join(f"{figures[s]['top1'] * 100:>19.1f}%" for s in ("rgb", "flow", "fusion"))
        chosen = figures["weights"]
        suffix = "" if w else f"  ({chosen['rgb']:g} : {chosen['flow']:g}, chosen on {summary['weights_chosen_on']})"
        lines.append(f"{HEAD_LABELS[kind]:<{width}}{cells}{suffix}")
    return "\n".join(lines)


def format_fusion_groups(summary: dict, head: str = "videomap") -> str:
    """Top-1 of one head by class group (the demo's): rows RGB, Flow, Fusion."""
    figures = summary["heads"][head]
    groups = [k for k in GROUP_COLUMNS if k in figures["rgb"]]
    cols = ["all classes"] + [GROUP_COLUMNS[k].removesuffix(" top-1") for k in groups]
    title = f"{HEAD_LABELS[head]}, top-1"
    width = len(title) + 2
    lines = [f"{title:<{width}}" + "".join(f"{c:>20}" for c in cols)]
    for stream, label in (("rgb", "RGB"), ("flow", "Flow"), ("fusion", "Fusion")):
        values = [figures[stream]["top1"]] + [figures[stream][k] for k in groups]
        cells = "".join(f"{v * 100:>19.1f}%" if v is not None else f"{'-':>20}" for v in values)
        lines.append(f"{label:<{width}}{cells}")
    return "\n".join(lines)
