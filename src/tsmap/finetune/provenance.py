"""What a fine-tuned frame ConvNet was trained on, and the checks that keep those videos out of test sets.

Features from a ConvNet fine-tuned on a video are not features of an unseen video: heads
scored on them report a figure the method does not reach. HMDB51's and UCF101's three
official splits share their videos (1,175 of HMDB51 split 2's 1,530 test videos are in
split 1's training set), so a ConvNet fine-tuned on one split's training videos serves
that split only, and a store mapped with it holds that split only.

A ``tsmap finetune`` checkpoint records its training set: the dataset (kind and root), the
official split (None for folder and list datasets), and the training videos' keys (paths
relative to the dataset root) with their SHA-256 digest. ``FrameEncoder.trained_on``
exposes ``{"dataset", "split", "videos", "digest"}``; extraction records it in store.json
(``weights_trained_on``) and the keys in ``STORE/weights_train_keys.txt``, so a store can
be checked whatever became of the weights file.

- ``check_extraction(dataset, weights)``: before mapping a dataset, refuse weights that
  saw any of its test videos (for HMDB51/UCF101 mapped without ``--split``: the test
  videos of every split); returns the training keys to keep with the store.
- ``write_trained_keys(store_root, keys)``: keep them (at extraction, once the store exists).
- ``check_store(store, dataset)``: before training or scoring heads on one split of a store:
  the store must hold that split, and its ConvNet must not have seen that split's test videos.

Each refusal is one line naming the weights file and what it was fine-tuned on, the test
videos asked for and how many of them the ConvNet saw. Weights that record no training
set (ImageNet, a released BN-Inception checkpoint, a checkpoint of an older tsmap) cannot
be checked and pass.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from tsmap.data.datasets import OFFICIAL_KINDS, Clip, VideoDataset, official_dataset
from tsmap.data.splits import OFFICIAL_SPLITS
from tsmap.fileio import atomic_write_text
from tsmap.frames.backbones import FINETUNE_FORMAT, BackboneError
from tsmap.videomap.store import StoreError, VideoMapStore

TRAIN_KEYS_FILE = "weights_train_keys.txt"  # in the store folder: the fine-tuned ConvNet's training keys
TRAINED_ON_KEYS = ("dataset", "split", "videos", "digest")


class TrainedOnError(BackboneError):
    """Weights fine-tuned on videos they are asked to map or score as unseen test videos."""


def keys_digest(keys: Iterable[str]) -> str:
    """SHA-256 (hex) of the sorted keys, one a line: names a training list wherever the videos lie."""
    return hashlib.sha256("\n".join(sorted(set(keys))).encode()).hexdigest()


def labels_digest(clips: Iterable[Clip]) -> str:
    """SHA-256 (hex) of the sorted ``key<TAB>label`` lines: the training list with its labels."""
    return hashlib.sha256("\n".join(sorted(f"{c.key}\t{c.label}" for c in clips)).encode()).hexdigest()


@dataclass(frozen=True)
class TrainingSet:
    """The videos a ConvNet is fine-tuned on."""

    dataset: str | None  # the dataset's kind: hmdb51, ucf101, folder, list (None: not said)
    root: str | None  # where its videos were
    split: int | None  # the official split (HMDB51/UCF101), else None
    keys: tuple[str, ...]  # sorted, each once

    @classmethod
    def of(cls, clips: Iterable[Clip], root: Path | str | None, source: dict | None = None) -> TrainingSet:
        """The training set of ``clips``; ``source``: the dataset's spec (``VideoDataset.spec``)."""
        source = source or {}
        split = source.get("split") if source.get("kind") in OFFICIAL_KINDS else None
        return cls(
            source.get("kind"),
            None if root is None else str(root),
            None if split is None else int(split),
            tuple(sorted({c.key for c in clips})),
        )

    @property
    def digest(self) -> str:
        return keys_digest(self.keys)

    def trained_on(self) -> dict:
        """What ``FrameEncoder.trained_on`` and the store's ``weights_trained_on`` hold (no location)."""
        return {"dataset": self.dataset, "split": self.split, "videos": len(self.keys), "digest": self.digest}

    def checkpoint_fields(self) -> dict:
        """What a ``tsmap finetune`` checkpoint records of it (plain types: read with weights_only=True)."""
        return {"trained_on": self.trained_on(), "train_root": self.root, "train_keys": list(self.keys)}


def describe(trained_on: dict | None) -> str:
    """'hmdb51 split 1, 3570 videos' / '24 videos of a folder dataset'."""
    if not trained_on:
        return "an unrecorded training set"
    kind, split, count = trained_on.get("dataset"), trained_on.get("split"), trained_on.get("videos")
    if split is not None:
        return f"{kind} split {split}, {count} videos"
    return f"{count} videos of a {kind} dataset" if kind else f"{count} videos"


def _weights_name(weights_file: Path | str | None, trained_on: dict | None) -> str:
    return f"{weights_file or 'the weights'} (fine-tuned on {describe(trained_on)})"


# -- reading the record ----------------------------------------------------------------
def _checkpoint(path: Path) -> object:
    if not path.is_file():
        raise BackboneError(f"weights file {path} not found")
    error: Exception | None = None
    for mmap in (True, False):  # mmap: the record without reading the weights; old-format files need False
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except Exception as exc:
            error = exc
    raise BackboneError(f"cannot read weights file {path}: {type(error).__name__}: {error}") from error


def training_record(weights_file: Path | str | None) -> tuple[dict, list[str]] | None:
    """(trained_on, sorted training keys) a ``tsmap finetune`` checkpoint records; None when none."""
    if weights_file is None:
        return None
    path = Path(weights_file)
    obj = _checkpoint(path)
    if not (isinstance(obj, dict) and obj.get("format") == FINETUNE_FORMAT and "train_keys" in obj):
        return None
    trained_on, keys = obj.get("trained_on") or {}, sorted(obj["train_keys"])
    if trained_on.get("digest") != keys_digest(keys):
        raise BackboneError(f"{path}: its list of training videos does not match the digest it records")
    return trained_on, keys


def trained_keys_of(weights_file: Path | str | None) -> list[str] | None:
    """The keys of the videos a ``tsmap finetune`` checkpoint was trained on (sorted); None
    for weights that record none (ImageNet, a released checkpoint, an older tsmap's)."""
    record = training_record(weights_file)
    return None if record is None else record[1]


def write_trained_keys(store_root: Path | str, keys: Iterable[str] | None) -> None:
    """Keep the ConvNet's training keys with its store (``STORE/weights_train_keys.txt``,
    one a line, sorted; atomic). Nothing for weights that record none."""
    if keys is None:
        return
    atomic_write_text(Path(store_root) / TRAIN_KEYS_FILE, "".join(f"{k}\n" for k in sorted(set(keys))))


def read_trained_keys(store_root: Path | str) -> list[str] | None:
    """The keys ``write_trained_keys`` kept; None when the store has none."""
    path = Path(store_root) / TRAIN_KEYS_FILE
    if not path.is_file():
        return None
    return [line for line in path.read_text().splitlines() if line]


# -- the checks ----------------------------------------------------------------------------
def check_trained_on(
    trained_keys: Iterable[str] | None, test_keys: Iterable[str], what: str, weights: str, hint: str = ""
) -> None:
    """Refuse weights that were trained on any of ``test_keys`` (one line: ``TrainedOnError``).

    ``what`` names the test videos ('test videos of hmdb51 split 2'), ``weights`` the weights
    and their training set ('FT/split1/rgb.pt (fine-tuned on hmdb51 split 1, 3570 videos)').
    ``trained_keys`` None (weights that record no training set): nothing to check.
    """
    if trained_keys is None:
        return
    test = set(test_keys)
    seen = test.intersection(trained_keys)
    if seen:
        raise TrainedOnError(
            f"{weights} saw {len(seen)} of the {len(test)} {what} in training (e.g. {min(seen)})"
            + (f"; {hint}" if hint else "")
        )


def evaluation_sets(dataset: VideoDataset) -> list[tuple[str, int | None, list[str]]]:
    """(what, official split, keys) of each test set that maps of ``dataset`` may be scored on.

    HMDB51/UCF101 without a split (every clip of the three splits, one store): the test
    videos of each split; with one: that split's. Folder and list datasets: their test videos.
    """
    spec = dataset.spec or {}
    kind = spec.get("kind")
    if kind in OFFICIAL_KINDS:
        split = spec.get("split")
        parts = (
            [(split, dataset)]
            if split is not None
            else [(s, official_dataset(kind, spec["root"], spec["splits_dir"], s)) for s in OFFICIAL_SPLITS]
        )
        return [(f"test videos of {kind} split {s}", s, [c.key for c in part.clips("test")]) for s, part in parts]
    if "test" in dataset.splits:
        return [(f"test videos of {dataset.root}", None, [c.key for c in dataset.clips("test")])]
    return []


def _hint(trained_on: dict | None, split: int | None, all_splits: bool) -> str:
    trained_split = (trained_on or {}).get("split")
    if all_splits:
        one = f"map split {trained_split} alone" if trained_split is not None else "map one split"
        return f"a fine-tuned ConvNet serves one split: {one}, into a store of its own (tsmap extract --split N)"
    if split is not None:
        return f"fine-tune on split {split} (tsmap finetune --split {split}) and map split {split} with those weights"
    return "fine-tune on this dataset's training videos only"


def check_extraction(dataset: VideoDataset, weights_file: Path | str | None) -> list[str] | None:
    """Before mapping ``dataset`` with ``weights_file``: refuse weights that saw any of its test videos.

    Returns the weights' training keys, to keep with the store (``write_trained_keys``);
    None for weights that record none.
    """
    record = training_record(weights_file)
    if record is None:
        return None
    trained_on, keys = record
    name = _weights_name(weights_file, trained_on)
    all_splits = (dataset.spec or {}).get("kind") in OFFICIAL_KINDS and dataset.spec.get("split") is None
    for what, split, test_keys in evaluation_sets(dataset):
        check_trained_on(keys, test_keys, what, name, _hint(trained_on, split, all_splits))
    return keys


def check_store(store: VideoMapStore, dataset: VideoDataset) -> None:
    """Before training or scoring heads on ``dataset`` (one split of the store's dataset, as
    ``steps.store_dataset`` opens it): the store must hold that split, and the ConvNet that
    made its maps must not have seen that split's test videos."""
    source = store.settings.get("source") or {}
    kind, stored, asked = source.get("kind"), source.get("split"), (dataset.spec or {}).get("split")
    if kind in OFFICIAL_KINDS and stored is not None and asked != stored:
        raise StoreError(
            f"{store.root} holds the maps of {kind} split {stored} only (extracted with --split {stored}), "
            f"not of split {asked}: pass --split {stored}, or use split {asked}'s own store"
        )
    trained_on = store.settings.get("weights_trained_on")
    if not trained_on:
        return
    keys = read_trained_keys(store.root)
    if keys is None or keys_digest(keys) != trained_on.get("digest"):
        problem = "is missing" if keys is None else "does not match the digest in store.json"
        raise StoreError(
            f"{store.root}/{TRAIN_KEYS_FILE} {problem}: the store's ConvNet was fine-tuned on "
            f"{describe(trained_on)}, and without their list the test videos cannot be checked against them"
        )
    name = _weights_name(store.settings.get("weights_file"), trained_on)
    for what, split, test_keys in evaluation_sets(dataset):
        check_trained_on(keys, test_keys, what, name, _hint(trained_on, split, all_splits=False))
