"""Saving and loading trained heads safely (``torch.load(weights_only=True)``)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tsmap.fileio import save_torch
from tsmap.heads import create_head

CHECKPOINT_FORMAT = 1


class CheckpointError(ValueError):
    """A file that is not a usable tsmap checkpoint (named, with the reason)."""


def build_head(config: dict) -> nn.Module:
    """The head a checkpoint's ``config`` describes (untrained)."""
    cfg = dict(config)
    kind = cfg.pop("head")
    if kind == "videomap":
        # Heads saved before the per-row attention branch used the global one.
        cfg.setdefault("attention_scoring", "global")
    return create_head(kind, cfg.pop("num_classes"), cfg.pop("num_frames", 0), cfg.pop("feature_dim"), **cfg)


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
    save_torch(payload, path)


def load_head(path: Path, device: str = "cpu") -> tuple[nn.Module, dict]:
    """The head in eval mode, and the checkpoint's metadata (classes, store settings, ...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError as exc:
        raise CheckpointError(f"{path} cannot be read (permission denied)") from exc
    except Exception as exc:  # torch raises several types for a truncated, empty or foreign file
        why = "an empty file" if path.stat().st_size == 0 else "truncated, or not a file torch.save wrote"
        raise CheckpointError(f"{path} is not a tsmap checkpoint ({why}); train it again") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a tsmap checkpoint (format {CHECKPOINT_FORMAT})")
    try:
        model = build_head(payload["config"])
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} holds a head this tsmap cannot build ({str(exc)[:120]})") from exc
    model.to(device).eval()
    return model, payload
