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


def test_action_interval_is_where_frames_change():
    frames, (start, end) = render_clip("grow", np.random.default_rng(3), 120)
    x = np.stack(frames).astype(np.float32)
    # Pixels that changed by far more than the sensor noise (sigma 3) between frames.
    change = (np.abs(np.diff(x, axis=0)) > 30).mean(axis=(1, 2, 3))
    assert 0 < start < end < 120
    assert change[: start - 1].max() == 0 and change[end + 1 :].max() == 0, "still before and after"
    assert np.all(change[start + 5 : end - 5] > 0), "the action changes every frame"


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
