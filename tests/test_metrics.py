import numpy as np
import pytest

from tsmap.evaluation.metrics import confusion_matrix, mean_class_accuracy, per_class_accuracy, top_k_accuracy

SCORES = np.array(
    [
        [0.9, 0.05, 0.05],  # true 0, predicted 0
        [0.1, 0.2, 0.7],  # true 1, predicted 2, label 2nd
        [0.2, 0.5, 0.3],  # true 1, predicted 1
        [0.6, 0.3, 0.1],  # true 2, predicted 0, label last
    ]
)
LABELS = np.array([0, 1, 1, 2])


def test_top_k():
    assert top_k_accuracy(SCORES, LABELS, 1) == pytest.approx(2 / 4)
    assert top_k_accuracy(SCORES, LABELS, 2) == pytest.approx(3 / 4)
    assert top_k_accuracy(SCORES, LABELS, 5) == 1.0


def test_confusion_and_mean_class_accuracy():
    cm = confusion_matrix(SCORES.argmax(1), LABELS, 3)
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 1], [1, 0, 0]])
    np.testing.assert_allclose(per_class_accuracy(cm), [1.0, 0.5, 0.0])
    assert mean_class_accuracy(SCORES, LABELS) == pytest.approx(0.5)


def test_shape_errors():
    with pytest.raises(ValueError):
        top_k_accuracy(SCORES, LABELS[:3])
