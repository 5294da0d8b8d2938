"""Readers for the official HMDB51 and UCF101 train/test split files.

Both return a :class:`~tsmap.data.clips.VideoDataset` whose clip keys are
``<class folder>/<file>`` relative to the video root, with splits ``train`` and ``test``.

- HMDB51 (``testTrainMulti_7030_splits``): one ``<class>_test_split{1,2,3}.txt`` per class
  and split, lines ``<clip>.avi <id>`` with id 1 = train, 2 = test, 0 = unused.
- UCF101 (``ucfTrainTestlist``): ``classInd.txt`` (``1 ApplyEyeMakeup``, 1-based),
  ``trainlist0N.txt`` (``Class/v_Class_gXX_cYY.avi <label>``) and ``testlist0N.txt``
  (``Class/v_Class_gXX_cYY.avi``).

Only the lists are read: whether the videos exist is reported later, by extraction.
"""

from __future__ import annotations

from pathlib import Path

from tsmap.data.clips import Clip, DatasetError, VideoDataset, class_problems, text_lines

OFFICIAL_SPLITS = (1, 2, 3)
HMDB_SPLIT_IDS = {1: "train", 2: "test"}  # 0 = not used by this split
HMDB_SUFFIX = "_test_split{split}.txt"


def _check_split(split: int) -> None:
    # bool is an int subclass: True would otherwise pass as split 1.
    if isinstance(split, bool) or split not in OFFICIAL_SPLITS:
        raise DatasetError(f"split must be one of {', '.join(map(str, OFFICIAL_SPLITS))}, not {split!r}")


def _splits_folder(splits_dir: Path | str) -> Path:
    folder = Path(splits_dir).expanduser().resolve()
    if not folder.is_dir():
        raise DatasetError(f"split folder {folder} does not exist")
    return folder


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, whitespace-separated fields) of each non-blank line."""
    return [(lineno, line.split()) for lineno, line in text_lines(path, "split file")]


def _add(seen: dict[str, str], key: str, where: str) -> None:
    # A clip listed twice would be counted twice, or land in both train and test.
    if key in seen:
        raise DatasetError(f"{where}: {key!r} is already listed at {seen[key]}")
    seen[key] = where


def _spec(kind: str, root: Path, splits_dir: Path, split: int) -> dict:
    return {"kind": kind, "root": str(root), "splits_dir": str(splits_dir), "split": split}


def hmdb51_dataset(root: Path | str, splits_dir: Path | str, split: int) -> VideoDataset:
    """HMDB51 with the official split ``split`` (1, 2 or 3).

    Classes are the sorted names of the ``<class>_test_split{1,2,3}.txt`` files in ``splits_dir``;
    every class needs its file for ``split``. Clips marked 0 (unused in this split) are left out.
    """
    _check_split(split)
    root = Path(root).expanduser().resolve()
    folder = _splits_folder(splits_dir)
    # Classes come from the files of all three splits, so a class whose file for this split
    # is missing is reported instead of silently dropped.
    classes = sorted(
        {
            p.name[: -len(HMDB_SUFFIX.format(split=s))]
            for s in OFFICIAL_SPLITS
            for p in folder.glob(f"*_test_split{s}.txt")
        }
    )
    if not classes:
        raise DatasetError(f"{folder} has no HMDB51 split files (<class>{HMDB_SUFFIX.format(split=split)})")
    _check_class_list(folder / "class_list.txt", classes)

    splits: dict[str, list[Clip]] = {name: [] for name in HMDB_SPLIT_IDS.values()}
    seen: dict[str, str] = {}
    for label, cls in enumerate(classes):
        path = folder / f"{cls}{HMDB_SUFFIX.format(split=split)}"
        for lineno, fields in _lines(path):
            where = f"{path}:{lineno}"
            if len(fields) != 2:
                raise DatasetError(f"{where}: expected '<clip> <id>', got {len(fields)} fields")
            clip, mark = fields
            if mark not in ("0", "1", "2"):
                raise DatasetError(f"{where}: split id {mark!r} is not 0 (unused), 1 (train) or 2 (test)")
            if "/" in clip or "\\" in clip:
                raise DatasetError(f"{where}: clip {clip!r} should be a file name, without folders")
            key = f"{cls}/{clip}"
            _add(seen, key, where)
            if mark != "0":
                splits[HMDB_SPLIT_IDS[int(mark)]].append(Clip(key, label))
    splits = {name: sorted(clips, key=lambda c: c.key) for name, clips in splits.items()}
    return VideoDataset(root, classes, splits, _spec("hmdb51", root, folder, split), class_problems(classes, splits))


def _check_class_list(path: Path, classes: list[str]) -> None:
    # Some copies of the HMDB51 splits carry a class_list.txt (names with trailing spaces, no final
    # newline). When it is there it is the only way to notice a class whose split files are all gone.
    if not path.is_file():
        return
    listed = sorted({fields[0] for _, fields in _lines(path)})
    if listed != classes:
        missing = sorted(set(listed) - set(classes))
        extra = sorted(set(classes) - set(listed))
        raise DatasetError(
            f"{path} does not match the split files in {path.parent}: "
            f"no split files for {missing or 'none'}; not in the class list: {extra or 'none'}"
        )


def _ucf_classes(path: Path) -> list[str]:
    classes: list[str] = []
    for lineno, fields in _lines(path):
        where = f"{path}:{lineno}"
        if len(fields) != 2:
            raise DatasetError(f"{where}: expected '<index> <class>', got {len(fields)} fields")
        index, cls = fields
        # Labels are index - 1, so the indices must count 1, 2, 3, ... with no gaps.
        if index != str(len(classes) + 1):
            raise DatasetError(f"{where}: class index {index!r}, expected {len(classes) + 1}")
        if cls in classes:
            raise DatasetError(f"{where}: class {cls!r} is listed twice")
        classes.append(cls)
    if not classes:
        raise DatasetError(f"{path} lists no classes")
    return classes


class _CaseInsensitiveNames:
    """Finds a listed file under ``root`` whose name on disk differs only in case.

    UCF101 lists ``HandstandPushups/v_HandStandPushups_...`` while the videos are named
    ``v_HandstandPushups_...``: on a case-sensitive file system the listed path does not exist.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.active = root.is_dir()
        self._folders: dict[str, dict[str, list[str]]] = {}

    def resolve(self, cls: str, name: str) -> str:
        if not self.active or (self.root / cls / name).is_file():
            return name
        if cls not in self._folders:
            # One listing per class folder, not one per clip: a list has ~10,000 lines.
            names: dict[str, list[str]] = {}
            folder = self.root / cls
            if folder.is_dir():
                for p in folder.iterdir():
                    names.setdefault(p.name.casefold(), []).append(p.name)
            self._folders[cls] = names
        matches = self._folders[cls].get(name.casefold(), [])
        # Several names that differ only in case: no way to choose, keep the listed one.
        return matches[0] if len(matches) == 1 else name


def ucf101_dataset(root: Path | str, splits_dir: Path | str, split: int) -> VideoDataset:
    """UCF101 with the official split ``split`` (1, 2 or 3).

    Classes are those of ``classInd.txt`` in index order (label = index - 1). Keys are the paths
    as listed, except that when ``root`` exists and the listed file is not there, a file in the
    same class folder whose name differs only in case is used instead.
    """
    _check_split(split)
    root = Path(root).expanduser().resolve()
    folder = _splits_folder(splits_dir)
    classes = _ucf_classes(folder / "classInd.txt")
    index = {cls: i for i, cls in enumerate(classes)}
    names = _CaseInsensitiveNames(root)

    def key_of(path_field: str, where: str) -> tuple[str, int]:
        parts = path_field.replace("\\", "/").split("/")
        if len(parts) != 2 or not all(parts):
            raise DatasetError(f"{where}: {path_field!r} is not <class>/<video>")
        cls, name = parts
        if cls not in index:
            raise DatasetError(f"{where}: class {cls!r} is not in {folder / 'classInd.txt'}")
        return f"{cls}/{names.resolve(cls, name)}", index[cls]

    splits: dict[str, list[Clip]] = {"train": [], "test": []}
    seen: dict[str, str] = {}
    train = folder / f"trainlist0{split}.txt"
    for lineno, fields in _lines(train):
        where = f"{train}:{lineno}"
        if len(fields) != 2:
            raise DatasetError(f"{where}: expected '<class>/<video> <label>', got {len(fields)} fields")
        key, label = key_of(fields[0], where)
        try:
            listed = int(fields[1])
        except ValueError:
            raise DatasetError(f"{where}: label {fields[1]!r} is not an integer") from None
        if listed != label + 1:
            raise DatasetError(
                f"{where}: label {listed} does not match class {classes[label]!r} (index {label + 1} in classInd.txt)"
            )
        _add(seen, key, where)
        splits["train"].append(Clip(key, label))
    test = folder / f"testlist0{split}.txt"
    for lineno, fields in _lines(test):
        where = f"{test}:{lineno}"
        if len(fields) != 1:
            raise DatasetError(f"{where}: expected '<class>/<video>', got {len(fields)} fields")
        key, label = key_of(fields[0], where)
        _add(seen, key, where)
        splits["test"].append(Clip(key, label))
    splits = {name: sorted(clips, key=lambda c: c.key) for name, clips in splits.items()}
    return VideoDataset(root, classes, splits, _spec("ucf101", root, folder, split), class_problems(classes, splits))


def official_dataset(kind: str, root: Path | str, splits_dir: Path | str, split: int | None) -> VideoDataset:
    """HMDB51 or UCF101 with official split 1, 2 or 3; ``split=None`` gives every clip of
    the three splits as one split "all" (what extraction maps once and all splits then share)."""
    readers = {"hmdb51": hmdb51_dataset, "ucf101": ucf101_dataset}
    if kind not in readers:
        raise DatasetError(f"{kind!r} is not an official dataset; those are {', '.join(readers)}")
    read = readers[kind]
    if split is not None:
        return read(root, splits_dir, split)
    parts = [read(root, splits_dir, s) for s in OFFICIAL_SPLITS]
    union = {c.key: c for part in parts for c in part.clips()}
    spec = {k: v for k, v in parts[0].spec.items() if k != "split"}
    problems = list(dict.fromkeys(p for part in parts for p in part.problems))
    all_clips = sorted(union.values(), key=lambda c: c.key)
    return VideoDataset(parts[0].root, parts[0].classes, {"all": all_clips}, spec, problems)
