import json

import numpy as np

from tsmap.data.synthetic import ORDER_PAIRS, render_clip


def test_order_pairs_are_exact_time_reversals():
    for forward, backward in ORDER_PAIRS:
        fwd, (s0, e0) = render_clip(forward, np.random.default_rng(7), 60)
        bwd, (s1, e1) = render_clip(backward, np.random.default_rng(7), 60)
        # Same draw, played backwards (noise included): the same set of frames.
        for a, b in zip(fwd, bwd[::-1], strict=False):
            np.testing.assert_array_equal(a, b)
        assert (s1, e1) == (60 - e0, 60 - s0)


def _changed_pixel_spreads(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For pixels that changed by far more than the sensor noise (sigma 3) between frames a and
    b: the spread of R, G, B in each frame, sorted (greyer first): N x 2."""
    changed = np.abs(a - b).max(axis=2) > 30
    return np.sort(np.stack([np.ptp(a, axis=2)[changed], np.ptp(b, axis=2)[changed]], axis=1), axis=1)


def test_the_coloured_action_fills_the_interval_and_a_grey_bystander_the_rest():
    frames, (start, end) = render_clip("grow", np.random.default_rng(6), 120)
    x = np.stack(frames).astype(np.float32)
    assert 5 < start < end < 115 and 0.3 <= (end - start) / 120 <= 0.55
    # Outside the action, where a pixel changes, one of its two values is grey (the disc's),
    # and over each stretch the grey disc changes size.
    for i in [i for i in range(119) if i + 1 < start or i > end]:
        assert np.all(_changed_pixel_spreads(x[i], x[i + 1])[:, 0] < 25), f"frames {i}, {i + 1}"
    for first, last in ((0, start - 1), (end, 119)):
        assert len(_changed_pixel_spreads(x[first], x[last])) > 100
    # During the action, the changed pixels are coloured in one of the two (the object's).
    for i in range(start + 1, end - 2, 5):
        assert np.median(_changed_pixel_spreads(x[i], x[i + 1])[:, 1]) > 40, f"frames {i}, {i + 1}"


def test_demo_dataset_files(tiny_demo):
    info = json.loads((tiny_demo / "dataset.json").read_text())
    assert len(info["classes"]) == 2 * len(ORDER_PAIRS) + 2
    train = (tiny_demo / "train.txt").read_text().split()
    test = (tiny_demo / "test.txt").read_text().split()
    assert len(train) == 2 * len(info["classes"]) and len(test) == len(info["classes"])
    assert not set(train) & set(test)
    for video in info["videos"]:
        assert (tiny_demo / video["path"]).stat().st_size > 0
        start, end = video["action"]
        assert 0 <= start < end <= video["frames"]
