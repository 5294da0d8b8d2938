"""The VideoMap store: one T x L float16 map per video, on disk, crash-safe.

Layout::

    store/
      store.json            settings that made every map (backbone, T, crop, ...)
      maps/<video key>.npy  one map per video; the key is the video's path relative
                            to the dataset root, so every split reads the same store
      views/<video key>.npy a multi-view store's other views of the video (V-1 x T x L:
                            corner crops, mirrors); maps/ holds view 0, the centre crop
      failures.jsonl        videos that could not be mapped, one JSON line each
      sources.jsonl         what each map was made from: the video's size, mtime and a
                            quick content digest (one JSON line a map; the latest wins)
      split.json            a seeded train/test split, drawn once at the first
                            extraction (folder datasets without train.txt / test.txt)
      .tsmap.lock           held by the extraction that writes the store

A map is written to a temporary file in the same folder, flushed to disk and then
renamed into place, so an entry either exists whole or not at all: a run killed at any
moment leaves nothing half-written that a reader could pick up. Rerunning extraction
skips every key whose ``.npy`` exists, once the video's file is checked against the
record of what its map was made from (``verify_sources``): a replaced video, or a store
pointed at another dataset whose videos share names, is never silently served an old map.
Maps are read memory-mapped, so a store larger than memory can feed training.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from tsmap.data.video import Views
from tsmap.fileio import (
    TMP_MARK,
    WriteError,
    atomic_write_text,
    describe_os_error,
    remove_temporaries,
    save_numpy,
    write_json,
)
from tsmap.videomap.settings import STORE_FORMAT, VIEW_KEYS, MapSettings

SETTINGS_FILE = "store.json"
FAILURES_FILE = "failures.jsonl"
SOURCES_FILE = "sources.jsonl"
SPLIT_FILE = "split.json"
DIGEST_BYTES = 64 * 1024  # read at each end of a video for its content digest
_LISTED = 5  # changed videos named in an error before "... and N more"


def content_digest(path: Path, size: int | None = None) -> str:
    """A quick digest of a video file: SHA-1 of its size and its first and last 64 KiB
    (the whole file when smaller than 128 KiB). A copy keeps it, whatever its mtime."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size if size is None else size
        h = hashlib.sha1(str(size).encode())
        h.update(f.read(DIGEST_BYTES))
        if size > DIGEST_BYTES:
            f.seek(max(DIGEST_BYTES, size - DIGEST_BYTES))
            h.update(f.read(DIGEST_BYTES))
    return "sha1:" + h.hexdigest()


def fingerprint(path: Path) -> dict:
    """What identifies a video file: size, mtime (ns) and content digest."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "digest": content_digest(path, st.st_size)}


def _jsonl(path: Path) -> list[dict]:
    """The JSON objects of a JSON-lines file; a torn or foreign line is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(item, dict) and isinstance(item.get("video"), str):
            out.append(item)
    return out


class StoreError(Exception):
    """A store that cannot be used as asked: missing, mismatched or malformed."""


def require_same_maps(
    have: MapSettings,
    want: MapSettings,
    what: str,
    fix: str,
    labels: tuple[str, str] = ("store has", "asked"),
    ignore: tuple[str, ...] = (),
) -> None:
    """Raise a StoreError listing the differences when two sets of maps are not the same maps.

    ``what`` names the first (e.g. a store folder or a checkpoint), ``labels`` the two sides
    in the list of differences, ``fix`` says what to do.
    """
    if have.stream != want.stream and "stream" not in ignore:
        raise StoreError(f"{what} holds {have.stream} VideoMaps, not {want.stream} ones; {fix}")
    diff = have.differences(want, ignore)
    if diff:
        listed = ", ".join(f"{k}: {labels[0]} {a!r}, {labels[1]} {b!r}" for k, a, b in diff)
        raise StoreError(f"{what} was made with other settings ({listed}); {fix}")


def _views_after(have: MapSettings, want: MapSettings, root: Path) -> dict | None:
    """The views a store holds after an extraction asks for ``want``'s: a single-view store
    takes more; a multi-view store keeps its own (asking one view maps those too), and
    refuses other multi-view settings, whose maps would not stack."""
    if want.view_spec.count == 1 or want.views == have.views:
        return have.views
    if have.view_spec.count == 1:
        return want.views
    raise StoreError(
        f"{root} holds {describe_views(have.view_spec)} a video, not {describe_views(want.view_spec)}; "
        "ask for the store's views, or use another --store folder"
    )


def describe_views(views: Views) -> str:
    """'5 crops, mirrored (10 views)' and the like."""
    crops = f"{views.crops} crop{'s' if views.crops > 1 else ''}"
    return f"{crops}, mirrored ({views.count} views)" if views.flip else crops


class VideoMapStore:
    def __init__(self, root: Path | str, settings: MapSettings | dict):
        self.root = Path(root)
        self.map_settings = settings if isinstance(settings, MapSettings) else MapSettings.from_dict(settings)
        self.maps_dir = self.root / "maps"

    @property
    def settings(self) -> dict:
        """store.json as a dict (``map_settings`` is the typed form)."""
        return self.map_settings.to_dict()

    # -- opening -------------------------------------------------------------
    @classmethod
    def open(cls, root: Path | str) -> VideoMapStore:
        root = Path(root)
        path = root / SETTINGS_FILE
        if not path.is_file():
            raise StoreError(f"{root} is not a VideoMap store (no {SETTINGS_FILE}); run `tsmap extract` first")
        try:
            settings = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"{path} is not valid JSON: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if not isinstance(settings, dict) or settings.get("format") != STORE_FORMAT:
            got = settings.get("format") if isinstance(settings, dict) else None
            raise StoreError(f"{path}: store format {got!r}, this tsmap reads {STORE_FORMAT}")
        try:
            return cls(root, MapSettings.from_dict(settings))
        except TypeError as exc:
            raise StoreError(f"{path} lacks settings this tsmap needs ({exc})") from exc

    @classmethod
    def create_or_open(cls, root: Path | str, settings: MapSettings, source: dict | None = None) -> VideoMapStore:
        """Open ``root`` if it holds the same maps as ``settings`` describe; create it if absent.

        ``source`` (where the videos came from) and ``weights_file`` may change between
        runs (a dataset moved to another disk); the other settings may not: a map made
        with another backbone or T must never be mixed into the store.
        """
        root = Path(root)
        if isinstance(settings, dict):
            settings = MapSettings.from_dict({"format": STORE_FORMAT, **settings})
        if source is not None:
            settings = settings.with_(source=source)
        if (root / SETTINGS_FILE).exists():
            store = cls.open(root)
            fix = "use another --store folder or the store's settings"
            require_same_maps(store.map_settings, settings, str(root), fix, ignore=VIEW_KEYS)
            settings = settings.with_(views=_views_after(store.map_settings, settings, root))
            moved = settings.with_(source=settings.source or store.map_settings.source)
            if moved.to_dict() != store.settings:
                store.map_settings = moved
                write_json(root / SETTINGS_FILE, store.settings)
            return store
        store = cls(root, settings)
        write_json(root / SETTINGS_FILE, store.settings)
        return store

    def update_source(self, source: dict) -> None:
        """Record where the videos are now (a dataset moved, or its spec changed)."""
        if source and source != self.map_settings.source:
            self.map_settings = self.map_settings.with_(source=dict(source))
            write_json(self.root / SETTINGS_FILE, self.settings)

    # -- the recorded split ------------------------------------------------------
    def recorded_split(self) -> dict | None:
        """The seeded split recorded at the first extraction (``split.json``), or None."""
        path = self.root / SPLIT_FILE
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(record, dict) or not all(isinstance(record.get(s), list) for s in ("train", "test")):
            raise StoreError(f"{path} is not a recorded split (no train and test lists)")
        return record

    def record_split(self, record: dict) -> None:
        if record != self.recorded_split():
            write_json(self.root / SPLIT_FILE, record)

    # -- entries -------------------------------------------------------------
    @property
    def views(self) -> int:
        """Maps a video: 1, or the count of a multi-view store (view 0 in maps/, the rest in views/)."""
        return self.map_settings.view_spec.count

    @property
    def num_frames(self) -> int:
        return int(self.settings["frames"])

    @property
    def feature_dim(self) -> int:
        return int(self.settings["feature_dim"])

    def path_of(self, key: str) -> Path:
        rel = PurePosixPath(key)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise StoreError(f"invalid video key {key!r}: must be a relative path inside the dataset")
        return self.maps_dir.joinpath(*rel.parts).with_name(rel.name + ".npy")

    def views_path_of(self, key: str) -> Path:
        return self.root / "views" / self.path_of(key).relative_to(self.maps_dir)

    def has(self, key: str) -> bool:
        return self.path_of(key).is_file()

    def complete(self, key: str) -> bool:
        """Every view of ``key`` is mapped (its map, and in a multi-view store its other views)."""
        return self.has(key) and (self.views == 1 or self.views_path_of(key).is_file())

    def write(self, key: str, videomap: np.ndarray) -> None:
        expected = (self.num_frames, self.feature_dim)
        if videomap.shape != expected:
            raise StoreError(f"map for {key} has shape {videomap.shape}, store expects {expected}")
        if not np.all(np.isfinite(videomap)):
            raise StoreError(f"map for {key} has non-finite values")
        save_numpy(self.path_of(key), videomap.astype(np.float16))

    def write_views(self, key: str, views: np.ndarray) -> None:
        """The other views of ``key`` (V-1 x T x L), in a multi-view store."""
        expected = (self.views - 1, self.num_frames, self.feature_dim)
        if views.shape != expected:
            raise StoreError(f"views of {key} have shape {views.shape}, store expects {expected}")
        if not np.all(np.isfinite(views)):
            raise StoreError(f"views of {key} have non-finite values")
        save_numpy(self.views_path_of(key), views.astype(np.float16))

    def read(self, key: str, mmap: bool = True) -> np.ndarray:
        """The map of ``key`` (view 0), T x L."""
        if not self.has(key):
            raise StoreError(f"no VideoMap for {key} in {self.root}")
        return self._load(self.path_of(key), (self.num_frames, self.feature_dim), mmap)

    def read_view(self, key: str, v: int, mmap: bool = True) -> np.ndarray:
        """View ``v`` of ``key``, T x L (view 0: the map ``read`` gives)."""
        return self.read(key, mmap) if v == 0 else self._other_views(key, mmap)[v - 1]

    def read_views(self, key: str, mmap: bool = True) -> np.ndarray:
        """Every view of ``key``, V x T x L (view 0 first)."""
        first = self.read(key, mmap)[None]
        return first if self.views == 1 else np.concatenate([first, self._other_views(key, mmap)])

    def _other_views(self, key: str, mmap: bool) -> np.ndarray:
        path = self.views_path_of(key)
        if not path.is_file():
            raise StoreError(f"no other views of {key} in {self.root}: run `tsmap extract` on the store again")
        return self._load(path, (self.views - 1, self.num_frames, self.feature_dim), mmap)

    def _load(self, path: Path, shape: tuple[int, ...], mmap: bool) -> np.ndarray:
        try:
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise StoreError(f"{path} is not a readable map: {exc}") from exc
        if arr.shape != shape:
            raise StoreError(f"{path} has shape {arr.shape}, store expects {shape}")
        return arr

    def discard(self, key: str) -> None:
        """Remove the maps of ``key`` (to map its video again)."""
        self.path_of(key).unlink(missing_ok=True)
        self.views_path_of(key).unlink(missing_ok=True)

    def keys(self) -> Iterator[str]:
        if not self.maps_dir.is_dir():
            return
        for path in sorted(self.maps_dir.rglob("*.npy")):
            if not path.name.startswith(TMP_MARK):
                yield path.relative_to(self.maps_dir).as_posix()[: -len(".npy")]

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files left by killed runs (call when no other writer runs)."""
        folders = (self.maps_dir, self.root / "views")
        return sum(remove_temporaries(f, recursive=True) for f in folders) + remove_temporaries(self.root)

    # -- appending one line -----------------------------------------------------------
    def _append(self, name: str, item: dict) -> None:
        """Append one JSON line with a single write (O_APPEND), so ranks writing side by side
        never interleave within a line; a killed or failed write leaves at most one torn
        line, which readers skip. A full disk raises WriteError."""
        data = (json.dumps(item) + "\n").encode()
        try:
            fd = os.open(self.root / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, "short write")
            finally:
                os.close(fd)
        except OSError as exc:
            raise WriteError(exc.errno, describe_os_error(exc, self.root)) from exc

    def _rewrite(self, name: str, items: Iterable[dict]) -> None:
        atomic_write_text(self.root / name, "".join(json.dumps(item) + "\n" for item in items))

    # -- failures ------------------------------------------------------------
    def record_failure(self, key: str, reason: str) -> None:
        self._append(FAILURES_FILE, {"video": key, "reason": reason})

    def failures(self) -> dict[str, str]:
        """The latest reason of each video that could not be mapped."""
        return {item["video"]: str(item.get("reason")) for item in _jsonl(self.root / FAILURES_FILE)}

    def clear_failures(self, keys: set[str]) -> None:
        """Forget failures of videos that have since been mapped, and keep one line per
        video (its latest reason): a rerun that fails a video again adds no duplicate."""
        path = self.root / FAILURES_FILE
        if not path.is_file():
            return
        items = _jsonl(path)
        kept = {k: r for k, r in self.failures().items() if k not in keys}
        if len(kept) == len(items) == len(path.read_text(errors="replace").splitlines()):
            return  # nothing to forget, no duplicate, no torn line
        self._rewrite(FAILURES_FILE, ({"video": k, "reason": r} for k, r in kept.items()))

    # -- what each map was made from -------------------------------------------------
    def sources(self) -> dict[str, dict]:
        """The latest record of each mapped video's file (size, mtime_ns, digest)."""
        return {item["video"]: item for item in _jsonl(self.root / SOURCES_FILE)}

    def record_source(self, key: str, path: Path, record: dict | None = None) -> None:
        """Record what the map of ``key`` was made from: ``path``'s fingerprint (or ``record``).
        A video that cannot be read now (gone since it was decoded) gets no record: the next
        extraction records it."""
        if record is None:
            try:
                record = fingerprint(path)
            except OSError:
                return
        self._append(SOURCES_FILE, {"video": key, **record})

    def compact_sources(self) -> None:
        """Rewrite sources.jsonl with one line per video when records were superseded."""
        path = self.root / SOURCES_FILE
        if not path.is_file():
            return
        latest = self.sources()
        if len(latest) != len(path.read_text(errors="replace").splitlines()):
            self._rewrite(SOURCES_FILE, latest.values())

    def verify_sources(self, video_root: Path, keys: Iterable[str]) -> list[tuple[str, str]]:
        """(key, what differs) for each mapped key whose video under ``video_root`` is not the
        file its map was made from (another size, or the same size but another content digest).

        Same size and mtime counts as the same file without reading it; otherwise the digest
        decides, so a copy (new mtime, same bytes) is recognised and its record refreshed.
        Maps without a record (stores from before records) get one now; keys whose video is
        gone are left alone (their maps are kept).
        """
        records = self.sources()
        changed = []
        for key in keys:
            path = video_root / key
            if not self.has(key) or not path.is_file():
                continue
            old = records.get(key)
            if old is None:
                self.record_source(key, path)
                continue
            st = path.stat()
            if st.st_size == old.get("size") and st.st_mtime_ns == old.get("mtime_ns"):
                continue
            if st.st_size != old.get("size"):
                changed.append((key, f"{old.get('size')} bytes when mapped, {st.st_size} now"))
                continue
            digest = content_digest(path, st.st_size)
            if digest != old.get("digest"):
                changed.append((key, "same size, other content"))
            else:  # touched or copied: same bytes; the fast path holds again next time
                self.record_source(key, path, {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "digest": digest})
        return changed


def describe_changed(changed: list[tuple[str, str]], video_root: Path) -> str:
    """The first few changed videos, then how many in all."""
    shown = "; ".join(f"{video_root / key} ({why})" for key, why in changed[:_LISTED])
    more = f"; ... and {len(changed) - _LISTED} more" if len(changed) > _LISTED else ""
    return f"{shown}{more}"
