"""Training-time augmentation of stored VideoMaps.

The features are frozen, so image augmentations (crops, flips) are no longer possible
once a map is stored. What remains is time: a **temporal crop** keeps a random window
of at least ``min_fraction`` of the map's rows and samples T rows uniformly from it,
as if the video had been sampled with another offset and a slightly different span.
Order is kept, so the arrow of time a model must learn is untouched.
"""

from __future__ import annotations

import torch

from tsmap.data.video import uniform_indices


def temporal_crop(
    videomap: torch.Tensor, min_fraction: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """T x L -> T x L: rows of a random window covering >= ``min_fraction`` of the map."""
    if not 0 < min_fraction <= 1:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    t = videomap.shape[0]
    low = max(1, round(min_fraction * t))
    length = int(torch.randint(low, t + 1, (1,), generator=generator))
    start = int(torch.randint(0, t - length + 1, (1,), generator=generator))
    idx = torch.from_numpy(start + uniform_indices(length, t))
    return videomap.index_select(0, idx)


def temporal_crop_batch(maps: torch.Tensor, min_fraction: float) -> torch.Tensor:
    """B x T x L: an independent temporal crop for every map (1.0 = unchanged)."""
    if min_fraction >= 1:
        return maps
    return torch.stack([temporal_crop(m, min_fraction) for m in maps])


def feature_dropout_batch(maps: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """B x T x L: each map loses a random ``p`` of its feature columns (the same columns on
    every row, so no frame is favoured), the rest scaled by 1 / (1 - p). 0 = unchanged."""
    if p <= 0:
        return maps
    keep = torch.rand(maps.shape[0], 1, maps.shape[2], generator=generator) >= p
    return maps * keep.to(maps.dtype) / (1 - p)


def mixup_batch(
    maps: torch.Tensor, labels: torch.Tensor, alpha: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mixup (Zhang et al., 2018): maps mixed with a shuffled copy of the batch in the
    proportion lam ~ Beta(alpha, alpha); returns (maps, labels, shuffled labels, lam).
    Rows are mixed row by row, so both maps' order is kept. alpha 0 = unchanged."""
    if alpha <= 0:
        return maps, labels, labels, 1.0
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(maps.shape[0], generator=generator)
    return lam * maps + (1 - lam) * maps[perm], labels, labels[perm], lam
