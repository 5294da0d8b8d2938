"""Subsets of a split: the validation videos carved from the training ones, and digests.

Every choice (epochs, learning rates, designs) is made on validation videos taken from
the training list, never on the test list, which is scored once at the end. The carve is
seeded and stratified, and depends only on the training list itself, so the same list
always gives the same validation videos.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from tsmap.data.datasets import Clip, DatasetError

DEFAULT_VAL_FRACTION = 0.1
MIN_CLASS_FOR_VAL = 5  # a class with fewer training videos keeps them all for training


def carve_validation(clips: list[Clip], fraction: float, seed: int = 0) -> tuple[list[Clip], list[Clip]]:
    """(train, validation): ``fraction`` of each class's clips (at least one from a class of
    ``MIN_CLASS_FOR_VAL`` or more, never all of them), drawn with ``seed``."""
    if not 0 <= fraction < 1:
        raise DatasetError(f"the validation fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return list(clips), []
    by_class: dict[int, list[Clip]] = {}
    for clip in sorted(clips, key=lambda c: c.key):
        by_class.setdefault(clip.label, []).append(clip)
    train, val = [], []
    for label in sorted(by_class):
        group = by_class[label]
        count = min(len(group) - 1, int(round(fraction * len(group))))
        if count == 0 and len(group) >= MIN_CLASS_FOR_VAL:
            count = 1
        order = np.random.default_rng([seed, label]).permutation(len(group))
        chosen = set(order[:count].tolist())
        for i, clip in enumerate(group):
            (val if i in chosen else train).append(clip)
    return sorted(train, key=lambda c: c.key), sorted(val, key=lambda c: c.key)


def clips_digest(clips: Iterable[Clip]) -> str:
    """SHA-256 of the sorted (key, label) pairs: equal digests mean the same videos and labels."""
    lines = sorted(f"{c.key}\t{c.label}" for c in clips)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()
