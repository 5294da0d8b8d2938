import pickle
import sys
import types

import av
import cv2
import numpy as np
import pytest
from conftest import write_test_video

from tsmap.data.video import FrameGeometry, VideoError, frame_count_hint
from tsmap.frames.flow import (
    FLOW_BOUND,
    FLOW_STEP,
    decode_flow,
    encode_flow,
    flow_indices,
    flow_stacks,
    make_flow,
    read_flow_stacks,
)


def texture(seed: int, h: int, w: int) -> np.ndarray:
    """Seeded band-limited noise (blurred, stretched to 0-255): texture everywhere, no aliasing."""
    noise = np.random.default_rng(seed).uniform(0, 255, (h, w)).astype(np.float32)
    img = cv2.GaussianBlur(noise, (0, 0), 1.5)
    return np.rint((img - img.min()) / (img.max() - img.min()) * 255).astype(np.uint8)


def translated_pair(size: int, dx: int, dy: int, seed: int = 0, margin: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Two crops of one texture such that next[y + dy, x + dx] == prev[y, x]: content moves by (dx, dy)."""
    big = texture(seed, size + 2 * margin, size + 2 * margin)
    prev = big[margin : margin + size, margin : margin + size]
    nxt = big[margin - dy : margin - dy + size, margin - dx : margin - dx + size]
    return np.ascontiguousarray(prev), np.ascontiguousarray(nxt)


# --- encoding -------------------------------------------------------------------------------------------------------


def test_encode_decode_round_trip_within_half_a_step():
    flow = np.random.default_rng(0).uniform(-FLOW_BOUND, FLOW_BOUND, (64, 64, 2)).astype(np.float32)
    q = encode_flow(flow)
    assert q.dtype == np.uint8 and q.shape == flow.shape
    assert FLOW_STEP == pytest.approx(40 / 255)
    err = np.abs(decode_flow(q) - flow)
    assert err.max() <= FLOW_STEP / 2 + 1e-5
    # The ends and zero map as in TSN's dense_flow: -20 -> 0, +20 -> 255, 0 -> round(127.5) = 128.
    np.testing.assert_array_equal(encode_flow(np.array([-20.0, 0.0, 20.0])), [0, 128, 255])


def test_encode_clips_beyond_the_bound():
    flow = np.array([[-100.0, -20.5], [20.5, 1e6]], dtype=np.float32)
    np.testing.assert_array_equal(encode_flow(flow), [[0, 0], [255, 255]])
    np.testing.assert_allclose(decode_flow(encode_flow(flow)), [[-20, -20], [20, 20]], atol=1e-5)


def test_decode_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        decode_flow(np.zeros((2, 2, 2), dtype=np.float32))


# --- flow methods ---------------------------------------------------------------------------------------------------

# A pure integer translation of band-limited texture: both methods are sub-pixel accurate there
# (measured over 6 seeds: mean error <= 0.007 px for DIS MEDIUM and TV-L1, 95th percentile of the
# per-pixel error <= 0.03 px). A mean within 0.1 px is less than one quantisation step (0.157 px),
# so the encoded value of the mean is the true one +-1 level. DIS FAST starts on a half-resolution
# finest scale and is coarser (mean off by up to 0.2 px, 95th percentile up to 0.27 px); it gets
# 0.3 px, still a tenth of the motion, so a sign or axis mix-up fails every case.
CASES = [
    ("dis", "medium", 96, 0.1, 0.25),
    ("dis", "fast", 96, 0.3, 0.6),
    ("tvl1", "default", 64, 0.1, 0.25),  # TV-L1 takes ~60 ms at 64 x 64 (~120 ms at 96 x 96)
]


@pytest.mark.parametrize("method,preset,size,mean_tol,p95_tol", CASES)
def test_translation_gives_its_flow_with_the_right_signs(method, preset, size, mean_tol, p95_tol):
    dx, dy = 3, -2  # right and up
    prev, nxt = translated_pair(size, dx, dy)
    flow = make_flow(method, preset)(prev, nxt)
    assert flow.dtype == np.float32 and flow.shape == (size, size, 2)
    interior = flow[16:-16, 16:-16].reshape(-1, 2)  # away from borders where content enters or leaves
    mean = interior.mean(0)
    assert mean[0] > 0 > mean[1], f"signs wrong: mean flow {mean}"
    np.testing.assert_allclose(mean, [dx, dy], atol=mean_tol)
    assert np.percentile(np.abs(interior - [dx, dy]), 95) <= p95_tol


def test_make_flow_defaults_and_errors():
    assert (make_flow().method, make_flow().preset) == ("dis", "medium")
    assert make_flow("tvl1").preset == "default"
    assert make_flow("DIS", "FAST").preset == "fast"
    with pytest.raises(ValueError, match="unknown optical flow method"):
        make_flow("farneback")
    with pytest.raises(ValueError, match="preset"):
        make_flow("tvl1", "fast")
    dis = make_flow()
    with pytest.raises(ValueError, match="grayscale"):
        dis(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        dis(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32))
    info = dis.to_dict()
    assert info["method"] == "dis" and info["bound"] == FLOW_BOUND and info["opencv"] == cv2.__version__


def test_flow_method_survives_pickling():
    prev, nxt = translated_pair(48, 1, 1)
    dis = make_flow("dis", "fast")
    again = pickle.loads(pickle.dumps(dis))
    np.testing.assert_array_equal(again(prev, nxt), dis(prev, nxt))


def test_tvl1_without_contrib_names_the_package(monkeypatch):
    plain = types.ModuleType("cv2")
    plain.__version__ = "5.0.0"  # an OpenCV build without cv2.optflow
    monkeypatch.setitem(sys.modules, "cv2", plain)
    with pytest.raises(ImportError, match="pip install opencv-contrib-python-headless"):
        make_flow("tvl1")


# --- sampling -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,t,stack", [(300, 25, 5), (100, 25, 5), (30, 25, 5), (6, 3, 5), (50, 7, 1), (200, 64, 10)])
def test_flow_indices_shape_bounds_and_order(n, t, stack):
    idx = flow_indices(n, t, stack)
    assert idx.shape == (t, stack) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() + 1 <= n - 1, "every pair (k, k+1) lies inside the video"
    np.testing.assert_array_equal(np.diff(idx, axis=1), 1, "each stack is consecutive pairs")
    assert np.all(np.diff(idx[:, 0]) >= 0), "stacks keep time order"
    if n - stack >= t:
        assert len(set(idx[:, 0].tolist())) == t, "no start repeats when the video is long enough"
    # Spread over the whole video: the first stack is near the start, the last ends near the end.
    span = (n - stack) / t
    assert idx[0, 0] <= span and idx[-1, -1] >= n - 2 - span


def test_flow_indices_short_video_repeats_last_pair():
    np.testing.assert_array_equal(flow_indices(4, 2, 5), [[0, 1, 2, 2, 2], [0, 1, 2, 2, 2]])
    np.testing.assert_array_equal(flow_indices(2, 1, 5), [[0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match="at least 2 frames"):
        flow_indices(1, 5)


# --- stacks ---------------------------------------------------------------------------------------------------------


class CountingFlow:
    """A fake method: the flow of pair (a, b) is dx = a / 4, dy = -b / 8 everywhere (frames hold their index)."""

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    def __call__(self, prev, nxt):
        a, b = int(prev[0, 0]), int(nxt[0, 0])
        self.calls.append((a, b))
        flow = np.empty((*prev.shape, 2), np.float32)
        flow[..., 0], flow[..., 1] = a / 4, -b / 8
        return flow


def test_flow_stacks_computes_each_pair_once_and_interleaves_x_y():
    frames = [np.full((6, 5), k, np.uint8) for k in range(40)]
    idx = flow_indices(40, 12, 5)  # overlapping stacks: 12 x 5 entries, fewer distinct pairs
    counter = CountingFlow()
    out = flow_stacks(frames, idx, counter)
    assert out.shape == (12, 6, 5, 10) and out.dtype == np.uint8
    assert len(counter.calls) == len(set(counter.calls)) == len(np.unique(idx)) < idx.size
    assert all(b == a + 1 for a, b in counter.calls), "pairs are consecutive frames"
    for i in range(12):
        for j in range(5):
            k = int(idx[i, j])
            assert np.all(out[i, :, :, 2 * j] == encode_flow(np.float32(k / 4))), "channel 2j is x of pair j"
            assert np.all(out[i, :, :, 2 * j + 1] == encode_flow(np.float32(-(k + 1) / 8))), "2j+1 is its y"


def test_flow_stacks_accepts_only_the_needed_frames_and_reports_missing_ones():
    idx = np.array([[3, 4], [7, 8]])
    frames = {k: np.full((4, 4), k, np.uint8) for k in (3, 4, 5, 7, 8, 9)}
    assert flow_stacks(frames, idx, CountingFlow()).shape == (2, 4, 4, 4)
    del frames[9]
    with pytest.raises(ValueError, match="pair 8 needs frames 8 and 9"):
        flow_stacks(frames, idx, CountingFlow())


def test_flow_stacks_of_a_translating_sequence():
    # Content moving by (+3, -2) per frame: every x channel decodes to ~+3, every y channel to ~-2.
    big = texture(1, 96 + 40, 96 + 40)
    frames = [np.ascontiguousarray(big[20 + 2 * k : 20 + 2 * k + 96, 20 - 3 * k : 20 - 3 * k + 96]) for k in range(7)]
    out = flow_stacks(frames, flow_indices(7, 2, 5), make_flow("dis"))
    assert out.shape == (2, 96, 96, 10)
    mean = decode_flow(out[:, 16:-16, 16:-16]).reshape(-1, 10).mean(0)
    np.testing.assert_allclose(mean[0::2], 3, atol=0.15)
    np.testing.assert_allclose(mean[1::2], -2, atol=0.15)


# --- videos ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])  # MKV has no frame count in its header: the two-pass path
def test_read_flow_stacks_from_a_video(tmp_path, suffix):
    # Lossless H.264 (yuv420p) of a texture moving right by 2 px per frame.
    n, size = 16, 64
    big = texture(2, size, size + 2 * n)
    rgb = [np.repeat(big[:, 2 * n - 2 * k : 2 * n - 2 * k + size, None], 3, axis=2) for k in range(n)]
    path = write_test_video(tmp_path / f"pan{suffix}", rgb)
    assert frame_count_hint(path) == (n if suffix == ".mp4" else 0)
    geometry = FrameGeometry(size=48, resize=64)
    dis = make_flow("dis")
    got, count = read_flow_stacks(path, 3, geometry, dis)
    assert count == n and got.shape == (3, 48, 48, 10) and got.dtype == np.uint8
    mean = decode_flow(got[:, 8:-8, 8:-8]).reshape(-1, 10).mean(0)
    np.testing.assert_allclose(mean[0::2], 2, atol=0.2)
    np.testing.assert_allclose(mean[1::2], 0, atol=0.2)
    # The same as flow on every decoded frame, converted like the RGB stream, then sampled.
    with av.open(str(path)) as container:
        gray = [cv2.cvtColor(geometry.convert(f), cv2.COLOR_RGB2GRAY) for f in container.decode(video=0)]
    np.testing.assert_array_equal(got, flow_stacks(gray, flow_indices(n, 3, 5), dis))


def test_read_flow_stacks_errors(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        read_flow_stacks(tmp_path / "missing.mp4", 3, FrameGeometry(), make_flow())
    one = write_test_video(tmp_path / "one.mp4", [np.zeros((32, 32, 3), np.uint8)])
    with pytest.raises(VideoError, match="at least 2 frames"):
        read_flow_stacks(one, 3, FrameGeometry(size=32, resize=32), make_flow())
