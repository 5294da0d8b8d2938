"""Step 1, extract: every video of a dataset through the frame ConvNet into a VideoMap store.

One extraction at a time writes a store: it holds the store's folder lock from start to end
(under torchrun, rank 0 holds it for all ranks), so a second ``tsmap extract`` on the same
store stops at once, naming the process that has it. Before mapping, an existing store's
maps are checked against the videos they were made from (a replaced video, or another
dataset with the same ``<class>/<name>``, is refused unless ``remap_changed``), and a seeded
split is recorded once in the store (new videos are added to it, none moves).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from tsmap import distributed
from tsmap.data.datasets import VideoDataset, apply_recorded_split, split_record
from tsmap.data.video import FrameGeometry, Views
from tsmap.fileio import folder_lock
from tsmap.finetune.provenance import check_extraction, write_trained_keys
from tsmap.frames.encoder import STREAMS, FrameEncoder
from tsmap.frames.flow import make_flow
from tsmap.steps.common import resolve_device
from tsmap.videomap.extract import ExtractionSummary, extract_clips, extraction_settings, shard
from tsmap.videomap.store import SETTINGS_FILE, StoreError, VideoMapStore, describe_changed


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
    # Crops (and mirrors) mapped per video besides the centre one (RGB only); a store keeps
    # the views it was made with, and maps them for every new video.
    views: Views = Views()
    # Map again the videos whose file changed since their map was made (another size or
    # content); without it such a store is refused with the list of changed videos.
    remap_changed: bool = False


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
    """Map every video of ``dataset`` not yet in the store at ``store_dir`` (created if absent).

    Raises ``FolderBusy`` when another process extracts into the store, ``StoreError`` when
    the store holds other maps (settings, or videos changed since they were mapped) and
    ``WriteError`` when the store cannot be written (disk full, read-only): the maps
    written so far are kept, and a rerun resumes.
    """
    store_dir = Path(store_dir)
    world = distributed.current()
    with contextlib.ExitStack() as held:
        # Rank 0 takes the lock before anything else, so a second process stops at once.
        _same_outcome(world, lambda: held.enter_context(folder_lock(store_dir, "store")))
        store, summary = _extract_locked(dataset, store_dir, options, show_progress, world)
    return store, summary


def _same_outcome(world: distributed.World, setup) -> None:
    """Run ``setup`` on rank 0; every rank raises its exception, if any (so that no rank
    waits forever for a rank that stopped)."""
    error = None
    if world.is_main:
        try:
            setup()
        except Exception as exc:  # noqa: BLE001 - handed to every rank, then raised
            error = exc
    first = distributed.gather_objects(error)[0]
    if error is not None:
        raise error
    if first is not None:
        raise first


def _prepare_store(store: VideoMapStore, dataset: VideoDataset, options: ExtractOptions) -> list[str]:
    """Rank 0, under the lock, before any map is written: refuse (or discard, with
    ``remap_changed``) maps whose video changed, record where the videos are and the
    seeded split. Returns notes for the user."""
    notes = []
    store.remove_stale_temporaries()
    changed = store.verify_sources(dataset.root, (c.key for c in dataset.clips()))
    if changed and not options.remap_changed:
        raise StoreError(
            f"{len(changed)} videos differ from the files their VideoMaps in {store.root} were made from: "
            f"{describe_changed(changed, dataset.root)}. Map them again with --remap-changed "
            "(ExtractOptions.remap_changed), or use another --store folder"
        )
    for key, _ in changed:
        store.discard(key)
    if changed:
        notes.append(f"{len(changed)} changed videos are mapped again: {describe_changed(changed, dataset.root)}")
    if dataset.seeded is not None:
        record = store.recorded_split()
        if record is not None:
            merged = apply_recorded_split(dataset, record)
            notes += [line for line in merged.problems if line not in dataset.problems]
            dataset = merged
        store.record_split(split_record(dataset))
    store.update_source(dataset.spec)
    return notes


def _extract_locked(
    dataset: VideoDataset, store_dir: Path, options: ExtractOptions, show_progress: bool, world: distributed.World
) -> tuple[VideoMapStore, ExtractionSummary]:
    device = resolve_device(options.device)
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
    settings = extraction_settings(encoder, options.frames, geometry, flow, options.views)
    # Rank 0 creates or checks the store and prepares it before the others start writing;
    # a new store records its source at once, an existing one only once its maps are checked.
    notes: list[str] = []

    def setup() -> None:
        # A fine-tuned ConvNet must not have seen a test video of what it maps; refused before
        # anything is written.
        trained_keys = check_extraction(dataset, options.weights)
        new = not (store_dir / SETTINGS_FILE).exists()
        store = VideoMapStore.create_or_open(store_dir, settings, source=dataset.spec if new else None)
        notes.extend(_prepare_store(store, dataset, options))
        write_trained_keys(store.root, trained_keys)

    _same_outcome(world, setup)
    store = VideoMapStore.open(store_dir)  # as rank 0 left it
    for line in notes:
        print(f"note: {line}")
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
    if world.is_main:
        store.compact_sources()
    summary.notes = notes
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
