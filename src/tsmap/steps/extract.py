"""Step 1, extract: every video of a dataset through the frame ConvNet into a VideoMap store."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from tsmap import distributed
from tsmap.data.datasets import VideoDataset
from tsmap.data.video import FrameGeometry
from tsmap.frames.encoder import STREAMS, FrameEncoder
from tsmap.frames.flow import make_flow
from tsmap.steps.common import resolve_device
from tsmap.videomap.extract import ExtractionSummary, extract_clips, extraction_settings, shard
from tsmap.videomap.store import StoreError, VideoMapStore


@dataclass
class ExtractOptions:
    frames: int = 256
    backbone: str = "efficientnet_lite0"
    weights: Path | None = None  # a `tsmap finetune` or BN-Inception checkpoint (None: Lite0's ImageNet weights)
    image_size: int = 224
    resize: int = 256
    batch_size: int = 16
    device: str = "auto"
    strict: bool = False
    decode_workers: int = 2
    engine: str = "auto"  # frame ConvNet runtime: torch, onnx (ONNX Runtime, CPU) or auto
    stream: str = "rgb"  # rgb (frames) or flow (5-field optical flow stacks)
    flow: str = "dis"  # optical flow method of the flow stream: dis or tvl1
    flow_preset: str | None = None  # None: the method's default (dis: medium)


def check_stream(store_dir: Path, stream: str) -> None:
    """A store holds one stream: asking another of an existing store is named as such, up front."""
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; choose from {', '.join(STREAMS)}")
    if not (store_dir / "store.json").is_file():
        return
    have = VideoMapStore.open(store_dir).settings.get("stream", "rgb")
    if have != stream:
        raise StoreError(
            f"{store_dir} holds {have} VideoMaps and cannot take {stream} ones; "
            f"give the {stream} stream its own --store folder"
        )


def extract(
    dataset: VideoDataset, store_dir: Path, options: ExtractOptions, show_progress: bool = True
) -> tuple[VideoMapStore, ExtractionSummary]:
    device = resolve_device(options.device)
    world = distributed.current()
    check_stream(store_dir, options.stream)
    flow = make_flow(options.flow, options.flow_preset) if options.stream == "flow" else None
    encoder = FrameEncoder(
        options.backbone,
        device=device,
        batch_size=options.batch_size,
        engine=options.engine,
        image_size=options.image_size,
        stream=options.stream,
        weights=options.weights,
    )
    geometry = FrameGeometry(options.image_size, options.resize)
    settings = extraction_settings(encoder, options.frames, geometry, flow)
    # Under torchrun, rank 0 creates the store and clears what a killed run left before
    # the others start writing; then each rank maps its own shard.
    if world.is_main:
        store = VideoMapStore.create_or_open(store_dir, settings, source=dataset.spec)
        store.remove_stale_temporaries()
    distributed.barrier()
    if not world.is_main:
        store = VideoMapStore.create_or_open(store_dir, settings, source=dataset.spec)
    # Flow is computed in the decode threads while PyTorch encodes the previous video: on
    # CPU, PyTorch gets the cores those threads leave (on 2 cores, 1 thread: its OpenMP
    # threads otherwise wait on cores the flow holds: 0.23 vs 0.25 s a video measured on
    # idle cores, 0.29 vs 0.54 s on busy ones).
    threads = max(1, torch.get_num_threads() - options.decode_workers)
    with _torch_threads(threads if flow is not None and encoder.device.type == "cpu" else None):
        summary = extract_clips(
            shard(dataset.clips(), world.rank, world.size),
            dataset.root,
            store,
            encoder,
            geometry,
            strict=options.strict,
            decode_workers=options.decode_workers,
            show_progress=show_progress and world.is_main,
            forget_failures=world.size == 1,
            flow=flow,
        )
    summary.engine = {"onnx": "ONNX Runtime", "torch": f"PyTorch ({device})"}[encoder.engine]
    if flow is not None:
        summary.engine += f", {flow.method} {flow.preset} flow"
    if world.size > 1:
        summary = ExtractionSummary.combine(distributed.gather_objects(summary))
        distributed.barrier()
        if world.is_main:
            store.clear_failures({key for key in store.failures() if store.has(key)})
    return store, summary


@contextlib.contextmanager
def _torch_threads(threads: int | None):
    """PyTorch's intra-op threads set to ``threads`` inside the block (None: unchanged)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


