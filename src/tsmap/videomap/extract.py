"""Videos -> VideoMaps: decode T frames, encode each, stack the rows in time order.

Decoding runs in a small thread pool ahead of the encoder (PyAV releases the GIL while
it decodes), so the ConvNet rarely waits for frames.

The flow stream (an encoder made with ``stream="flow"`` and a ``FlowMethod``) maps a video
the same way, with row t the pooled features of the 5 flow fields that start at the t-th
of T uniformly spread times (``tsmap.frames.flow.read_flow_stacks``: each video is decoded
and each needed pair of frames gets its flow computed once). The flow is computed in the
same worker threads (OpenCV releases the GIL), each with its own flow object.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tsmap.data.clips import Clip
from tsmap.data.video import FrameGeometry, VideoError, Views, read_distinct_frames, read_distinct_views
from tsmap.frames.encoder import FrameEncoder
from tsmap.frames.flow import FLOW_STACK, FlowMethod, make_flow, read_distinct_flow_stacks
from tsmap.frames.onnx_runtime import free_cores
from tsmap.progress import progress as tqdm
from tsmap.videomap.settings import MapSettings
from tsmap.videomap.store import StoreError, VideoMapStore


def extraction_settings(
    encoder: FrameEncoder,
    num_frames: int,
    geometry: FrameGeometry,
    flow: FlowMethod | None = None,
    views: Views = Views(),
) -> MapSettings:
    """Everything that changes a map's values; stores refuse to mix maps of different settings.

    A flow store adds the flow method, its preset and bound, the stack length and the
    ConvNet's weights, so it never matches an RGB store nor a store of flow computed
    another way. The OpenCV version is left out, as the PyTorch version is for RGB: it
    changes the maps by rounding only. Weights other than the built-in ImageNet ones (a
    fine-tuned or BN-Inception checkpoint) are recorded by name and hash, with the file's
    path for ``tsmap predict`` and, for a fine-tuned ConvNet, what it was trained on.
    ``views`` beyond one (RGB only) add the crops and mirrors mapped besides the centre.
    """
    if (encoder.stream == "flow") != (flow is not None):
        raise ValueError("a flow encoder needs a flow method, and an RGB encoder none")
    if flow is not None and views.count > 1:
        raise ValueError("views are mapped for the RGB stream only")
    settings = MapSettings(
        frames=num_frames,
        feature_dim=encoder.feature_dim,
        backbone=encoder.spec.name,
        stream=encoder.stream,
        image_size=geometry.size,
        resize=geometry.resize,
        weights=encoder.weights if flow is not None or not encoder.default_weights else None,
        weights_file=encoder.weights_file,
        weights_trained_on=getattr(encoder, "trained_on", None),
        views=views.to_dict() if views.count > 1 else None,
    )
    if flow is not None:
        settings = settings.with_(
            flow_method=flow.method, flow_preset=flow.preset, flow_bound=flow.to_dict()["bound"], flow_stack=FLOW_STACK
        )
    return settings


def encoder_for_store(settings: MapSettings, device: str = "cpu", batch_size: int = 16) -> FrameEncoder:
    """The frame encoder that made a store's maps, to map new videos the same way.

    A store made with a weights file needs that file, unchanged: its hash must match.
    """
    encoder = FrameEncoder(
        settings.backbone,
        device=device,
        batch_size=batch_size,
        image_size=settings.image_size,
        stream=settings.stream,
        weights=settings.weights_file,
    )
    want = settings.weights or encoder.weights
    if encoder.weights != want:
        raise StoreError(
            f"the maps were made with weights {want!r}, but {settings.weights_file} now holds {encoder.weights!r}"
        )
    return encoder


def flow_from_settings(settings: MapSettings) -> FlowMethod | None:
    """The flow method a store's settings name (None for an RGB store)."""
    if settings.stream != "flow":
        return None
    return make_flow(settings.flow_method, settings.flow_preset)


def videomap_from_frames(frames: np.ndarray, encoder: FrameEncoder, rows: np.ndarray | None = None) -> np.ndarray:
    """The paper's Eq. 1: M = [f_1; ...; f_T], row t = pooled features of frame t (or flow stack t).

    With ``rows``, ``frames`` holds distinct frames only and row t is that of ``frames[rows[t]]``.
    """
    features = encoder.encode(frames)
    return features if rows is None else features[rows]


def other_views(frames: np.ndarray, encoder: FrameEncoder, rows: np.ndarray) -> np.ndarray:
    """The maps of views 1..V-1 of N x V frames, V-1 x T x L (encoded in one pass)."""
    n, v = frames.shape[:2]
    features = encoder.encode(frames[:, 1:].reshape(n * (v - 1), *frames.shape[2:]))
    return features.reshape(n, v - 1, -1)[rows].transpose(1, 0, 2)


def encode_views(
    frames: np.ndarray, rows: np.ndarray, encoder: FrameEncoder, views: Views, view0: bool = True
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(view 0's map, T x L; views 1..V-1, V-1 x T x L, or None with one view).

    View 0 is encoded alone, as a single-view store encodes it: the same map, bit for bit.
    Without ``view0`` (a single-view store growing views keeps its maps) it is not encoded: None.
    """
    if views.count == 1:
        return videomap_from_frames(frames, encoder, rows), None
    first = videomap_from_frames(frames[:, 0], encoder, rows) if view0 else None
    return first, other_views(frames, encoder, rows)


def clip_reader(
    num_frames: int, geometry: FrameGeometry, flow: FlowMethod | None = None, views: Views = Views()
) -> Callable[[Path], tuple[np.ndarray, np.ndarray]]:
    """``read(path)`` -> (distinct inputs, rows): RGB frames, or flow stacks when ``flow`` is given.

    ``inputs[rows]`` are the T inputs of the map; a video shorter than T repeats some,
    which are then encoded once. Safe to call from several threads: each thread gets its
    own copy of the flow method (an OpenCV flow object must not run in two threads at once).
    With more than one of ``views``, the inputs are N x V frames (view 0: the centre crop).
    """
    if flow is None and views.count > 1:
        return lambda path: read_distinct_views(path, num_frames, geometry, views)[:2]
    if flow is None:
        return lambda path: read_distinct_frames(path, num_frames, geometry)[:2]
    local = threading.local()

    def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
        method = getattr(local, "flow", None)
        if method is None:
            method = local.flow = make_flow(flow.method, flow.preset)
        return read_distinct_flow_stacks(path, num_frames, geometry, method)[:2]

    return read


def video_to_map(
    path: Path | str,
    encoder: FrameEncoder,
    num_frames: int,
    geometry: FrameGeometry,
    flow: FlowMethod | None = None,
) -> np.ndarray:
    """The VideoMap of one video: RGB frames, or with ``flow`` (and a flow encoder) flow stacks."""
    return video_to_maps(path, encoder, num_frames, geometry, flow)[0]


def video_to_maps(
    path: Path | str,
    encoder: FrameEncoder,
    num_frames: int,
    geometry: FrameGeometry,
    flow: FlowMethod | None = None,
    views: Views = Views(),
) -> np.ndarray:
    """The maps of every view of one video, V x T x L (view 0, the centre crop, first)."""
    frames, rows = clip_reader(num_frames, geometry, flow, views)(Path(path))
    first, rest = encode_views(frames, rows, encoder, views)
    return first[None] if rest is None else np.concatenate([first[None], rest])


@dataclass
class ExtractionSummary:
    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    frames: int = 0  # map rows written
    encoded: int = 0  # distinct frames (or flow stacks) through the ConvNet: fewer when videos are shorter than T
    seconds: float = 0.0
    engine: str = ""  # what ran the frame ConvNet (torch / onnx)
    notes: list[str] = field(default_factory=list)  # what the user should know (new videos, remapped ones)

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
            out.encoded += p.encoded
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
    flow: FlowMethod | None = None,
) -> ExtractionSummary:
    """Map every clip not yet in ``store``; bad videos are recorded and skipped (or, strict, fatal).

    A write that fails (disk full, read-only store) is no bad video: its ``WriteError``
    stops the extraction at once, leaving the maps written so far and no temporary file.

    ``forget_failures`` drops earlier failures of the videos mapped now; shards running
    side by side leave that to one process at the end, as it rewrites the failures file.
    With ``flow`` (and a flow encoder), rows are flow stacks instead of frames.
    """
    summary = ExtractionSummary()
    todo = [c for c in clips if not store.complete(c.key)]
    summary.skipped = len(clips) - len(todo)
    num_frames = store.num_frames
    views = store.map_settings.view_spec
    read = clip_reader(num_frames, geometry, flow, views)
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc=desc, unit="video", disable=not show_progress, dynamic_ncols=True)
    done_keys: set[str] = set()
    # No more decode threads than the cores other processes leave free: on a shared
    # machine the extra ones only take turns with the ConvNet's threads, which
    # make_session fits to the same free cores (benchmarks/extract.py --background-load).
    decode_workers = max(1, min(decode_workers, free_cores()))
    with ThreadPoolExecutor(max_workers=decode_workers) as pool:
        pending: deque[tuple[Clip, Future]] = deque()
        queue = iter(todo)

        def submit_next() -> None:
            clip = next(queue, None)
            if clip is not None:
                pending.append((clip, pool.submit(read, video_root / clip.key)))

        for _ in range(decode_workers + 1):
            submit_next()
        try:
            while pending:
                clip, future = pending.popleft()
                submit_next()
                try:
                    frames, rows = future.result()
                except VideoError as exc:
                    summary.failed[clip.key] = exc.reason
                    store.record_failure(clip.key, exc.reason)
                    bar.write(f"skipped {video_root / clip.key}: {exc.reason}")
                    if strict:
                        raise ExtractionAborted(str(exc)) from exc
                    bar.update(1)
                    continue
                grow = views.count > 1 and store.has(clip.key)  # a single-view store growing views
                first, rest = encode_views(frames, rows, encoder, views, view0=not grow)
                if first is not None:
                    store.write(clip.key, first)
                if rest is not None:
                    store.write_views(clip.key, rest)
                mapped = views.count - grow
                # What the map was made from, so a replaced video is never served this map.
                store.record_source(clip.key, video_root / clip.key)
                done_keys.add(clip.key)
                summary.done += 1
                summary.frames += num_frames * mapped
                summary.encoded += len(frames) * mapped
                bar.update(1)
                bar.set_postfix(frames_per_s=f"{summary.frames / (time.perf_counter() - start):.0f}")
        finally:
            for _, future in pending:
                future.cancel()
            bar.close()
            summary.seconds = time.perf_counter() - start
            # Also when nothing was mapped: a rerun that fails a video again keeps one line for it.
            if forget_failures and (done_keys or summary.failed):
                store.clear_failures(done_keys)
    return summary
