"""The steps a user runs: extract -> train -> evaluate -> predict.

Each step reads and writes plain files (a store folder, a run folder), so steps can
be rerun, resumed and mixed; the CLI and the demo are thin layers over these functions.
"""

from __future__ import annotations

import contextlib
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
from tsmap.evaluation.fusion import TSN_WEIGHTS, FusionError, fuse_runs
from tsmap.evaluation.metrics import confusion_matrix, per_class_accuracy, summarize
from tsmap.evaluation.plots import plot_confusion
from tsmap.frames.encoder import STREAMS, FrameEncoder
from tsmap.frames.flow import make_flow
from tsmap.heads.checkpoint import load_head, save_head
from tsmap.heads.tsn import TSNHead
from tsmap.heads.videomap_head import VideoMapHead
from tsmap.training import TrainConfig, score_maps, seed_everything, train_head
from tsmap.videomap.extract import (
    ExtractionSummary,
    encoder_for_store,
    extract_clips,
    extraction_settings,
    flow_from_settings,
    shard,
    video_to_map,
)
from tsmap.videomap.loader import MapDataset
from tsmap.videomap.store import StoreError, VideoMapStore

HEADS = ("videomap", "tsn")
HEAD_LABELS = {"videomap": "VideoMap head", "tsn": "TSN (25-frame average)"}
SCORES_KEYS_FILE = "scores_keys.json"


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
    weights: Path | None = None  # a `tsmap finetune` or BN-Inception checkpoint (None: Lite0's ImageNet weights)
    image_size: int = 224
    resize: int = 256
    batch_size: int = 16
    device: str = "auto"
    strict: bool = False
    decode_workers: int = 2
    engine: str = "auto"  # frame ConvNet runtime: torch, onnx (ONNX Runtime, CPU) or auto
    stream: str = "rgb"  # rgb (frames) or flow (5-field optical flow stacks)
    flow: str = "dis"  # optical flow method of the flow stream: dis or tvl1
    flow_preset: str | None = None  # None: the method's default (dis: medium)


def check_stream(store_dir: Path, stream: str) -> None:
    """A store holds one stream: asking another of an existing store is named as such, up front."""
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; choose from {', '.join(STREAMS)}")
    if not (store_dir / "store.json").is_file():
        return
    have = VideoMapStore.open(store_dir).settings.get("stream", "rgb")
    if have != stream:
        raise StoreError(
            f"{store_dir} holds {have} VideoMaps and cannot take {stream} ones; "
            f"give the {stream} stream its own --store folder"
        )


def extract(
    dataset: VideoDataset, store_dir: Path, options: ExtractOptions, show_progress: bool = True
) -> tuple[VideoMapStore, ExtractionSummary]:
    device = resolve_device(options.device)
    world = distributed.current()
    check_stream(store_dir, options.stream)
    flow = make_flow(options.flow, options.flow_preset) if options.stream == "flow" else None
    encoder = FrameEncoder(
        options.backbone,
        device=device,
        batch_size=options.batch_size,
        engine=options.engine,
        image_size=options.image_size,
        stream=options.stream,
        weights=options.weights,
    )
    geometry = FrameGeometry(options.image_size, options.resize)
    settings = extraction_settings(encoder, options.frames, geometry, flow)
    # Under torchrun, rank 0 creates the store and clears what a killed run left before
    # the others start writing; then each rank maps its own shard.
    if world.is_main:
        store = VideoMapStore.create_or_open(store_dir, settings, source=dataset.spec)
        store.remove_stale_temporaries()
    distributed.barrier()
    if not world.is_main:
        store = VideoMapStore.create_or_open(store_dir, settings, source=dataset.spec)
    # Flow is computed in the decode threads while PyTorch encodes the previous video: on
    # CPU, PyTorch gets the cores those threads leave (on 2 cores, 1 thread: its OpenMP
    # threads otherwise wait on cores the flow holds: 0.23 vs 0.25 s a video measured on
    # idle cores, 0.29 vs 0.54 s on busy ones).
    threads = max(1, torch.get_num_threads() - options.decode_workers)
    with _torch_threads(threads if flow is not None and encoder.device.type == "cpu" else None):
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
            flow=flow,
        )
    summary.engine = {"onnx": "ONNX Runtime", "torch": f"PyTorch ({device})"}[encoder.engine]
    if flow is not None:
        summary.engine += f", {flow.method} {flow.preset} flow"
    if world.size > 1:
        summary = ExtractionSummary.combine(distributed.gather_objects(summary))
        distributed.barrier()
        if world.is_main:
            store.clear_failures({key for key in store.failures() if store.has(key)})
    return store, summary


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """PyTorch's intra-op threads set to ``threads`` inside the block (None: unchanged)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def store_dataset(store: VideoMapStore, split: int | None = None) -> VideoDataset:
    """The dataset the store was made from; ``split`` picks an official HMDB51/UCF101 split."""
    spec = store.settings.get("source") or {}
    if not spec:
        raise StoreError(f"{store.root} does not say which dataset it was made from")
    return open_dataset(spec, split)


# -- train -----------------------------------------------------------------------
def make_head(
    kind: str, num_classes: int, store: VideoMapStore, attention: str = "A0A1A2", attention_scoring: str = "rows"
) -> torch.nn.Module:
    if kind == "videomap":
        return VideoMapHead(
            num_classes, store.num_frames, store.feature_dim, attention, attention_scoring=attention_scoring
        )
    if kind == "tsn":
        return TSNHead(num_classes, store.feature_dim)
    raise ValueError(f"unknown head {kind!r}; choose from {', '.join(HEADS)}")


def train(
    store: VideoMapStore,
    run_dir: Path,
    heads: list[str],
    configs: dict[str, TrainConfig],
    attention: str = "A0A1A2",
    attention_scoring: str = "rows",
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
        model = make_head(kind, len(dataset.classes), store, attention, attention_scoring)
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
    data = MapDataset(store, dataset.clips(split), in_memory=_fits_in_memory(store, len(dataset.clips(split))))
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
        _write_confusion_csv(run_dir / f"confusion_{kind}.csv", cm, dataset.classes)
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


def _write_confusion_csv(path: Path, cm: np.ndarray, classes: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *classes])
        for name, row in zip(classes, cm, strict=False):
            writer.writerow([name, *row.tolist()])


GROUP_COLUMNS = {
    "order_pairs_top1": "order pairs top-1",
    "motion_pairs_top1": "motion pairs top-1",
    "appearance_top1": "appearance top-1",
}


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


# -- fuse ------------------------------------------------------------------------
def _read_run(run_dir: Path) -> tuple[dict, dict]:
    """results.json and scores_keys.json of an evaluated run, or a FusionError saying what is missing."""
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        splits = sorted(p.name for p in run_dir.glob("split[123]") if (p / "results.json").is_file())
        hint = f" (official splits: give {run_dir / splits[0]})" if splits else "; run `tsmap evaluate` on it first"
        raise FusionError(f"{run_dir} has no results.json{hint}")
    keys_path = run_dir / SCORES_KEYS_FILE
    if not keys_path.is_file():
        raise FusionError(
            f"{run_dir} has no {SCORES_KEYS_FILE} (evaluated by an older tsmap): run `tsmap evaluate` on it again"
        )
    try:
        return json.loads(results_path.read_text()), json.loads(keys_path.read_text())
    except json.JSONDecodeError as exc:
        raise FusionError(f"{run_dir}: unreadable results ({exc})") from exc


def fuse(
    rgb_run: Path,
    flow_run: Path,
    out_dir: Path,
    weights: tuple[float, float] = TSN_WEIGHTS,
    kind: str = "raw",
) -> dict:
    """Fuse the test scores of an RGB run and a flow run, head by head; write fusion.json and plots.

    The runs must have been evaluated (``evaluate``) on the same videos with the same
    classes; their scores are aligned by video key. Writes ``out_dir/fusion.json`` (top-1,
    top-5 and mean class accuracy of each stream and of the fusion, per head),
    ``out_dir/scores_fusion_<head>.npy`` with ``scores_keys.json`` (rows in the RGB run's
    order) and the fused VideoMap head's confusion matrix (PNG and CSV).
    """
    (rgb_results, rgb_keys), (flow_results, flow_keys) = _read_run(rgb_run), _read_run(flow_run)
    streams = (rgb_results.get("stream", "rgb"), flow_results.get("stream", "flow"))
    if streams != ("rgb", "flow"):
        raise FusionError(
            f"--runs takes the RGB run first and the flow run second; {rgb_run} holds {streams[0]} scores and "
            f"{flow_run} {streams[1]} ones"
        )
    if rgb_keys.get("split") != flow_keys.get("split"):
        raise FusionError(f"{rgb_run} was evaluated on {rgb_keys.get('split')}, {flow_run} on {flow_keys.get('split')}")
    heads = [k for k in HEADS if k in rgb_results["heads"] and k in flow_results["heads"]]
    if not heads:
        raise FusionError(f"{rgb_run} and {flow_run} have no evaluated head in common")
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict = {
        "runs": {"rgb": str(rgb_run), "flow": str(flow_run)},
        "weights": {"rgb": weights[0], "flow": weights[1]},
        "scores": kind,
        "split": rgb_keys.get("split"),
        "num_videos": len(rgb_keys["keys"]),
        "classes": rgb_keys["classes"],
        "heads": {},
    }
    for head in heads:
        scores = []
        for run in (rgb_run, flow_run):
            path = run / f"scores_{head}.npy"
            if not path.is_file():
                raise FusionError(f"{path} is missing: run `tsmap evaluate` on {run} again")
            scores.append(np.load(path, allow_pickle=False))
        fused = fuse_runs(
            scores,
            [rgb_keys["keys"], flow_keys["keys"]],
            [np.asarray(rgb_keys["labels"]), np.asarray(flow_keys["labels"])],
            [rgb_keys["classes"], flow_keys["classes"]],
            weights,
            kind,
            names=("rgb", "flow"),
        )
        if groups := rgb_keys.get("groups"):
            for name, values in zip(("rgb", "flow", "fusion"), [*fused["streams"], fused["fused"]], strict=True):
                fused["figures"][name] |= group_accuracies(values, fused["labels"], groups)
        summary["heads"][head] = fused["figures"]
        np.save(out_dir / f"scores_fusion_{head}.npy", fused["fused"])
        if head == "videomap":
            cm = confusion_matrix(fused["fused"].argmax(1), fused["labels"], len(rgb_keys["classes"]))
            _write_confusion_csv(out_dir / "confusion_fusion_videomap.csv", cm, rgb_keys["classes"])
            top1 = fused["figures"]["fusion"]["top1"]
            plot_confusion(
                cm,
                rgb_keys["classes"],
                out_dir / "confusion_fusion_videomap.png",
                f"VideoMap head, RGB + flow ({weights[0]:g} : {weights[1]:g}): top-1 {top1:.1%}",
            )
    write_json(out_dir / SCORES_KEYS_FILE, {**rgb_keys})
    write_json(out_dir / "fusion.json", summary)
    return summary


def format_fusion_table(summary: dict) -> str:
    """The paper's Table I layout: rows = heads, columns = RGB, Flow, Fusion (top-1)."""
    heads = summary["heads"]
    width = max(len(HEAD_LABELS[k]) for k in heads) + 2
    w = summary["weights"]
    cols = ["RGB", "Flow", f"Fusion ({w['rgb']:g} : {w['flow']:g})"]
    lines = [f"{'top-1':<{width}}" + "".join(f"{c:>20}" for c in cols)]
    for kind, figures in heads.items():
        cells = "".join(f"{figures[s]['top1'] * 100:>19.1f}%" for s in ("rgb", "flow", "fusion"))
        lines.append(f"{HEAD_LABELS[kind]:<{width}}{cells}")
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


# -- predict ---------------------------------------------------------------------
def predict_video(
    video: Path, run_dir: Path, head: str = "videomap", top: int = 5, device: str = "auto"
) -> list[tuple[str, float]]:
    """Top classes with probabilities for one video, with the run's own extraction settings."""
    device = resolve_device(device)
    model, meta = load_head(run_dir / f"{head}.pt", device)
    s = meta["store_settings"]
    encoder = encoder_for_store(s, device)
    geometry = FrameGeometry(s["image_size"], s["resize"])
    videomap = video_to_map(video, encoder, s["frames"], geometry, flow_from_settings(s))
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
    split: int | None = None,
) -> VideoDataset:
    """Every video of the dataset, whatever its split: one store serves all splits.

    ``split`` (official datasets): only that split's clips, as train and test.
    """
    if kind == "folder":
        return folder_dataset(videos, test_fraction=test_fraction, seed=seed)
    if kind == "list":
        if train_list is None or test_list is None:
            raise DatasetError("--dataset list needs --train-list and --test-list ('<path> <label>' lines)")
        return list_dataset(videos, train_list, test_list, classes_file)
    if splits_dir is None:
        raise DatasetError(f"--dataset {kind} needs --splits (the folder of the official split files)")
    return official_dataset(kind, videos, splits_dir, split)
