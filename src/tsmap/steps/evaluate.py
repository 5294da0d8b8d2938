"""Step 3, evaluate: score a run's heads on a split; results, scores and confusion matrices."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from tsmap.data.datasets import DatasetError, VideoDataset
from tsmap.evaluation.metrics import confusion_matrix, per_class_accuracy, summarize
from tsmap.evaluation.plots import plot_confusion
from tsmap.fileio import write_json
from tsmap.heads.checkpoint import load_head
from tsmap.steps.common import HEAD_LABELS, HEADS, SCORES_KEYS_FILE, fits_in_memory, resolve_device, store_dataset
from tsmap.training import score_maps
from tsmap.videomap.loader import MapDataset
from tsmap.videomap.store import StoreError, VideoMapStore


def order_pair_classes(dataset: VideoDataset, group: str = "order_pairs") -> list[int]:
    """Classes that belong to a pair of ``group`` when the dataset declares them (the demo).

    ``order_pairs``: classes whose videos are each other's time reversal; ``motion_pairs``
    (the two-stream demo): same appearance, opposite motion.
    """
    info_path = dataset.root / "dataset.json"
    if not info_path.is_file():
        return []
    pairs = json.loads(info_path.read_text()).get(group, [])
    names = {name for pair in pairs for name in pair}
    return [i for i, c in enumerate(dataset.classes) if c in names]


def group_accuracies(scores: np.ndarray, labels: np.ndarray, groups: dict[str, list[int]]) -> dict:
    """Top-1 on the videos of each declared class group, and on the rest ("appearance")."""
    figures: dict = {}
    rest = np.ones(len(labels), dtype=bool)
    for name, classes in groups.items():
        mask = np.isin(labels, classes)
        rest &= ~mask
        figures[f"{name}_top1"] = float(np.mean(scores[mask].argmax(1) == labels[mask])) if mask.any() else None
    figures["appearance_top1"] = float(np.mean(scores[rest].argmax(1) == labels[rest])) if rest.any() else None
    return figures


def evaluate(
    store: VideoMapStore, run_dir: Path, split: str = "test", device: str = "auto", official_split: int | None = None
) -> dict:
    """Score every trained head of ``run_dir`` on ``split``; write JSON, CSV and PNG there."""
    device = resolve_device(device)
    dataset = store_dataset(store, official_split)
    data = MapDataset(store, dataset.clips(split), in_memory=fits_in_memory(store, len(dataset.clips(split))))
    if len(data) == 0:
        raise DatasetError(f"no {split} VideoMaps in {store.root}")
    paired = order_pair_classes(dataset)
    groups = {"order_pairs": paired} if paired else {}
    if moving := order_pair_classes(dataset, "motion_pairs"):
        groups["motion_pairs"] = moving
    results: dict = {
        "split": split,
        "stream": store.settings.get("stream", "rgb"),
        "num_videos": len(data),
        "missing_videos": data.missing,
        "classes": dataset.classes,
        "scores_keys": SCORES_KEYS_FILE,
        "heads": {},
    }
    found = [k for k in HEADS if (run_dir / f"{k}.pt").is_file()]
    if not found:
        raise FileNotFoundError(f"no trained head in {run_dir} (expected {' or '.join(f'{k}.pt' for k in HEADS)})")
    for kind in found:
        model, meta = load_head(run_dir / f"{kind}.pt", device)
        _check_compatible(meta, store, dataset, run_dir / f"{kind}.pt")
        scores, labels = score_maps(model, data, device=device)
        figures = summarize(scores, labels)
        if groups:
            figures |= group_accuracies(scores, labels, groups)
        cm = confusion_matrix(scores.argmax(1), labels, len(dataset.classes))
        # NaN (no test video of the class) becomes null in the JSON.
        figures["per_class_accuracy"] = [None if np.isnan(a) else float(a) for a in per_class_accuracy(cm)]
        write_confusion_csv(run_dir / f"confusion_{kind}.csv", cm, dataset.classes)
        plot_confusion(
            cm,
            dataset.classes,
            run_dir / f"confusion_{kind}.png",
            f"{HEAD_LABELS[kind]}: top-1 {figures['top1']:.1%} on {split}",
        )
        np.save(run_dir / f"scores_{kind}.npy", scores)
        results["heads"][kind] = figures
    # Row i of every scores_<head>.npy is the video keys[i]: `tsmap fuse` aligns two runs by key.
    keys = {
        "split": split,
        "classes": dataset.classes,
        "groups": groups,
        "keys": [c.key for c in data.clips],
        "labels": labels.tolist(),
    }
    write_json(run_dir / SCORES_KEYS_FILE, keys)
    write_json(run_dir / "results.json", results)
    return results


def _check_compatible(meta: dict, store: VideoMapStore, dataset: VideoDataset, path: Path) -> None:
    trained = {k: v for k, v in meta["store_settings"].items() if k != "source"}
    now = {k: v for k, v in store.settings.items() if k != "source"}
    if trained.get("stream", "rgb") != now.get("stream", "rgb"):
        raise StoreError(
            f"{path} was trained on {trained.get('stream', 'rgb')} VideoMaps, {store.root} holds "
            f"{now.get('stream', 'rgb')} ones"
        )
    if trained != now:
        raise StoreError(f"{path} was trained on maps made with other settings than {store.root}")
    if meta["classes"] != dataset.classes:
        raise StoreError(f"{path} was trained on other classes than the dataset of {store.root}")


def write_confusion_csv(path: Path, cm: np.ndarray, classes: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *classes])
        for name, row in zip(classes, cm, strict=False):
            writer.writerow([name, *row.tolist()])



def mean_over_splits(per_split: dict[int, dict]) -> dict:
    """Mean and spread of every figure over the official splits (the paper's Table IV protocol)."""
    heads = set.intersection(*(set(r["heads"]) for r in per_split.values()))
    out: dict = {"splits": sorted(per_split), "heads": {}}
    for kind in sorted(heads, key=HEADS.index):
        figures = {}
        for key in ("top1", "top5", "mean_class_accuracy"):
            values = np.array([per_split[s]["heads"][kind][key] for s in sorted(per_split)])
            figures[key] = float(values.mean())
            figures[f"{key}_std"] = float(values.std())
            figures[f"{key}_per_split"] = values.tolist()
        out["heads"][kind] = figures
    return out


