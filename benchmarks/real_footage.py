"""Real-footage benchmark: the VideoMap head, TSN and two linear probes on clips of real material.

    python benchmarks/real_footage.py [--out real-footage] [--per-class 60] [--frames 64]
        [--image-size 160] [--draws 3] [--epochs E] [--train-args "--lr 0.005 ..."] [--tag NAME]
        [--flow] [--finetune-flow] [--joint] [--backbone efficientnet_lite1] [--views 5] [--skip-build] [--skip-extract]
        [--no-probes] [--no-heads]

Needs scikit-image (its photographs; ``pip install scikit-image``) and, optionally, Debian's
opencv-doc (``apt-get install opencv-doc``: its sample videos give the play_forward /
play_reversed pair, its photographs widen the camera pool; without it the dataset has 8
classes, not 10, and the figures are not comparable with a run that had it). The script
installs nothing. See ``real_footage_data.py`` for the classes: four pairs that only the
order of the frames tells apart (pan right / left, zoom in / out, rotate anticlockwise /
clockwise over real photographs, forward / reversed playback of real videos) and two
appearance classes.

What it does, the way a user would (the CLI through subprocesses, with this Python):

1. build ``OUT/videos`` (H.264 MP4, ``--per-class`` videos a class; videos already there are
   kept) and, for each of ``--draws`` seeded stratified 60/20/20 splits,
   ``OUT/splits/draw<k>/{train,val,test,trainval}.txt`` (``<path> <class>`` lines, for
   ``tsmap extract --dataset list``; train.txt holds no validation video);
2. ``tsmap extract`` once into ``OUT/store`` (every video; a rerun skips mapped videos); with
   ``--backbone`` other than Lite0, into ``OUT/store-<backbone>``; with ``--views N``
   (``tsmap extract --views N``: the centre and corner crops), into ``OUT/store-views<N>``,
   started from a copy of the single-view store's maps (the store grows the other views);
3. for each draw: ``tsmap train --head both`` (tsmap's defaults, plus ``--epochs`` and
   ``--train-args``) on train.txt into ``OUT/runs/<tag>/draw<k>``, then ``tsmap evaluate`` on
   train, validation and test (the store is pointed at a split by rerunning ``tsmap extract``
   with that split's lists, which maps nothing and records the lists);
4. two linear probes on the same maps: the means of 4 consecutive quarters of the rows
   concatenated (ordered chunks, 4 x 1280 features) and the mean of the whole map (blind to
   order), standardised on train, multinomial logistic regression with an L2 penalty
   (L-BFGS, PyTorch) whose strength is chosen on validation.

``--flow`` adds the flow stream with the ImageNet-initialised ConvNet (one store for every
draw); ``--finetune-flow`` instead fine-tunes the flow ConvNet on each draw's training videos
first (``tsmap finetune --stream flow``, ``--finetune-args``; skipped where
``OUT/finetune/draw<k>`` already holds its checkpoint) and maps the videos with it into
``OUT/store-ftflow-draw<k>``, the paper's two-stage pipeline (the flow probes then read each
draw's own maps). With either, the streams are fused twice: at TSN's 1 : 1.5 (``tsmap fuse``)
and at each head's flow weight chosen on the draw's validation videos (``tsmap fuse
--choose-weights``'s rule, ``tsmap.evaluation.fusion.choose_flow_weight``). ``--joint`` adds
one head on both streams' maps side by side (``tsmap join`` into ``OUT/store-joint``, or
``OUT/store-joint-draw<k>`` with ``--finetune-flow``; rejoined after each pointing of the parts).

Prints top-1 (mean +- sample std over the draws) on train / val / test for each method, and
per pair on val and test (10-way top-1 on the pair's videos; a frame-averaging model can name
the pair but not its direction, so chance there is 50 %). Writes every figure, the stages'
wall times and the machine's load to ``benchmarks/results/real_footage.json`` (one entry per
``--tag``) and ``OUT/runs/<tag>/summary.json``. Compare recipes on validation only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import real_footage_data as rfd
import torch
import torch.nn.functional as F
from machine import machine_record, save_results, saved_runs

from tsmap.evaluation.fusion import choose_flow_weight, fuse_runs
from tsmap.fileio import FolderBusy, folder_lock
from tsmap.finetune.train import finetune_output

METHODS = {
    "videomap": "VideoMap head",
    "tsn": "TSN (25-frame average)",
    "probe_chunks": "probe: 4 ordered chunks",
    "probe_mean": "probe: map mean",
    # with --flow: the flow stream, the two streams fused (`tsmap fuse`), the probe on both
    "videomap_flow": "VideoMap head, flow",
    "tsn_flow": "TSN, flow",
    "videomap_fused": "VideoMap head, RGB+flow",
    "tsn_fused": "TSN, RGB+flow",
    "probe_chunks_flow": "probe: 4 chunks, flow",
    "probe_chunks_fused": "probe: 4 chunks, RGB+flow",
    # with --joint: one head on the RGB and flow maps side by side (`tsmap join`)
    "videomap_joint": "VideoMap head, RGB|flow joined",
    "tsn_joint": "TSN, RGB|flow joined",
    # the flow weight chosen on validation per draw and head (`tsmap fuse --choose-weights`'s rule)
    "videomap_fused_val": "VideoMap, RGB+flow, w on val",
    "tsn_fused_val": "TSN, RGB+flow, w on val",
}
SUBSETS = ("train", "val", "test")
DEFAULT_BACKBONE = "efficientnet_lite0"  # tsmap extract's; its maps are OUT/store
# tsmap finetune's options for --finetune-flow: TSN's flow lr (0.005), 20 epochs for ~360 videos on a CPU.
FINETUNE_ARGS = "--epochs 20 --lr 0.005 --lr-steps 12 17"
LAMBDAS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Stages:
    """Wall time and load average of each stage."""

    def __init__(self) -> None:
        self.record: dict[str, dict] = {}

    def run(self, name: str, fn, *args, **kwargs):
        start, load = time.perf_counter(), loadavg()
        print(f"[{time.strftime('%H:%M:%S')}] {name} (load {load[0]:.2f})", flush=True)
        out = fn(*args, **kwargs)
        entry = self.record.setdefault(name, {"seconds": 0.0, "load_before": load})
        entry["seconds"] = round(entry["seconds"] + time.perf_counter() - start, 1)
        entry["load_after"] = loadavg()
        return out


def fail(message: str) -> None:
    print(f"real_footage: {message}", file=sys.stderr)
    raise SystemExit(2)


def tsmap(log: Path, *args: str) -> str:
    """Run ``python -m tsmap ARGS`` (this interpreter), append its output to ``log``."""
    cmd = [sys.executable, "-m", "tsmap", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    with open(log, "a") as f:
        f.write(f"$ {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        fail(f"`{shlex.join(cmd[1:])}` failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


# -- data ----------------------------------------------------------------------------------
def build(args: argparse.Namespace, videos: Path) -> dict:
    opencv = None if args.opencv_doc == "none" else Path(args.opencv_doc)
    if opencv is not None and rfd.opencv_doc_data(opencv) is None:
        print(
            f"real_footage: note: opencv-doc not found under {opencv} (apt-get install opencv-doc): "
            "no play_forward / play_reversed pair, a smaller photo pool; figures not comparable with a full run"
        )
        opencv = None
    try:
        return rfd.build_dataset(videos, args.per_class, args.seed, opencv, workers=args.workers)
    except rfd.MissingSource as exc:
        fail(str(exc))


def extraction_settings(args: argparse.Namespace, store: Path) -> dict:
    """Frames and geometry: the store's own when it exists (so a rerun always matches it)."""
    path = store / "store.json"
    if path.is_file():
        have = json.loads(path.read_text())
        return {"frames": have["frames"], "image_size": have["image_size"], "resize": have["resize"]}
    resize = args.resize or int(round(args.image_size * 256 / 224 / 2) * 2)
    return {"frames": args.frames, "image_size": args.image_size, "resize": resize}


def seed_views_store(views_store: Path, single: Path) -> None:
    """A new multi-view store starts as a copy of the single-view one (maps, settings, records):
    `tsmap extract --views N` then adds the other views only, and view 0 stays the same map."""
    if views_store.exists() or not (single / "store.json").is_file():
        return
    partial = views_store.with_name(views_store.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(single, partial, ignore=shutil.ignore_patterns(".tsmap.lock", "views"))
    partial.rename(views_store)


def extract(
    args,
    videos: Path,
    store: Path,
    train_list: Path,
    test_list: Path,
    log: Path,
    stream: str = "rgb",
    weights: Path | None = None,
) -> str:
    """``tsmap extract`` with these lists: maps what is missing and records the lists as the split."""
    s = extraction_settings(args, store)
    # Python's own flags for the list paths: relative paths are read from the current folder.
    return tsmap(
        log,
        "extract",
        "--videos", str(videos),
        "--store", str(store),
        "--dataset", "list",
        "--train-list", str(train_list.resolve()),
        "--test-list", str(test_list.resolve()),
        "--classes", str((videos / "classes.txt").resolve()),
        "--frames", str(s["frames"]),
        "--image-size", str(s["image_size"]),
        "--resize", str(s["resize"]),
        "--engine", args.engine,
        "--stream", stream,
        *(["--backbone", args.backbone] if stream == "rgb" else []),
        *(["--views", str(args.views)] if stream == "rgb" and args.views > 1 else []),
        *(["--weights", str(weights)] if weights else []),
    )  # fmt: skip


# -- scores --------------------------------------------------------------------------------
def read_lists(path: Path, classes: list[str]) -> tuple[list[str], np.ndarray]:
    keys, labels = [], []
    for line in path.read_text().splitlines():
        if line.strip():
            key, label = line.rsplit(None, 1)
            keys.append(key)
            labels.append(classes.index(label))
    return keys, np.array(labels)


def pair_name(pair: list[str]) -> str:
    """'pan_right', 'pan_left' -> 'pan right/left'."""
    stem = pair[0].split("_")[0]
    return f"{stem} " + "/".join(c.split("_", 1)[1] for c in pair) if pair[1].startswith(stem + "_") else "/".join(pair)


def figures(scores: np.ndarray, labels: np.ndarray, classes: list[str], pairs: list[list[str]]) -> dict:
    """Top-1, and top-1 on the videos of each pair and of the appearance classes."""
    pred = scores.argmax(1)
    out = {"top1": float(np.mean(pred == labels)), "groups": {}}
    in_pairs = []
    for pair in pairs:
        idx = [classes.index(c) for c in pair]
        in_pairs += idx
        mask = np.isin(labels, idx)
        out["groups"][pair_name(pair)] = float(np.mean(pred[mask] == labels[mask]))
    mask = ~np.isin(labels, in_pairs)
    if mask.any():
        out["groups"]["appearance"] = float(np.mean(pred[mask] == labels[mask]))
    mask = np.isin(labels, in_pairs)
    out["groups"]["all order pairs"] = float(np.mean(pred[mask] == labels[mask]))
    return out


def head_scores(scored: dict, classes: list[str], pairs: list[list[str]]) -> dict[str, dict]:
    """Figures of every head from one run's scores (``read_scores``)."""
    if scored["classes"] != classes:
        fail(f"{scored['run']}: classes {scored['classes']} differ from the dataset's {classes}")
    labels = scored["labels"]
    return {
        head: figures(scores, labels, classes, pairs) | {"videos": len(labels)}
        for head, scores in scored["heads"].items()
    }


# -- linear probes -------------------------------------------------------------------------
def map_features(store: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """Per video: 4 ordered quarter-means concatenated, and the whole-map mean (float32)."""
    chunks, means = [], []
    for key in keys:
        m = np.load(store / "maps" / f"{key}.npy").astype(np.float32)
        chunks.append(np.concatenate([q.mean(0) for q in np.array_split(m, 4, axis=0)]))
        means.append(m.mean(0))
    return {"probe_chunks": np.stack(chunks), "probe_mean": np.stack(means)}


def fit_logreg(x: torch.Tensor, y: torch.Tensor, lam: float, start: tuple[torch.Tensor, torch.Tensor]):
    """Multinomial logistic regression, mean cross-entropy + lam / 2 * |W|^2, by L-BFGS from ``start``."""
    w, b = (t.clone().requires_grad_() for t in start)
    opt = torch.optim.LBFGS(
        [w, b], lr=1, max_iter=500, history_size=20, line_search_fn="strong_wolfe", tolerance_grad=1e-7
    )

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 0.5 * lam * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def probe(features: np.ndarray, index: dict[str, int], split_keys: dict, split_labels: dict, classes: list[str], pairs):
    """Fit on train for every L2 strength (strongest first, each from the previous solution),
    keep the best on validation (top-1, then log-loss)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is ~2x faster idle, ~10x on a loaded machine
    try:
        xs = {s: torch.from_numpy(features[[index[k] for k in split_keys[s]]]).double() for s in SUBSETS}
        ys = {s: torch.from_numpy(split_labels[s]).long() for s in SUBSETS}
        mean, std = xs["train"].mean(0), xs["train"].std(0) + 1e-6
        xs = {s: (x - mean) / std for s, x in xs.items()}
        wb = (torch.zeros(xs["train"].shape[1], len(classes), dtype=torch.float64), torch.zeros(len(classes)).double())
        best, sweep = None, []
        for lam in sorted(LAMBDAS, reverse=True):
            wb = fit_logreg(xs["train"], ys["train"], lam, wb)
            val_scores = xs["val"] @ wb[0] + wb[1]
            acc = float((val_scores.argmax(1) == ys["val"]).double().mean())
            nll = float(F.cross_entropy(val_scores, ys["val"]))
            sweep.append({"l2": lam, "val_top1": acc, "val_nll": nll})
            if best is None or (acc, -nll) > (best[0], -best[1]):
                best = (acc, nll, lam, wb)
        _, _, lam, (w, b) = best
        out = {s: figures((xs[s] @ w + b).numpy(), split_labels[s], classes, pairs) for s in SUBSETS}
    finally:
        torch.set_num_threads(threads)
    return out, {"l2": lam, "sweep": sweep}


# -- one draw ------------------------------------------------------------------------------
def train_heads(args, store: Path, run: Path, log: Path, stages: Stages, result: dict, suffix: str) -> None:
    """``tsmap train --head both`` with tsmap's defaults plus ``--epochs`` and ``--train-args``."""
    train_cmd = ["train", "--store", str(store), "--run", str(run), "--head", "both"]
    train_cmd += ["--epochs", str(args.epochs)] if args.epochs is not None else []
    train_cmd += shlex.split(args.train_args)
    out = stages.run("train heads", tsmap, log, *train_cmd)
    result[f"train_log{suffix}"] = [line for line in out.splitlines() if "epochs, final loss" in line]


def run_draw(args, k: int, paths: dict, info: dict, stages: Stages, features: dict | None) -> dict:
    classes, pairs = info["classes"], info["order_pairs"]
    lists = paths["splits"] / f"draw{k}"
    run = paths["runs"] / f"draw{k}"
    run.mkdir(parents=True, exist_ok=True)
    log = run / "tsmap.log"
    result: dict = {m: {} for m in METHODS}
    scored: dict = {}  # subset -> stream suffix -> that stream's scores, keys and labels
    if not args.no_heads:
        streams = [("", paths["store"], run, "rgb", None)]
        if args.finetune_flow:
            weights = finetune_flow(args, k, paths, log, stages)
            streams.append(("_flow", paths["out"] / f"store-ftflow-draw{k}", run / "flow", "flow", weights))
        elif args.flow:
            streams.append(("_flow", paths["flow_store"], run / "flow", "flow", None))
        if args.joint:  # after its parts, which each subset points at its lists first
            joint = paths["out"] / f"store-joint-draw{k}" if args.finetune_flow else paths["out"] / "store-joint"
            streams.append(("_joint", joint, run / "joint", "joint", None))
        for subset in SUBSETS:
            for suffix, store, stream_run, kind, weights in streams:
                if kind == "joint":
                    parts = [str(streams[0][1]), str(streams[1][1])]
                    stages.run("join stores", tsmap, log, "join", "--stores", *parts, "--store", str(store))
                elif subset != "val":  # train and val: the store points at train/val; test: at train/test
                    held = "test" if subset == "test" else "val"
                    stages.run(
                        f"point {kind} store at train/{held}",
                        extract, args, paths["videos"], store, lists / "train.txt", lists / f"{held}.txt", log, kind,
                        weights,
                    )  # fmt: skip
                if subset == "train":
                    train_heads(args, store, stream_run, log, stages, result, suffix)
                extra = ["--subset", "train"] if subset == "train" else []
                stages.run("evaluate", tsmap, log, "evaluate", "--store", str(store), "--run", str(stream_run), *extra)
                scored.setdefault(subset, {})[suffix] = read_scores(stream_run)
                for head, fig in head_scores(scored[subset][suffix], classes, pairs).items():
                    result[head + suffix][subset] = fig
            if args.flow:
                fused = run / f"fused-{subset}"
                stages.run("fuse", tsmap, log, "fuse", "--runs", str(run), str(run / "flow"), "--out", str(fused))
                for head, fig in head_scores(read_scores(fused, "scores_fusion_"), classes, pairs).items():
                    result[head + "_fused"][subset] = fig
        if args.flow:
            fuse_with_weight_from_val(scored, classes, pairs, result)
    if features is not None and args.finetune_flow:  # the probes on this draw's fine-tuned flow maps
        flow = stages.run("load flow maps", map_features, paths["out"] / f"store-ftflow-draw{k}", features["keys"])
        rgb = features["features"]["probe_chunks"]
        chunks = {"probe_chunks_flow": flow["probe_chunks"]}
        chunks["probe_chunks_fused"] = np.concatenate([rgb, flow["probe_chunks"]], axis=1)
        features = features | {"features": features["features"] | chunks}
    if features is not None:
        split_keys, split_labels = {}, {}
        for subset in SUBSETS:
            split_keys[subset], split_labels[subset] = read_lists(lists / f"{subset}.txt", classes)
        for name, feats in features["features"].items():
            figs, chosen = stages.run(
                "linear probes", probe, feats, features["index"], split_keys, split_labels, classes, pairs
            )
            result[name] = figs | {"chosen": chosen}
    return result


def read_scores(run: Path, prefix: str = "scores_") -> dict:
    """What ``tsmap evaluate`` (or ``tsmap fuse``, prefix ``scores_fusion_``) just wrote to
    ``run``: keys, labels, classes and each head's scores."""
    keys = json.loads((run / "scores_keys.json").read_text())
    out = {"run": run, "keys": keys["keys"], "labels": np.array(keys["labels"]), "classes": keys["classes"]}
    out["heads"] = {
        h: np.load(run / f"{prefix}{h}.npy") for h in ("videomap", "tsn") if (run / f"{prefix}{h}.npy").is_file()
    }
    return out


def fuse_subset(streams: dict, head: str, weights: tuple[float, float]) -> dict:
    """``fuse_runs`` on one subset's RGB ("") and flow ("_flow") scores of ``head``."""
    task = [(r["heads"][head], r["keys"], r["labels"], r["classes"]) for r in (streams[""], streams["_flow"])]
    return fuse_runs(*map(list, zip(*task, strict=True)), weights)


def fuse_with_weight_from_val(scored: dict, classes: list[str], pairs, result: dict) -> None:
    """Each head's flow weight chosen on the draw's validation videos (``choose_flow_weight``,
    what ``tsmap fuse --choose-weights`` does), then that fusion's figures on every subset."""
    for head in ("videomap", "tsn"):
        if any(head not in scored[s][x]["heads"] for s in SUBSETS for x in ("", "_flow")):
            continue
        val = fuse_subset(scored["val"], head, (1.0, 1.0))
        weight, sweep = choose_flow_weight(*val["streams"], val["labels"])
        entry = result[f"{head}_fused_val"]
        for subset in SUBSETS:
            both = fuse_subset(scored[subset], head, (1.0, weight))
            entry[subset] = figures(both["fused"], both["labels"], classes, pairs)
        entry["chosen"] = {"flow_weight": weight, "sweep": sweep}


def finetune_flow(args, k: int, paths: dict, log: Path, stages: Stages) -> Path:
    """The flow ConvNet fine-tuned on draw ``k``'s training videos (``tsmap finetune``); its checkpoint."""
    out = paths["out"] / "finetune" / f"draw{k}"
    checkpoint = finetune_output(out, "flow", "efficientnet_lite0")  # where `tsmap finetune` writes it
    if checkpoint.is_file():
        print(f"draw {k}: reusing the fine-tuned flow ConvNet {checkpoint}")
        return checkpoint
    lists, videos = paths["splits"] / f"draw{k}", paths["videos"]
    s = extraction_settings(args, paths["store"])
    stages.run(
        "finetune flow", tsmap, log, "finetune",
        "--videos", str(videos), "--out", str(out), "--stream", "flow",
        "--dataset", "list", "--train-list", str((lists / "train.txt").resolve()),
        "--test-list", str((lists / "val.txt").resolve()),  # not read: finetune trains on the training list
        "--classes", str((videos / "classes.txt").resolve()),
        "--image-size", str(s["image_size"]), "--resize", str(s["resize"]),
        *shlex.split(args.finetune_args),
    )  # fmt: skip
    return checkpoint


# -- summary -------------------------------------------------------------------------------
def mean_std(values: list[float]) -> dict:
    a = np.array(values, dtype=float) * 100
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "draws": a.tolist()}


def summarize(draws: list[dict]) -> dict:
    summary: dict = {}
    for method in METHODS:
        for subset in SUBSETS:
            figs = [d[method][subset] for d in draws if subset in d.get(method, {})]
            if not figs:
                continue
            entry = summary.setdefault(method, {}).setdefault(subset, {})
            entry["top1"] = mean_std([f["top1"] for f in figs])
            entry["groups"] = {g: mean_std([f["groups"][g] for f in figs]) for g in figs[0]["groups"]}
    return summary


def cell(entry: dict | None) -> str:
    return f"{entry['mean']:5.1f} ± {entry['std']:4.1f}" if entry else "-"


def print_tables(summary: dict, draws: int) -> None:
    print(f"\ntop-1 (%), mean ± std over {draws} draws")
    print(f"{'method':28s}" + "".join(f"{s:>16s}" for s in SUBSETS))
    for method, label in METHODS.items():
        if method in summary:
            print(f"{label:28s}" + "".join(f"{cell(summary[method].get(s, {}).get('top1')):>16s}" for s in SUBSETS))
    for subset in ("val", "test"):
        groups = next((summary[m][subset]["groups"] for m in summary if subset in summary[m]), None)
        if not groups:
            continue
        print(f"\n{subset}: top-1 (%) on the videos of each pair (10-way; 50 = the pair but not its direction)")
        names = list(groups)
        print(f"{'method':28s}" + "".join(f"{n:>22s}" for n in names))
        for method, label in METHODS.items():
            if subset in summary.get(method, {}):
                g = summary[method][subset]["groups"]
                print(f"{label:28s}" + "".join(f"{cell(g.get(n)):>22s}" for n in names))


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_") or "default"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("real-footage"), help="work folder (default ./real-footage)")
    p.add_argument("--per-class", type=int, default=60, help="videos a class (default 60)")
    p.add_argument("--frames", type=int, default=64, help="T, rows of a VideoMap (default 64)")
    p.add_argument("--image-size", type=int, default=160, help="frame ConvNet input (default 160)")
    p.add_argument("--resize", type=int, default=None, help="shorter side before the crop (default size*256/224)")
    p.add_argument("--draws", type=int, default=3, help="seeded splits to average over (default 3)")
    p.add_argument("--epochs", type=int, default=None, help="tsmap train --epochs (default: tsmap's)")
    p.add_argument("--train-args", default="", help='more `tsmap train` options, e.g. "--lr 0.005 --lr-step 300"')
    p.add_argument("--tag", default=None, help="name of this recipe's runs and results entry")
    p.add_argument(
        "--flow",
        action="store_true",
        help="also the flow stream (OUT/store-flow, `tsmap extract --stream flow`), its heads and probe, "
        "and both streams fused (`tsmap fuse`, RGB : flow = 1 : 1.5)",
    )
    p.add_argument(
        "--finetune-flow",
        action="store_true",
        help="the flow stream with its ConvNet fine-tuned on each draw's training videos (`tsmap finetune`, "
        "OUT/finetune/draw<k>, OUT/store-ftflow-draw<k>), its heads and both streams fused",
    )
    p.add_argument(
        "--joint",
        action="store_true",
        help="with --flow or --finetune-flow: also one head on both streams' maps side by side (`tsmap join` "
        "into OUT/store-joint, or OUT/store-joint-draw<k> with --finetune-flow)",
    )
    p.add_argument(
        "--finetune-args",
        default=FINETUNE_ARGS,
        help=f"options for `tsmap finetune` with --finetune-flow (default {FINETUNE_ARGS!r})",
    )
    p.add_argument("--skip-build", action="store_true", help="use OUT/videos as it is")
    p.add_argument("--skip-extract", action="store_true", help="use OUT/store as it is")
    p.add_argument("--no-heads", action="store_true", help="probes only")
    p.add_argument("--no-probes", action="store_true", help="heads only")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="video writers (default 2)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the split draws (default 0)")
    p.add_argument("--engine", default="auto", help="tsmap extract --engine (default auto)")
    p.add_argument(
        "--backbone",
        default=DEFAULT_BACKBONE,
        choices=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"],
        help=f"tsmap extract --backbone for the RGB stream (default {DEFAULT_BACKBONE}); another one maps into "
        "OUT/store-<backbone>",
    )
    p.add_argument(
        "--views",
        type=int,
        default=1,
        help="tsmap extract --views for the RGB stream (default 1); more map into OUT/store-views<N>, which "
        "starts from a copy of the single-view store's maps when that exists. The heads train on a view "
        "drawn per map and epoch and are scored on all views averaged; the probes read view 0",
    )
    p.add_argument("--opencv-doc", default=str(rfd.OPENCV_DOC), help="opencv-doc's folder, or 'none'")
    p.add_argument("--no-save", action="store_true", help="do not write benchmarks/results/real_footage.json")
    args = p.parse_args()
    args.flow = args.flow or args.finetune_flow
    if args.joint and not args.flow:
        fail("--joint joins the RGB and flow stores: add --flow or --finetune-flow")
    # One run at a time per folder: each draw points the shared stores at its own split.
    try:
        with folder_lock(args.out.resolve(), "benchmark folder"):
            run(args)
    except FolderBusy as exc:
        fail(str(exc))


def run(args: argparse.Namespace) -> None:
    parts = [f"epochs {args.epochs}" if args.epochs else "", args.train_args]
    parts.append("ftflow" if args.finetune_flow else "flow" if args.flow else "")
    parts.append("joint" if args.joint else "")
    tag = args.tag or slug(" ".join(filter(None, parts)))
    out = args.out.resolve()
    store = "store" if args.backbone == DEFAULT_BACKBONE else f"store-{args.backbone}"
    if args.views > 1:
        single, store = store, f"{store}-views{args.views}"
        seed_views_store(out / store, out / single)
    paths = {"videos": out / "videos", "store": out / store, "splits": out / "splits", "runs": out / "runs" / tag}
    paths["flow_store"], paths["out"] = out / "store-flow", out
    paths["runs"].mkdir(parents=True, exist_ok=True)
    stages = Stages()
    started, load_start = time.perf_counter(), loadavg()

    if args.skip_build:
        info_path = paths["videos"] / "dataset.json"
        if not info_path.is_file():
            fail(f"--skip-build: {info_path} does not exist; build the dataset first")
        info = json.loads(info_path.read_text())
    else:
        info = stages.run("build videos", build, args, paths["videos"])
    counts = {c: sum(r["label"] == c for r in info["videos_list"]) for c in info["classes"]}
    print(f"dataset: {len(info['videos_list'])} videos, {len(counts)} classes ({min(counts.values())} a class)")
    for k in range(args.draws):
        rfd.split_lists(info, paths["splits"] / f"draw{k}", k, seed=args.split_seed)
    first = paths["splits"] / "draw0"
    log = paths["runs"] / "extract.log"
    if not args.skip_extract:
        text = stages.run(
            "extract", extract, args, paths["videos"], paths["store"], first / "trainval.txt", first / "test.txt", log
        )
        print("\n".join(line for line in text.splitlines() if line.startswith("extraction")))
        if args.flow and not args.finetune_flow:
            lists = (first / "trainval.txt", first / "test.txt")
            text = stages.run("extract flow", extract, args, paths["videos"], paths["flow_store"], *lists, log, "flow")
            print("\n".join(line for line in text.splitlines() if line.startswith("extraction")))
    features = None
    if not args.no_probes:
        keys = [r["path"] for r in info["videos_list"]]
        features = {
            "features": stages.run("load maps", map_features, paths["store"], keys),
            "index": {k: i for i, k in enumerate(keys)},
            "keys": keys,
        }
        if args.flow and not args.finetune_flow:
            flow = stages.run("load flow maps", map_features, paths["flow_store"], keys)
            features["features"]["probe_chunks_flow"] = flow["probe_chunks"]
            both = np.concatenate([features["features"]["probe_chunks"], flow["probe_chunks"]], axis=1)
            features["features"]["probe_chunks_fused"] = both
    draws = []
    for k in range(args.draws):
        draws.append(run_draw(args, k, paths, info, stages, features))
        # what is done so far, in case a long run is stopped
        partial = {"draws_done": len(draws), "summary": summarize(draws), "per_draw": draws}
        (paths["runs"] / "partial.json").write_text(json.dumps(partial, indent=1))
    summary = summarize(draws)
    print_tables(summary, args.draws)
    record = {
        "tag": tag,
        "command": shlex.join([sys.executable, *sys.argv]),
        "tsmap_package": str(Path(rfd.write_video.__code__.co_filename).parents[1]),  # the tsmap the CLI ran
        "train_args": {"epochs": args.epochs, "extra": args.train_args},
        "dataset": {
            "classes": info["classes"],
            "order_pairs": info["order_pairs"],
            "videos_per_class": counts,
            "photos": info["photos"],
            "source_videos": info["videos"],
            "split": "stratified 60/20/20 per draw (seeds [split_seed, draw])",
        },
        "extraction": extraction_settings(args, paths["store"]),
        "draws": args.draws,
        "summary": summary,
        "per_draw": draws,
        "stages": stages.record,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load_start": load_start,
        "load_end": loadavg(),
        "machine": machine_record(),
    }
    (paths["runs"] / "summary.json").write_text(json.dumps(record, indent=1))
    print("\nstages (s): " + ", ".join(f"{k} {v['seconds']:.0f}" for k, v in stages.record.items()))
    print(f"wall {record['wall_seconds']:.0f} s; load average {load_start} -> {record['load_end']}")
    if not args.no_save:
        runs = saved_runs("real_footage")
        runs[tag] = {k: v for k, v in record.items() if k != "per_draw"}
        print(f"figures: {save_results('real_footage', {'runs': runs})} (entry {tag!r})")


if __name__ == "__main__":
    main()
