"""Heads that classify a VideoMap, and ``create_head``: the one place a head is built by name.

Kinds: ``videomap`` (the paper's head ConvNet with temporal attention), ``tsn`` (the
frame-averaging baseline) and the other designs of the paper's Table II, ``conv1``,
``alexnet``, ``lstm``. Every head keeps the arguments it was built with in ``config``
(its ``head`` key is the kind), so ``create_head(**head.config)`` builds it again.
"""

from __future__ import annotations

from torch import nn

from tsmap.heads.ablation_heads import AlexNetHead, LSTMHead, OneLayerHead
from tsmap.heads.tsn import TSNHead
from tsmap.heads.videomap_head import VideoMapHead

HEAD_KINDS = ("videomap", "tsn", "conv1", "alexnet", "lstm")


def create_head(head: str, num_classes: int, num_frames: int, feature_dim: int, **options) -> nn.Module:
    """A new head of kind ``head`` for maps of ``num_frames`` x ``feature_dim`` and ``num_classes``.

    ``options`` go to the head's class (e.g. ``attention="A0"``, ``dropout=0.3``).
    """
    if head == "videomap":
        return VideoMapHead(num_classes, num_frames, feature_dim, **options)
    if head == "tsn":
        return TSNHead(num_classes, feature_dim, **options)
    if head == "conv1":
        return OneLayerHead(num_classes, num_frames, feature_dim, **options)
    if head == "alexnet":
        return AlexNetHead(num_classes, num_frames, feature_dim, **options)
    if head == "lstm":
        return LSTMHead(num_classes, num_frames, feature_dim, **options)
    raise ValueError(f"unknown head {head!r}; choose from {', '.join(HEAD_KINDS)}")


__all__ = ["HEAD_KINDS", "AlexNetHead", "LSTMHead", "OneLayerHead", "TSNHead", "VideoMapHead", "create_head"]
