"""``tsmap report`` and ``tsmap explain``: parsers and commands, to wire into ``tsmap.cli``.

``add_report_parser(sub)`` / ``add_explain_parser(sub)`` add the subcommands to the
``add_subparsers`` object of the main parser; ``cmd_report(args)`` / ``cmd_explain(args)``
run them and return the exit status. User mistakes raise the exceptions the CLI already
reports in one line (DatasetError, StoreError, VideoError, FileNotFoundError).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEMO = Path("tsmap-demo")


def _class_group(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if len(names) < 2:
        raise argparse.ArgumentTypeError(f"give at least two class names separated by commas, got {text!r}")
    return names


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N, or auto (a GPU when PyTorch sees one). Default: auto"
    )


def add_report_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "report",
        help="the paper's experiments and figures on a store: Markdown/HTML report, PNG, JSON, CSV",
        description="Train every head design of the paper's Table II (TSN, 3-layer LSTM, AlexNet-style, 1-layer "
        "and 3-layer ConvNet) and every attention variant of Table III on the store's training maps with several "
        "seeds; test them on the test split, at several frame densities (Fig. 5), per class (Fig. 6), on "
        "partial confusion matrices (Figs. 9-10) and failure cases (Fig. 11); show frames, VideoMap, attention and "
        "Grad-CAM over time (Fig. 8) and, where the dataset records action intervals (the demo), how much "
        "attention and Grad-CAM fall on the action. Writes OUT/report.md, OUT/report.html, OUT/report.json, CSV "
        "tables and PNG figures. Trained heads are kept in OUT/heads and reused by a rerun with the same settings. "
        "The defaults are sized for the demo (`tsmap demo`) on 2 CPU cores (a short schedule on 32 maps per "
        "class: about 9 minutes); on a real dataset raise --epochs and --train-per-class (0 = all maps).",
    )
    p.add_argument(
        "--store",
        type=Path,
        default=DEMO / "store",
        help="VideoMap store made by `tsmap extract` or `tsmap demo`. Default: tsmap-demo/store",
    )
    p.add_argument("--out", type=Path, help="report folder. Default: 'report' beside the store (tsmap-demo/report)")
    p.add_argument(
        "--run",
        type=Path,
        help="run folder whose videomap.pt and tsn.pt (from `tsmap train` or `tsmap demo`) are the heads of "
        "Figs. 6, 8, 9-11 and dashed lines in Fig. 5. Default: tsmap-demo/run with the default store when it holds "
        "both, else the report's own first-seed A0A1A2 and TSN heads",
    )
    p.add_argument("--seeds", type=_positive, default=3, help="training seeds per table row. Default: 3")
    p.add_argument("--seed", type=int, default=0, help="first seed (rows use SEED, SEED+1, ...). Default: 0")
    p.add_argument("--epochs", type=_positive, default=6, help="epochs of every head but TSN. Default: 6")
    p.add_argument("--batch-size", type=_positive, default=16, help="maps per mini-batch (not TSN). Default: 16")
    p.add_argument(
        "--lr", type=float, default=0.005, help="SGD learning rate of the ConvNet heads (not TSN). Default: 0.005"
    )
    p.add_argument(
        "--lstm-lr",
        type=float,
        default=0.2,
        help="learning rate of the LSTM head (SGD at the ConvNets' rate leaves it near chance in a short "
        "schedule). Default: 0.2",
    )
    p.add_argument("--weight-decay", type=float, default=2e-3, help="SGD weight decay (not TSN). Default: 0.002")
    p.add_argument(
        "--train-per-class",
        type=int,
        default=32,
        help="training maps per class, spread evenly over each class's list; 0 = every training map. Default: 32",
    )
    p.add_argument(
        "--tsn-epochs", type=_positive, default=60, help="epochs of TSN (batches of 32, lr 0.01). Default: 60"
    )
    p.add_argument(
        "--densities",
        type=_positive,
        nargs="+",
        default=[25, 32, 64, 128, 256],
        metavar="T",
        help="frames per video at test time for Fig. 5. Default: 25 32 64 128 256 (the paper's)",
    )
    p.add_argument(
        "--density-store",
        type=Path,
        help="store of the test videos at T >= the largest density with the store's other settings; made there "
        "from the videos when missing. Default: STORE-T<largest density> beside the store (not needed when the "
        "store's own T is large enough)",
    )
    p.add_argument(
        "--confusion-classes",
        type=_class_group,
        action="append",
        default=[],
        metavar="A,B,...",
        help="classes of one partial confusion matrix (Figs. 9-10), comma-separated; repeat for several. "
        "Default: the two most confused groups",
    )
    p.add_argument(
        "--videos",
        nargs="+",
        default=[],
        metavar="KEY",
        help="test videos for Fig. 8, as in test.txt (<class>/<video>). Default: the first test video of 4 classes",
    )
    p.add_argument("--failures", type=int, default=4, help="failure cases shown in Fig. 11. Default: 4")
    p.add_argument("--top-classes", type=_positive, default=25, help="classes shown in Fig. 6. Default: 25")
    p.add_argument(
        "--split",
        type=int,
        choices=[1, 2, 3],
        default=1,
        help="official HMDB51/UCF101 split (ignored for folder datasets). Default: 1",
    )
    p.add_argument(
        "--engine",
        choices=["auto", "torch", "onnx"],
        default="auto",
        help="frame ConvNet runtime when the density store must be extracted (as in `tsmap extract`). Default: auto",
    )
    p.add_argument("--force", action="store_true", help="retrain the heads in OUT/heads even when reusable")
    _device(p)
    return p


def add_explain_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "explain",
        help="where in time a trained VideoMap head looks: frames, VideoMap, attention, Grad-CAM (Fig. 8)",
        description="Map each video with the run's extraction settings and draw the paper's Fig. 8: sampled "
        "frames, the VideoMap (time across), the attention weights a0 and the Grad-CAM of the head's conv-3 "
        "layer over time, with the top-5 classes. When the action interval is known (--action, or the demo's "
        "dataset.json above the video), the shares of attention and Grad-CAM on it are printed. Writes "
        "OUT/<video>.png and OUT/<video>.json.",
    )
    p.add_argument("videos", type=Path, nargs="+", metavar="VIDEO", help="video files")
    p.add_argument(
        "--run",
        type=Path,
        default=DEMO / "run",
        help="run folder with videomap.pt (`tsmap train` or `tsmap demo`). Default: tsmap-demo/run",
    )
    p.add_argument("--out", type=Path, help="output folder. Default: RUN/explain")
    p.add_argument(
        "--class",
        dest="target",
        metavar="NAME",
        help="class whose Grad-CAM to show. Default: the predicted class",
    )
    p.add_argument(
        "--action",
        type=int,
        nargs=2,
        metavar=("START", "END"),
        help="the action's frames [START, END) in the video, to measure attention and Grad-CAM on it. "
        "Default: from a dataset.json in a folder above the video (the demo's), else none",
    )
    p.add_argument(
        "--layer",
        choices=["conv1", "conv2", "conv3", "block3"],
        default="conv3",
        help="Grad-CAM layer: conv3 (the 3rd conv's ReLU output, T/4 time cells, the paper's 'Conv-3'), "
        "block3 (after its pool, T/8 cells), or the earlier conv1 (T cells, one per row) or conv2 (T/2 cells), "
        "whose cells see fewer rows and so place the evidence more sharply in time. Default: conv3",
    )
    p.add_argument("--frames-shown", type=_positive, default=8, help="video frames drawn on top. Default: 8")
    _device(p)
    return p


def cmd_report(args: argparse.Namespace) -> int:
    from tsmap.evaluation.report import ReportOptions, build_report
    from tsmap.videomap.store import StoreError

    if not (args.store / "store.json").is_file():
        hint = " (run `tsmap demo` first, or give --store)" if args.store == DEMO / "store" else ""
        raise StoreError(f"{args.store} is not a VideoMap store{hint}")
    out = args.out or args.store.resolve().parent / "report"
    run = args.run
    if (
        run is None
        and args.store == DEMO / "store"
        and all((DEMO / "run" / f).is_file() for f in ("videomap.pt", "tsn.pt"))
    ):
        run = DEMO / "run"  # the demo's fully trained heads explain better than a report's short-schedule ones
        print(f"explaining the heads of {run} (--run)")
    options = ReportOptions(
        seeds=args.seeds,
        seed=args.seed,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        design_lr={"lstm": args.lstm_lr},
        train_per_class=args.train_per_class,
        tsn_epochs=args.tsn_epochs,
        densities=tuple(args.densities),
        density_store=args.density_store,
        confusion_groups=args.confusion_classes,
        explain_videos=args.videos,
        num_failures=args.failures,
        top_classes=args.top_classes,
        official_split=args.split,
        device=args.device,
        engine=args.engine,
        show_progress=not getattr(args, "quiet", False),
        force=args.force,
    )
    report = build_report(args.store, out, options, run_dir=run)
    print()
    for check in report["checks"]:
        print(f"  [{'ok' if check['holds'] else 'NO'}] {check['claim']}: {check['numbers']}")
    print(f"report: {out / 'report.md'} and {out / 'report.html'} ({report['timings_s']['total']:.0f} s)")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from tsmap import steps
    from tsmap.data.datasets import DatasetError
    from tsmap.data.video import FrameGeometry, read_distinct_frames, uniform_indices
    from tsmap.evaluation.explain import (
        ActionInterval,
        describe_shares,
        explain_maps,
        find_action_interval,
        head_row_frames,
        interval_shares,
        plot_explained,
    )
    from tsmap.heads.checkpoint import load_head
    from tsmap.heads.videomap_head import VideoMapHead
    from tsmap.videomap.extract import encoder_for_store, videomap_from_frames
    from tsmap.videomap.store import StoreError

    device = steps.resolve_device(args.device)
    model, meta = load_head(args.run / "videomap.pt", device)
    if not isinstance(model, VideoMapHead):
        raise StoreError(f"{args.run / 'videomap.pt'} is not a VideoMap head")
    classes = meta["classes"]
    target = None
    if args.target is not None:
        if args.target not in classes:
            raise DatasetError(f"unknown class {args.target!r}; the run's classes are {', '.join(classes)}")
        target = torch.tensor([classes.index(args.target)])
    s = meta["store_settings"]
    if s.get("stream", "rgb") != "rgb":
        raise StoreError(f"{args.run / 'videomap.pt'} was trained on {s['stream']} maps; explain reads RGB frames")
    geometry = FrameGeometry(s["image_size"], s["resize"])
    encoder = encoder_for_store(s, device)
    out = args.out or args.run / "explain"
    out.mkdir(parents=True, exist_ok=True)
    for video in args.videos:
        distinct, sample, count = read_distinct_frames(video, s["frames"], geometry)
        videomap = torch.from_numpy(videomap_from_frames(distinct, encoder, sample))[None]
        frames = distinct[sample]
        ex = explain_maps(model, videomap, target, layer=args.layer)
        rows = head_row_frames(count, videomap.shape[1], model.num_frames)
        if args.action is not None:
            iv = ActionInterval(args.action[0], args.action[1], count)
        else:
            iv = find_action_interval(video)
        probs = ex.probs[0]
        top = np.argsort(-probs, kind="stable")[:5]
        result = {
            "video": str(video),
            "frames": count,
            "top5": [[classes[k], float(probs[k])] for k in top],
            "explained_class": classes[int(ex.target[0])],
            "grad_cam_layer": args.layer,
            "row_frames": rows.tolist(),
            "attention": None if ex.attention is None else ex.attention[0].tolist(),
            "grad_cam": ex.grad_cam[0].tolist(),
        }
        title = (
            f"{video.name}: predicted {classes[top[0]]} ({probs[top[0]]:.0%}); "
            f"Grad-CAM ({args.layer}) of {result['explained_class']}"
        )
        if iv is not None:
            shares = interval_shares(ex, 0, rows, iv.start, iv.end, count)
            result["action"] = [iv.start, iv.end]
            result.update(shares)
            title += "\n" + describe_shares(shares, iv.start, iv.end)
        shown = uniform_indices(len(frames), args.frames_shown)
        ids = uniform_indices(count, len(frames))[shown].tolist()
        png = plot_explained(ex, frames[shown], ids, rows, count, out / f"{video.stem}.png", title, iv)
        (out / f"{video.stem}.json").write_text(json.dumps(result, indent=1))
        print(f"{video}:")
        for name, p in result["top5"]:
            print(f"  {p:7.1%}  {name}")
        if iv is not None:
            print("  " + describe_shares(shares, iv.start, iv.end))
        print(f"  figure: {png}; numbers: {out / (video.stem + '.json')}")
    return 0
