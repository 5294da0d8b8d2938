"""Step 2, train: heads on the training maps of a store, into a run folder."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from tsmap import distributed
from tsmap.data.datasets import DatasetError
from tsmap.fileio import seed_everything
from tsmap.heads import create_head
from tsmap.heads.checkpoint import load_head, save_head
from tsmap.steps.common import fits_in_memory, resolve_device, store_dataset
from tsmap.training import TrainConfig, train_head
from tsmap.videomap.loader import MapDataset
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
) -> dict[str, list[dict]]:
    device = resolve_device(device)
    dataset = store_dataset(store, official_split)
    clips = dataset.clips(split)
    data = MapDataset(store, clips, in_memory=fits_in_memory(store, len(clips), int(memory_budget_gib * 2**30)))
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
        options = {"attention": attention, "attention_scoring": attention_scoring} if kind == "videomap" else {}
        model = create_head(kind, len(dataset.classes), store.num_frames, store.feature_dim, **options)
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


