"""Step 3, evaluate: score a run's heads on a split; results, scores and confusion matrices."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from tsmap.data.datasets import DatasetError, VideoDataset
from tsmap.evaluation.metrics import confusion_matrix, per_class_accuracy, summarize
from tsmap.evaluation.plots import plot_confusion
from tsmap.fileio import atomic_write_text, folder_lock, save_numpy, write_json
from tsmap.finetune.provenance import check_store
from tsmap.heads.checkpoint import load_head
from tsmap.steps.common import HEAD_LABELS, HEADS, SCORES_KEYS_FILE, fits_in_memory, resolve_device, store_dataset
from tsmap.training import score_maps
from tsmap.videomap.loader import MapDataset
from tsmap.videomap.settings import VIEW_KEYS, MapSettings
from tsmap.videomap.store import StoreError, VideoMapStore, require_same_maps


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
    """Score every trained head of ``run_dir`` on ``split``; write JSON, CSV and PNG there.

    ``split`` is "test", "train" or "val" (the validation videos each head held out).
    A head that was trained on any of the test videos is refused. Every head is scored
    before anything is written, so a run's results are replaced as one unit.
    """
    device = resolve_device(device)
    dataset = store_dataset(store, official_split)
    check_store(store, dataset)  # a fine-tuned ConvNet must not have seen this split's test videos
    found = [k for k in HEADS if (run_dir / f"{k}.pt").is_file()]
    if not found:
        raise FileNotFoundError(f"no trained head in {run_dir} (expected {' or '.join(f'{k}.pt' for k in HEADS)})")
    heads = {kind: load_head(run_dir / f"{kind}.pt", device) for kind in found}
    for kind, (_, meta) in heads.items():
        _check_compatible(meta, store, dataset, run_dir / f"{kind}.pt")
    clips = _clips_to_score(dataset, split, heads, run_dir)
    data = MapDataset(store, clips, in_memory=fits_in_memory(store, len(clips) * store.views), views=True)
    if len(data) == 0:
        raise DatasetError(f"no {split} VideoMaps in {store.root} ({len(clips)} {split} videos listed, none mapped)")
    paired = order_pair_classes(dataset)
    groups = {"order_pairs": paired} if paired else {}
    if moving := order_pair_classes(dataset, "motion_pairs"):
        groups["motion_pairs"] = moving
    results: dict = {
        "split": split,
        "stream": store.map_settings.stream,
        "num_videos": len(data),
        "num_listed": len(clips),
        "views": data.views,  # scores averaged over this many views a video
        "missing_videos": data.missing,
        "classes": dataset.classes,
        "scores_keys": SCORES_KEYS_FILE,
        "heads": {},
    }
    scored = {}
    for kind, (model, _) in heads.items():
        scores, labels = score_maps(model, data, device=device)
        figures = summarize(scores, labels)
        if groups:
            figures |= group_accuracies(scores, labels, groups)
        cm = confusion_matrix(scores.argmax(1), labels, len(dataset.classes))
        # NaN (no test video of the class) becomes null in the JSON.
        figures["per_class_accuracy"] = [None if np.isnan(a) else float(a) for a in per_class_accuracy(cm)]
        results["heads"][kind] = figures
        scored[kind] = (scores, cm)
    with folder_lock(run_dir, "run folder"):
        for kind, (scores, cm) in scored.items():
            write_confusion_csv(run_dir / f"confusion_{kind}.csv", cm, dataset.classes)
            plot_confusion(
                cm,
                dataset.classes,
                run_dir / f"confusion_{kind}.png",
                f"{HEAD_LABELS[kind]}: top-1 {results['heads'][kind]['top1']:.1%} on {split}",
            )
            save_numpy(run_dir / f"scores_{kind}.npy", scores)
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


def _clips_to_score(dataset: VideoDataset, split: str, heads: dict, run_dir: Path) -> list:
    """The clips of ``split``; for "val" the heads' own validation videos; for "test" a check
    that no head saw any of them in training."""
    if split == "val":
        keys = [set(meta["extra"].get("val_keys") or []) for _, meta in heads.values()]
        if not keys[0] or any(k != keys[0] for k in keys):
            raise StoreError(f"the heads in {run_dir} hold out no common validation videos; evaluate test or train")
        return [c for c in dataset.clips("train") if c.key in keys[0]]
    clips = dataset.clips(split)
    if split == "test":
        listed = {c.key for c in clips}
        for kind, (_, meta) in heads.items():
            trained = set(meta["extra"].get("train_keys") or []) | set(meta["extra"].get("val_keys") or [])
            seen = listed & trained
            if seen:
                raise StoreError(
                    f"{run_dir / (kind + '.pt')} was trained on {len(seen)} of the {len(listed)} test videos "
                    f"(e.g. {sorted(seen)[0]}): its test figures would not be honest; train it again on this split"
                )
    return clips


def _check_compatible(meta: dict, store: VideoMapStore, dataset: VideoDataset, path: Path) -> None:
    try:
        trained = MapSettings.from_dict(meta.get("store_settings") or {})
    except TypeError as exc:
        raise StoreError(f"{path} does not say which maps it was trained on; train it again") from exc
    if trained.stream != store.map_settings.stream:
        raise StoreError(
            f"{path} was trained on {trained.stream} VideoMaps, {store.root} holds {store.map_settings.stream} ones"
        )
    require_same_maps(
        trained,
        store.map_settings,
        f"{path}",
        "evaluate it on a store made like its own",
        ("head has", "store has"),
        ignore=VIEW_KEYS,  # view 0 is the single-view map; the other views are more crops of it
    )
    if meta["classes"] != dataset.classes:
        raise StoreError(f"{path} was trained on other classes than the dataset of {store.root}")


def write_confusion_csv(path: Path, cm: np.ndarray, classes: list[str]) -> None:
    rows = [["true \\ predicted", *classes]] + [[name, *row.tolist()] for name, row in zip(classes, cm, strict=True)]
    text = io.StringIO()
    csv.writer(text).writerows(rows)
    atomic_write_text(path, text.getvalue())


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
