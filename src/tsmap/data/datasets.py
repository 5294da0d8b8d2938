"""Video datasets: which videos exist, their classes, and which split each belongs to.

A dataset is described by a small JSON-able ``spec`` (kind, root, options) that the
VideoMap store keeps, so ``tsmap train --store S`` finds the labels again without the
user repeating where the videos are. ``open_dataset(kind, root, ...)`` is the one place
that maps a kind to its reader; ``dataset_from_spec(spec)`` opens what a store recorded.

Kinds:
- ``folder``: ``root/<class>/<video>``. Train/test lists come from ``root/train.txt``
  and ``root/test.txt`` (one relative path a line, taken whole, so names may hold spaces;
  a trailing integer label, as in UCF101's lists, is accepted and ignored) when both are
  present, else from a seeded stratified split (``test_fraction`` of each class goes to
  test). A store records a seeded split once, at its first extraction (``split_record``,
  ``apply_recorded_split``): adding videos later never moves one between train and test
  (train.txt and test.txt, if both appear later, take over).
- ``list``: two list files in the mmaction2 style, one ``<path> <label>`` a line, with
  ``<path>`` relative to ``root`` (split on the last whitespace, so paths may hold spaces)
  and ``<label>`` either an integer class index or a class name (one kind per dataset).
  Blank lines and lines starting with ``#`` are skipped. Class names come from an optional
  classes file (one name a line, line 1 = class 0); without one, integer labels give classes
  ``"0"`` .. ``"<max>"`` and name labels the sorted names found in both lists. Videos may
  lie anywhere under ``root``: no ``<class>/`` folder is needed.
- ``hmdb51``, ``ucf101``: the official split files (``tsmap.data.splits``).

Only the lists and folders are read, never the videos. What should not stop a dataset but
deserves a look (a video listed twice, a video in both train and test, an empty class
folder, listed videos that do not exist or are folders, broken symbolic links, a train
split with fewer than 2 classes) is collected, one line each, in ``VideoDataset.problems``.
A video in both train and test is dropped from train, so test figures stay honest; listed
videos that do not exist stay in the dataset, and extraction reports them as failures.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import numpy as np

from tsmap.data.clips import FEW_CLASSES, SPLIT_NAMES, Clip, DatasetError, VideoDataset, class_problems, text_lines
from tsmap.data.splits import OFFICIAL_SPLITS, official_dataset
from tsmap.data.video import VIDEO_EXTENSIONS, why_not_a_file

__all__ = [
    "DATASET_KINDS",
    "OFFICIAL_KINDS",
    "OFFICIAL_SPLITS",
    "SPLIT_NAMES",
    "Clip",
    "DatasetError",
    "VideoDataset",
    "apply_recorded_split",
    "dataset_for_extraction",
    "dataset_from_spec",
    "folder_dataset",
    "list_dataset",
    "official_dataset",
    "open_dataset",
    "split_record",
]

OFFICIAL_KINDS = ("hmdb51", "ucf101")
DATASET_KINDS = ("folder", "list", *OFFICIAL_KINDS)
_INTEGER = re.compile(r"-?[0-9]+")
_MAX_NAMED = 5  # names shown in one problem line before "... N in all"


def _file(path: Path | str) -> Path:
    return Path(path).expanduser().resolve()


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
    videos that do not exist (or are not files) are counted; each is reported in ``problems``."""
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
        unusable = [(key, why_not_a_file(root / key)) for key in kept[split] if not (root / key).is_file()]
        missing = [key for key, why in unusable if why == "file not found"]
        if missing:
            problems.append(f"{path}: {len(missing)} listed videos do not exist, e.g. {root / missing[0]}")
        for key, why in [(k, w) for k, w in unusable if w != "file not found"][:_MAX_NAMED]:
            problems.append(f"{path}:{kept[split][key][1]}: {root / key}: {why}")
        others = sum(why != "file not found" for _, why in unusable)
        if others > _MAX_NAMED:
            problems.append(f"{path}: {others} listed videos are not files in all ({_MAX_NAMED} shown)")
    return {split: sorted((c for c, _ in kept[split].values()), key=lambda c: c.key) for split in files}


# -- folder ----------------------------------------------------------------------
def _folder_entries(folder: Path, problems: list[str]) -> list[str]:
    """Names of the video files in ``folder``; entries with a video extension that are not
    files (a folder, a broken symbolic link, a link loop) are reported and skipped."""
    names = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in VIDEO_EXTENSIONS:
            continue
        if path.is_file():
            names.append(path.name)
        else:
            problems.append(f"{path}: {why_not_a_file(path)}; skipped")
    return names


def _folder_list_key(line: str, where: str, root: Path) -> tuple[str, str]:
    """(key, path as written) of a line of a folder's train.txt / test.txt: the whole line is
    the path; a trailing integer label is dropped when only the path without it exists."""
    text = line
    fields = line.rsplit(None, 1)
    if len(fields) == 2 and _INTEGER.fullmatch(fields[1]) and not (root / line).exists():
        if (root / fields[0]).exists():
            text = fields[0]
    return _relative_key(text, where, root), text


def _read_folder_list(path: Path, class_index: dict[str, int], root: Path) -> list[tuple[Clip, int]]:
    entries = []
    for lineno, line in text_lines(path, "list file", skip_comments=True):
        where = f"{path}:{lineno}"
        key, text = _folder_list_key(line, where, root)
        cls = key.split("/")[0]
        if "/" not in key or cls not in class_index:
            raise DatasetError(f"{where}: {text!r} is not <class>/<video> with a class folder under {root}")
        entries.append((Clip(key, class_index[cls]), lineno))
    return entries


def _seeded_split(
    names: dict[str, list[str]], index: dict[str, int], test_fraction: float, seed: int
) -> dict[str, list[Clip]]:
    """A stratified split drawn with ``seed``: ``test_fraction`` of each class's videos (rounded)
    go to test. ``names`` maps each class, in class order, to its video file names."""
    rng = np.random.default_rng(seed)
    splits: dict[str, list[Clip]] = {"train": [], "test": []}
    for c, files in names.items():
        order = rng.permutation(len(files))
        n_test = int(round(test_fraction * len(files)))
        for rank, i in enumerate(order):
            splits["test" if rank < n_test else "train"].append(Clip(f"{c}/{files[i]}", index[c]))
    return {k: sorted(v, key=lambda c: c.key) for k, v in splits.items()}


def folder_dataset(root: Path | str, test_fraction: float = 0.3, seed: int = 0) -> VideoDataset:
    root = _file(root)
    if not root.is_dir():
        raise DatasetError(f"video folder {root} does not exist")
    problems: list[str] = []
    classes = []
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            classes.append(path.name)
        elif path.is_symlink() and not path.exists():  # a class folder whose link broke
            problems.append(f"{path}: {why_not_a_file(path)}; not used as a class folder")
    if not classes:
        raise DatasetError(f"{root} has no class folders (expected {root}/<class>/<video>)")
    index = {c: i for i, c in enumerate(classes)}
    spec = {"kind": "folder", "root": str(root), "test_fraction": test_fraction, "seed": seed}
    videos = {c: _folder_entries(root / c, problems) for c in classes}
    # An empty class stays a class, so class indices (and trained heads) do not shift.
    problems[:0] = [f"class {c} has no videos in {root / c}" for c in classes if not videos[c]]
    lists = {split: root / f"{split}.txt" for split in SPLIT_NAMES}
    present = [p for p in lists.values() if p.is_file()]
    if len(present) == len(lists):
        entries = {split: _read_folder_list(p, index, root) for split, p in lists.items()}
        splits = _finish_splits(root, lists, entries, classes, problems)
        problems += class_problems(classes, splits)
        return VideoDataset(root, classes, splits, spec, problems)
    if present:
        absent = next(p for p in lists.values() if not p.is_file())
        problems.append(f"{present[0]} is ignored because {absent} does not exist; using a seeded split")
    if not any(videos.values()):
        raise DatasetError(f"{root} has class folders but no videos ({', '.join(VIDEO_EXTENSIONS)})")
    splits = _seeded_split(videos, index, test_fraction, seed)
    problems += class_problems(classes, splits)
    seeded = {"seed": seed, "test_fraction": test_fraction}
    return VideoDataset(root, classes, splits, spec, problems, seeded)


# -- a seeded split, recorded once -------------------------------------------------
SPLIT_RECORD_FORMAT = 1


def split_record(dataset: VideoDataset) -> dict:
    """What a store keeps of a seeded split (JSON): the rule, the classes in index order and
    the keys of each split. ``apply_recorded_split`` gives the dataset back from it."""
    if dataset.seeded is None:
        raise ValueError("only a seeded split is recorded; list files give the others")
    return {
        "format": SPLIT_RECORD_FORMAT,
        "seed": dataset.seeded["seed"],
        "test_fraction": dataset.seeded["test_fraction"],
        "classes": list(dataset.classes),
        **{split: [c.key for c in dataset.splits[split]] for split in SPLIT_NAMES},
    }


def _check_record(record: dict) -> None:
    ok = (
        isinstance(record, dict)
        and record.get("format") == SPLIT_RECORD_FORMAT
        and isinstance(record.get("classes"), list)
        and all(isinstance(record.get(s), list) for s in SPLIT_NAMES)
        and all(isinstance(k, str) and "/" in k for s in SPLIT_NAMES for k in record[s])
    )
    if not ok:
        raise DatasetError(f"a recorded split must be a split_record of format {SPLIT_RECORD_FORMAT}")


def apply_recorded_split(dataset: VideoDataset, record: dict, add_new: bool = True) -> VideoDataset:
    """``dataset`` (a seeded folder split) with the split ``record`` holds: every recorded
    video keeps its split, and its class its index, whatever the folder holds now.

    Recorded videos that are no longer in the folder stay (their maps may be in a store).
    With ``add_new``, videos the record does not know are drawn to train/test by the
    recorded rule (seed and test fraction, stratified, among the new videos only) and new
    class folders get the next class indices; without it they are left out (no map of them
    can exist yet). Each of these is reported in ``problems``.
    """
    if dataset.seeded is None:
        raise ValueError("a recorded split applies to a seeded split only")
    _check_record(record)
    seed, fraction = record["seed"], record["test_fraction"]
    classes = list(record["classes"])
    for key in (k for s in SPLIT_NAMES for k in record[s]):
        if key.split("/")[0] not in classes:
            classes.append(key.split("/")[0])
    problems = [p for p in dataset.problems if not p.startswith(FEW_CLASSES)]
    recorded = {key for s in SPLIT_NAMES for key in record[s]}
    now = {c.key for c in dataset.clips()}
    new = sorted(now - recorded)
    if add_new:
        classes += [c for c in dataset.classes if c not in classes]
    index = {c: i for i, c in enumerate(classes)}
    splits = {s: [Clip(k, index[k.split("/")[0]]) for k in record[s]] for s in SPLIT_NAMES}
    if dataset.seeded != {"seed": seed, "test_fraction": fraction}:
        asked = dataset.seeded
        problems.append(
            f"the split of {dataset.root} was recorded at the first extraction with test fraction {fraction} "
            f"and seed {seed}; it is kept (asked: test fraction {asked['test_fraction']}, seed {asked['seed']}); "
            "use a new store for another split"
        )
    gone = sorted(recorded - now)
    if gone:
        problems.append(
            f"{len(gone)} videos of the recorded split are no longer in {dataset.root}: {_name_some(gone)}; "
            "they keep their place in the split (and their VideoMaps, if mapped)"
        )
    if new and add_new:
        names: dict[str, list[str]] = {c: [] for c in classes}
        for key in new:
            cls, name = key.split("/", 1)
            names[cls].append(name)
        drawn = _seeded_split(names, index, fraction, seed)
        where = {c.key: s for s in SPLIT_NAMES for c in drawn[s]}
        for s in SPLIT_NAMES:
            splits[s] += drawn[s]
        problems.append(
            f"{len(new)} new videos in {dataset.root} since its split was recorded, added by the recorded rule "
            f"(the others keep their split): {_name_some([f'{k} ({where[k]})' for k in new])}"
        )
    elif new:
        problems.append(
            f"{len(new)} videos in {dataset.root} came after its split was recorded and are not in it "
            f"({_name_some(new)}); extract again to map them and add them"
        )
    splits = {s: sorted(v, key=lambda c: c.key) for s, v in splits.items()}
    problems += class_problems(classes, splits)
    spec = {**dataset.spec, "test_fraction": fraction, "seed": seed}
    return VideoDataset(dataset.root, classes, splits, spec, problems, {"seed": seed, "test_fraction": fraction})


# -- list ------------------------------------------------------------------------
def _read_classes_file(path: Path) -> list[str]:
    """Class names, line 1 = class 0. Only trailing blank lines are allowed: a blank line
    inside would shift every class after it."""
    if not path.is_file():
        raise DatasetError(f"classes file {path} does not exist")
    lines = text_lines(path, "classes file")
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
    for lineno, line in text_lines(path, "list file", skip_comments=True):
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
    problems += class_problems(classes, splits)
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


# -- one dispatcher ---------------------------------------------------------------
def open_dataset(
    kind: str,
    root: Path | str,
    *,
    splits_dir: Path | str | None = None,
    split: int | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    train_list: Path | str | None = None,
    test_list: Path | str | None = None,
    classes_file: Path | str | None = None,
) -> VideoDataset:
    """The dataset of ``kind`` (folder, list, hmdb51, ucf101) whose videos are under ``root``.

    - folder: ``test_fraction`` and ``seed`` make the split when the folder has no
      train.txt / test.txt;
    - list: ``train_list`` and ``test_list`` (``<path> <label>`` lines), ``classes_file``;
    - hmdb51, ucf101: ``splits_dir`` holds the official split files; ``split`` (1, 2, 3)
      picks one, None gives every clip of the three splits as one split "all" (what
      extraction maps once and all splits then share).

    ``split`` is ignored by the other kinds (they have one train/test split).
    """
    if kind == "folder":
        return folder_dataset(root, test_fraction=test_fraction, seed=seed)
    if kind == "list":
        if train_list is None or test_list is None:
            raise DatasetError("a list dataset needs both list files, train and test ('<path> <label>' lines)")
        return list_dataset(root, train_list, test_list, classes_file)
    if kind in OFFICIAL_KINDS:
        if splits_dir is None:
            raise DatasetError(f"a {kind} dataset needs the folder of its official split files")
        return official_dataset(kind, root, splits_dir, split)
    raise DatasetError(f"unknown dataset kind {kind!r}; the kinds are {', '.join(DATASET_KINDS)}")


def dataset_from_spec(spec: dict, split: int | None = None, recorded_split: dict | None = None) -> VideoDataset:
    """The dataset a store recorded (its ``spec``). ``split``: the official split to use
    (1 when None); ``recorded_split``: the seeded split a store recorded (``split_record``),
    which a folder without train.txt / test.txt keeps (see ``apply_recorded_split``)."""
    if not isinstance(spec, dict) or "kind" not in spec or "root" not in spec:
        raise DatasetError(f"a dataset spec names its kind and root; got {spec!r}")
    kind = spec["kind"]
    options = {k: spec[k] for k in ("splits_dir", "test_fraction", "seed", "train_list", "test_list") if k in spec}
    if spec.get("classes_file") is not None:
        options["classes_file"] = spec["classes_file"]
    if kind in OFFICIAL_KINDS:
        options["split"] = split if split is not None else 1
    dataset = open_dataset(kind, spec["root"], **options)
    if recorded_split is not None and dataset.seeded is not None:
        dataset = apply_recorded_split(dataset, recorded_split, add_new=False)
    return dataset


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
    """The CLI's old entry, kept while it moves to ``open_dataset``: the same dataset, with
    errors about missing options worded for the command line."""
    if kind == "list" and (train_list is None or test_list is None):
        raise DatasetError("--dataset list needs --train-list and --test-list ('<path> <label>' lines)")
    if kind in OFFICIAL_KINDS and splits_dir is None:
        raise DatasetError(f"--dataset {kind} needs --splits (the folder of the official split files)")
    return open_dataset(
        kind,
        videos,
        splits_dir=splits_dir,
        split=split,
        test_fraction=test_fraction,
        seed=seed,
        train_list=train_list,
        test_list=test_list,
        classes_file=classes_file,
    )
