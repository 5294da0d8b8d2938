import numpy as np
import pytest
from conftest import moving_square_frames, write_test_video

from tsmap.data.video import FrameGeometry, VideoError, read_frames, uniform_indices


@pytest.mark.parametrize("n,t", [(300, 64), (64, 64), (40, 256), (7, 25), (1000, 25), (2, 3)])
def test_uniform_indices_cover_video_in_order(n, t):
    idx = uniform_indices(n, t)
    assert len(idx) == t
    assert idx.min() >= 0 and idx.max() <= n - 1
    assert np.all(np.diff(idx) >= 0), "time order must be kept"
    if n >= t:
        assert len(set(idx.tolist())) == t, "no frame repeats when the video is long enough"
    else:
        assert set(idx.tolist()) == set(range(n)), "a short video uses every frame, repeating some"


@pytest.mark.parametrize("n,t", [(300, 64), (128, 64), (40, 256), (10, 4), (101, 25)])
def test_uniform_indices_mirror_under_time_reversal(n, t):
    idx = uniform_indices(n, t)
    np.testing.assert_array_equal(n - 1 - idx[::-1], idx)


def test_uniform_indices_only_tie_is_the_middle_sample():
    # Odd T on an even-length video: the middle sample falls between two frames.
    idx = uniform_indices(100, 25)
    mirrored = 100 - 1 - idx[::-1]
    assert list(np.nonzero(mirrored != idx)[0]) == [12]


def test_read_frames_samples_the_right_frames(tmp_path):
    # Each frame's mean intensity encodes its index, so we can check which were picked.
    n = 50
    frames = [np.full((64, 64, 3), 5 * i + 10, dtype=np.uint8) for i in range(n)]
    path = write_test_video(tmp_path / "ramp.mp4", frames)
    got, count = read_frames(path, 10, FrameGeometry(size=32, resize=32))
    assert count == n
    assert got.shape == (10, 32, 32, 3) and got.dtype == np.uint8
    picked = np.round((got.reshape(10, -1).astype(float).mean(1) - 10) / 5).astype(int)
    np.testing.assert_array_equal(picked, uniform_indices(n, 10))


def test_short_video_repeats_frames(tmp_path):
    path = write_test_video(tmp_path / "short.mp4", moving_square_frames(5))
    got, count = read_frames(path, 12, FrameGeometry(size=32, resize=40))
    assert count == 5 and got.shape[0] == 12
    distinct = {g.tobytes() for g in got}
    assert len(distinct) == 5


def test_unreadable_video_raises_with_path(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoError) as info:
        read_frames(bad, 8, FrameGeometry())
    assert "broken.mp4" in str(info.value)
    with pytest.raises(VideoError, match="not found"):
        read_frames(tmp_path / "missing.mp4", 8, FrameGeometry())
