"""Late fusion of two streams' class scores (TSN's two-stream fusion), in plain NumPy.

Each stream gives an N x C score matrix for the same test videos, identified by their
keys (paths relative to the dataset root). The fused score of a video is the weighted
sum of the streams' scores, as they are (``raw``, the default: what TSN's
``eval_scores.py`` adds, the pre-softmax scores, weighted 1 : 1.5 for RGB : flow) or
after a softmax each (``softmax``: a weighted mean of the streams' probabilities).

Why raw scores by default, besides being TSN's protocol: a stream's pre-softmax scores
are its log-probabilities plus a constant per video (the softmax's log-normaliser), and
a constant per video changes no ranking, so the raw sum ranks classes exactly as the
weighted sum of log-probabilities does: it multiplies the streams' probabilities (a
product of experts), and a stream that is sure of its answer outweighs one that is
unsure, in proportion to how sure it is. Averaging probabilities caps each stream's say
at its weight: a stream at 99.9 % and one at 90 % then count almost the same, and a
weak stream that is fairly sure can overturn a strong one that is very sure. Top-1,
top-5 and mean class accuracy of ``raw`` fusion are those of log-probability fusion.

Scores are aligned by key, never by position: two runs may list their videos in another
order, and fusing scores of different videos, or of differently numbered classes, must
be an error rather than a silently wrong figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tsmap.evaluation.metrics import summarize

SCORE_KINDS = ("softmax", "raw")
TSN_WEIGHTS = (1.0, 1.5)  # RGB : flow, TSN's fusion weights
# Flow weights tried against RGB's 1 when the weight is chosen on validation videos: 0 is
# RGB alone; the grid is wide because raw scores of two heads can differ in scale.
FLOW_WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)


class FusionError(ValueError):
    """Two runs whose scores cannot be fused: other videos, other classes, bad weights."""


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large scores."""
    z = np.asarray(scores, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def align(
    keys_a: Sequence[str], keys_b: Sequence[str], name_a: str = "first run", name_b: str = "second run"
) -> np.ndarray:
    """Indices ``idx`` such that ``keys_b[idx[i]] == keys_a[i]``; an error unless both hold the same videos."""
    keys_a, keys_b = list(keys_a), list(keys_b)
    for keys, name in ((keys_a, name_a), (keys_b, name_b)):
        if len(set(keys)) != len(keys):
            seen: set[str] = set()
            twice = next(k for k in keys if k in seen or seen.add(k))
            raise FusionError(f"{name} lists video {twice!r} twice")
    only_a = sorted(set(keys_a) - set(keys_b))
    only_b = sorted(set(keys_b) - set(keys_a))
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} only in {name_a} (e.g. {only_a[0]})")
        if only_b:
            parts.append(f"{len(only_b)} only in {name_b} (e.g. {only_b[0]})")
        raise FusionError(
            f"the runs were evaluated on different videos: {'; '.join(parts)}; "
            "evaluate both on the same dataset and split"
        )
    where = {k: i for i, k in enumerate(keys_b)}
    return np.array([where[k] for k in keys_a], dtype=np.int64)


def fuse_scores(streams: Sequence[np.ndarray], weights: Sequence[float] = TSN_WEIGHTS, kind: str = "raw") -> np.ndarray:
    """Weighted sum of aligned N x C score matrices (after a softmax each, for ``kind="softmax"``)."""
    if kind not in SCORE_KINDS:
        raise FusionError(f"unknown score kind {kind!r}; choose from {', '.join(SCORE_KINDS)}")
    if len(streams) != len(weights):
        raise FusionError(f"{len(weights)} weights for {len(streams)} streams")
    w = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise FusionError(f"weights must be finite, >= 0 and not all 0, got {list(weights)}")
    shape = np.shape(streams[0])
    if len(shape) != 2:
        raise FusionError(f"scores must be N x C, got shape {shape}")
    if any(np.shape(s) != shape for s in streams):
        raise FusionError(f"score matrices differ in shape: {[np.shape(s) for s in streams]}")
    fused = np.zeros(shape, dtype=np.float64)
    for scores, weight in zip(streams, w, strict=True):
        fused += weight * (softmax(scores) if kind == "softmax" else np.asarray(scores, dtype=np.float64))
    return fused


def log_loss(fused: np.ndarray, labels: np.ndarray, kind: str = "raw") -> float:
    """Mean negative log-probability of the true class under fused scores of ``kind``."""
    fused = np.asarray(fused, dtype=np.float64)
    probs = softmax(fused) if kind == "raw" else fused / fused.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12))))


def choose_flow_weight(
    rgb: np.ndarray, flow: np.ndarray, labels: np.ndarray, kind: str = "raw", grid: Sequence[float] = FLOW_WEIGHT_GRID
) -> tuple[float, list[dict]]:
    """The flow weight (RGB's is 1) whose fusion is best on these videos: top-1, then log-loss.

    Meant for validation videos only: a weight chosen on test scores makes the test
    figure a tuned one. Returns the weight and the sweep (weight, top-1, log-loss).
    """
    labels = np.asarray(labels)
    sweep = []
    for w in grid:
        fused = fuse_scores([rgb, flow], (1.0, w), kind)
        top1 = float(np.mean(fused.argmax(1) == labels))
        sweep.append({"flow_weight": float(w), "top1": top1, "log_loss": log_loss(fused, labels, kind)})
    best = max(sweep, key=lambda r: (r["top1"], -r["log_loss"]))
    return best["flow_weight"], sweep


def check_same_task(classes_a: Sequence[str], classes_b: Sequence[str], labels_a: np.ndarray, labels_b: np.ndarray):
    """Both runs must number the same classes the same way and label each (aligned) video alike."""
    if list(classes_a) != list(classes_b):
        differ = [f"{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(classes_a, classes_b, strict=False)) if a != b]
        detail = f"{len(classes_a)} vs {len(classes_b)} classes" if len(classes_a) != len(classes_b) else ""
        detail = "; ".join(x for x in (detail, ", ".join(differ[:3])) if x)
        raise FusionError(f"the runs have different classes ({detail}); fuse runs trained on the same dataset")
    if not np.array_equal(labels_a, labels_b):
        bad = int(np.flatnonzero(np.asarray(labels_a) != np.asarray(labels_b))[0])
        raise FusionError(f"the runs label video #{bad} differently ({labels_a[bad]} vs {labels_b[bad]})")


def fuse_runs(
    scores: Sequence[np.ndarray],
    keys: Sequence[Sequence[str]],
    labels: Sequence[np.ndarray],
    classes: Sequence[Sequence[str]],
    weights: Sequence[float] = TSN_WEIGHTS,
    kind: str = "raw",
    names: Sequence[str] = ("rgb", "flow"),
) -> dict:
    """Figures of each stream and of their fusion, on the videos of the first stream's order.

    Returns ``{"keys", "labels", "streams": [aligned N x C scores], "fused": N x C, "figures":
    {name: summary, ..., "fusion": summary}}`` where each summary is
    ``tsmap.evaluation.metrics.summarize`` (top-1, top-5, mean class accuracy). Raises
    ``FusionError`` when the streams do not cover the same videos with the same classes
    and labels.
    """
    if not (len(scores) == len(keys) == len(labels) == len(classes) == len(names)):
        raise FusionError("scores, keys, labels, classes and names must have one entry per stream")
    aligned_scores, aligned_labels = [np.asarray(scores[0])], [np.asarray(labels[0])]
    for i in range(len(scores)):
        if len(keys[i]) != len(scores[i]) or len(labels[i]) != len(scores[i]):
            raise FusionError(f"{names[i]}: {len(scores[i])} score rows, {len(keys[i])} keys, {len(labels[i])} labels")
        if np.shape(scores[i])[1] != len(classes[i]):
            raise FusionError(f"{names[i]}: scores have {np.shape(scores[i])[1]} columns for {len(classes[i])} classes")
    for i in range(1, len(scores)):
        idx = align(keys[0], keys[i], f"the {names[0]} run", f"the {names[i]} run")
        check_same_task(classes[0], classes[i], np.asarray(labels[0]), np.asarray(labels[i])[idx])
        aligned_scores.append(np.asarray(scores[i])[idx])
        aligned_labels.append(np.asarray(labels[i])[idx])
    fused = fuse_scores(aligned_scores, weights, kind)
    y = aligned_labels[0]
    figures = {name: summarize(s, y) for name, s in zip(names, aligned_scores, strict=True)}
    figures["fusion"] = summarize(fused, y)
    return {"keys": list(keys[0]), "labels": y, "streams": aligned_scores, "fused": fused, "figures": figures}
