"""The VideoMap store: one T x L float16 map per video, on disk, crash-safe.

Layout::

    store/
      store.json            settings that made every map (backbone, T, crop, ...)
      maps/<video key>.npy  one map per video; the key is the video's path relative
                            to the dataset root, so every split reads the same store
      failures.jsonl        videos that could not be mapped, one JSON line each

A map is written to a temporary file in the same folder, flushed to disk and then
renamed into place, so an entry either exists whole or not at all: a run killed at any
moment leaves nothing half-written that a reader could pick up. Rerunning extraction
skips every key whose ``.npy`` exists. Maps are read memory-mapped, so a store larger
than memory can feed training.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

STORE_FORMAT = 1
SETTINGS_FILE = "store.json"
# Settings that say where something is, not what the maps are: they may change between runs.
MOVABLE = ("weights_file",)
FAILURES_FILE = "failures.jsonl"
TMP_MARK = ".tmp-"


class StoreError(Exception):
    """A store that cannot be used as asked: missing, mismatched or malformed."""


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_MARK}{os.getpid()}-{path.name}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class VideoMapStore:
    def __init__(self, root: Path | str, settings: dict):
        self.root = Path(root)
        self.settings = settings
        self.maps_dir = self.root / "maps"

    # -- opening -------------------------------------------------------------
    @classmethod
    def open(cls, root: Path | str) -> VideoMapStore:
        root = Path(root)
        path = root / SETTINGS_FILE
        if not path.is_file():
            raise StoreError(f"{root} is not a VideoMap store (no {SETTINGS_FILE}); run `tsmap extract` first")
        try:
            settings = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise StoreError(f"{path} is not valid JSON: {exc}") from exc
        if settings.get("format") != STORE_FORMAT:
            raise StoreError(f"{path}: store format {settings.get('format')!r}, this tsmap reads {STORE_FORMAT}")
        return cls(root, settings)

    @classmethod
    def create_or_open(cls, root: Path | str, settings: dict, source: dict | None = None) -> VideoMapStore:
        """Open ``root`` if its settings equal ``settings``; create it if absent.

        ``source`` (where the videos came from) is informational and may change between
        runs (a dataset moved to another disk), as may ``weights_file`` (where the
        ConvNet's weights file is; its hash is in ``weights``); the other settings may
        not: a map made with another backbone or T must never be mixed into the store.
        """
        root = Path(root)
        wanted = {"format": STORE_FORMAT, **settings}
        moved = {k: wanted.pop(k) for k in MOVABLE if k in wanted}
        if (root / SETTINGS_FILE).exists():
            store = cls.open(root)
            have = {k: v for k, v in store.settings.items() if k != "source" and k not in MOVABLE}
            if have != wanted:
                diff = ", ".join(
                    f"{k}: store has {have.get(k)!r}, asked {wanted.get(k)!r}"
                    for k in sorted(set(have) | set(wanted))
                    if have.get(k) != wanted.get(k)
                )
                raise StoreError(
                    f"{root} was made with other settings ({diff}); use another --store folder or the store's settings"
                )
            updates = moved | ({"source": source} if source is not None else {})
            if any(store.settings.get(k) != v for k, v in updates.items()):
                store.settings.update(updates)
                _atomic_write_bytes(root / SETTINGS_FILE, json.dumps(store.settings, indent=1).encode())
            return store
        full = {**wanted, **moved, "source": source or {}}
        _atomic_write_bytes(root / SETTINGS_FILE, json.dumps(full, indent=1).encode())
        return cls(root, full)

    # -- entries -------------------------------------------------------------
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

    def has(self, key: str) -> bool:
        return self.path_of(key).is_file()

    def write(self, key: str, videomap: np.ndarray) -> None:
        expected = (self.num_frames, self.feature_dim)
        if videomap.shape != expected:
            raise StoreError(f"map for {key} has shape {videomap.shape}, store expects {expected}")
        if not np.all(np.isfinite(videomap)):
            raise StoreError(f"map for {key} has non-finite values")
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{TMP_MARK}{os.getpid()}-{path.name}")
        with open(tmp, "wb") as f:
            np.save(f, videomap.astype(np.float16), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def read(self, key: str, mmap: bool = True) -> np.ndarray:
        path = self.path_of(key)
        if not path.is_file():
            raise StoreError(f"no VideoMap for {key} in {self.root}")
        try:
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise StoreError(f"{path} is not a readable map: {exc}") from exc
        if arr.shape != (self.num_frames, self.feature_dim):
            raise StoreError(f"{path} has shape {arr.shape}, store expects {(self.num_frames, self.feature_dim)}")
        return arr

    def keys(self) -> Iterator[str]:
        if not self.maps_dir.is_dir():
            return
        for path in sorted(self.maps_dir.rglob("*.npy")):
            if not path.name.startswith(TMP_MARK):
                yield path.relative_to(self.maps_dir).as_posix()[: -len(".npy")]

    def remove_stale_temporaries(self) -> int:
        """Delete temporary files left by killed runs (call when no other writer runs)."""
        count = 0
        if self.maps_dir.is_dir():
            for path in self.maps_dir.rglob(f"{TMP_MARK}*"):
                path.unlink(missing_ok=True)
                count += 1
        return count

    # -- failures ------------------------------------------------------------
    def record_failure(self, key: str, reason: str) -> None:
        line = json.dumps({"video": key, "reason": reason}) + "\n"
        # One short append per failure: a killed run can at worst leave one partial
        # last line, which ``failures`` skips.
        with open(self.root / FAILURES_FILE, "a") as f:
            f.write(line)
            f.flush()

    def failures(self) -> dict[str, str]:
        path = self.root / FAILURES_FILE
        out: dict[str, str] = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    item = json.loads(line)
                    out[item["video"]] = item["reason"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
        return out

    def clear_failures(self, keys: set[str]) -> None:
        """Forget failures of videos that have since been mapped."""
        kept = {k: r for k, r in self.failures().items() if k not in keys}
        body = "".join(json.dumps({"video": k, "reason": r}) + "\n" for k, r in kept.items())
        _atomic_write_bytes(self.root / FAILURES_FILE, body.encode())
