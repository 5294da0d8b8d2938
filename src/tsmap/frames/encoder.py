"""Frame encoders: a 2D ConvNet plus the vectorisation V (global average pooling).

A ``FrameEncoder`` takes uint8 RGB frames (N x H x W x 3, as decoded) and returns
pooled features (N x L, float32). It owns the normalisation its weights expect, so
callers never see per-backbone constants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tsmap.frames.efficientnet_lite import FEATURE_DIM, fold_batchnorm, load_pretrained_lite0

BACKBONES = ("efficientnet_lite0",)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    feature_dim: int
    mean: tuple[float, float, float]  # on the 0-255 scale
    std: tuple[float, float, float]


# Lite0 was trained on TF-style inputs: (x - 127.5) / 127.5, i.e. mean = std = 0.5.
LITE0 = BackboneSpec("efficientnet_lite0", FEATURE_DIM, (127.5, 127.5, 127.5), (127.5, 127.5, 127.5))


def backbone_spec(name: str) -> BackboneSpec:
    if name == LITE0.name:
        return LITE0
    raise ValueError(f"unknown backbone {name!r}; available: {', '.join(BACKBONES)}")


class FrameEncoder:
    """Runs a pooled-feature ConvNet over frames in batches, in inference mode."""

    def __init__(self, backbone: str = "efficientnet_lite0", device: str = "cpu", batch_size: int = 16):
        self.spec = backbone_spec(backbone)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.model: nn.Module = fold_batchnorm(load_pretrained_lite0()).to(self.device)
        # channels_last lets oneDNN run the depthwise and 1x1 convs without reorders:
        # 2-3x faster than NCHW on CPU for this network.
        self.model = self.model.to(memory_format=torch.channels_last)
        self.amp = self.device.type == "cuda"
        mean = torch.tensor(self.spec.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.spec.std, device=self.device).view(1, 3, 1, 1)
        self._scale, self._shift = 1.0 / std, -mean / std

    @property
    def feature_dim(self) -> int:
        return self.spec.feature_dim

    def to_input(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 N x H x W x 3 -> normalised float N x 3 x H x W in channels_last layout."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        # NHWC memory permuted to NCHW *is* channels_last: no copy until the float cast.
        x = x.permute(0, 3, 1, 2).float()
        return x * self._scale + self._shift

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames of shape N x H x W x 3, got {frames.dtype} {frames.shape}")
        out = []
        for i in range(0, len(frames), self.batch_size):
            x = self.to_input(frames[i : i + self.batch_size])
            with torch.autocast(self.device.type, enabled=self.amp):
                out.append(self.model.features(x).float().cpu())
        return torch.cat(out).numpy()
