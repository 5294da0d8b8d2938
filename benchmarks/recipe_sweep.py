"""Training recipes compared on the real-footage benchmark's VALIDATION videos, in one process.

    python benchmarks/recipe_sweep.py --out real-footage [--draws 3] [--candidates NAME ...]
        [--stores store,flow-store] [--tag NAME]

Needs a folder made by ``benchmarks/real_footage.py`` (its ``store`` and ``splits/draw<k>``).
For each draw and candidate it does what ``tsmap train`` does, without the subprocesses: the
head is built by ``create_head``, trained by ``train_head`` on the draw's train.txt less the
validation part that ``tsmap train`` carves itself (``--val-fraction``, 0.1) to keep its best
epoch, then scored on the draw's val.txt. The test lists are never read: this is the place
to choose recipes. Prints validation top-1 (mean +- std over the draws), per pair, the
kept epoch and the wall time, and writes them to ``benchmarks/results/recipe_sweep.json``.

``--stores store,store-flow`` (an RGB and a flow store of the same videos, see
``real_footage.py --flow``) trains a head on each and fuses their raw validation scores
with ``--weights`` (RGB : flow = 1 : 1.5), as ``tsmap fuse`` does. A store name may hold
``{draw}``, for stores made per draw (a flow ConvNet fine-tuned on that draw's training videos:
``--stores store,store-ftflow-draw{draw}``). Stores joined by ``+`` (``--stores
store+store-ftflow-draw{draw}``) give one head the maps side by side (T x 2L: early fusion,
each store's part divided by its own shared scale first, so neither stream is drowned by the
other's magnitude; ``--no-part-scales``: as they are); not a tsmap feature, a measurement of
whether one should be.

``--epoch-rules`` also scores every epoch on the validation videos, to see what the rule that
keeps an epoch costs; ``--classes`` and ``--train-per-class`` make a smaller task (some classes,
N training videos a class) to measure a recipe at the size of a user's small dataset.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from machine import machine_record, save_results, saved_runs
from real_footage import figures, read_lists
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tsmap import training
from tsmap.data.clips import Clip
from tsmap.data.subsets import DEFAULT_VAL_FRACTION, carve_validation
from tsmap.evaluation.fusion import TSN_WEIGHTS, fuse_scores
from tsmap.fileio import seed_everything
from tsmap.heads import create_head
from tsmap.heads.standardize import FeatureStandardizer
from tsmap.heads.videomap_head import VideoMapHead, resample_time
from tsmap.malloc import tune_malloc
from tsmap.steps.train import kept_epoch
from tsmap.train_config import recipe
from tsmap.training import score_maps, train_head
from tsmap.videomap.loader import MapDataset
from tsmap.videomap.store import VideoMapStore

# name -> (head, head options, recipe name, TrainConfig overrides)
DEMO = {"epochs": 15, "batch_size": 16, "lr": 0.005, "weight_decay": 2e-3}  # the demo's recipe (demo.py)
CANDIDATES: dict[str, tuple[str, dict, str, dict]] = {
    "cosine": ("videomap", {}, "cosine", {}),
    "cosine_mixup0.2": ("videomap", {}, "cosine", {"mixup": 0.2}),
    "cosine_noatt_mixup0.2": ("videomap", {"attention": "none"}, "cosine", {"mixup": 0.2}),
    "demo15_noatt_mixup0.2": ("videomap", {"attention": "none"}, "cosine", DEMO | {"mixup": 0.2}),
    "tsn_cosine_mixup0.2": ("tsn", {}, "cosine", {"mixup": 0.2}),
    "cosine_b16": ("videomap", {}, "cosine", {"batch_size": 16, "lr": 0.005}),
    "cosine_lr0.005": ("videomap", {}, "cosine", {"lr": 0.005}),
    "cosine_warmup5": ("videomap", {}, "cosine", {"warmup_epochs": 5.0}),
    "cosine_lr0.005_warmup5": ("videomap", {}, "cosine", {"lr": 0.005, "warmup_epochs": 5.0}),
    "cosine_fdrop0.3": ("videomap", {}, "cosine", {"feature_dropout": 0.3}),
    "cosine_tcrop0.7": ("videomap", {}, "cosine", {"temporal_crop": 0.7}),
    "cosine_ls0.1": ("videomap", {}, "cosine", {"label_smoothing": 0.1}),
    "cosine_wd5e-3": ("videomap", {}, "cosine", {"weight_decay": 5e-3}),
    "cosine_noatt": ("videomap", {"attention": "none"}, "cosine", {}),
    "cosine_colscale": ("videomap", {"scale": "column"}, "cosine", {}),
    "cosine_wa2": ("videomap", {}, "cosine", {"weight_average": 2.0}),
    "cosine_wa5": ("videomap", {}, "cosine", {"weight_average": 5.0}),
    "cosine_e60": ("videomap", {}, "cosine", {"epochs": 60}),
    "cosine_e100": ("videomap", {}, "cosine", {"epochs": 100}),
    "cosine_drop0.8": ("videomap", {"dropout": 0.8}, "cosine", {}),
    "cosine_chunks4": ("chunked", {"chunks": 4}, "cosine", {}),
    "cosine_w8": ("videomap", {"widths": (8, 16, 16)}, "cosine", {}),
    "cosine_w4": ("videomap", {"widths": (4, 8, 8)}, "cosine", {}),
    "demo15": ("videomap", {}, "cosine", DEMO),
    "demo15_fdrop0.3": ("videomap", {}, "cosine", DEMO | {"feature_dropout": 0.3}),
    "demo15_mixup0.2": ("videomap", {}, "cosine", DEMO | {"mixup": 0.2}),
    "demo15_ls0.1": ("videomap", {}, "cosine", DEMO | {"label_smoothing": 0.1}),
    "demo15_tcrop0.7": ("videomap", {}, "cosine", DEMO | {"temporal_crop": 0.7}),
    "demo15_noatt": ("videomap", {"attention": "none"}, "cosine", DEMO),
    "demo15_global": ("videomap", {"attention_scoring": "global"}, "cosine", DEMO),
    "demo15_colscale": ("videomap", {"scale": "column"}, "cosine", DEMO),
    "tsn_cosine": ("tsn", {}, "cosine", {}),
    "tsn_cosine_lr0.005": ("tsn", {}, "cosine", {"lr": 0.005}),
    "tsn_demo15": ("tsn", {}, "cosine", DEMO),
}


class SideBySide(Dataset):
    """The maps of several stores' datasets (the same clips) side by side, T x (L1 + L2 + ...),
    each part divided by ``scales[i]``."""

    def __init__(self, parts: list[MapDataset], scales: list[float]):
        if any(p.clips != parts[0].clips for p in parts):
            raise SystemExit("recipe_sweep: the joined stores do not map the same videos")
        self.parts, self.scales, self.views = parts, scales, 1

    def __len__(self) -> int:
        return len(self.parts[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        items = [p[i] for p in self.parts]
        return torch.cat([m / s for (m, _), s in zip(items, self.scales, strict=True)], dim=1), items[0][1]


def shared_scale(data: MapDataset) -> float:
    """The head's shared scale of ``data``'s maps (``FeatureStandardizer``'s: the root mean square
    of the columns' standard deviations)."""
    standardizer = FeatureStandardizer(data.store.feature_dim)
    standardizer.fit(maps for maps, _ in DataLoader(data, batch_size=64))
    return float(standardizer.std[0])


class ChunkedHead(VideoMapHead):
    """The VideoMap head plus a linear read of ``chunks`` ordered chunk means, added to its scores:
    the ordered-chunks probe learnt inside the head (each of the K x L means normalised by its
    running batch statistics, batch norm without affine as MAE's linear probes; dropout; one FC).
    A measurement of whether the head lacks the probe's column-by-column read, not a tsmap head."""

    def __init__(self, num_classes: int, num_frames: int, feature_dim: int, chunks: int = 4, **options):
        super().__init__(num_classes, num_frames, feature_dim, **options)
        self.chunks = chunks
        self.chunk_norm = nn.BatchNorm1d(chunks * feature_dim, affine=False)
        self.chunk_fc = nn.Linear(chunks * feature_dim, num_classes)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        x = self.standardize(resample_time(maps, self.num_frames).float())
        means = F.adaptive_avg_pool1d(x.transpose(1, 2), self.chunks).transpose(1, 2).flatten(1)  # B x K*L
        read = self.chunk_fc(self.dropout(self.chunk_norm(means)))  # first: the random draws of its measured runs
        return super().forward(maps) + read


def train_one(
    name: str,
    stores: list[VideoMapStore],
    subsets: dict[str, list[Clip]],
    num_classes: int,
    epochs: int | None,
    part_scales: bool = True,
    epoch_rules: bool = False,
    seed: int | None = None,
    wrap: Callable[[Dataset, Dataset, Dataset], tuple[Dataset, Dataset, Dataset]] | None = None,
) -> dict:
    """Train candidate ``name`` as ``tsmap train`` would, on one store or several side by side
    (each divided by its own shared scale with ``part_scales``); scores on train and val. With
    ``epoch_rules``, every epoch is scored on val too, to compare rules that keep an epoch;
    ``seed`` overrides the recipe's; ``wrap(train, held, val)`` returns the maps to use instead
    (``map_layout.py``'s variants)."""
    head, options, base, overrides = CANDIDATES[name]
    settings = ({"epochs": epochs} if epochs else {}) | ({"seed": seed} if seed is not None else {})
    config = recipe(base, **(overrides | settings))  # --epochs and --seed win
    fit, held = carve_validation(subsets["train"], DEFAULT_VAL_FRACTION, 0)
    sets = []
    for store in stores:
        # views=True: a multi-view store trains on a view drawn per map and epoch, validates on all, as `tsmap train`
        data, held_data, val_data = (
            MapDataset(store, clips, in_memory=True, views=True) for clips in (fit, held, subsets["val"])
        )
        missing = data.missing + held_data.missing + val_data.missing
        if missing:
            raise SystemExit(f"recipe_sweep: {len(missing)} videos have no map in {store.root}, e.g. {missing[0]}")
        sets.append((data, held_data, val_data))
    if len(sets) > 1:
        scales = [shared_scale(data) for data, _, _ in sets] if part_scales else [1.0] * len(sets)
        data, held_data, val_data = (SideBySide(list(parts), scales) for parts in zip(*sets, strict=True))
    else:
        data, held_data, val_data = sets[0]
    if wrap is not None:
        data, held_data, val_data = wrap(data, held_data, val_data)
    seed_everything(config.seed)  # the initial weights too, as `tsmap train` does
    feature_dim = sum(store.feature_dim for store in stores)
    if head == "chunked":
        model = ChunkedHead(num_classes, stores[0].num_frames, feature_dim, **options)
    else:
        model = create_head(head, num_classes, stores[0].num_frames, feature_dim, **options)
    start = time.perf_counter()
    with scored_each_epoch(val_data if epoch_rules else None) as per_epoch:
        history = train_head(model, data, config, show_progress=False, val_data=held_data)
    seconds = time.perf_counter() - start
    kept = kept_epoch(history)
    rules = {"epoch_rules": rule_figures(history, per_epoch)} if epoch_rules else {}
    return rules | {
        "dead_channels": dead_channels(model, data),
        "val_scores": score_maps(model, val_data),
        "train_scores": score_maps(model, data),
        "kept_epoch": kept.get("epoch"),
        "epochs_run": len(history),
        "lr_scale": kept.get("lr_scale", 1.0),  # < 1: the head collapsed and was trained again at a smaller lr
        "seconds": seconds,
        "config": dataclasses.asdict(config),
    }


@contextlib.contextmanager
def scored_each_epoch(val_data: Dataset | None) -> Iterator[list[float]]:
    """Inside the block, the weights ``train_head`` validates each epoch (on the maps it holds out)
    are also scored on ``val_data``, the benchmark's validation videos; yields those top-1s, one
    an epoch. ``train_head`` never sees them: they measure the rule that keeps an epoch. The
    random generator is put back after each extra scoring, so training runs as without it."""
    seen: list[float] = []
    if val_data is None:
        yield seen
        return
    plain = training.validate

    def validate(model, data, *args, **kwargs):
        out = plain(model, data, *args, **kwargs)
        state = torch.get_rng_state()
        seen.append(plain(model, val_data)["val_top1"])
        torch.set_rng_state(state)
        return out

    training.validate = validate
    try:
        yield seen
    finally:
        training.validate = plain


def rule_figures(history: list[dict], per_epoch: list[float]) -> dict:
    """Validation top-1 of the epoch each rule keeps: tsmap's (held-out top-1, then its loss), the lowest
    held-out loss, the last epoch, and the best any rule could keep (for reference)."""
    fine = [i for i, r in enumerate(history) if not r.get("collapsed")]
    kept = next(i for i, r in enumerate(history) if r.get("kept"))
    by_loss = min(fine, key=lambda i: history[i]["val_loss"])
    return {
        "top1_then_loss": per_epoch[kept],
        "loss": per_epoch[by_loss],
        "last": per_epoch[-1],
        "best_possible": max(per_epoch),
        "epochs": {"top1_then_loss": kept + 1, "loss": by_loss + 1},
        "per_epoch": per_epoch,
    }


@torch.no_grad()
def dead_channels(model: torch.nn.Module, data: MapDataset) -> dict[str, float]:
    """Share of each VideoMap head block's channels whose ReLU output is 0 on every training map:
    dead units that no gradient reaches any more (all of one block dead = a head whose
    scores are the same for every map). Empty for heads without those blocks."""
    blocks = {n: m for n, m in model.named_modules() if n in ("block1", "block2", "block3")}
    peaks: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(module, inputs, output):
            peak = output.amax(dim=(0, 2, 3))
            peaks[name] = peak if name not in peaks else torch.maximum(peaks[name], peak)

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in blocks.items()]
    try:
        model.eval()
        for maps, _ in DataLoader(data, batch_size=64):
            model(maps)
    finally:
        for h in handles:
            h.remove()
    return {n: float((p <= 0).float().mean()) for n, p in peaks.items()}


def some_per_class(clips: list[Clip], count: int, seed: int = 0) -> list[Clip]:
    """``count`` clips of each class (all of a smaller class), drawn with ``seed``: a smaller training set."""
    out = []
    for label in sorted({c.label for c in clips}):
        group = sorted((c for c in clips if c.label == label), key=lambda c: c.key)
        order = np.random.default_rng([seed, label]).permutation(len(group))[:count]
        out += [group[i] for i in sorted(order)]
    return out


def read_subsets(lists: Path, classes: list[str]) -> dict[str, list[Clip]]:
    """A draw's train and val lists (never its test list) as clips."""
    subsets = {}
    for subset in ("train", "val"):
        keys, labels = read_lists(lists / f"{subset}.txt", classes)
        subsets[subset] = [Clip(k, int(y)) for k, y in zip(keys, labels, strict=True)]
    return subsets


def run_candidate(
    name: str,
    stores: list[list[VideoMapStore]],
    lists: Path,
    classes: list[str],
    pairs,
    epochs,
    weights,
    part_scales,
    keep: list[str] | None = None,
    per_class: int | None = None,
    epoch_rules: bool = False,
) -> dict:
    """One draw: a head per stream (a store, or stores side by side), their validation scores
    fused (raw scores, ``weights``) when several. ``keep``: only these classes; ``per_class``:
    only that many training videos a class (seeded), to measure a recipe on a smaller task."""
    subsets = read_subsets(lists, classes)
    if keep:  # a smaller task: these classes only, relabelled 0 .. len(keep) - 1
        relabel = {classes.index(c): i for i, c in enumerate(keep)}
        subsets = {s: [Clip(c.key, relabel[c.label]) for c in cs if c.label in relabel] for s, cs in subsets.items()}
        classes, pairs = keep, [p for p in pairs if set(p) <= set(keep)]
    if per_class:
        subsets["train"] = some_per_class(subsets["train"], per_class)
    streams = [train_one(name, joined, subsets, len(classes), epochs, part_scales, epoch_rules) for joined in stores]
    labels = streams[0]["val_scores"][1]
    train_labels = streams[0]["train_scores"][1]
    weights = weights[: len(streams)] if len(streams) > 1 else [1.0]
    val = fuse_scores([s["val_scores"][0] for s in streams], weights)
    train = fuse_scores([s["train_scores"][0] for s in streams], weights)
    out = {
        "val": figures(val, labels, classes, pairs),
        "train_top1": float(np.mean(train.argmax(1) == train_labels)),
        "kept_epoch": [s["kept_epoch"] for s in streams],
        "dead_channels": [s["dead_channels"] for s in streams],
        "epochs_run": [s["epochs_run"] for s in streams],
        "lr_scale": [s["lr_scale"] for s in streams],
        "seconds": sum(s["seconds"] for s in streams),
        "config": streams[0]["config"],
        "head": CANDIDATES[name][0],
        "options": CANDIDATES[name][1],
    }
    if epoch_rules:
        out["epoch_rules"] = [s["epoch_rules"] for s in streams]
    if len(streams) > 1:
        out["val_per_stream"] = [float(np.mean(s["val_scores"][0].argmax(1) == labels)) for s in streams]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder made by benchmarks/real_footage.py")
    p.add_argument(
        "--stores",
        default="store",
        help="store folder(s) under OUT, comma-separated (default store); with two (RGB, flow) a head is "
        "trained on each and their raw validation scores are fused, as `tsmap fuse` does; stores joined by + "
        "give one head their maps side by side",
    )
    p.add_argument("--weights", type=float, nargs="+", default=list(TSN_WEIGHTS), help="fusion weights (1 1.5)")
    p.add_argument("--draws", type=int, default=3, help="split draws 0 .. N-1 (default 3)")
    p.add_argument("--only-draws", type=int, nargs="+", default=None, help="these draws instead (e.g. 1 2)")
    p.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    p.add_argument("--epochs", type=int, default=None, help="override every candidate's epochs")
    p.add_argument("--tag", default=None, help="results entry name (default: the stores)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--no-part-scales", action="store_true", help="stores side by side as they are (the head's one shared scale)"
    )
    p.add_argument("--classes", nargs="+", default=None, help="only these classes (a smaller task)")
    p.add_argument("--train-per-class", type=int, default=None, help="only N training videos a class (seeded)")
    p.add_argument(
        "--epoch-rules",
        action="store_true",
        help="score every epoch on the validation videos too, and report the epoch each keeping rule picks",
    )
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args()
    tune_malloc()  # as the tsmap command does, so that wall times compare (BENCHMARKS.md (e))
    if args.threads:
        torch.set_num_threads(args.threads)

    info = json.loads((args.out / "videos" / "dataset.json").read_text())
    classes, pairs = info["classes"], info["order_pairs"]
    unknown = sorted(set(args.classes or []) - set(classes))
    if unknown:
        known = ", ".join(classes)
        raise SystemExit(f"recipe_sweep: --classes: no class {', '.join(unknown)}; the classes are {known}")
    names = args.stores.split(",")
    tag = args.tag or args.stores + (f"_epochs{args.epochs}" if args.epochs else "")
    summary = {}
    for name in args.candidates:
        draws = []
        for k in args.only_draws or range(args.draws):
            lists = args.out / "splits" / f"draw{k}"
            stores = [[VideoMapStore.open(args.out / j.format(draw=k)) for j in s.split("+")] for s in names]
            r = run_candidate(
                name,
                stores,
                lists,
                classes,
                pairs,
                args.epochs,
                args.weights,
                not args.no_part_scales,
                args.classes,
                args.train_per_class,
                args.epoch_rules,
            )
            draws.append(r)
            groups = " ".join(f"{g}={v * 100:.0f}" for g, v in r["val"]["groups"].items())
            if args.epoch_rules:
                rules = r["epoch_rules"][0]
                groups += " | rules " + " ".join(
                    f"{k}={rules[k] * 100:.1f}" for k in ("top1_then_loss", "loss", "last", "best_possible")
                )
            print(
                f"{name:24s} draw {k}: val {r['val']['top1'] * 100:5.1f} train {r['train_top1'] * 100:5.1f} "
                f"kept {r['kept_epoch']}/{r['epochs_run']} lr x{r['lr_scale']} {r['seconds']:.0f}s "
                f"dead {dead_text(r)} | {groups}",
                flush=True,
            )
        summary[name] = summarize(draws)
        if not args.no_save:  # after every candidate, so that a stopped sweep keeps what it finished
            save(tag, args.stores, name, summary[name] | {"draws": draws, "machine": machine_record()})
    print(f"\n{'candidate':24s} {'val top-1':>12s} {'train':>7s}  per group (val)")
    for name, stats in summary.items():
        cells = " ".join(f"{g}={v:.0f}" for g, v in stats["groups"].items())
        top1, std = stats["val_top1_mean"], stats["val_top1_std"]
        print(f"{name:24s} {top1:5.1f} ± {std:4.1f} {stats['train_top1']:7.1f}  {cells}")


def dead_text(r: dict) -> str:
    """The dead-channel shares of a draw's heads, e.g. '0/28/34' (%, blocks 1/2/3) per stream."""
    return ",".join("/".join(f"{v * 100:.0f}" for v in d.values()) or "-" for d in r["dead_channels"])


def summarize(draws: list[dict]) -> dict:
    """Validation top-1 (mean, sample std), train top-1 and per-group validation top-1 over the draws (%)."""
    top1 = np.array([d["val"]["top1"] for d in draws]) * 100
    return {
        "val_top1_mean": float(top1.mean()),
        "val_top1_std": float(top1.std(ddof=1)) if len(top1) > 1 else 0.0,
        "train_top1": float(np.mean([d["train_top1"] for d in draws]) * 100),
        "groups": {g: float(np.mean([d["val"]["groups"][g] for d in draws]) * 100) for g in draws[0]["val"]["groups"]},
        "dead_channels": {
            b: float(np.mean([d["dead_channels"][0][b] for d in draws]) * 100) for b in draws[0]["dead_channels"][0]
        },
    }


def save(tag: str, stores: str, name: str, record: dict) -> None:
    """Add one candidate's figures to ``benchmarks/results/recipe_sweep.json`` (entry ``tag``)."""
    runs = saved_runs("recipe_sweep")
    runs.setdefault(tag, {"stores": stores, "candidates": {}})["candidates"][name] = record
    save_results("recipe_sweep", {"runs": runs})


if __name__ == "__main__":
    main()
