"""What the steps share: the heads a run holds, devices, the dataset a store was made from,
where a split's heads live, and whether maps fit in memory."""

from __future__ import annotations

from pathlib import Path

import torch

from tsmap.data.datasets import OFFICIAL_KINDS, DatasetError, VideoDataset, dataset_from_spec
from tsmap.videomap.store import StoreError, VideoMapStore

HEADS = ("videomap", "tsn")
HEAD_LABELS = {"videomap": "VideoMap head", "tsn": "TSN (25-frame average)"}
SCORES_KEYS_FILE = "scores_keys.json"
# The paths a dataset spec may name: any of them missing means the dataset moved.
DATASET_PATHS = ("root", "train_list", "test_list", "classes_file", "splits_dir")


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda asked, but PyTorch sees no CUDA GPU")
    return device


def store_dataset(store: VideoMapStore, split: int | None = None) -> VideoDataset:
    """The dataset the store was made from; ``split`` picks an official HMDB51/UCF101 split.

    A seeded split is the one the store recorded at its first extraction, whatever the
    folder holds now. When the dataset is no longer where the store says, the error says
    where it was and how to point the store at its new place.
    """
    spec = store.settings.get("source") or {}
    if not spec:
        raise StoreError(f"{store.root} does not say which dataset it was made from")
    try:
        return dataset_from_spec(spec, split, recorded_split=store.recorded_split())
    except DatasetError as exc:
        gone = [(k, Path(spec[k])) for k in DATASET_PATHS if spec.get(k) and not Path(spec[k]).exists()]
        if not gone:
            raise
        what, where = gone[0]
        how = (
            f"`tsmap extract --videos NEW_PLACE --store {store.root}`"
            if what == "root"
            else f"`tsmap extract` with the new place of its files and --store {store.root}"
        )
        noun, were, they = ("videos", "were", "they") if what == "root" else (what.replace("_", " "), "was", "it")
        raise DatasetError(
            f"the {noun} that {store.root} was made from {were} in {where}, which no longer exists; "
            f"if {they} moved, run {how}: it records the new place and keeps the maps"
        ) from exc


def fits_in_memory(store: VideoMapStore, count: int, budget_bytes: int = 2 << 30) -> bool:
    # In-memory maps stay float16 as stored; above the budget they stay memory-mapped on
    # disk and the page cache decides what is resident.
    return count * store.num_frames * store.feature_dim * 2 <= budget_bytes


def run_folder(run_dir: Path, store: VideoMapStore, split: int) -> Path:
    """Where the heads of one split live: RUN/split<N> for official datasets, else RUN."""
    kind = (store.settings.get("source") or {}).get("kind")
    return run_dir / f"split{split}" if kind in OFFICIAL_KINDS else run_dir
