"""Training inputs of stage 1 (TSN fine-tuning): K random snippets per video, cropped TSN's way.

TSN trains on K snippets per video, one at a random position inside each of K equal
segments (a frame for RGB; 5 consecutive flow fields for flow), all cropped alike: one
multi-scale corner crop and one horizontal flip drawn per video, so the K snippets stay
spatially aligned. Frames are decoded with their shorter side resized to ``resize``
(TSN: 256) and not centre-cropped; crop sides are ``scale x`` the shorter side, with
the scale of width and height drawn independently from neighbouring scales (aspect
jitter), at one of 13 fixed positions (corners, centre, edge middles, quarter points),
and resized to ``size`` x ``size``. A flipped flow stack also negates its x fields.

Every draw comes from a generator seeded by (seed, epoch, video index), so a run is
reproducible and a resumed run sees the same inputs as an uninterrupted one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from tsmap.data.datasets import Clip
from tsmap.data.video import VideoError, decode_sampled
from tsmap.frames.flow import FLOW_STACK, FlowMethod, flow_stacks, make_flow

SCALES = (1.0, 0.875, 0.75, 0.66)  # TSN's multi-scale crop sizes, as fractions of the shorter side


@dataclass(frozen=True)
class Unreadable:
    """What the dataset gives for a video it cannot use (the training loop skips and reports it)."""

    path: str
    reason: str


@dataclass(frozen=True)
class Crop:
    top: int
    left: int
    height: int
    width: int
    flip: bool


def segment_positions(num_positions: int, segments: int, rng: np.random.Generator) -> np.ndarray:
    """TSN's training sampling: one random position in each of ``segments`` equal segments, in order.

    Fewer positions than segments: sorted random positions (repeats allowed), as TSN does.
    """
    if num_positions < 1:
        raise ValueError(f"need at least one position, got {num_positions}")
    length = num_positions // segments
    if length > 0:
        return np.arange(segments) * length + rng.integers(0, length, size=segments)
    return np.sort(rng.integers(0, num_positions, size=segments))


def multiscale_crop(
    height: int,
    width: int,
    size: int,
    rng: np.random.Generator,
    scales: Sequence[float] = SCALES,
    max_distort: int = 1,
    flip: bool = True,
) -> Crop:
    """One crop box drawn TSN's way (``GroupMultiScaleCrop`` with its 13 fixed positions) and a flip."""
    base = min(height, width)
    sides = [int(base * s) for s in scales]
    # A side within 3 pixels of the output is snapped to it, as TSN does (saves a resize).
    sides = [size if abs(s - size) < 3 else s for s in sides]
    pairs = [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= max_distort]
    crop_h, crop_w = pairs[int(rng.integers(len(pairs)))]
    crop_h, crop_w = min(crop_h, height), min(crop_w, width)
    sy, sx = (height - crop_h) // 4, (width - crop_w) // 4
    positions = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (2, 0), (2, 4), (4, 2), (0, 2), (1, 1), (1, 3), (3, 1), (3, 3)]
    py, px = positions[int(rng.integers(len(positions)))]
    return Crop(py * sy, px * sx, crop_h, crop_w, flip and bool(rng.integers(2)))


def apply_crop(images: np.ndarray, crop: Crop, size: int, flow: bool = False) -> np.ndarray:
    """Crop uint8 N x H x W x C images, resize to ``size`` x ``size``, flip (flow: x fields negated)."""
    out = np.empty((len(images), size, size, images.shape[-1]), dtype=np.uint8)
    for i, image in enumerate(images):
        box = image[crop.top : crop.top + crop.height, crop.left : crop.left + crop.width]
        resized = cv2.resize(np.ascontiguousarray(box), (size, size), interpolation=cv2.INTER_LINEAR)
        out[i] = resized.reshape(size, size, -1)
    if crop.flip:
        out = out[:, :, ::-1].copy()
        if flow:
            # TSN's encoding is symmetric about zero flow: code q of v becomes 255 - q for -v.
            out[..., 0::2] = 255 - out[..., 0::2]
    return out


def _resized(frame: av.VideoFrame, short_side: int, gray: bool) -> np.ndarray:
    scale = short_side / min(frame.width, frame.height)
    w, h = round(frame.width * scale), round(frame.height * scale)
    rgb = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
    # The luma extraction uses for flow (BT.601 from RGB), so flow is computed the same way.
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if gray else rgb


class SnippetDataset(Dataset):
    """(K x size x size x C uint8 snippets, label) per training clip; call ``set_epoch`` each epoch.

    A video that cannot be decoded gives an ``Unreadable`` instead (batch with
    ``collate_snippets``), so one bad file costs its own samples, not the run.

    ``flow``: the flow method; snippets are then 10-channel flow stacks computed on the fly
    from the decoded grayscale frames (each worker process or thread has its own copy).
    """

    def __init__(
        self,
        clips: Sequence[Clip],
        root: Path,
        segments: int = 3,
        size: int = 224,
        resize: int = 256,
        flow: FlowMethod | None = None,
        scales: Sequence[float] = SCALES,
        flip: bool = True,
        seed: int = 0,
    ):
        if not clips:
            raise ValueError("no training clips to fine-tune on")
        self.clips, self.root = list(clips), Path(root)
        self.segments, self.size, self.resize = segments, size, resize
        self.flow, self.scales, self.flip, self.seed = flow, tuple(scales), flip, seed
        self.epoch = 0
        self._local = threading.local()

    def __getstate__(self) -> dict:  # DataLoader workers under spawn: each makes its own flow objects
        state = dict(self.__dict__)
        del state["_local"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def _flow_method(self) -> FlowMethod:
        method = getattr(self._local, "flow", None)
        if method is None:
            method = self._local.flow = make_flow(self.flow.method, self.flow.preset)
        return method

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | Unreadable:
        try:
            return self._snippets(index)
        except VideoError as exc:
            return Unreadable(exc.path, exc.reason)

    def _snippets(self, index: int) -> tuple[torch.Tensor, int]:
        clip = self.clips[index]
        path = self.root / clip.key
        seeds = (self.seed, self.epoch, index)
        span = FLOW_STACK + 1 if self.flow is not None else 1  # frames one snippet spans

        def starts(count: int) -> np.ndarray:
            # Seeded by the count too: the same draw when a second decode learns the true count.
            return segment_positions(max(count - span + 1, 1), self.segments, np.random.default_rng((*seeds, count)))

        def wanted(count: int) -> set[int]:
            return set((starts(count)[:, None] + np.arange(span)).clip(0, count - 1).ravel().tolist())

        frames, count = decode_sampled(path, wanted, lambda f: _resized(f, self.resize, self.flow is not None))
        s = starts(count)
        if self.flow is not None:
            if count < 2:
                raise VideoError(path, f"optical flow needs at least 2 frames, the video has {count}")
            pairs = np.minimum(s[:, None] + np.arange(FLOW_STACK), count - 2)
            images = flow_stacks(frames, pairs, self._flow_method())
        else:
            images = np.stack([frames[int(i)] for i in s])
        rng = np.random.default_rng((*seeds, 0, 1))  # a longer seed than the count-seeded draws: its own stream
        crop = multiscale_crop(*images.shape[1:3], self.size, rng, self.scales, flip=self.flip)
        return torch.from_numpy(apply_crop(images, crop, self.size, flow=self.flow is not None)), clip.label


def collate_snippets(items: list) -> tuple[torch.Tensor, torch.Tensor, list[Unreadable]]:
    """A batch of the readable items (snippets, labels) and the unreadable ones, apart."""
    good = [item for item in items if not isinstance(item, Unreadable)]
    bad = [item for item in items if isinstance(item, Unreadable)]
    if not good:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long), bad
    return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good]), bad
