"""The Python API: the CLI's steps as functions, for notebooks and scripts.

    import tsmap
    store = tsmap.extract("videos/", "maps/", frames=64)
    tsmap.train(store, "run/")
    results = tsmap.evaluate(store, "run/")
    run = tsmap.load("run/")
    run.predict("new_video.mp4")          # [(class, probability), ...]

Each function writes the same files as the command of the same name, so the API and the
CLI can be mixed on one store and one run folder.
"""

from __future__ import annotations

from pathlib import Path

from tsmap import steps
from tsmap.data.datasets import open_dataset
from tsmap.data.subsets import DEFAULT_VAL_FRACTION
from tsmap.data.video import Views
from tsmap.steps.predict import Run, load_run
from tsmap.train_config import recipe
from tsmap.videomap.store import VideoMapStore


def extract(
    videos: str | Path, store: str | Path, *, dataset: str = "folder", show_progress: bool = False, **options
) -> VideoMapStore:
    """Map every video of a dataset into a store; returns the store.

    Args:
        videos: the dataset's root folder (``<class>/<video>`` for a folder dataset).
        store: the store folder (created, or resumed when it exists with the same settings).
        dataset: "folder", "list", "hmdb51" or "ucf101"; its options (``splits_dir``,
            ``train_list``, ``test_list``, ``test_fraction``, ...) go in ``options`` too.
        options: ``steps.ExtractOptions`` fields (``frames``, ``image_size``, ``backbone``, ...);
            ``views=5`` and ``flip_views=True`` as ``tsmap extract --views 5 --flip-views``.
    """
    dataset_keys = {"splits_dir", "split", "test_fraction", "seed", "train_list", "test_list", "classes_file"}
    data = open_dataset(dataset, videos, **{k: v for k, v in options.items() if k in dataset_keys})
    options = {k: v for k, v in options.items() if k not in dataset_keys}
    if isinstance(options.get("views"), int) or "flip_views" in options:
        options["views"] = Views(options.get("views", 1), options.pop("flip_views", False))
    extract_options = steps.ExtractOptions(**options)
    opened, _ = steps.extract(data, Path(store), extract_options, show_progress=show_progress)
    return opened


def _store(store: str | Path | VideoMapStore) -> VideoMapStore:
    return store if isinstance(store, VideoMapStore) else VideoMapStore.open(store)


def train(
    store: str | Path | VideoMapStore,
    run: str | Path,
    *,
    heads: tuple[str, ...] = ("videomap", "tsn"),
    schedule: str = "cosine",
    val_fraction: float = DEFAULT_VAL_FRACTION,
    show_progress: bool = False,
    **overrides,
) -> dict[str, list[dict]]:
    """Train heads on the store's training videos (less ``val_fraction`` for validation).

    Args:
        schedule: the recipe, "cosine" (the CLI's default) or "paper".
        overrides: ``TrainConfig`` fields (``epochs``, ``lr``, ``batch_size``, ...), and
            ``attention`` / ``attention_scoring`` for the VideoMap head.
    Returns: each head's history, one record per epoch (loss, train and validation top-1).
    """
    head_options = {k: overrides.pop(k) for k in ("attention", "attention_scoring") if k in overrides}
    config = recipe(schedule, **overrides)
    return steps.train(
        _store(store),
        Path(run),
        list(heads),
        {kind: config for kind in heads},
        show_progress=show_progress,
        val_fraction=val_fraction,
        **head_options,
    )


def evaluate(store: str | Path | VideoMapStore, run: str | Path, split: str = "test") -> dict:
    """Score the run's heads on ``split`` ("test", "val" or "train"); returns results.json's content."""
    return steps.evaluate(_store(store), Path(run), split=split)


def load(run: str | Path, head: str = "videomap", device: str = "auto") -> Run:
    """The trained ``head`` ("videomap" or "tsn") of a run folder, as a ``Run`` whose
    ``predict(video, top=5)`` gives the top classes with their probabilities."""
    return load_run(run, head, device)
