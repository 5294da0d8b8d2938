"""Classification metrics on score matrices, in plain NumPy.

``scores`` is N x C (any monotonic scores: logits or probabilities), ``labels`` is N.
"""

from __future__ import annotations

import numpy as np


def _check(scores: np.ndarray, labels: np.ndarray) -> None:
    if scores.ndim != 2 or labels.ndim != 1 or len(scores) != len(labels):
        raise ValueError(f"scores must be N x C and labels N, got {scores.shape} and {labels.shape}")


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Fraction of samples whose label is among the k highest scores."""
    _check(scores, labels)
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=1)))


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """C x C counts; row = true class, column = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (labels, predictions), 1)
    return cm


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class; NaN for classes with no test sample."""
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / totals, np.nan)


def mean_class_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """TSN's "accuracy": the mean over classes (present in ``labels``) of per-class recall."""
    _check(scores, labels)
    cm = confusion_matrix(scores.argmax(1), labels, scores.shape[1])
    return float(np.nanmean(per_class_accuracy(cm)))


def summarize(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {
        "top1": top_k_accuracy(scores, labels, 1),
        "top5": top_k_accuracy(scores, labels, 5),
        "mean_class_accuracy": mean_class_accuracy(scores, labels),
        "num_videos": int(len(labels)),
    }
