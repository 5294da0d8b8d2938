"""The steps a user runs: extract -> train -> evaluate -> predict (and fuse, for two streams).

Each step reads and writes plain files (a store folder, a run folder), so steps can be
rerun, resumed and mixed; the CLI, the demo and the report are thin layers over them.
"""

from tsmap.steps.common import HEAD_LABELS, HEADS, SCORES_KEYS_FILE, resolve_device, run_folder, store_dataset
from tsmap.steps.evaluate import evaluate, group_accuracies, mean_over_splits, order_pair_classes
from tsmap.steps.extract import ExtractOptions, extract
from tsmap.steps.fuse import fuse
from tsmap.steps.predict import predict_video
from tsmap.steps.train import train

__all__ = [
    "HEADS",
    "HEAD_LABELS",
    "SCORES_KEYS_FILE",
    "ExtractOptions",
    "evaluate",
    "extract",
    "fuse",
    "group_accuracies",
    "mean_over_splits",
    "order_pair_classes",
    "predict_video",
    "resolve_device",
    "run_folder",
    "store_dataset",
    "train",
]
