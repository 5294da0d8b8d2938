"""Decoding videos with PyAV and sampling T frames uniformly over the whole video."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".flv")


class VideoError(Exception):
    """A video that cannot be used, with the file and the reason."""

    def __init__(self, path: Path | str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def why_not_a_file(path: Path) -> str:
    """Why ``path``, named as a video, is not a file that can be read: a folder, a broken
    symbolic link, a link loop, or nothing there at all ("file not found")."""
    if path.is_dir():
        return "is a folder, not a video file"
    if path.is_symlink():
        try:
            path.stat()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symbolic link loop (the link leads back to itself)"
            return f"broken symbolic link (its target {os.readlink(path)} does not exist)"
    if path.exists():
        return "not a regular file"
    return "file not found"


def uniform_indices(num_frames: int, num_samples: int) -> np.ndarray:
    """Indices of ``num_samples`` frames spread evenly over ``num_frames``, order kept.

    Sample i sits at the centre of the i-th of ``num_samples`` equal segments (TSN's
    test-time sampling). A video shorter than ``num_samples`` repeats frames (nearest
    index). The second half mirrors the first, so reversing the video exactly reverses
    the sampled frames (except the middle sample when ``num_samples`` is odd and
    ``num_frames`` even: it falls between two frames and takes the earlier one).
    """
    if num_frames < 1 or num_samples < 1:
        raise ValueError(f"need num_frames >= 1 and num_samples >= 1, got {num_frames}, {num_samples}")
    i = np.arange(num_samples)
    idx = np.floor((i + 0.5) * num_frames / num_samples).astype(np.int64)
    half = num_samples // 2
    if half:
        idx[num_samples - half :] = (num_frames - 1 - idx[:half])[::-1]
    return np.clip(idx, 0, num_frames - 1)


@dataclass(frozen=True)
class FrameGeometry:
    """Resize the shorter side to ``resize``, then centre-crop ``size`` x ``size``.

    Done in the other order, which gives the same picture for less work: the centre
    square that the crop keeps (``size / resize`` of the shorter side) is cut from the
    decoded frame first and only then resized to ``size`` (OpenCV, area interpolation),
    so no pixel outside the crop is resized. yuv420p frames (H.264's usual format) go
    to RGB through OpenCV. Converting and resizing whole frames through swscale cost
    ~3x more per frame (1,450 vs 4,400 sampled frames/s with decoding, demo videos).
    """

    size: int = 224
    resize: int = 256

    def to_dict(self) -> dict:
        # "center-first": crop, then resize (maps differ in rounding from the former
        # resize-then-crop "center", so stores of the two do not mix).
        return {"image_size": self.size, "resize": self.resize, "crop": "center-first"}

    def crop_box(self, width: int, height: int, position: tuple[int, int] = (1, 1)) -> tuple[int, int, int]:
        """(top, left, side) of the kept square in the decoded frame's pixels.

        ``position`` places it in halves of the margin, (row, column): (1, 1) is the centre,
        (0, 0) the top-left corner, (2, 2) the bottom-right one.
        """
        short = min(width, height)
        side = min(short, max(1, round(self.size * short / self.resize)))
        return (height - side) * position[0] // 2, (width - side) * position[1] // 2, side

    def convert(self, frame: av.VideoFrame) -> np.ndarray:
        return self._crop(_to_rgb(frame), self.crop_box(frame.width, frame.height))

    def convert_views(self, frame: av.VideoFrame, views: Views) -> np.ndarray:
        """The frame's ``views.count`` crops, V x size x size x 3; crop 0 is ``convert(frame)``."""
        rgb = _to_rgb(frame)
        crops = [self._crop(rgb, self.crop_box(frame.width, frame.height, p)) for p in views.positions]
        if views.flip:
            crops += [np.ascontiguousarray(c[:, ::-1]) for c in crops]
        return np.stack(crops)

    def _crop(self, rgb: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
        top, left, side = box
        rgb = rgb[top : top + side, left : left + side]
        if rgb.shape[0] == self.size and rgb.shape[1] == self.size:
            return np.ascontiguousarray(rgb)
        return cv2.resize(np.ascontiguousarray(rgb), (self.size, self.size), interpolation=cv2.INTER_AREA)


# Where the crops of a multi-view map sit, in halves of the margin (row, column): the
# centre first (the single-view map), then the corners, as TSN's test-time crops.
CROP_POSITIONS = ((1, 1), (0, 0), (0, 2), (2, 0), (2, 2))


@dataclass(frozen=True)
class Views:
    """The views mapped per video: ``crops`` squares (centre, then corners), each also
    mirrored when ``flip``. View 0 is the centre crop: the single-view map, bit for bit.

    A mirror turns a pan right into a pan left (and clockwise into anticlockwise), so flips
    are for datasets whose classes do not differ by direction only.
    """

    crops: int = 1
    flip: bool = False

    def __post_init__(self):
        if not 1 <= self.crops <= len(CROP_POSITIONS):
            raise ValueError(f"views: 1 to {len(CROP_POSITIONS)} crops, not {self.crops}")

    @property
    def positions(self) -> tuple[tuple[int, int], ...]:
        return CROP_POSITIONS[: self.crops]

    @property
    def count(self) -> int:
        return self.crops * (2 if self.flip else 1)

    def to_dict(self) -> dict:
        """The store's ``views`` setting (``Views(**d)`` reads it back)."""
        return {"crops": self.crops, "flip": self.flip}


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as H x W x 3 RGB uint8."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        # OpenCV's BT.601 conversion (swscale's default too) is ~3x faster than PyAV's.
        return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2RGB_I420)
    return frame.to_ndarray(format="rgb24")


def _decode(
    path: Path, wanted: Collection[int], convert: Callable[[av.VideoFrame], np.ndarray]
) -> tuple[dict[int, np.ndarray], int]:
    """Decode every frame, converting only those in ``wanted``. Returns (frames, count)."""
    keep = set(int(i) for i in wanted)
    frames: dict[int, np.ndarray] = {}
    count = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(path, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                if count in keep:
                    frames[count] = convert(frame)
                count += 1
    except VideoError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(path, f"cannot decode ({type(exc).__name__}: {exc})") from exc
    return frames, count


def frame_count_hint(path: Path) -> int:
    """The container's frame count, or 0 when it does not say."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(path, "no video stream")
            return max(int(container.streams.video[0].frames or 0), 0)
    except VideoError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(path, f"cannot open ({type(exc).__name__}: {exc})") from exc


def decode_sampled(
    path: Path | str,
    wanted_for: Callable[[int], Collection[int]],
    convert: Callable[[av.VideoFrame], np.ndarray],
) -> tuple[dict[int, np.ndarray], int]:
    """The frames ``wanted_for(frame count)`` names, each through ``convert``, and the count.

    The container's frame count picks the frames to convert in one pass; when the
    decoded count disagrees (common with AVI), the video is decoded again with the
    true count so that sampling is always over the frames that exist. With no count
    in the header, the first pass only counts (``wanted_for`` is not asked about 0).
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError(path, why_not_a_file(path))
    hint = frame_count_hint(path)
    frames, count = _decode(path, wanted_for(hint) if hint > 0 else (), convert)
    if count == 0:
        raise VideoError(path, "no frames could be decoded")
    if count != hint:
        frames, recount = _decode(path, wanted_for(count), convert)
        if recount != count:
            raise VideoError(path, f"frame count changed between two decodes ({count} vs {recount})")
    return frames, count


def read_distinct_frames(
    path: Path | str, num_samples: int, geometry: FrameGeometry
) -> tuple[np.ndarray, np.ndarray, int]:
    """The distinct frames of a uniform sample of ``num_samples``, which of them each sample is, and the count.

    ``frames[rows]`` is the sample (``read_frames``). A video shorter than ``num_samples``
    repeats frames; encoding each distinct frame once saves that work (at T = 256 most
    videos of HMDB51's shortest classes have fewer frames).
    """
    frames, count = decode_sampled(path, lambda n: uniform_indices(n, num_samples), geometry.convert)
    distinct, rows = np.unique(uniform_indices(count, num_samples), return_inverse=True)
    return np.stack([frames[int(i)] for i in distinct]), rows.reshape(-1), count


def read_distinct_views(
    path: Path | str, num_samples: int, geometry: FrameGeometry, views: Views
) -> tuple[np.ndarray, np.ndarray, int]:
    """``read_distinct_frames`` with every frame cut into ``views.count`` crops: N x V x H x W x 3."""
    frames, count = decode_sampled(
        path, lambda n: uniform_indices(n, num_samples), lambda f: geometry.convert_views(f, views)
    )
    distinct, rows = np.unique(uniform_indices(count, num_samples), return_inverse=True)
    return np.stack([frames[int(i)] for i in distinct]), rows.reshape(-1), count


def read_frames(path: Path | str, num_samples: int, geometry: FrameGeometry) -> tuple[np.ndarray, int]:
    """``num_samples`` RGB frames (uint8, N x H x W x 3) sampled uniformly, and the frame count."""
    frames, rows, count = read_distinct_frames(path, num_samples, geometry)
    return frames[rows], count
