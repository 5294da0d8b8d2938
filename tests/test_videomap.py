"""Eq. 1: rows of the VideoMap are the frames' pooled features in time order."""

import numpy as np
from conftest import moving_square_frames, write_test_video

from tsmap.data.video import FrameGeometry
from tsmap.videomap.extract import video_to_map


def test_time_reversed_video_gives_row_reversed_map(tmp_path, encoder):
    frames = moving_square_frames(40, seed=1)
    forward = write_test_video(tmp_path / "forward.mp4", frames)
    backward = write_test_video(tmp_path / "backward.mp4", frames[::-1])
    geometry = FrameGeometry(size=64, resize=64)
    m_fwd = video_to_map(forward, encoder, 16, geometry)
    m_bwd = video_to_map(backward, encoder, 16, geometry)
    assert m_fwd.shape == (16, 1280)
    np.testing.assert_allclose(m_bwd, m_fwd[::-1], atol=1e-4)
    # ...and the map is not trivially symmetric: the reversal is what matched.
    assert np.abs(m_fwd - m_fwd[::-1]).max() > 0.1


def test_map_rows_follow_time(tmp_path, encoder):
    frames = moving_square_frames(30, seed=2)
    path = write_test_video(tmp_path / "v.mp4", frames)
    geometry = FrameGeometry(size=64, resize=64)
    m = video_to_map(path, encoder, 30, geometry)
    # With T = number of frames, row t must be frame t's features.
    from tsmap.data.video import read_frames

    decoded, _ = read_frames(path, 30, geometry)
    np.testing.assert_allclose(m[7], encoder.encode(decoded[7:8])[0], atol=1e-4)
    assert np.abs(m[7] - m[20]).max() > 0.05


def test_short_video_encodes_each_distinct_frame_once(tmp_path, encoder):
    from tsmap.data.video import read_frames

    path = write_test_video(tmp_path / "short.mp4", moving_square_frames(10))
    geometry = FrameGeometry(size=64, resize=64)
    batches = []

    class Counting:
        def encode(self, frames):
            batches.append(len(frames))
            return encoder.encode(frames)

    m = video_to_map(path, Counting(), 32, geometry)
    assert batches == [10]  # 32 rows from 10 frames: each frame through the ConvNet once
    frames, _ = read_frames(path, 32, geometry)
    assert len(frames) == 32 and len(np.unique(frames.reshape(32, -1), axis=0)) == 10
    np.testing.assert_allclose(m, encoder.encode(frames), rtol=1e-5, atol=1e-5)
