"""Predict: the top classes of new videos, mapped with a run's own extraction settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tsmap.heads.checkpoint import load_head
from tsmap.steps.common import resolve_device
from tsmap.steps.join import part_settings
from tsmap.videomap.extract import encoder_for_store, flow_from_settings, video_to_maps
from tsmap.videomap.settings import MapSettings


@dataclass
class Run:
    """A trained head with what it needs to classify new videos: its classes and the
    settings of the maps it was trained on (the same ConvNet, T and geometry map new videos;
    a head trained on a multi-view store scores every view and averages, as evaluation does;
    one trained on a joined store maps the video with each part's settings, side by side)."""

    head: torch.nn.Module
    classes: list[str]
    settings: MapSettings
    device: str = "cpu"

    def predict(self, video: str | Path, top: int = 5) -> list[tuple[str, float]]:
        """The ``top`` classes of one video with their probabilities, best first."""
        maps = np.concatenate([self._maps(video, part) for part in part_settings(self.settings)], axis=-1)
        with torch.inference_mode():
            scores = self.head(torch.from_numpy(maps).to(self.device)).mean(0)  # raw scores, views averaged
            probs = torch.softmax(scores, dim=0).cpu()
        values, idx = probs.topk(min(top, len(self.classes)))
        return [(self.classes[i], float(p)) for p, i in zip(values.tolist(), idx.tolist(), strict=True)]

    def _maps(self, video: str | Path, settings: MapSettings) -> np.ndarray:
        """The video's maps (views x T x L) as ``settings`` make them (one part of a joined store's)."""
        encoder = encoder_for_store(settings, self.device)
        flow = flow_from_settings(settings)
        return video_to_maps(video, encoder, settings.frames, settings.geometry, flow, settings.view_spec)


def load_run(run_dir: str | Path, head: str = "videomap", device: str = "auto") -> Run:
    """The trained ``head`` ("videomap" or "tsn") of a run folder."""
    device = resolve_device(device)
    model, meta = load_head(Path(run_dir) / f"{head}.pt", device)
    return Run(model, meta["classes"], MapSettings.from_dict(meta["store_settings"]), device)


def predict_video(
    video: Path, run_dir: Path, head: str = "videomap", top: int = 5, device: str = "auto"
) -> list[tuple[str, float]]:
    """Top classes with probabilities for one video, with the run's own extraction settings."""
    return load_run(run_dir, head, device).predict(video, top)
