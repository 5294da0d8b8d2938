"""The real-footage benchmark's generator (benchmarks/real_footage_data.py): labels match the motion."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

pytest.importorskip("skimage.data")
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import real_footage_data as rfd  # noqa: E402


def _mean_shift_x(path: Path) -> float:
    """Mean horizontal shift of the content between consecutive frames (phase correlation), pixels."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="gray").astype(np.float32) for f in container.decode(video=0)]
    return float(np.mean([cv2.phaseCorrelate(a, b)[0][0] for a, b in zip(frames, frames[1:], strict=False)]))


def test_a_mirrored_pan_keeps_its_direction(tmp_path):
    # Version 1 mirrored the rendered frames of a camera video at random: half of the pans
    # (and turns) then moved the other way from their label.
    plan = rfd.Plan(per_class=1, seed=0, opencv_root=None)
    shifts: dict[str, list[float]] = {}
    flips: dict[str, set[bool]] = {}
    for name in ("pan_right", "pan_left"):
        label = plan.classes.index(name)
        for index in range(8):
            record = rfd._make_video(plan, tmp_path, label, index)
            flips.setdefault(name, set()).add(record["flip"])
            shifts.setdefault(name, []).append(_mean_shift_x(tmp_path / record["path"]))
    assert flips == {"pan_right": {True, False}, "pan_left": {True, False}}, "8 draws without both flips"
    # One direction for every pan right, mirrored or not, and the other for every pan left.
    right = np.sign(shifts["pan_right"][0])
    assert all(s * right > 0.2 for s in shifts["pan_right"]), shifts
    assert all(s * right < -0.2 for s in shifts["pan_left"]), shifts
