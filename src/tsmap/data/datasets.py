"""Video datasets: which videos exist, their classes, and which split each belongs to.

A dataset is described by a small JSON-able ``spec`` (kind, root, options) that the
VideoMap store keeps, so ``tsmap train --store S`` finds the labels again without the
user repeating where the videos are.

Kinds:
- ``folder``: ``root/<class>/<video>``. Train/test lists come from ``root/train.txt``
  and ``root/test.txt`` (one relative path a line) when present, else from a seeded
  stratified split (``test_fraction`` of each class goes to test).
- ``list``: two list files in the mmaction2 style, one ``<path> <label>`` a line, with
  ``<path>`` relative to ``root`` (split on the last whitespace, so paths may hold spaces)
  and ``<label>`` either an integer class index or a class name (one kind per dataset).
  Blank lines and lines starting with ``#`` are skipped. Class names come from an optional
  classes file (one name a line, line 1 = class 0); without one, integer labels give classes
  ``"0"`` .. ``"<max>"`` and name labels the sorted names found in both lists. Videos may
  lie anywhere under ``root``: no ``<class>/`` folder is needed.

Only the lists and folders are read, never the videos. What should not stop a dataset but
deserves a look (a video listed twice, a video in both train and test, an empty class
folder, listed videos that do not exist) is collected, one line each, in
``VideoDataset.problems``. A video in both train and test is dropped from train, so test
figures stay honest; listed videos that do not exist stay in the dataset, and extraction
reports them as failures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

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
    # Readable lines about things that did not stop the dataset (duplicates, train/test
    # overlap, empty classes, missing videos), each naming the file it is about.
    problems: list[str] = field(default_factory=list)

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


SPLIT_NAMES = ("train", "test")
_INTEGER = re.compile(r"-?[0-9]+")
_MAX_NAMED = 5  # class names shown in one problem line before "... N in all"


def _video_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def _file(path: Path | str) -> Path:
    return Path(path).expanduser().resolve()


def _text_lines(path: Path, what: str, skip_comments: bool = True) -> list[tuple[int, str]]:
    """(line number, stripped text) of each line that is not blank (nor a ``#`` comment)."""
    if not path.is_file():
        raise DatasetError(f"{what} {path} does not exist")
    try:
        # Iterating the file (not str.splitlines) keeps line numbers right if a line holds a
        # stray \f or \x1c; utf-8-sig drops the BOM some editors write.
        with path.open(encoding="utf-8-sig") as f:
            lines = [(lineno, raw.strip()) for lineno, raw in enumerate(f, start=1)]
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e})") from e
    return [(n, line) for n, line in lines if line and not (skip_comments and line.startswith("#"))]


def _relative_key(text: str, where: str, root: Path) -> str:
    """``text`` as a clip key: POSIX separators, normalised, and inside ``root``."""
    rel = PurePosixPath(text.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise DatasetError(f"{where}: {text!r} is not a path inside the video folder {root}")
    return rel.as_posix()


def _name_some(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMED])
    return shown if len(names) <= _MAX_NAMED else f"{shown}, ... ({len(names)} in all)"


def _finish_splits(
    root: Path,
    files: dict[str, Path],
    entries: dict[str, list[tuple[Clip, int]]],
    classes: list[str],
    problems: list[str],
) -> dict[str, list[Clip]]:
    """Splits from (clip, line number) entries of list files: duplicates in a file are dropped
    (the first line is kept), a video in both train and test is dropped from train, and listed
    videos that do not exist are counted; each is reported in ``problems``."""
    kept: dict[str, dict[str, tuple[Clip, int]]] = {}
    for split, path in files.items():
        first: dict[str, tuple[Clip, int]] = {}
        for clip, lineno in entries[split]:
            if clip.key not in first:
                first[clip.key] = (clip, lineno)
                continue
            earlier, earlier_line = first[clip.key]
            note = ""
            if earlier.label != clip.label:
                there, here = classes[earlier.label], classes[clip.label]
                note = f" (labelled {there!r} there, {here!r} here; line {earlier_line} kept)"
            problems.append(f"{path}:{lineno}: duplicate of line {earlier_line}{note}")
        kept[split] = first
    if "train" in kept and "test" in kept:
        train, test = kept["train"], kept["test"]
        for key in [k for k in train if k in test]:
            _, train_line = train.pop(key)
            problems.append(
                f"{files['train']}:{train_line}: {key!r} is also in the test list "
                f"({files['test']}:{test[key][1]}); dropped from train"
            )
    for split, path in files.items():
        missing = [key for key in kept[split] if not (root / key).is_file()]
        if missing:
            problems.append(f"{path}: {len(missing)} listed videos do not exist, e.g. {root / missing[0]}")
    return {split: sorted((c for c, _ in kept[split].values()), key=lambda c: c.key) for split in files}


# -- folder ----------------------------------------------------------------------
def _read_folder_list(path: Path, class_index: dict[str, int], root: Path) -> list[tuple[Clip, int]]:
    entries = []
    for lineno, line in _text_lines(path, "list file"):
        where = f"{path}:{lineno}"
        text = line.split()[0]
        key = _relative_key(text, where, root)
        cls = key.split("/")[0]
        if "/" not in key or cls not in class_index:
            raise DatasetError(f"{where}: {text!r} is not <class>/<video> with a class folder under {root}")
        entries.append((Clip(key, class_index[cls]), lineno))
    return entries


def folder_dataset(root: Path | str, test_fraction: float = 0.3, seed: int = 0) -> VideoDataset:
    root = _file(root)
    if not root.is_dir():
        raise DatasetError(f"video folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DatasetError(f"{root} has no class folders (expected {root}/<class>/<video>)")
    index = {c: i for i, c in enumerate(classes)}
    spec = {"kind": "folder", "root": str(root), "test_fraction": test_fraction, "seed": seed}
    videos = {c: _video_files(root / c) for c in classes}
    # An empty class stays a class, so class indices (and trained heads) do not shift.
    problems = [f"class {c} has no videos in {root / c}" for c in classes if not videos[c]]
    lists = {split: root / f"{split}.txt" for split in SPLIT_NAMES}
    present = [p for p in lists.values() if p.is_file()]
    if len(present) == len(lists):
        entries = {split: _read_folder_list(p, index, root) for split, p in lists.items()}
        splits = _finish_splits(root, lists, entries, classes, problems)
        return VideoDataset(root, classes, splits, spec, problems)
    if present:
        absent = next(p for p in lists.values() if not p.is_file())
        problems.append(f"{present[0]} is ignored because {absent} does not exist; using a seeded split")
    rng = np.random.default_rng(seed)
    splits = {"train": [], "test": []}
    for c in classes:
        files = videos[c]
        order = rng.permutation(len(files))
        n_test = int(round(test_fraction * len(files)))
        for rank, i in enumerate(order):
            clip = Clip(f"{c}/{files[i].name}", index[c])
            splits["test" if rank < n_test else "train"].append(clip)
    if not any(splits.values()):
        raise DatasetError(f"{root} has class folders but no videos ({', '.join(VIDEO_EXTENSIONS)})")
    splits = {k: sorted(v, key=lambda c: c.key) for k, v in splits.items()}
    return VideoDataset(root, classes, splits, spec, problems)


# -- list ------------------------------------------------------------------------
def _read_classes_file(path: Path) -> list[str]:
    """Class names, line 1 = class 0. Only trailing blank lines are allowed: a blank line
    inside would shift every class after it."""
    if not path.is_file():
        raise DatasetError(f"classes file {path} does not exist")
    lines = _text_lines(path, "classes file", skip_comments=False)
    classes: dict[str, int] = {}
    for expected, (lineno, name) in enumerate(lines, start=1):
        if lineno != expected:
            raise DatasetError(f"{path}:{expected}: blank line in the class list (line N names class N-1)")
        if name in classes:
            raise DatasetError(f"{path}:{lineno}: class {name!r} is already named at line {classes[name]}")
        classes[name] = lineno
    if not classes:
        raise DatasetError(f"classes file {path} names no classes")
    return list(classes)


def _read_label_list(path: Path, root: Path) -> list[tuple[int, str, str]]:
    """(line number, clip key, label as written) of each entry of a ``<path> <label>`` list."""
    entries = []
    for lineno, line in _text_lines(path, "list file"):
        where = f"{path}:{lineno}"
        fields = line.rsplit(None, 1)
        if len(fields) != 2:
            raise DatasetError(f"{where}: expected '<path> <label>', found no label in {line!r}")
        entries.append((lineno, _relative_key(fields[0].strip(), where, root), fields[1]))
    return entries


def _list_labels(
    raw: dict[str, list[tuple[int, str, str]]],
    files: dict[str, Path],
    declared: list[str] | None,
    classes_file: Path | None,
) -> tuple[list[str], dict[str, list[int]]]:
    """Classes and the label index of every entry (same order as ``raw``)."""
    # One kind of label for the whole dataset: "3" could otherwise be index 3 or a class named 3.
    first: dict[bool, tuple[str, str]] = {}
    for split, lines in raw.items():
        for lineno, _, label in lines:
            is_int = _INTEGER.fullmatch(label) is not None
            first.setdefault(is_int, (f"{files[split]}:{lineno}", label))
            if (not is_int) not in first:
                continue
            other_where, other = first[not is_int]
            kinds = ("an integer", "a class name") if is_int else ("a class name", "an integer")
            raise DatasetError(
                f"{files[split]}:{lineno}: label {label!r} is {kinds[0]} but {other_where} has {kinds[1]} "
                f"label {other!r}; use class indices or class names throughout, not both"
            )
    integers = True in first
    if integers:
        values = {split: [int(label) for _, _, label in lines] for split, lines in raw.items()}
        limit = len(declared) if declared is not None else None
        for split, lines in raw.items():
            for (lineno, _, label), value in zip(lines, values[split], strict=True):
                if value < 0:
                    raise DatasetError(f"{files[split]}:{lineno}: label {label!r} is negative")
                if limit is not None and value >= limit:
                    raise DatasetError(
                        f"{files[split]}:{lineno}: label {value} is out of range: "
                        f"{classes_file} names {limit} classes (0 to {limit - 1})"
                    )
        if declared is not None:
            return declared, values
        top = max((v for vs in values.values() for v in vs), default=-1)
        return [str(i) for i in range(top + 1)], values
    names = {label for lines in raw.values() for _, _, label in lines}
    classes = declared if declared is not None else sorted(names)
    index = {c: i for i, c in enumerate(classes)}
    for split, lines in raw.items():
        for lineno, _, label in lines:
            if label not in index:
                raise DatasetError(f"{files[split]}:{lineno}: class {label!r} is not in {classes_file}")
    return classes, {split: [index[label] for _, _, label in lines] for split, lines in raw.items()}


def list_dataset(
    root: Path | str, train_list: Path | str, test_list: Path | str, classes_file: Path | str | None = None
) -> VideoDataset:
    """A dataset from mmaction2-style ``<path> <label>`` train and test lists (see the module
    docstring for the format); ``classes_file`` names the classes, one a line, line 1 = class 0.
    Relative list and classes paths are taken from the current folder, video paths from ``root``."""
    root = _file(root)
    if not root.is_dir():
        raise DatasetError(f"video folder {root} does not exist")
    files = {"train": _file(train_list), "test": _file(test_list)}
    classes_path = _file(classes_file) if classes_file is not None else None
    raw = {split: _read_label_list(path, root) for split, path in files.items()}
    declared = _read_classes_file(classes_path) if classes_path is not None else None
    if not any(raw.values()):
        raise DatasetError(f"{files['train']} and {files['test']} list no videos")
    classes, labels = _list_labels(raw, files, declared, classes_path)
    problems = [f"{files[split]} lists no videos" for split in SPLIT_NAMES if not raw[split]]
    entries = {
        split: [(Clip(key, label), lineno) for (lineno, key, _), label in zip(raw[split], labels[split], strict=True)]
        for split in SPLIT_NAMES
    }
    splits = _finish_splits(root, files, entries, classes, problems)
    used = {c.label for clips in splits.values() for c in clips}
    unused = [name for i, name in enumerate(classes) if i not in used]
    if unused:
        problems.append(f"classes with no videos in {files['train']} or {files['test']}: {_name_some(unused)}")
    spec = {
        "kind": "list",
        "root": str(root),
        "train_list": str(files["train"]),
        "test_list": str(files["test"]),
        "classes_file": str(classes_path) if classes_path is not None else None,
    }
    return VideoDataset(root, classes, splits, spec, problems)


# -- official --------------------------------------------------------------------
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
    problems = list(dict.fromkeys(p for part in parts for p in part.problems))
    all_clips = sorted(union.values(), key=lambda c: c.key)
    return VideoDataset(parts[0].root, parts[0].classes, {"all": all_clips}, spec, problems)


def open_dataset(spec: dict, split: int | None = None) -> VideoDataset:
    """Rebuild a dataset from the spec a store recorded (``split``: official datasets only)."""
    kind = spec.get("kind")
    if kind == "folder":
        return folder_dataset(spec["root"], spec.get("test_fraction", 0.3), spec.get("seed", 0))
    if kind == "list":
        return list_dataset(spec["root"], spec["train_list"], spec["test_list"], spec.get("classes_file"))
    if kind in OFFICIAL_KINDS:
        return official_dataset(kind, spec["root"], spec["splits_dir"], split if split is not None else 1)
    raise DatasetError(f"unknown dataset kind {kind!r} in spec {spec}")


def dataset_for_extraction(
    kind: str,
    videos: Path,
    splits_dir: Path | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    train_list: Path | None = None,
    test_list: Path | None = None,
    classes_file: Path | None = None,
    split: int | None = None,
) -> VideoDataset:
    """Every video of the dataset, whatever its split: one store serves all splits.

    ``split`` (official datasets): only that split's clips, as train and test.
    """
    if kind == "folder":
        return folder_dataset(videos, test_fraction=test_fraction, seed=seed)
    if kind == "list":
        if train_list is None or test_list is None:
            raise DatasetError("--dataset list needs --train-list and --test-list ('<path> <label>' lines)")
        return list_dataset(videos, train_list, test_list, classes_file)
    if splits_dir is None:
        raise DatasetError(f"--dataset {kind} needs --splits (the folder of the official split files)")
    return official_dataset(kind, videos, splits_dir, split)

