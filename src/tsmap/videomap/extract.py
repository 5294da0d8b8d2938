"""Videos -> VideoMaps: decode T frames, encode each, stack the rows in time order.

Decoding runs in a small thread pool ahead of the encoder (PyAV releases the GIL while
it decodes), so the ConvNet rarely waits for frames.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tsmap.data.datasets import Clip
from tsmap.data.video import FrameGeometry, VideoError, read_frames
from tsmap.frames.encoder import FrameEncoder
from tsmap.videomap.store import VideoMapStore


def extraction_settings(encoder: FrameEncoder, num_frames: int, geometry: FrameGeometry) -> dict:
    """Everything that changes a map's values; stores refuse to mix maps of different settings."""
    return {
        "stream": "rgb",
        "backbone": encoder.spec.name,
        "feature_dim": encoder.feature_dim,
        "frames": num_frames,
        "sampling": "uniform",
        **geometry.to_dict(),
        "dtype": "float16",
    }


def videomap_from_frames(frames: np.ndarray, encoder: FrameEncoder) -> np.ndarray:
    """The paper's Eq. 1: M = [f_1; ...; f_T], row t = pooled features of frame t."""
    return encoder.encode(frames)


def video_to_map(path: Path | str, encoder: FrameEncoder, num_frames: int, geometry: FrameGeometry) -> np.ndarray:
    frames, _ = read_frames(path, num_frames, geometry)
    return videomap_from_frames(frames, encoder)


@dataclass
class ExtractionSummary:
    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0
    seconds: float = 0.0
    engine: str = ""  # what ran the frame ConvNet (torch / onnx)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @classmethod
    def combine(cls, parts: Sequence[ExtractionSummary]) -> ExtractionSummary:
        """The summary of shards extracted side by side (time is the slowest shard's)."""
        out = cls(seconds=max((p.seconds for p in parts), default=0.0), engine=parts[0].engine if parts else "")
        for p in parts:
            out.done += p.done
            out.skipped += p.skipped
            out.frames += p.frames
            out.failed.update(p.failed)
        return out


class ExtractionAborted(Exception):
    """--strict extraction stopped at a bad video (the maps written so far are kept)."""


def shard(clips: Sequence[Clip], rank: int, world_size: int) -> list[Clip]:
    """Every ``world_size``-th clip of the key-sorted list: shards are disjoint and cover all."""
    ordered = sorted(clips, key=lambda c: c.key)
    return ordered[rank::world_size]


def extract_clips(
    clips: Sequence[Clip],
    video_root: Path,
    store: VideoMapStore,
    encoder: FrameEncoder,
    geometry: FrameGeometry,
    strict: bool = False,
    decode_workers: int = 2,
    show_progress: bool = True,
    desc: str = "extract",
    forget_failures: bool = True,
) -> ExtractionSummary:
    """Map every clip not yet in ``store``; bad videos are recorded and skipped (or, strict, fatal).

    ``forget_failures`` drops earlier failures of the videos mapped now; shards running
    side by side leave that to one process at the end, as it rewrites the failures file.
    """
    summary = ExtractionSummary()
    todo = [c for c in clips if not store.has(c.key)]
    summary.skipped = len(clips) - len(todo)
    num_frames = store.num_frames
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc=desc, unit="video", disable=not show_progress, dynamic_ncols=True)
    done_keys: set[str] = set()
    with ThreadPoolExecutor(max_workers=decode_workers) as pool:
        pending: deque[tuple[Clip, Future]] = deque()
        queue = iter(todo)

        def submit_next() -> None:
            clip = next(queue, None)
            if clip is not None:
                pending.append((clip, pool.submit(read_frames, video_root / clip.key, num_frames, geometry)))

        for _ in range(decode_workers + 1):
            submit_next()
        try:
            while pending:
                clip, future = pending.popleft()
                submit_next()
                try:
                    frames, _ = future.result()
                except VideoError as exc:
                    summary.failed[clip.key] = exc.reason
                    store.record_failure(clip.key, exc.reason)
                    bar.write(f"skipped {video_root / clip.key}: {exc.reason}")
                    if strict:
                        raise ExtractionAborted(str(exc)) from exc
                    bar.update(1)
                    continue
                store.write(clip.key, videomap_from_frames(frames, encoder))
                done_keys.add(clip.key)
                summary.done += 1
                summary.frames += num_frames
                bar.update(1)
                bar.set_postfix(frames_per_s=f"{summary.frames / (time.perf_counter() - start):.0f}")
        finally:
            for _, future in pending:
                future.cancel()
            bar.close()
            summary.seconds = time.perf_counter() - start
            if done_keys and forget_failures:
                store.clear_failures(done_keys)
    return summary
