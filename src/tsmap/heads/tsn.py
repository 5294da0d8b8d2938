"""The TSN baseline on the same frozen features: a per-frame linear classifier.

Training follows TSN's segment consensus: the map's T rows are cut into K = 3 equal
segments, one random row is drawn from each, and the K frame scores are averaged.
Testing follows TSN's protocol: ``test_frames`` rows (25) spread uniformly over the video,
scores averaged; ``test_frames=0`` averages every row of the map (``tsmap report``'s Fig. 5,
where the map of T' rows is the T' frames tested). The order of frames plays no part: that
is the point of the baseline.
"""

from __future__ import annotations

import torch
from torch import nn

from tsmap.data.video import uniform_indices
from tsmap.heads.standardize import FeatureStandardizer

TRAIN_SEGMENTS = 3
TEST_FRAMES = 25
ALL_ROWS = 0  # test_frames value: average every row of the map


class TSNHead(nn.Module):
    def __init__(self, num_classes: int, feature_dim: int, dropout: float = 0.8, test_frames: int = TEST_FRAMES):
        super().__init__()
        if test_frames < 0:
            raise ValueError(f"test_frames must be at least 0 (0: every row), got {test_frames}")
        self.config = {
            "head": "tsn",
            "num_classes": num_classes,
            "feature_dim": feature_dim,
            "dropout": dropout,
            "test_frames": test_frames,
        }
        self.test_frames = test_frames
        self.standardize = FeatureStandardizer(feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feature_dim, num_classes)

    def frame_scores(self, maps: torch.Tensor) -> torch.Tensor:
        """B x T x L -> B x T x classes."""
        return self.fc(self.dropout(self.standardize(maps.float())))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        b, t, _ = maps.shape
        if self.training:
            # One random row from each of K equal segments (segment consensus).
            bounds = torch.linspace(0, t, TRAIN_SEGMENTS + 1, device=maps.device)
            lo, width = bounds[:-1], (bounds[1:] - bounds[:-1])
            offsets = torch.rand(b, TRAIN_SEGMENTS, device=maps.device) * width
            idx = (lo + offsets).long().clamp_(0, t - 1)
        elif self.test_frames == ALL_ROWS:
            return self.frame_scores(maps).mean(dim=1)
        else:
            idx = torch.from_numpy(uniform_indices(t, self.test_frames)).to(maps.device).expand(b, -1)
        rows = torch.gather(maps, 1, idx.unsqueeze(-1).expand(-1, -1, maps.shape[2]))
        return self.frame_scores(rows).mean(dim=1)
