"""Join: one store whose maps are several stores' maps side by side (RGB and flow: T x 2L).

Late fusion (``tsmap fuse``) weighs whole streams; a head trained on both streams' maps
side by side can read the appearance classes in the RGB columns and the motion classes in
the flow columns (on the real-footage benchmark +4 to +11 points a draw on validation over
fusion, BENCHMARKS.md (g)). The joined store is an ordinary store to ``tsmap train``,
``evaluate`` and ``report``; its settings keep every part's (``parts``), so ``tsmap
predict`` maps a new video with each part's own settings and joins the rows the same way.

The parts must be maps of the same videos of the same dataset and split, with the same T
and sampling, one view each. A part mapped by a fine-tuned ConvNet passes its training
videos on (the union, when both parts are fine-tuned), so the test-set checks of
``check_store`` hold for the joined store as they do for its parts. Rerunning the join
rewrites only the maps whose parts changed since (a part re-extracted, or mapped anew) and
drops those of videos no longer mapped in every part.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tsmap.fileio import folder_lock
from tsmap.finetune.provenance import keys_digest, read_trained_keys, write_trained_keys
from tsmap.videomap.settings import PARTS_KEY, STORE_FORMAT, MapSettings
from tsmap.videomap.store import StoreError, VideoMapStore

SAME_IN_EVERY_PART = ("frames", "sampling", "dtype")


def joined_settings(parts: list[VideoMapStore], trained_keys: list[str] | None) -> MapSettings:
    """The settings of the store that joins ``parts`` (checked to be joinable); ``trained_keys``:
    the union of the fine-tuned parts' training videos (``_union_keys``)."""
    if len(parts) < 2:
        raise StoreError("join needs two stores or more (e.g. an RGB and a flow store of the same videos)")
    first = parts[0]
    for part in parts:
        s = part.map_settings
        if s.extra.get(PARTS_KEY):
            raise StoreError(f"{part.root} is a joined store already; join its parts and the other stores instead")
        if part.views > 1:
            raise StoreError(f"{part.root} holds {part.views} views a video; join single-view stores")
        for key in SAME_IN_EVERY_PART:
            if getattr(s, key) != getattr(first.map_settings, key):
                raise StoreError(
                    f"{part.root} has {key} {getattr(s, key)!r}, {first.root} {getattr(first.map_settings, key)!r}; "
                    "join stores extracted with the same --frames (and sampling)"
                )
        if s.source != first.map_settings.source or part.recorded_split() != first.recorded_split():
            raise StoreError(
                f"{part.root} and {first.root} were extracted from other datasets or splits; extract both from "
                "the same --videos and lists (rerun `tsmap extract` on one of them), then join"
            )
    settings = [p.map_settings for p in parts]
    return MapSettings(
        frames=first.map_settings.frames,
        feature_dim=sum(s.feature_dim for s in settings),
        backbone="+".join(s.backbone for s in settings),
        stream="+".join(s.stream for s in settings),
        sampling=first.map_settings.sampling,
        image_size=first.map_settings.image_size,
        resize=first.map_settings.resize,
        crop=first.map_settings.crop,
        dtype=first.map_settings.dtype,
        weights_trained_on=_trained_on(settings, trained_keys),
        source=first.map_settings.source,
        extra={PARTS_KEY: [_part_record(s) for s in settings]},
    )


def part_settings(settings: MapSettings) -> list[MapSettings]:
    """The settings of each part of a joined store's (or a head's) maps; ``[settings]`` for
    an ordinary store."""
    records = settings.extra.get(PARTS_KEY)
    return [MapSettings.from_dict({"format": STORE_FORMAT, **r}) for r in records] if records else [settings]


def _part_record(settings: MapSettings) -> dict:
    """A part's settings as store.json has them, less where its videos are (the joined store says)."""
    return {k: v for k, v in settings.to_dict().items() if k not in ("source", "format")}


def _union_keys(parts: list[VideoMapStore]) -> list[str] | None:
    """Every video a part's fine-tuned ConvNet was trained on; None when no part's was."""
    tuned = [p for p in parts if p.map_settings.weights_trained_on]
    union: set[str] = set()
    for part in tuned:
        keys = read_trained_keys(part.root)
        if keys is None:
            raise StoreError(f"{part.root} lacks the list of its ConvNet's training videos; extract it again")
        union.update(keys)
    return sorted(union) if tuned else None


def _trained_on(settings: list[MapSettings], keys: list[str] | None) -> dict | None:
    """A joined store's ``weights_trained_on``: the fine-tuned parts' record, over the union of their videos."""
    records = [s.weights_trained_on for s in settings if s.weights_trained_on]
    if not records:
        return None
    if any((r.get("dataset"), r.get("split")) != (records[0].get("dataset"), records[0].get("split")) for r in records):
        raise StoreError("the parts' ConvNets were fine-tuned on different datasets or splits; join maps of one")
    return records[0] | {"videos": len(keys or []), "digest": keys_digest(keys or [])}


def join(part_dirs: list[Path], out_dir: Path) -> dict:
    """Write ``out_dir``: every video mapped in all parts, its maps side by side.

    Returns ``{"joined": n written, "kept": n unchanged, "missing": keys absent from some
    part}``. An existing ``out_dir`` must be a join of the same parts' settings.
    """
    parts = [VideoMapStore.open(d) for d in part_dirs]
    if any(Path(d).resolve() == Path(out_dir).resolve() for d in part_dirs):
        raise StoreError(f"--store {out_dir} is one of the --stores; write the joined store to another folder")
    trained_keys = _union_keys(parts)
    settings = joined_settings(parts, trained_keys)
    mapped = [set(p.keys()) for p in parts]
    keys = sorted(set.intersection(*mapped))
    missing = sorted(set.union(*mapped) - set(keys))
    if not keys:
        raise StoreError(f"no video is mapped in all of {', '.join(str(d) for d in part_dirs)}")
    out_dir = Path(out_dir)
    with folder_lock(out_dir, "store"):
        # An existing store of other settings (other parts) is refused here, before anything is written.
        store = VideoMapStore.create_or_open(out_dir, settings)
        if (split := parts[0].recorded_split()) is not None:
            store.record_split(split)
        write_trained_keys(out_dir, trained_keys)
        for key in set(store.keys()) - set(keys):  # no longer mapped in every part: its old map must not serve
            store.discard(key)
        joined = 0
        for key in keys:
            if _up_to_date(store, parts, key):
                continue
            store.write(key, np.concatenate([np.asarray(p.read(key)) for p in parts], axis=1))
            joined += 1
    return {"joined": joined, "kept": len(keys) - joined, "missing": missing, "store": store}


def _up_to_date(store: VideoMapStore, parts: list[VideoMapStore], key: str) -> bool:
    """The joined map exists and was written after every part's map of ``key``."""
    if not store.has(key):
        return False
    written = os.stat(store.path_of(key)).st_mtime_ns
    return all(os.stat(p.path_of(key)).st_mtime_ns <= written for p in parts)
