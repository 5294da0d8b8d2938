"""What every dataset reader shares: clips, the dataset they form, its error, and text lines.

``datasets`` (folder and list kinds, the dispatcher) and ``splits`` (the official HMDB51 and
UCF101 split files) both build on this module, so neither imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SPLIT_NAMES = ("train", "test")
# Start of the problem line about a train split with fewer than 2 classes (see ``class_problems``).
FEW_CLASSES = "the train split has "


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
    # A seeded split ({"seed": ..., "test_fraction": ...}): the split is drawn from the
    # folder's contents, so a store records it once (see ``datasets.split_record``).
    # None when list files give the split.
    seeded: dict | None = None

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


def text_lines(path: Path, what: str, skip_comments: bool = False) -> list[tuple[int, str]]:
    """(line number, stripped text) of each line of ``path`` that is not blank (nor, with
    ``skip_comments``, a ``#`` comment). ``what`` names the file in errors ("list file", ...).

    Universal newlines (the UCF101 lists end their lines with CRLF); a UTF-8 BOM, which
    some editors write, is dropped.
    """
    if path.is_dir():
        raise DatasetError(f"{what} {path} is a folder, not a text file")
    if not path.is_file():
        raise DatasetError(f"{what} {path} does not exist")
    try:
        # Iterating the file (not str.splitlines) keeps line numbers right if a line holds a
        # stray \f or \x1c.
        with path.open(encoding="utf-8-sig") as f:
            lines = [(lineno, raw.strip()) for lineno, raw in enumerate(f, start=1)]
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e})") from e
    except OSError as e:
        raise DatasetError(f"cannot read {what} {path}: {e.strerror or e}") from e
    return [(n, line) for n, line in lines if line and not (skip_comments and line.startswith("#"))]


def class_problems(classes: list[str], splits: dict[str, list[Clip]]) -> list[str]:
    """A problem line when the train split has videos of fewer than 2 classes: a classifier
    trained on it learns nothing (one class) or cannot be trained (none)."""
    if "train" not in splits:
        return []
    present = sorted({c.label for c in splits["train"]})
    if len(present) >= 2:
        return []
    if not present:
        return [f"{FEW_CLASSES}no videos; training needs videos of at least 2 classes"]
    return [
        f"{FEW_CLASSES}videos of one class only ({classes[present[0]]}); "
        "a classifier needs at least 2 classes to learn anything"
    ]
