"""What the steps share: the heads a run holds, devices, the dataset a store was made from,
where a split's heads live, and whether maps fit in memory."""

from __future__ import annotations

from pathlib import Path

import torch

from tsmap.data.datasets import OFFICIAL_KINDS, VideoDataset, open_dataset
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


def store_dataset(store: VideoMapStore, split: int | None = None) -> VideoDataset:
    """The dataset the store was made from; ``split`` picks an official HMDB51/UCF101 split."""
    spec = store.settings.get("source") or {}
    if not spec:
        raise StoreError(f"{store.root} does not say which dataset it was made from")
    return open_dataset(spec, split)



def fits_in_memory(store: VideoMapStore, count: int, budget_bytes: int = 2 << 30) -> bool:
    # In-memory maps stay float16 as stored; above the budget they stay memory-mapped on
    # disk and the page cache decides what is resident.
    return count * store.num_frames * store.feature_dim * 2 <= budget_bytes



def run_folder(run_dir: Path, store: VideoMapStore, split: int) -> Path:
    """Where the heads of one split live: RUN/split<N> for official datasets, else RUN."""
    kind = (store.settings.get("source") or {}).get("kind")
    return run_dir / f"split{split}" if kind in OFFICIAL_KINDS else run_dir


