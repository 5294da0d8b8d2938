"""Per-feature standardisation of VideoMaps, fitted on the training maps.

Pooled ConvNet features live on very different scales per channel (Lite0's ReLU6
outputs range from ~0 to ~6); standardising each of the L columns lets the heads
train with plain SGD at the paper's learning rate. The statistics are buffers of the
head, so a saved head carries them to evaluation and prediction.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


class FeatureStandardizer(nn.Module):
    def __init__(self, feature_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(feature_dim))
        self.register_buffer("std", torch.ones(feature_dim))

    @torch.no_grad()
    def fit(self, batches: Iterable[torch.Tensor]) -> None:
        """Column statistics over batches of maps (B x T x L), streamed in float64."""
        total = torch.zeros_like(self.mean, dtype=torch.float64)
        squares = torch.zeros_like(total)
        count = 0
        for maps in batches:
            flat = maps.reshape(-1, maps.shape[-1]).double()
            total += flat.sum(0)
            squares += (flat * flat).sum(0)
            count += flat.shape[0]
        if count < 2:
            raise ValueError("need at least two rows to fit feature statistics")
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(0) * count / (count - 1)
        self.mean.copy_(mean.float())
        self.std.copy_(var.sqrt().float().clamp_min(1e-3))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return (maps - self.mean) / self.std
