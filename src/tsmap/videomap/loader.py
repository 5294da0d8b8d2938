"""VideoMaps from a store as a PyTorch dataset (memory-mapped, one map per item)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from tsmap.data.datasets import Clip
from tsmap.videomap.store import VideoMapStore


class MapDataset(Dataset):
    """(map as float32 T x L tensor, label). Only clips whose map exists are kept."""

    def __init__(self, store: VideoMapStore, clips: Sequence[Clip], in_memory: bool = False):
        self.store = store
        self.clips = [c for c in clips if store.has(c.key)]
        self.missing = [c.key for c in clips if not store.has(c.key)]
        self.labels = np.array([c.label for c in self.clips], dtype=np.int64)
        # Small stores (the demo) are read once; large ones stay memory-mapped.
        self._cache = [torch.from_numpy(np.array(store.read(c.key))) for c in self.clips] if in_memory else None

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self._cache is not None:
            m = self._cache[i]
        else:
            m = torch.from_numpy(np.array(self.store.read(self.clips[i].key)))
        return m.float(), int(self.labels[i])
