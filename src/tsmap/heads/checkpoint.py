"""Saving and loading trained heads safely (``torch.load(weights_only=True)``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from tsmap.heads.ablation_heads import AlexNetHead, LSTMHead, OneLayerHead
from tsmap.heads.tsn import TSNHead
from tsmap.heads.videomap_head import VideoMapHead

CHECKPOINT_FORMAT = 1


def build_head(config: dict) -> nn.Module:
    cfg = dict(config)
    kind = cfg.pop("head")
    if kind == "videomap":
        # Heads saved before the per-row attention branch used the global one.
        cfg.setdefault("attention_scoring", "global")
        return VideoMapHead(**cfg)
    if kind == "tsn":
        return TSNHead(**cfg)
    # The other designs of the paper's Table II (tsmap report).
    if kind == "conv1":
        return OneLayerHead(**cfg)
    if kind == "alexnet":
        return AlexNetHead(**cfg)
    if kind == "lstm":
        return LSTMHead(**cfg)
    raise ValueError(f"unknown head {kind!r}")


def save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` to a temp file, then rename: ``path`` holds the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_head(
    path: Path, model: nn.Module, classes: list[str], store_settings: dict, extra: dict | None = None
) -> None:
    """Write atomically: a checkpoint is either the old one or the new one, never half."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": model.config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "classes": list(classes),
        "store_settings": store_settings,
        "extra": extra or {},
    }
    save_atomic(payload, path)


def load_head(path: Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    """The head in eval mode, and the checkpoint's metadata (classes, store settings, ...)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise ValueError(f"{path} is not a tsmap checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a tsmap checkpoint (format {CHECKPOINT_FORMAT})")
    model = build_head(payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.to(device).eval()
    return model, payload
