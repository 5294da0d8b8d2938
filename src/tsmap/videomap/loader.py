"""VideoMaps from a store as a PyTorch dataset (memory-mapped, one map per item)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from tsmap.data.datasets import Clip
from tsmap.videomap.store import VideoMapStore


class MapDataset(Dataset):
    """(map as float32 T x L tensor, label). Only clips whose map exists are kept.

    With ``views`` and a multi-view store, an item is one of its video's V views: in
    training the one ``set_epoch`` draws (seeded by seed and epoch, so a resumed run draws
    the same), view 0 (the centre crop) before that; ``view(v)`` is the dataset of view v
    alone (``views`` 1), for scoring every view (``tsmap.training.score_maps`` averages them).
    """

    def __init__(self, store: VideoMapStore, clips: Sequence[Clip], in_memory: bool = False, views: bool = False):
        self.store = store
        self.views = self._stored = store.views if views else 1  # views served; views read
        mapped = store.complete if self._stored > 1 else store.has
        self.clips = [c for c in clips if mapped(c.key)]
        self.missing = [c.key for c in clips if not mapped(c.key)]
        self.labels = np.array([c.label for c in self.clips], dtype=np.int64)
        self._drawn: np.ndarray | None = None  # the view of each item this epoch
        self._view: int | None = None  # one view for every item
        # Small stores (the demo) are read once; large ones stay memory-mapped.
        read = store.read_views if self._stored > 1 else store.read
        self._cache = [torch.from_numpy(np.array(read(c.key))) for c in self.clips] if in_memory else None

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int, seed: int = 0) -> None:
        """Draw each item's view for training epoch ``epoch`` (nothing to draw with one view)."""
        if self.views > 1 and self._view is None:
            self._drawn = np.random.default_rng([seed, epoch]).integers(self.views, size=len(self))

    def view(self, v: int) -> MapDataset:
        """The same videos, every item their view ``v`` (0: the centre crop)."""
        if not 0 <= v < self._stored:
            raise IndexError(f"view {v} of {self._stored}")
        out = copy.copy(self)
        out._view, out._drawn, out.views = v, None, 1
        return out

    def _view_of(self, i: int) -> int:
        if self._view is not None:
            return self._view
        return int(self._drawn[i]) if self._drawn is not None else 0

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        v = self._view_of(i) if self._stored > 1 else 0
        if self._cache is not None:
            m = self._cache[i][v] if self._stored > 1 else self._cache[i]
        else:
            m = torch.from_numpy(np.array(self.store.read_view(self.clips[i].key, v)))
        return m.float(), int(self.labels[i])
