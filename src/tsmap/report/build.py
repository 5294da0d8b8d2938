"""``build_report``: every experiment of the report, stage by stage, then its files."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from torch import nn

from tsmap.data.datasets import DatasetError, VideoDataset
from tsmap.evaluation.explain import load_action_intervals
from tsmap.evaluation.metrics import confusion_matrix
from tsmap.fileio import folder_lock
from tsmap.heads.tsn import ALL_ROWS, TSNHead
from tsmap.report.analysis import (
    checks,
    confusion_groups,
    failure_cases,
    localize,
    main_heads,
    per_class,
    pick_explain_videos,
)
from tsmap.report.density import density_curve
from tsmap.report.document import write_outputs
from tsmap.report.experiments import (
    DESIGNS,
    TABLE_II,
    TABLE_III,
    TABLE_III_LABELS,
    DesignRuns,
    Splits,
    balanced_subset,
    carve_validation,
    class_groups,
    figures_of,
    load_maps,
    table_rows,
    train_designs,
)
from tsmap.report.figures import FigureInputs, write_figures
from tsmap.report.options import ReportOptions
from tsmap.steps.common import HEAD_LABELS, resolve_device, store_dataset
from tsmap.training import score_maps
from tsmap.videomap.store import VideoMapStore


def build_report(
    store_dir: Path, out_dir: Path, options: ReportOptions, run_dir: Path | None = None, log=print
) -> dict:
    """Run every experiment, write the figures, ``report.json``, CSVs, ``report.md`` and ``report.html``."""
    with folder_lock(out_dir, "report folder"):
        return _build(store_dir, out_dir, options, run_dir, log)


def _build(store_dir: Path, out_dir: Path, options: ReportOptions, run_dir: Path | None, log) -> dict:
    start, timings = time.perf_counter(), {}
    options.device = resolve_device(options.device)
    store = VideoMapStore.open(store_dir)
    dataset = store_dataset(store, options.official_split)
    splits = load_splits(store, dataset, options)
    # Mistakes in what was asked are named before the long work, not after it.
    if options.confusion_groups:
        confusion_groups({}, dataset.classes, options.confusion_groups)
    pick_explain_videos(splits.test, options)
    (out_dir / "heads").mkdir(parents=True, exist_ok=True)
    report = report_header(store, dataset, splits, options, run_dir)
    groups = class_groups(dataset)

    keys = list(dict.fromkeys(TABLE_II + TABLE_III))
    log(
        f"[1/5] training {len(keys)} head designs x {options.seeds} seeds on {len(splits.train)} maps "
        f"(epochs picked on {len(splits.val)} validation maps; {out_dir / 'heads'})"
    )
    t0 = time.perf_counter()
    runs = train_designs(keys, report["seeds"], splits, store, dataset.classes, groups, options, out_dir / "heads", log)
    add_tables(report, runs, keys)
    timings["train_and_score"] = time.perf_counter() - t0

    main = main_heads(store, dataset, runs.models, run_dir, options.device)
    log(f"[2/5] test-time density T' in {list(options.densities)}")
    t0 = time.perf_counter()
    run_heads = {k: main[k] for k in ("videomap", "tsn")} if run_dir is not None else {}
    report["density"] = density_curve(store, dataset, runs.models, options, run_heads, log)
    timings["density"] = time.perf_counter() - t0

    log("[3/5] per-class gains, partial confusion matrices, failure cases")
    t0 = time.perf_counter()
    add_main_figures(report, main, splits.test, groups, options)
    timings["per_class"] = time.perf_counter() - t0

    log("[4/5] attention and Grad-CAM over time (Fig. 8), shares on the action interval")
    t0 = time.perf_counter()
    intervals = load_action_intervals(dataset.root)
    models = runs.models
    report["localization"], curves = localize(
        main["videomap"], models["A0A1A2"], splits.test, intervals, options.device, models["A0A1A2-global"]
    )
    report["explained_videos"] = pick_explain_videos(splits.test, options)
    timings["explain"] = time.perf_counter() - t0

    log(f"[5/5] figures and documents in {out_dir}")
    t0 = time.perf_counter()
    geometry, top = store.map_settings.geometry, options.top_classes
    inputs = FigureInputs(dataset, geometry, main["videomap"], splits.test, runs.histories, intervals, curves, top)
    report["figures"] = write_figures(report, out_dir, inputs)
    report["checks"] = checks(report)
    timings["figures"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start
    report["timings_s"] = timings
    write_outputs(report, out_dir)
    return report


def load_splits(store: VideoMapStore, dataset: VideoDataset, options: ReportOptions) -> Splits:
    """Training maps (``train_per_class`` a class), validation maps carved from the training
    clips before that, and every test map."""
    num_classes = len(dataset.classes)
    train, val = carve_validation(dataset.clips("train"), num_classes, options.val_fraction)
    splits = Splits(
        train=load_maps(store, balanced_subset(train, num_classes, options.train_per_class)),
        val=load_maps(store, val),
        test=load_maps(store, dataset.clips("test")),
    )
    if len(splits.train) == 0 or len(splits.test) == 0:
        raise DatasetError(f"{store.root} has no VideoMaps of the train or test split: run `tsmap extract` first")
    return splits


def report_header(
    store: VideoMapStore, dataset: VideoDataset, splits: Splits, options: ReportOptions, run_dir: Path | None
) -> dict:
    """What the report is about: the store, the splits, the options and every design's schedule."""
    return {
        "store": str(store.root),
        "store_settings": store.settings,
        "run_dir": None if run_dir is None else str(run_dir),
        "classes": dataset.classes,
        "num_train_maps": len(splits.train),
        "num_val_maps": len(splits.val),
        "num_test_maps": len(splits.test),
        "val_videos": [c.key for c in splits.val.clips],
        "missing_test_maps": splits.test.missing,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "seeds": list(range(options.seed, options.seed + options.seeds)),
        "train_configs": {k: options.train_config(k, options.seed, len(splits.train)).to_dict() for k in DESIGNS},
    }


def add_tables(report: dict, runs: DesignRuns, keys: list[str]) -> None:
    report["heads_reused"] = runs.reused
    report["heads_total"] = len(keys) * len(report["seeds"])
    rows = table_rows(runs, keys)
    report["table2"] = {k: rows[k] for k in TABLE_II}
    report["table3"] = {k: {**rows[k], "label": TABLE_III_LABELS[k]} for k in TABLE_III}


def head_label(kind: str, model: nn.Module) -> str:
    if isinstance(model, TSNHead) and model.test_frames == ALL_ROWS:
        return DESIGNS["tsn"].label
    return HEAD_LABELS[kind]


def add_main_figures(report: dict, main: dict, test, groups: dict[str, list[int]], options: ReportOptions) -> None:
    """The explained heads' figures on the test split, per-class gains, confusions, failure cases."""
    classes = report["classes"]
    scores = {}
    for kind in ("videomap", "tsn"):
        scores[kind], labels = score_maps(main[kind], test, device=options.device)
    cms = {k: confusion_matrix(s.argmax(1), labels, len(classes)) for k, s in scores.items()}
    report["main_heads"] = main["source"]
    report["main_head_labels"] = {k: head_label(k, main[k]) for k in scores}
    report["main_figures"] = {k: figures_of(s, labels, groups) for k, s in scores.items()}
    report["per_class"] = per_class(cms, classes)
    groups_found = confusion_groups(cms, classes, options.confusion_groups)
    report["confusion_groups"] = [[classes[i] for i in g] for g in groups_found]
    report["confusion_matrices"] = {k: cm.tolist() for k, cm in cms.items()}
    report["failures"] = failure_cases(scores["videomap"], labels, test, classes, options.num_failures)
