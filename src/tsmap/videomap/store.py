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
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from tsmap.fileio import TMP_MARK, atomic_write_bytes, remove_temporaries, save_numpy, write_json
from tsmap.videomap.settings import STORE_FORMAT, MapSettings

SETTINGS_FILE = "store.json"
FAILURES_FILE = "failures.jsonl"


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
            require_same_maps(store.map_settings, settings, str(root), fix)
            moved = settings.with_(source=settings.source or store.map_settings.source)
            if moved.to_dict() != store.settings:
                store.map_settings = moved
                write_json(root / SETTINGS_FILE, store.settings)
            return store
        store = cls(root, settings)
        write_json(root / SETTINGS_FILE, store.settings)
        return store

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
        save_numpy(self.path_of(key), videomap.astype(np.float16))

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
        return remove_temporaries(self.maps_dir, recursive=True) + remove_temporaries(self.root)

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
        atomic_write_bytes(self.root / FAILURES_FILE, body.encode())
