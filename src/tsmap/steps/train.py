"""Step 2, train: heads on the training maps of a store, into a run folder."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch

from tsmap import distributed
from tsmap.data.datasets import DatasetError
from tsmap.data.subsets import DEFAULT_VAL_FRACTION, carve_validation, clips_digest
from tsmap.fileio import folder_lock, seed_everything
from tsmap.finetune.provenance import check_store
from tsmap.heads import create_head
from tsmap.heads.checkpoint import load_head, save_head
from tsmap.steps.common import fits_in_memory, resolve_device, store_dataset
from tsmap.train_config import TrainConfig
from tsmap.training import train_head
from tsmap.videomap.loader import MapDataset
from tsmap.videomap.settings import MapSettings
from tsmap.videomap.store import VideoMapStore


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
    val_fraction: float = DEFAULT_VAL_FRACTION,
    val_seed: int = 0,
) -> dict[str, list[dict]]:
    """Train ``heads`` on the store's training maps less a validation part; write RUN/<head>.pt.

    ``val_fraction`` of each class's training videos (seeded by ``val_seed``) are held out:
    every epoch is scored on them and the best epoch's weights are kept. The checkpoint
    records the training and validation videos, so ``evaluate`` can prove that no test
    video was trained on. A head already trained with the same settings, maps and videos
    is kept (``force`` retrains).
    """
    device = resolve_device(device)
    dataset = store_dataset(store, official_split)
    check_store(store, dataset)  # a fine-tuned ConvNet must not have seen this split's test videos
    train_clips, val_clips = carve_validation(dataset.clips(split), val_fraction, val_seed)
    budget = int(memory_budget_gib * 2**30)
    in_memory = fits_in_memory(store, (len(train_clips) + len(val_clips)) * store.views, budget)
    # Every view a multi-view store holds: one drawn per map and epoch, their scores averaged on validation.
    data = MapDataset(store, train_clips, in_memory=in_memory, views=True)
    val_data = MapDataset(store, val_clips, in_memory=in_memory, views=True) if val_clips else None
    if len(data) == 0:
        raise DatasetError(f"no {split} VideoMaps in {store.root}: run `tsmap extract` first")
    missing = data.missing + (val_data.missing if val_data is not None else [])
    if missing:
        print(f"note: {len(missing)} {split} videos have no VideoMap (failed or not extracted); training without them")
    if len({c.label for c in data.clips}) < 2:
        print(f"warning: the training maps of {store.root} hold fewer than 2 classes; a classifier learns nothing")
    videos = {
        "split": split,
        "official_split": official_split,
        "train_keys": [c.key for c in data.clips],
        "val_keys": [c.key for c in val_data.clips] if val_data is not None else [],
        "train_digest": clips_digest(data.clips),
        "val_digest": clips_digest(val_data.clips if val_data is not None else []),
        "val_fraction": val_fraction,
    }
    histories = {}
    world = distributed.current()
    with folder_lock(run_dir, "run folder") if world.is_main else contextlib.nullcontext():
        for kind in heads:
            seed_everything(configs[kind].seed)  # the initial weights too, so a rerun gives the same head
            options = {"attention": attention, "attention_scoring": attention_scoring} if kind == "videomap" else {}
            model = create_head(kind, len(dataset.classes), store.num_frames, store.feature_dim, **options)
            path = run_dir / f"{kind}.pt"
            done = None if force else _finished_history(path, model, configs[kind], store, dataset.classes, videos)
            if done is not None:
                print(f"{kind}: already trained with these settings, maps and videos in {path} (--force retrains)")
                histories[kind] = done
                continue
            trained = _train_one(model, kind, path, data, val_data, configs[kind], device, show_progress)
            histories[kind], record = trained
            if world.is_main:
                extra = {**record, **videos, "world_size": world.size}
                save_head(path, model, dataset.classes, store.settings, extra)
                (run_dir / f"{kind}.training-state.pt").unlink(missing_ok=True)
    return histories


def _train_one(model, kind: str, path: Path, data, val_data, config: TrainConfig, device: str, show_progress: bool):
    """Train one head; returns its history and the checkpoint's record of the run."""
    start = time.perf_counter()
    # A killed run leaves its last finished epoch here; the next run continues from it.
    history = train_head(
        model,
        data,
        config,
        device=device,
        show_progress=show_progress,
        desc=f"train {kind}",
        state_path=path.with_name(f"{kind}.training-state.pt"),
        val_data=val_data,
    )
    record = {
        "train_config": config.to_dict(),
        "history": list(history),
        "seconds": time.perf_counter() - start,
        "num_train_videos": len(data),
        "num_val_videos": len(val_data) if val_data is not None else 0,
    }
    return history, record


def kept_epoch(history: list[dict]) -> dict:
    """The record of the epoch whose weights were kept (the best on validation, else the last)."""
    return next((r for r in history if r.get("kept")), history[-1])


def _finished_history(
    path: Path, model: torch.nn.Module, config: TrainConfig, store: VideoMapStore, classes: list[str], videos: dict
) -> list[dict] | None:
    """The history of a head already trained at ``path`` with the same settings, maps and videos, else None."""
    if not path.is_file():
        return None
    try:
        _, payload = load_head(path)
    except ValueError:
        return None
    extra = payload["extra"]
    try:
        trained_on = MapSettings.from_dict(payload.get("store_settings") or {})
    except TypeError:  # a checkpoint without the store's settings
        return None
    same = (
        payload["config"] == model.config
        and extra.get("train_config") == config.to_dict()
        and not trained_on.differences(store.map_settings)
        and payload.get("classes") == classes
        and extra.get("train_digest") == videos["train_digest"]
        and extra.get("val_digest") == videos["val_digest"]
    )
    return extra.get("history") if same else None
