"""The head designs of the paper's Tables II and III, as data, and their training.

Every design is a head kind of ``tsmap.heads.create_head`` with options. Each is trained
with several seeds on the training clips minus a validation set carved from them (a
seeded share of each class), which picks each head's epoch (the best on validation);
the test split is scored once per trained head. A head saved in ``OUT/heads`` stands in
for training only when it was trained on the same maps (``MapSettings.differences``),
classes, training and validation clips, design and schedule; otherwise it is retrained,
and the log says why.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from tsmap.data.datasets import Clip, VideoDataset
from tsmap.data.video import uniform_indices
from tsmap.evaluation.metrics import summarize
from tsmap.fileio import seed_everything
from tsmap.heads import create_head
from tsmap.heads.checkpoint import load_head, save_head
from tsmap.heads.tsn import ALL_ROWS
from tsmap.report.options import ReportOptions
from tsmap.steps.common import fits_in_memory
from tsmap.steps.evaluate import group_accuracies, order_pair_classes
from tsmap.training import score_maps, train_head
from tsmap.videomap.loader import MapDataset
from tsmap.videomap.settings import MapSettings
from tsmap.videomap.store import VideoMapStore


@dataclass(frozen=True)
class Design:
    key: str
    label: str
    head: str  # a kind of tsmap.heads.create_head
    options: dict = field(default_factory=dict)  # its keyword arguments

    def build(self, num_classes: int, num_frames: int, feature_dim: int) -> nn.Module:
        return create_head(self.head, num_classes, num_frames, feature_dim, **self.options)


DESIGNS = {
    d.key: d
    for d in (
        # TSN averages every row of the map at test: at T' frames, all T' of them (Fig. 5).
        Design("tsn", "TSN (average of all frames)", "tsn", {"test_frames": ALL_ROWS}),
        Design("lstm", "3-layer LSTM", "lstm"),
        Design("alexnet", "AlexNet-style ConvNet", "alexnet"),
        Design("conv1", "1-layer ConvNet", "conv1"),
        Design("conv3", "3-layer ConvNet (the paper's)", "videomap", {"attention": "none"}),
        Design("A0", "w/ attention A0", "videomap", {"attention": "A0"}),
        Design("A1A2", "w/ attention A1 & A2", "videomap", {"attention": "A1A2"}),
        Design("A0A1A2", "w/ attention A0 & A1 & A2", "videomap", {"attention": "A0A1A2"}),
        Design(
            "A0A1A2-global",
            "w/ attention A0 & A1 & A2, the paper's global FC",
            "videomap",
            {"attention": "A0A1A2", "attention_scoring": "global"},
        ),
    )
}
TABLE_II = ("tsn", "lstm", "alexnet", "conv1", "conv3")
# The last row is the paper's global attention FC (from all time positions to all, the feature
# axis averaged first); the others score each frame by its content (videomap_head.py).
TABLE_III = ("conv3", "A0", "A1A2", "A0A1A2", "A0A1A2-global")
TABLE_III_LABELS = {
    "conv3": "w/o attention",
    "A0": "A0",
    "A1A2": "A1 & A2",
    "A0A1A2": "A0 & A1 & A2",
    "A0A1A2-global": "A0 & A1 & A2, global FC (the paper's layout)",
}
# Class groups a dataset may declare in dataset.json (the demos), scored apart.
CLASS_GROUPS = ("order_pairs", "motion_pairs")
METRICS = ("top1", "top5", "mean_class_accuracy", *(f"{g}_top1" for g in CLASS_GROUPS), "appearance_top1")
KEPT = ("A0A1A2", "A0A1A2-global", "tsn")  # designs whose heads later stages use
VAL_SEED = 0  # the validation clips do not change with --seed


# -- data --------------------------------------------------------------------------
def balanced_subset(clips: list, num_classes: int, per_class: int) -> list:
    """``per_class`` clips of each class spread evenly over its (key-sorted) list; all if 0."""
    if per_class <= 0:
        return list(clips)
    out = []
    for label in range(num_classes):
        mine = sorted((c for c in clips if c.label == label), key=lambda c: c.key)
        if len(mine) > per_class:
            mine = [mine[i] for i in uniform_indices(len(mine), per_class)]
        out.extend(mine)
    return out


def carve_validation(
    clips: list[Clip], num_classes: int, fraction: float, seed: int = VAL_SEED
) -> tuple[list[Clip], list[Clip]]:
    """(train, val): a seeded ``fraction`` of each class's clips (rounded; never a whole class) as val."""
    if not 0 <= fraction < 1:
        raise ValueError(f"the validation share must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in range(num_classes):
        mine = sorted((c for c in clips if c.label == label), key=lambda c: c.key)
        count = min(len(mine) - 1, math.floor(fraction * len(mine) + 0.5)) if mine else 0
        held = {int(i) for i in rng.permutation(len(mine))[:count]}
        for i, clip in enumerate(mine):
            (val if i in held else train).append(clip)
    return train, val


def load_maps(store: VideoMapStore, clips: list[Clip]) -> MapDataset:
    """The maps of ``clips``, in memory when they fit (``fits_in_memory``), else memory-mapped."""
    return MapDataset(store, clips, in_memory=fits_in_memory(store, len(clips)))


def class_groups(dataset: VideoDataset) -> dict[str, list[int]]:
    """The class groups the dataset declares (order pairs, motion pairs), by name."""
    groups = {name: order_pair_classes(dataset, name) for name in CLASS_GROUPS}
    return {name: classes for name, classes in groups.items() if classes}


def figures_of(scores: np.ndarray, labels: np.ndarray, groups: dict[str, list[int]]) -> dict:
    """Top-1, top-5, mean class accuracy and, when the dataset declares groups, top-1 on each."""
    figures = summarize(scores, labels)
    return figures | group_accuracies(scores, labels, groups) if groups else figures


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one seed), range and the values themselves."""
    a = np.asarray(values, dtype=float)
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        "min": float(a.min()),
        "max": float(a.max()),
        "per_seed": a.tolist(),
    }


def within_spread(low: dict, high: dict) -> bool:
    """``high`` is not below ``low`` beyond their seed spread (the sum of the two deviations)."""
    return high["mean"] >= low["mean"] - (low["std"] + high["std"])


# -- training ------------------------------------------------------------------------
def reuse_problem(payload: dict, model: nn.Module, store: VideoMapStore, classes: list[str], extra: dict) -> str | None:
    """Why a saved head's checkpoint cannot stand for the head asked (None: it can).

    ``extra`` is what the new head would record: its schedule, training and validation clips."""
    saved = payload.get("extra") or {}
    try:
        trained_on = MapSettings.from_dict(payload["store_settings"])
    except (KeyError, TypeError):
        return "its checkpoint does not say which maps it was trained on"
    if diff := trained_on.differences(store.map_settings):
        listed = ", ".join(f"{k}: {a!r} there, {b!r} here" for k, a, b in diff)
        return f"it was trained on other maps ({listed})"
    if payload["classes"] != classes:
        return "it was trained on other classes"
    if payload["config"] != model.config:
        return "it is another design"
    if saved.get("train_config") != extra["train_config"]:
        return "it was trained with another schedule"
    if saved.get("train_keys") != extra["train_keys"]:
        return "it was trained on other clips"
    if saved.get("val_keys", []) != extra["val_keys"]:
        return "its epoch was picked on other validation clips"
    return None


def train_or_reuse(
    key: str,
    seed: int,
    data: MapDataset,
    store: VideoMapStore,
    classes: list[str],
    options: ReportOptions,
    heads_dir: Path,
    val: MapDataset | None = None,
    log=print,
) -> tuple[nn.Module, list[dict], float, bool]:
    """The head of ``key`` trained with ``seed`` (its epoch picked on ``val`` when given), its
    history, training seconds and whether it was reused from ``heads_dir``."""
    path = heads_dir / f"{key}-seed{seed}.pt"
    config = options.train_config(key, seed, len(data))
    extra = {
        "train_config": config.to_dict(),
        "train_keys": [c.key for c in data.clips],
        "val_keys": [c.key for c in val.clips] if val is not None else [],
    }
    seed_everything(seed)  # the initial weights too, so a rerun gives the same head
    model = DESIGNS[key].build(len(classes), store.num_frames, store.feature_dim)
    if path.is_file() and not options.force:
        try:
            old, payload = load_head(path)
            why = reuse_problem(payload, model, store, classes, extra)
        except ValueError:
            why = "its checkpoint cannot be read"
        if why is None:
            saved = payload["extra"]
            return old, saved["history"], float(saved.get("seconds", 0.0)), True
        log(f"  retraining {path.name}: {why}")
    start = time.perf_counter()
    # No per-epoch training state (train_head's state_path): these runs are short; a killed
    # report loses only the head it was training (finished heads are reused).
    history = train_head(
        model,
        data,
        config,
        device=options.device,
        show_progress=options.show_progress,
        desc=f"{key} seed {seed}",
        val_data=val if val is not None and len(val) else None,
    )
    seconds = time.perf_counter() - start
    save_head(path, model, classes, store.settings, extra | {"history": history, "seconds": seconds})
    return model, history, seconds, False


@dataclass
class DesignRuns:
    """Every design's heads, trained with every seed, and what they scored."""

    models: dict[str, list[nn.Module]]  # only the designs in KEPT
    histories: dict[str, list[list[dict]]]
    test: dict[str, list[dict]]  # figures on the test split, one dict per seed
    val_top1: dict[str, list[float]]  # top-1 on the validation clips, one per seed ([] without them)
    seconds: dict[str, list[float]]
    reused: int = 0


@dataclass
class Splits:
    """The maps the report trains on, picks epochs on and tests on."""

    train: MapDataset
    val: MapDataset
    test: MapDataset


def train_designs(
    keys: list[str],
    seeds: list[int],
    splits: Splits,
    store: VideoMapStore,
    classes: list[str],
    groups: dict[str, list[int]],
    options: ReportOptions,
    heads_dir: Path,
    log=print,
) -> DesignRuns:
    runs = DesignRuns(
        models={k: [] for k in keys if k in KEPT},
        histories={k: [] for k in keys},
        test={k: [] for k in keys},
        val_top1={k: [] for k in keys},
        seconds={k: [] for k in keys},
    )
    val = splits.val if len(splits.val) else None
    for seed in seeds:
        for key in keys:
            model, history, seconds, reused = train_or_reuse(
                key, seed, splits.train, store, classes, options, heads_dir, val, log
            )
            runs.reused += reused
            if history and history[-1].get("lr_scale", 1.0) < 1:
                log(
                    f"note: {DESIGNS[key].label}, seed {seed}: the head collapsed and was trained again at "
                    f"{history[-1]['lr_scale']:g} x the learning rate"
                )
            runs.test[key].append(figures_of(*score_maps(model, splits.test, device=options.device), groups))
            if val is not None:
                runs.val_top1[key].append(summarize(*score_maps(model, val, device=options.device))["top1"])
            if key in KEPT:
                runs.models[key].append(model)
            runs.histories[key].append(history)
            runs.seconds[key].append(seconds)
    return runs


def table_rows(runs: DesignRuns, keys: list[str]) -> dict[str, dict]:
    """Per design: its label, training seconds, and the seed spread of every figure (val and test)."""
    rows = {}
    for key in keys:
        figures = runs.test[key]
        rows[key] = {
            "label": DESIGNS[key].label,
            "train_seconds": runs.seconds[key],
            "val_top1": spread(runs.val_top1[key]) if runs.val_top1[key] else None,
            **{m: spread([f[m] for f in figures]) for m in METRICS if figures[0].get(m) is not None},
        }
    return rows
