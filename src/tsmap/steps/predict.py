"""Predict: the top classes of new videos, mapped with a run's own extraction settings."""

from __future__ import annotations

from pathlib import Path

import torch

from tsmap.heads.checkpoint import load_head
from tsmap.steps.common import resolve_device
from tsmap.videomap.extract import encoder_for_store, flow_from_settings, video_to_map
from tsmap.videomap.settings import MapSettings


def predict_video(
    video: Path, run_dir: Path, head: str = "videomap", top: int = 5, device: str = "auto"
) -> list[tuple[str, float]]:
    """Top classes with probabilities for one video, with the run's own extraction settings."""
    device = resolve_device(device)
    model, meta = load_head(run_dir / f"{head}.pt", device)
    settings = MapSettings.from_dict(meta["store_settings"])
    encoder = encoder_for_store(settings, device)
    videomap = video_to_map(video, encoder, settings.frames, settings.geometry, flow_from_settings(settings))
    with torch.inference_mode():
        probs = torch.softmax(model(torch.from_numpy(videomap)[None].to(device)), dim=1)[0].cpu()
    values, idx = probs.topk(min(top, len(meta["classes"])))
    return [(meta["classes"][i], float(p)) for p, i in zip(values.tolist(), idx.tolist(), strict=False)]


