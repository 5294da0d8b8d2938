"""Three things the head might be missing, measured on the real-footage benchmark's VALIDATION videos.

    python benchmarks/map_layout.py --out real-footage --variant NAME [--seed N] [--threads 1] [--tag NAME]
    python benchmarks/map_layout.py --out real-footage --ensemble TAG SEED SEED ...

Needs a folder made by ``benchmarks/real_footage.py``. Each run trains the VideoMap head with
tsmap's default recipe on every draw's train.txt (less the part ``tsmap train`` holds out to
keep its best epoch) and scores it on val.txt; the test lists are never read. The variants are
wrappers around the maps, measurements of whether tsmap should do something, not features:

- ``stored``: the maps as stored (the default recipe; ``--seed`` for another initialisation).
- ``seriate``: the feature columns reordered so that correlated ones are neighbours (the
  spectral order of their correlation over the training rows). The head's convolutions and
  max-pools mix neighbouring columns, which the backbone puts in no meaningful order.
- ``shuffle``: the columns in a random order (seeded by the draw): what any order gives.
- ``reverse``: time reversal of the order pairs as augmentation: with probability 1/2 a
  training map of a paired class has its rows reversed and its partner's label (a zoom in
  played backwards is a zoom out). Valid for RGB maps only: reversing a video negates its
  optical flow, which reversing the rows of a flow map does not.

``--ensemble TAG SEED ...`` averages the softmax scores that runs with those seeds saved
(``--variant stored --seed N --tag TAG``) and compares the ensemble with its members.
Results go to ``benchmarks/results/map_layout.json`` (per run: every draw's validation top-1,
per group, train top-1, kept epoch, seconds); scores to ``OUT/map_layout/``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from machine import machine_record, save_results, saved_runs
from real_footage import figures
from recipe_sweep import read_subsets, train_one
from torch.utils.data import DataLoader, Dataset

from tsmap.videomap.store import VideoMapStore

VARIANTS = ("stored", "seriate", "shuffle", "reverse")


class Permuted(Dataset):
    """The maps of ``data`` with their feature columns in ``order``."""

    def __init__(self, data: Dataset, order: np.ndarray):
        self.data, self.order = data, torch.as_tensor(order)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        m, y = self.data[i]
        return m[..., self.order], y


class Reversed(Dataset):
    """Training maps of a paired class: with probability 1/2 its rows reversed and the partner's label."""

    def __init__(self, data: Dataset, partner: dict[int, int], seed: int):
        self.data, self.partner, self.generator = data, partner, torch.Generator().manual_seed(seed)
        self.views = getattr(data, "views", 1)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        m, y = self.data[i]
        y = int(y)
        if y in self.partner and torch.rand(1, generator=self.generator).item() < 0.5:
            return m.flip(0), self.partner[y]
        return m, y


def spectral_order(data: Dataset) -> np.ndarray:
    """Columns sorted by the Fiedler vector of their positive correlations over the training rows."""
    rows = torch.cat([m.reshape(-1, m.shape[-1]) for m, _ in DataLoader(data, batch_size=64)]).double()
    affinity = torch.corrcoef(rows.T).nan_to_num(0).clamp_min(0)
    affinity.fill_diagonal_(0)
    degree = affinity.sum(1)
    inv_sqrt = torch.where(degree > 0, degree.rsqrt(), torch.zeros_like(degree))
    laplacian = torch.eye(len(degree), dtype=affinity.dtype) - inv_sqrt[:, None] * affinity * inv_sqrt[None, :]
    _, vectors = torch.linalg.eigh(laplacian)
    return torch.argsort(vectors[:, 1] * inv_sqrt).numpy()


def run_draw(out: Path, k: int, stores: list[str], variant: str, seed: int, classes, pairs) -> tuple[dict, tuple]:
    """Train the head on draw ``k``'s maps (``variant``'s wrapper) with ``recipe_sweep.train_one``, the
    default recipe, several stores side by side as they are (as `tsmap join` writes them); its
    figures and (val scores, labels)."""

    def wrap(data: Dataset, held: Dataset, val: Dataset) -> tuple[Dataset, Dataset, Dataset]:
        if variant in ("seriate", "shuffle"):
            columns = data[0][0].shape[-1]
            order = spectral_order(data) if variant == "seriate" else np.random.default_rng(k).permutation(columns)
            return Permuted(data, order), Permuted(held, order), Permuted(val, order)
        if variant == "reverse":
            partner = {}
            for a, b in pairs:
                partner[classes.index(a)], partner[classes.index(b)] = classes.index(b), classes.index(a)
            return Reversed(data, partner, k), held, val
        return data, held, val

    subsets = read_subsets(out / "splits" / f"draw{k}", classes)
    opened = [VideoMapStore.open(out / s.format(draw=k)) for s in stores]
    run = train_one("cosine", opened, subsets, len(classes), None, part_scales=False, seed=seed, wrap=wrap)
    (val_scores, val_labels), (train_scores, train_labels) = run["val_scores"], run["train_scores"]
    record = {
        "draw": k,
        "val": figures(val_scores, val_labels, classes, pairs),
        "train_top1": float((train_scores.argmax(1) == train_labels).mean()),
        "kept_epoch": run["kept_epoch"],
        "seconds": run["seconds"],
    }
    return record, (val_scores, val_labels)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of raw scores."""
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder made by benchmarks/real_footage.py")
    p.add_argument("--variant", choices=VARIANTS, default="stored")
    p.add_argument("--seed", type=int, default=0, help="tsmap train --seed (default 0)")
    p.add_argument("--stores", default="store", help="store(s) under OUT, joined by + for maps side by side")
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--tag", default=None, help="results entry (default: stores, variant and seed)")
    p.add_argument("--ensemble", nargs="+", default=None, metavar="TAG SEED", help="average saved runs' scores")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    info = json.loads((args.out / "videos" / "dataset.json").read_text())
    classes, pairs = info["classes"], info["order_pairs"]
    folder = args.out / "map_layout"
    folder.mkdir(exist_ok=True)
    runs = saved_runs("map_layout")
    if args.ensemble:
        tag, seeds = args.ensemble[0], args.ensemble[1:]
        members = [runs[f"{tag}_seed{s}"] for s in seeds]
        draws = []
        for k in range(args.draws):
            labels = np.load(folder / f"{tag}_draw{k}_labels.npy")
            probs = np.mean([softmax(np.load(folder / f"{tag}_seed{s}_draw{k}.npy")) for s in seeds], 0)
            draws.append({"draw": k, "val": figures(np.log(probs), labels, classes, pairs)})
            single = [m["draws"][k]["val"]["top1"] * 100 for m in members]
            ensemble = draws[-1]["val"]["top1"] * 100
            print(f"draw {k}: members {' '.join(f'{v:.1f}' for v in single)} ensemble {ensemble:.1f}")
        name = f"{tag}_ensemble_" + "_".join(seeds)
    else:
        tag = args.tag or f"{args.stores.replace('{draw}', 'K')}_{args.variant}"
        name = f"{tag}_seed{args.seed}"
        draws = []
        for k in range(args.draws):
            record, (scores, labels) = run_draw(
                args.out, k, args.stores.split("+"), args.variant, args.seed, classes, pairs
            )
            np.save(folder / f"{tag}_seed{args.seed}_draw{k}.npy", scores)
            np.save(folder / f"{tag}_draw{k}_labels.npy", labels)
            groups = " ".join(f"{g}={v * 100:.0f}" for g, v in record["val"]["groups"].items())
            print(
                f"{name} draw {k}: val {record['val']['top1'] * 100:.1f} train {record['train_top1'] * 100:.1f} "
                f"kept {record['kept_epoch']} {record['seconds']:.0f}s | {groups}",
                flush=True,
            )
            draws.append(record)
    top1 = np.array([d["val"]["top1"] for d in draws]) * 100
    spread = f" ± {top1.std(ddof=1):.1f}" if len(top1) > 1 else ""
    print(f"{name}: validation top-1 {top1.mean():.1f}{spread}")
    runs[name] = {"command": vars(args) | {"out": str(args.out)}, "draws": draws, "machine": machine_record()}
    save_results("map_layout", {"runs": runs})


if __name__ == "__main__":
    main()
