"""Fig. 5: top-1 against the frames per video at test time (T').

The maps for T' come from a *density store*: the test videos extracted once at T = max(T')
with the main store's settings, all but ``frames`` (backbone, weights file, stream, flow
settings, geometry), checked with ``require_same_maps(..., ignore=("frames",))`` both when
it is made and when it is reused; or the main store itself when its T is large enough.
The T' rows ``uniform_indices(T, T')`` of each map are the T' frames tested. A head
resamples them to its trained T (``resample_time``), so beyond that T it sees that many of
the T' frames; TSN averages all T' rows.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from tsmap.data.datasets import VideoDataset
from tsmap.data.video import uniform_indices
from tsmap.evaluation.metrics import summarize
from tsmap.heads.tsn import ALL_ROWS, TSNHead
from tsmap.report.experiments import load_maps, spread
from tsmap.report.options import ReportOptions
from tsmap.steps.extract import ExtractOptions, extract
from tsmap.steps.join import part_settings
from tsmap.training import score_maps
from tsmap.videomap.settings import MapSettings
from tsmap.videomap.store import StoreError, VideoMapStore, require_same_maps

CURVES = (("videomap", "A0A1A2"), ("tsn", "tsn"))  # (curve, design whose heads draw it)


class RowSubset(Dataset):
    """The maps of ``data`` with only the rows ``rows`` (a sparser sampling of the same videos)."""

    def __init__(self, data: Dataset, rows: np.ndarray):
        self.data, self.rows = data, torch.from_numpy(rows)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        m, y = self.data[i]
        return m.index_select(0, self.rows), y


def extract_options(settings: MapSettings, options: ReportOptions) -> ExtractOptions:
    """Extraction options that make maps of ``settings`` (backbone, weights, stream, flow, geometry, T)."""
    return ExtractOptions(
        frames=settings.frames,
        backbone=settings.backbone,
        weights=Path(settings.weights_file) if settings.weights_file else None,
        image_size=settings.image_size,
        resize=settings.resize,
        device=options.device,
        engine=options.engine,
        stream=settings.stream,
        flow=settings.flow_method or ExtractOptions.flow,
        flow_preset=settings.flow_preset,
    )


def _same_maps(dense: VideoMapStore, store: VideoMapStore) -> None:
    require_same_maps(
        dense.map_settings,
        store.map_settings,
        f"density store {dense.root}",
        f"delete it, or give --density-store another folder, to extract the test videos again like {store.root}",
        labels=("density store has", "main store has"),
        ignore=("frames",),
    )


def _open_dense(path: Path, store: VideoMapStore, frames: int) -> VideoMapStore | None:
    if not (path / "store.json").is_file():
        return None
    dense = VideoMapStore.open(path)
    _same_maps(dense, store)
    if dense.num_frames < frames:
        raise StoreError(f"density store {path} has T = {dense.num_frames}, below the density {frames}")
    return dense


def dense_store(
    store: VideoMapStore, dataset: VideoDataset, frames: int, options: ReportOptions, log
) -> tuple[VideoMapStore | None, str]:
    """A store with the test videos at ``frames`` rows and the store's other settings, or None and why."""
    if store.num_frames >= frames:
        return store, f"the store itself (T = {store.num_frames})"
    path = options.density_store or store.root.with_name(f"{store.root.name}-T{frames}")
    dense = _open_dense(path, store, frames)
    clips = dataset.clips("test")
    todo = [c for c in clips if dense is None or not dense.has(c.key)]
    if not todo:
        return dense, f"{path} (T = {dense.num_frames}, test videos only)"
    if not all((dataset.root / c.key).is_file() for c in todo):
        return dense, f"not extracted: the videos are not under {dataset.root}"
    if len(part_settings(store.map_settings)) > 1:
        return dense, (
            f"not extracted: {store.root} joins other stores (`tsmap join`); extract its parts' test videos at "
            f"T = {frames}, join them and give --density-store"
        )
    want = store.map_settings.with_(frames=frames if dense is None else dense.num_frames)
    if want.weights_file and not Path(want.weights_file).is_file():
        return dense, (
            f"not extracted: the weights file the store's maps were made with, {want.weights_file}, is not there; "
            "extract the test videos with it yourself and give --density-store"
        )
    log(f"  extracting the {len(todo)} test videos at T = {want.frames} into {path} (once; reused later)")
    only_test = VideoDataset(dataset.root, dataset.classes, {"test": clips}, dataset.spec)
    dense, summary = extract(only_test, path, extract_options(want, options), show_progress=options.show_progress)
    _same_maps(dense, store)  # e.g. a weights file changed since the main store was made
    log(f"  {summary.done} mapped in {summary.seconds:.0f} s ({summary.frames_per_second:.0f} frames/s)")
    return dense, f"{path} (T = {dense.num_frames}, test videos only)"


def all_rows(model: nn.Module) -> nn.Module:
    """A TSN head that averages every row at test (a copy; other heads as they are)."""
    if not isinstance(model, TSNHead) or model.test_frames == ALL_ROWS:
        return model
    out = copy.deepcopy(model)
    out.test_frames = ALL_ROWS
    out.config = {**out.config, "test_frames": ALL_ROWS}
    return out


def density_curve(
    store: VideoMapStore,
    dataset: VideoDataset,
    models: dict[str, list[nn.Module]],
    options: ReportOptions,
    run_heads: dict[str, nn.Module],
    log=print,
) -> dict:
    """Top-1 of the A0A1A2 and TSN heads of every seed (and of ``run_heads``) at each density T'."""
    densities = sorted(set(options.densities))
    dense, source = dense_store(store, dataset, max(densities), options, log)
    out: dict = {"densities": [], "source": source, "protocol": None, "videomap": {}, "tsn": {}, "run": {}}
    if dense is None:
        dense, densities = store, [d for d in densities if d <= store.num_frames]
        out["source"] = f"{source}; only T' <= {store.num_frames} from the store itself"
    if not densities:
        return out
    base = load_maps(dense, [c for c in dataset.clips("test") if dense.has(c.key)])
    out["densities"] = densities
    out["num_videos"] = len(base)
    out["protocol"] = (
        f"T' rows uniform_indices({dense.num_frames}, T') of each test video's {dense.num_frames}-row map; "
        f"heads trained at T = {store.num_frames} resample T' rows to {store.num_frames}, TSN averages all T' rows"
    )
    run_heads = {kind: all_rows(m) for kind, m in run_heads.items()}
    for kind, key in CURVES:
        per_t = {}
        for t in densities:
            data = RowSubset(base, uniform_indices(dense.num_frames, t))
            per_t[t] = [_top1(all_rows(m), data, options.device) for m in models[key]]
            if kind in run_heads:
                out["run"].setdefault(kind, []).append(_top1(run_heads[kind], data, options.device))
        out[kind] = {str(t): spread(v) for t, v in per_t.items()}
    return out


def _top1(model: nn.Module, data: Dataset, device: str) -> float:
    return summarize(*score_maps(model, data, device=device))["top1"]
