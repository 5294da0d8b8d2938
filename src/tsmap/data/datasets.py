"""Video datasets: which videos exist, their classes, and which split each belongs to.

A dataset is described by a small JSON-able ``spec`` (kind, root, options) that the
VideoMap store keeps, so ``tsmap train --store S`` finds the labels again without the
user repeating where the videos are.

Kinds:
- ``folder``: ``root/<class>/<video>``. Train/test lists come from ``root/train.txt``
  and ``root/test.txt`` (one relative path a line) when present, else from a seeded
  stratified split (``test_fraction`` of each class goes to test).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tsmap.data.video import VIDEO_EXTENSIONS


class DatasetError(Exception):
    """A dataset that cannot be read: missing folder, malformed list file, ..."""


@dataclass(frozen=True)
class Clip:
    key: str  # path relative to the dataset root, POSIX separators
    label: int


@dataclass
class VideoDataset:
    root: Path
    classes: list[str]
    splits: dict[str, list[Clip]]
    spec: dict = field(default_factory=dict)

    def clips(self, split: str | None = None) -> list[Clip]:
        """Clips of one split, or every clip once (in a stable order) when None."""
        if split is not None:
            if split not in self.splits:
                raise DatasetError(f"no split {split!r}; this dataset has {', '.join(self.splits)}")
            return self.splits[split]
        seen: dict[str, Clip] = {}
        for clips in self.splits.values():
            for clip in clips:
                seen.setdefault(clip.key, clip)
        return sorted(seen.values(), key=lambda c: c.key)


def _video_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def _read_list(path: Path, class_index: dict[str, int], root: Path) -> list[Clip]:
    clips = []
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key = line.split()[0].replace("\\", "/")
        cls = key.split("/")[0]
        if "/" not in key or cls not in class_index:
            raise DatasetError(f"{path}:{lineno}: {key!r} is not <class>/<video> with a class folder under {root}")
        clips.append(Clip(key, class_index[cls]))
    return clips


def folder_dataset(root: Path | str, test_fraction: float = 0.3, seed: int = 0) -> VideoDataset:
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"video folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"{root} has no class folders (expected {root}/<class>/<video>)")
    index = {c: i for i, c in enumerate(classes)}
    spec = {"kind": "folder", "root": str(root), "test_fraction": test_fraction, "seed": seed}
    lists = {split: root / f"{split}.txt" for split in ("train", "test")}
    if all(p.is_file() for p in lists.values()):
        splits = {split: _read_list(p, index, root) for split, p in lists.items()}
        return VideoDataset(root, classes, splits, spec)
    rng = np.random.default_rng(seed)
    splits = {"train": [], "test": []}
    for c in classes:
        files = _video_files(root / c)
        order = rng.permutation(len(files))
        n_test = int(round(test_fraction * len(files)))
        for rank, i in enumerate(order):
            clip = Clip(f"{c}/{files[i].name}", index[c])
            splits["test" if rank < n_test else "train"].append(clip)
    if not any(splits.values()):
        raise DatasetError(f"{root} has class folders but no videos ({', '.join(VIDEO_EXTENSIONS)})")
    return VideoDataset(root, classes, {k: sorted(v, key=lambda c: c.key) for k, v in splits.items()}, spec)


OFFICIAL_KINDS = ("hmdb51", "ucf101")


def official_dataset(kind: str, root: Path | str, splits_dir: Path | str, split: int | None) -> VideoDataset:
    """HMDB51 or UCF101 with official split 1, 2 or 3; ``split=None`` gives every clip of
    the three splits (what extraction maps once and all splits then share)."""
    from tsmap.data import splits as official

    read = {"hmdb51": official.hmdb51_dataset, "ucf101": official.ucf101_dataset}[kind]
    if split is not None:
        return read(root, splits_dir, split)
    parts = [read(root, splits_dir, s) for s in official.OFFICIAL_SPLITS]
    union = {c.key: c for part in parts for c in part.clips()}
    spec = {k: v for k, v in parts[0].spec.items() if k != "split"}
    return VideoDataset(parts[0].root, parts[0].classes, {"all": sorted(union.values(), key=lambda c: c.key)}, spec)


def open_dataset(spec: dict, split: int | None = None) -> VideoDataset:
    """Rebuild a dataset from the spec a store recorded (``split``: official datasets only)."""
    kind = spec.get("kind")
    if kind == "folder":
        return folder_dataset(spec["root"], spec.get("test_fraction", 0.3), spec.get("seed", 0))
    if kind in OFFICIAL_KINDS:
        return official_dataset(kind, spec["root"], spec["splits_dir"], split if split is not None else 1)
    raise DatasetError(f"unknown dataset kind {kind!r} in spec {spec}")
