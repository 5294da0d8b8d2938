"""Optical flow for the motion stream, computed and encoded as in TSN (Wang et al. 2016).

What is computed
    Dense optical flow between *consecutive decoded frames* (k, k+1), on grayscale
    versions of the frames the RGB stream sees (same ``FrameGeometry``: shorter side
    resized, centre crop). A flow field is float32 H x W x 2 holding (dx, dy) in pixels
    such that ``prev[y, x] ~ next[y + dy, x + dx]``: content moving right gives dx > 0,
    content moving up gives dy < 0 (image rows grow downwards). At each sampled time t
    the flow ConvNet sees ``stack`` (5) consecutive fields, pairs t .. t+stack-1, stacked
    as 2 * stack channels interleaved x1, y1, x2, y2, ...: channel 2j is dx of pair t+j
    and channel 2j+1 its dy. Only the pairs that the sampled stacks use are computed
    (each once), not the flow of every frame as TSN's offline extraction does.

Encoding (TSN's ``dense_flow``)
    Each component is clipped to [-FLOW_BOUND, FLOW_BOUND] = [-20, 20] pixels and mapped
    linearly to uint8: ``q = round(255 * (v + 20) / 40)``. The quantisation step is
    40 / 255 ~ 0.157 px, so decoding (``v = q * 40 / 255 - 20``) is off by at most half a
    step, 20 / 255 ~ 0.078 px, for flow inside the bounds. Zero flow encodes to 128 (127.5
    rounded half to even, as ``cvRound``), which TSN's flow input mean of 128 removes;
    128 decodes to +0.078 px, not 0.

Methods
    ``tvl1``: Dual TV-L1 (Zach et al. 2007), the paper's and TSN's choice, from OpenCV's
    contrib module ``cv2.optflow`` with OpenCV's default parameters (5 scales, 5 warps,
    300 iterations per warp at most, median filter 5). TSN's ``dense_flow`` tool creates
    its TV-L1 object without changing any parameter, so these are TSN's settings too.
    ``dis``: Dense Inverse Search (Kroeger et al. 2016), in OpenCV's main module, with the
    presets ``ultrafast``, ``fast`` and ``medium`` (default).

Why DIS is the default on CPU
    TSN ran TV-L1 on GPUs. On a CPU it costs ~0.8 s per 340 x 256 pair (``benchmarks/
    flow.py`` on a shared 2-core machine: 1.3 pairs/s), i.e. ~1.5 min per clip for 25
    stacks of 5 pairs and ~180 h for HMDB51 in one process. DIS MEDIUM ran at ~76 pairs/s
    there (~60 times faster; FAST ~500 pairs/s) and measures a translation to a few
    hundredths of a pixel, well under the 0.157 px quantisation step; its fields are
    smoother and less accurate at motion boundaries and fine structures than TV-L1's. The
    two are not interchangeable: a flow network trained on one should be fed the same
    method, which ``FlowMethod.to_dict`` records for that purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np

from tsmap.data.video import FrameGeometry, VideoError, decode_sampled, uniform_indices

FLOW_BOUND = 20.0
"""Flow components are clipped to [-FLOW_BOUND, FLOW_BOUND] pixels before encoding (TSN)."""

FLOW_STEP = 2 * FLOW_BOUND / 255
"""Quantisation step of the uint8 encoding: 40 / 255 ~ 0.157 px."""

FLOW_STACK = 5
"""Consecutive flow fields per sampled time (TSN): 10 input channels."""

PRESETS: dict[str, tuple[str, ...]] = {"dis": ("ultrafast", "fast", "medium"), "tvl1": ("default",)}
DEFAULT_PRESETS: dict[str, str] = {"dis": "medium", "tvl1": "default"}
CONTRIB_PACKAGE = "opencv-contrib-python-headless"

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""Anything that maps (prev_gray, next_gray), uint8 H x W, to float32 H x W x 2 flow."""


def encode_flow(flow: np.ndarray) -> np.ndarray:
    """Float flow (..., 2) in pixels to uint8: clip to +-FLOW_BOUND, map [-20, 20] -> [0, 255].

    ``q = round(255 * (v + 20) / 40)`` with rounding half to even; NaN (never produced
    by OpenCV) is not handled.
    """
    flow = np.asarray(flow, dtype=np.float32)
    scaled = (np.clip(flow, -FLOW_BOUND, FLOW_BOUND) + FLOW_BOUND) * np.float32(255 / (2 * FLOW_BOUND))
    return np.rint(scaled).astype(np.uint8)


def decode_flow(encoded: np.ndarray) -> np.ndarray:
    """uint8 flow back to float32 pixels, ``q * 40 / 255 - 20``.

    Exact to within half a quantisation step (20 / 255 ~ 0.078 px) for flow that was
    inside [-20, 20]; larger motion comes back as +-20.
    """
    encoded = np.asarray(encoded)
    if encoded.dtype != np.uint8:
        raise ValueError(f"encoded flow must be uint8, got {encoded.dtype}")
    return encoded.astype(np.float32) * np.float32(FLOW_STEP) - np.float32(FLOW_BOUND)


def _import_cv2(contrib: bool = False) -> Any:
    """OpenCV, or an ImportError that names the pip package to install."""
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(f"optical flow needs OpenCV: pip install {CONTRIB_PACKAGE}") from exc
    if contrib and not hasattr(cv2, "optflow"):
        raise ImportError(
            f"TV-L1 optical flow needs OpenCV's contrib modules (cv2.optflow), which the installed OpenCV "
            f"{getattr(cv2, '__version__', '?')} lacks: pip install {CONTRIB_PACKAGE} (and uninstall "
            "opencv-python / opencv-python-headless, which provide the same cv2 package without contrib)"
        )
    return cv2


def _as_gray(frame: np.ndarray, name: str) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim != 2:
        raise ValueError(
            f"{name} must be a grayscale H x W image, got shape {frame.shape} "
            "(convert RGB with cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))"
        )
    if frame.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {frame.dtype}")
    return np.ascontiguousarray(frame)


class FlowMethod:
    """A dense optical flow algorithm: ``method(prev_gray, next_gray) -> float32 H x W x 2``.

    ``method`` is ``"dis"`` (presets ``ultrafast``, ``fast``, ``medium``; default
    ``medium``) or ``"tvl1"`` (preset ``default``: OpenCV's defaults, as TSN). The OpenCV
    object is built on creation (so a missing contrib module fails early) and rebuilt
    after unpickling; one instance must not be called from two threads at once. OpenCV
    parallelises one call over ``cv2.getNumThreads()`` threads (``cv2.setNumThreads``).
    Each call is independent of the previous ones (no initial flow is carried over).
    """

    def __init__(self, method: str = "dis", preset: str | None = None):
        method = method.lower()
        if method not in PRESETS:
            raise ValueError(f"unknown optical flow method {method!r}: choose one of {sorted(PRESETS)}")
        preset = (preset or DEFAULT_PRESETS[method]).lower()
        if preset not in PRESETS[method]:
            raise ValueError(f"unknown {method} preset {preset!r}: choose one of {list(PRESETS[method])}")
        self.method = method
        self.preset = preset
        self._algo: Any = self._create()

    def _create(self) -> Any:
        cv2 = _import_cv2(contrib=self.method == "tvl1")
        if self.method == "tvl1":
            return cv2.optflow.DualTVL1OpticalFlow_create()
        return cv2.DISOpticalFlow_create(getattr(cv2, f"DISOpticalFlow_PRESET_{self.preset.upper()}"))

    def __call__(self, prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
        prev = _as_gray(prev_gray, "prev_gray")
        nxt = _as_gray(next_gray, "next_gray")
        if prev.shape != nxt.shape:
            raise ValueError(f"frames differ in size: {prev.shape} vs {nxt.shape}")
        if self._algo is None:
            self._algo = self._create()
        return np.asarray(self._algo.calc(prev, nxt, None), dtype=np.float32)

    def to_dict(self) -> dict:
        """What produced the flow, to store next to extracted features."""
        cv2 = _import_cv2()
        return {"method": self.method, "preset": self.preset, "bound": FLOW_BOUND, "opencv": cv2.__version__}

    def __getstate__(self) -> dict:
        # OpenCV algorithm objects cannot be pickled (e.g. DataLoader workers with spawn).
        return {"method": self.method, "preset": self.preset, "_algo": None}

    def __repr__(self) -> str:
        return f"FlowMethod({self.method!r}, preset={self.preset!r})"


def make_flow(method: str = "dis", preset: str | None = None) -> FlowMethod:
    """The flow method by name: ``make_flow("dis")`` (MEDIUM), ``make_flow("dis", "fast")``, ``make_flow("tvl1")``."""
    return FlowMethod(method, preset)


def flow_indices(num_frames: int, num_samples: int, stack: int = FLOW_STACK) -> np.ndarray:
    """Pair indices, int64 ``num_samples x stack``: entry k means the flow from frame k to k+1.

    Row i is ``t_i, t_i + 1, ..., t_i + stack - 1``: the starts t_i are spread uniformly
    (``uniform_indices``, TSN's test-time sampling, order kept) over the ``num_frames -
    stack`` starts for which frame ``t + stack`` exists. A video with fewer than
    ``stack + 1`` frames starts every stack at 0 and repeats its last pair (as TSN's
    loader), e.g. ``[0, 1, 2, 2, 2]`` for 4 frames. Needs at least 2 frames.
    """
    if stack < 1:
        raise ValueError(f"need stack >= 1, got {stack}")
    if num_frames < 2:
        raise ValueError(f"optical flow needs at least 2 frames, got {num_frames}")
    num_pairs = num_frames - 1
    starts = uniform_indices(max(num_pairs - stack + 1, 1), num_samples)
    return np.minimum(starts[:, None] + np.arange(stack), num_pairs - 1)


def flow_stacks(
    gray_frames: Sequence[np.ndarray] | Mapping[int, np.ndarray] | np.ndarray,
    indices: np.ndarray,
    method: FlowFn,
) -> np.ndarray:
    """Encoded flow stacks, uint8 ``N x H x W x 2*stack``, for pair ``indices`` (N x stack).

    ``gray_frames[k]`` is decoded frame k as uint8 H x W (a list, an array or a dict
    holding only the frames needed); pair k is ``method(gray_frames[k], gray_frames[k+1])``.
    Each distinct pair is computed once, however many stacks share it. Channels are
    interleaved: ``out[i, :, :, 2j]`` is dx and ``out[i, :, :, 2j+1]`` dy of pair
    ``indices[i, j]``, both encoded with ``encode_flow``.
    """
    indices = np.asarray(indices, dtype=np.int64)
    if indices.ndim != 2 or indices.size == 0:
        raise ValueError(f"indices must be a non-empty N x stack array, got shape {indices.shape}")
    if indices.min() < 0:
        raise ValueError(f"pair indices must be >= 0, got {int(indices.min())}")
    n, stack = indices.shape
    encoded: dict[int, np.ndarray] = {}
    for k in np.unique(indices).tolist():
        try:
            prev, nxt = gray_frames[k], gray_frames[k + 1]
        except (KeyError, IndexError) as exc:
            raise ValueError(f"pair {k} needs frames {k} and {k + 1}, which gray_frames lacks") from exc
        flow = np.asarray(method(prev, nxt))
        if flow.shape != (*np.shape(prev)[:2], 2):
            raise ValueError(f"flow of pair {k} has shape {flow.shape}, expected {(*np.shape(prev)[:2], 2)}")
        encoded[k] = encode_flow(flow)
    h, w = next(iter(encoded.values())).shape[:2]
    out = np.empty((n, h, w, 2 * stack), dtype=np.uint8)
    for i in range(n):
        for j in range(stack):
            out[i, :, :, 2 * j : 2 * j + 2] = encoded[int(indices[i, j])]
    return out


def _frames_needed(indices: np.ndarray) -> set[int]:
    pairs = np.unique(indices)
    return set(pairs.tolist()) | set((pairs + 1).tolist())


def read_distinct_flow_stacks(
    path: Path | str,
    num_samples: int,
    geometry: FrameGeometry,
    method: FlowFn,
    stack: int = FLOW_STACK,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The distinct stacks of ``read_flow_stacks``, which of them each sample is, and the frame count.

    ``stacks[rows]`` is ``read_flow_stacks``'s result; a short video repeats stacks, and
    this encodes each one once.
    """
    path = Path(path)
    cv2 = _import_cv2()

    def gray(frame: av.VideoFrame) -> np.ndarray:
        # The RGB stream's resize and crop, then ITU-R BT.601 luma.
        return cv2.cvtColor(np.ascontiguousarray(geometry.convert(frame)), cv2.COLOR_RGB2GRAY)

    def wanted_for(count: int) -> set[int]:
        return _frames_needed(flow_indices(count, num_samples, stack)) if count >= 2 else set()

    frames, count = decode_sampled(path, wanted_for, gray)
    if count < 2:
        raise VideoError(path, f"optical flow needs at least 2 frames, the video has {count}")
    distinct, rows = np.unique(flow_indices(count, num_samples, stack), axis=0, return_inverse=True)
    return flow_stacks(frames, distinct, method), rows.reshape(-1), count


def read_flow_stacks(
    path: Path | str,
    num_samples: int,
    geometry: FrameGeometry,
    method: FlowFn,
    stack: int = FLOW_STACK,
) -> tuple[np.ndarray, int]:
    """``num_samples`` encoded flow stacks (uint8 N x size x size x 2*stack) and the frame count.

    Stacks start at ``flow_indices(count, num_samples, stack)``; only the frames those
    pairs use are converted (to grayscale, after the RGB stream's resize and centre crop)
    and every pair is made of two consecutive decoded frames. As in ``read_frames``, a
    container frame count that disagrees with the decoded one triggers a second decode
    with the true count. A video with fewer than 2 frames raises ``VideoError``.
    """
    stacks, rows, count = read_distinct_flow_stacks(path, num_samples, geometry, method, stack)
    return stacks[rows], count
