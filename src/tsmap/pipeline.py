"""The steps a user runs: extract -> train -> evaluate -> predict.

Each step reads and writes plain files (a store folder, a run folder), so steps can
be rerun, resumed and mixed; the CLI and the demo are thin layers over these functions.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tsmap import distributed
from tsmap.data.datasets import (
    OFFICIAL_KINDS,
    DatasetError,
    VideoDataset,
    folder_dataset,
    list_dataset,
    official_dataset,
    open_dataset,
)
from tsmap.data.video import FrameGeometry
from tsmap.evaluation.metrics import confusion_matrix, per_class_accuracy, summarize
from tsmap.evaluation.plots import plot_confusion
from tsmap.frames.encoder import FrameEncoder
from tsmap.heads.checkpoint import load_head, save_head
from tsmap.heads.tsn import TSNHead
from tsmap.heads.videomap_head import VideoMapHead
from tsmap.training import TrainConfig, score_maps, seed_everything, train_head
from tsmap.videomap.extract import ExtractionSummary, extract_clips, extraction_settings, shard, video_to_map
from tsmap.videomap.loader import MapDataset
from tsmap.videomap.store import StoreError, VideoMapStore

HEADS = ("videomap", "tsn")
HEAD_LABELS = {"videomap": "VideoMap head", "tsn": "TSN (25-frame average)"}


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked, but PyTorch sees no CUDA GPU")
    return device


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


# -- extract ---------------------------------------------------------------------
@dataclass
class ExtractOptions:
    frames: int = 256
    backbone: str = "efficientnet_lite0"
    image_size: int = 224
    resize: int = 256
    batch_size: int = 16
    device: str = "auto"
    strict: bool = False
    decode_workers: int = 2
    engine: str = "auto"  # frame ConvNet runtime: torch, onnx (ONNX Runtime, CPU) or auto


def extract(
    dataset: VideoDataset, store_dir: Path, options: ExtractOptions, show_progress: bool = True
) -> tuple[VideoMapStore, ExtractionSummary]:
    device = resolve_device(options.device)
    world = distributed.current()
    encoder = FrameEncoder(
        options.backbone,
        device=device,
        batch_size=options.batch_size,
        engine=options.engine,
        image_size=options.image_size,
    )
    geometry = FrameGeometry(options.image_size, options.resize)
    settings = extraction_settings(encoder, options.frames, geometry)
    # Under torchrun, rank 0 creates the store and clears what a killed run left before
    # the others start writing; then each rank maps its own shard.
    if world.is_main:
        store = VideoMapStore.create_or_open(store_dir, settings, source=dataset.spec)
        store.remove_stale_temporaries()
    distributed.barrier()
    if not world.is_main:
        store = VideoMapStore.create_or_open(store_dir, settings, source=dataset.spec)
    summary = extract_clips(
        shard(dataset.clips(), world.rank, world.size),
        dataset.root,
        store,
        encoder,
        geometry,
        strict=options.strict,
        decode_workers=options.decode_workers,
        show_progress=show_progress and world.is_main,
        forget_failures=world.size == 1,
    )
    summary.engine = {"onnx": "ONNX Runtime", "torch": f"PyTorch ({device})"}[encoder.engine]
    if world.size > 1:
        summary = ExtractionSummary.combine(distributed.gather_objects(summary))
        distributed.barrier()
        if world.is_main:
            store.clear_failures({key for key in store.failures() if store.has(key)})
    return store, summary


def store_dataset(store: VideoMapStore, split: int | None = None) -> VideoDataset:
    """The dataset the store was made from; ``split`` picks an official HMDB51/UCF101 split."""
    spec = store.settings.get("source") or {}
    if not spec:
        raise StoreError(f"{store.root} does not say which dataset it was made from")
    return open_dataset(spec, split)


# -- train -----------------------------------------------------------------------
def make_head(kind: str, num_classes: int, store: VideoMapStore, attention: str = "A0A1A2") -> torch.nn.Module:
    if kind == "videomap":
        return VideoMapHead(num_classes, store.num_frames, store.feature_dim, attention=attention)
    if kind == "tsn":
        return TSNHead(num_classes, store.feature_dim)
    raise ValueError(f"unknown head {kind!r}; choose from {', '.join(HEADS)}")


def train(
    store: VideoMapStore,
    run_dir: Path,
    heads: list[str],
    configs: dict[str, TrainConfig],
    attention: str = "A0A1A2",
    split: str = "train",
    device: str = "auto",
    show_progress: bool = True,
    official_split: int | None = None,
    force: bool = False,
    memory_budget_gib: float = 2.0,
) -> dict[str, list[dict]]:
    device = resolve_device(device)
    dataset = store_dataset(store, official_split)
    clips = dataset.clips(split)
    data = MapDataset(store, clips, in_memory=_fits_in_memory(store, len(clips), int(memory_budget_gib * 2**30)))
    if len(data) == 0:
        raise DatasetError(f"no {split} VideoMaps in {store.root}: run `tsmap extract` first")
    if data.missing:
        print(
            f"note: {len(data.missing)} {split} videos have no VideoMap (failed or not extracted); "
            "training without them"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    histories = {}
    for kind in heads:
        seed_everything(configs[kind].seed)  # the initial weights too, so a rerun gives the same head
        model = make_head(kind, len(dataset.classes), store, attention)
        path = run_dir / f"{kind}.pt"
        done = _finished_history(path, model, configs[kind], len(data)) if not force else None
        if done is not None:
            print(f"{kind}: already trained with these settings in {path} (--force retrains)")
            histories[kind] = done
            continue
        # A killed run leaves its last finished epoch here; the next run continues from it.
        state_path = run_dir / f"{kind}.training-state.pt"
        start = time.perf_counter()
        history = train_head(
            model,
            data,
            configs[kind],
            device=device,
            show_progress=show_progress,
            desc=f"train {kind}",
            state_path=state_path,
        )
        extra = {
            "train_config": configs[kind].to_dict(),
            "history": history,
            "seconds": time.perf_counter() - start,
            "split": split,
            "num_train_videos": len(data),
        }
        if distributed.current().is_main:
            extra["world_size"] = distributed.current().size
            save_head(path, model, dataset.classes, store.settings, extra)
            state_path.unlink(missing_ok=True)
        histories[kind] = history
    return histories


def _finished_history(path: Path, model: torch.nn.Module, config: TrainConfig, num_maps: int) -> list[dict] | None:
    """The history of a head already trained at ``path`` with the same settings, else None."""
    if not path.is_file():
        return None
    try:
        _, payload = load_head(path)
    except ValueError:
        return None
    extra = payload["extra"]
    same = (
        payload["config"] == model.config
        and extra.get("train_config") == config.to_dict()
        and extra.get("num_train_videos") == num_maps
    )
    return extra.get("history") if same else None


def _fits_in_memory(store: VideoMapStore, count: int, budget_bytes: int = 2 << 30) -> bool:
    # In-memory maps stay float16 as stored; above the budget they stay memory-mapped on
    # disk and the page cache decides what is resident.
    return count * store.num_frames * store.feature_dim * 2 <= budget_bytes


# -- evaluate --------------------------------------------------------------------
def order_pair_classes(dataset: VideoDataset) -> list[int]:
    """Classes that belong to a time-reversal pair, when the dataset declares them (the demo)."""
    info_path = dataset.root / "dataset.json"
    if not info_path.is_file():
        return []
    pairs = json.loads(info_path.read_text()).get("order_pairs", [])
    names = {name for pair in pairs for name in pair}
    return [i for i, c in enumerate(dataset.classes) if c in names]


def evaluate(
    store: VideoMapStore, run_dir: Path, split: str = "test", device: str = "auto", official_split: int | None = None
) -> dict:
    """Score every trained head of ``run_dir`` on ``split``; write JSON, CSV and PNG there."""
    device = resolve_device(device)
    dataset = store_dataset(store, official_split)
    data = MapDataset(store, dataset.clips(split), in_memory=_fits_in_memory(store, len(dataset.clips(split))))
    if len(data) == 0:
        raise DatasetError(f"no {split} VideoMaps in {store.root}")
    paired = order_pair_classes(dataset)
    results: dict = {
        "split": split,
        "num_videos": len(data),
        "missing_videos": data.missing,
        "classes": dataset.classes,
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
        if paired:
            mask = np.isin(labels, paired)
            figures["order_pairs_top1"] = float(np.mean(scores[mask].argmax(1) == labels[mask]))
            figures["appearance_top1"] = (
                float(np.mean(scores[~mask].argmax(1) == labels[~mask])) if (~mask).any() else None
            )
        cm = confusion_matrix(scores.argmax(1), labels, len(dataset.classes))
        # NaN (no test video of the class) becomes null in the JSON.
        figures["per_class_accuracy"] = [None if np.isnan(a) else float(a) for a in per_class_accuracy(cm)]
        _write_confusion_csv(run_dir / f"confusion_{kind}.csv", cm, dataset.classes)
        plot_confusion(
            cm,
            dataset.classes,
            run_dir / f"confusion_{kind}.png",
            f"{HEAD_LABELS[kind]}: top-1 {figures['top1']:.1%} on {split}",
        )
        np.save(run_dir / f"scores_{kind}.npy", scores)
        results["heads"][kind] = figures
    write_json(run_dir / "results.json", results)
    return results


def _check_compatible(meta: dict, store: VideoMapStore, dataset: VideoDataset, path: Path) -> None:
    trained = {k: v for k, v in meta["store_settings"].items() if k != "source"}
    now = {k: v for k, v in store.settings.items() if k != "source"}
    if trained != now:
        raise StoreError(f"{path} was trained on maps made with other settings than {store.root}")
    if meta["classes"] != dataset.classes:
        raise StoreError(f"{path} was trained on other classes than the dataset of {store.root}")


def _write_confusion_csv(path: Path, cm: np.ndarray, classes: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *classes])
        for name, row in zip(classes, cm, strict=False):
            writer.writerow([name, *row.tolist()])


def format_table(results: dict) -> str:
    heads = results["heads"]
    extra = any("order_pairs_top1" in f for f in heads.values())
    cols = ["top-1", "top-5", "mean class acc."] + (["order pairs top-1", "appearance top-1"] if extra else [])
    keys = ["top1", "top5", "mean_class_accuracy"] + (["order_pairs_top1", "appearance_top1"] if extra else [])
    width = max(len(HEAD_LABELS[k]) for k in heads) + 2
    lines = [f"{'model':<{width}}" + "".join(f"{c:>20}" for c in cols)]
    for kind, figures in heads.items():
        cells = "".join(f"{figures[k] * 100:>19.1f}%" if figures.get(k) is not None else f"{'-':>20}" for k in keys)
        lines.append(f"{HEAD_LABELS[kind]:<{width}}{cells}")
    return "\n".join(lines)


def run_folder(run_dir: Path, store: VideoMapStore, split: int) -> Path:
    """Where the heads of one split live: RUN/split<N> for official datasets, else RUN."""
    kind = (store.settings.get("source") or {}).get("kind")
    return run_dir / f"split{split}" if kind in OFFICIAL_KINDS else run_dir


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


# -- predict ---------------------------------------------------------------------
def predict_video(
    video: Path, run_dir: Path, head: str = "videomap", top: int = 5, device: str = "auto"
) -> list[tuple[str, float]]:
    """Top classes with probabilities for one video, with the run's own extraction settings."""
    device = resolve_device(device)
    model, meta = load_head(run_dir / f"{head}.pt", device)
    s = meta["store_settings"]
    encoder = FrameEncoder(s["backbone"], device=device, image_size=s["image_size"])
    videomap = video_to_map(video, encoder, s["frames"], FrameGeometry(s["image_size"], s["resize"]))
    with torch.inference_mode():
        probs = torch.softmax(model(torch.from_numpy(videomap)[None].to(device)), dim=1)[0].cpu()
    values, idx = probs.topk(min(top, len(meta["classes"])))
    return [(meta["classes"][i], float(p)) for p, i in zip(values.tolist(), idx.tolist(), strict=False)]


def dataset_for_extraction(
    kind: str,
    videos: Path,
    splits_dir: Path | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    train_list: Path | None = None,
    test_list: Path | None = None,
    classes_file: Path | None = None,
) -> VideoDataset:
    """Every video of the dataset, whatever its split: one store serves all splits."""
    if kind == "folder":
        return folder_dataset(videos, test_fraction=test_fraction, seed=seed)
    if kind == "list":
        if train_list is None or test_list is None:
            raise DatasetError("--dataset list needs --train-list and --test-list ('<path> <label>' lines)")
        return list_dataset(videos, train_list, test_list, classes_file)
    if splits_dir is None:
        raise DatasetError(f"--dataset {kind} needs --splits (the folder of the official split files)")
    return official_dataset(kind, videos, splits_dir, None)
