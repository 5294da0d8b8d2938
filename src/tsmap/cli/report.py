"""`tsmap report`: the paper's experiments and figures on a store, as one report."""

from __future__ import annotations

import argparse
from pathlib import Path

from tsmap.cli import options
from tsmap.cli.errors import EXIT_CODES_NO_FAILURES, OK

DEMO = Path("tsmap-demo")


def _class_group(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if len(names) < 2:
        raise argparse.ArgumentTypeError(f"give at least two class names separated by commas, got {text!r}")
    return names


def add_parser(sub) -> argparse.ArgumentParser:
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
        "class); on a real dataset raise --epochs and --train-per-class (0 = all maps).",
        epilog=EXIT_CODES_NO_FAILURES,
    )
    p.add_argument(
        "--store",
        type=options.folder,
        default=DEMO / "store",
        help="VideoMap store made by `tsmap extract` or `tsmap demo`. Default: tsmap-demo/store",
    )
    p.add_argument(
        "--out", type=options.folder, help="report folder. Default: 'report' beside the store (tsmap-demo/report)"
    )
    p.add_argument(
        "--run",
        type=options.folder,
        help="run folder whose videomap.pt and tsn.pt (from `tsmap train` or `tsmap demo`) are the heads of "
        "Figs. 6, 8, 9-11 and dashed lines in Fig. 5. Default: tsmap-demo/run with the default store when it holds "
        "both, else the report's own first-seed A0A1A2 and TSN heads",
    )
    p.add_argument("--seeds", type=options.positive_int, default=3, help="training seeds per table row. Default: 3")
    options.add_seed(p, "first seed (rows use SEED, SEED+1, ...). Default: 0")
    p.add_argument("--epochs", type=options.positive_int, default=6, help="epochs of every head but TSN. Default: 6")
    p.add_argument(
        "--batch-size", type=options.positive_int, default=16, help="maps per mini-batch (not TSN). Default: 16"
    )
    p.add_argument(
        "--lr",
        type=options.positive_float,
        default=0.005,
        help="SGD learning rate of the ConvNet heads (not TSN). Default: 0.005",
    )
    p.add_argument(
        "--lstm-lr",
        type=options.positive_float,
        default=0.2,
        help="learning rate of the LSTM head (SGD at the ConvNets' rate leaves it near chance in a short "
        "schedule). Default: 0.2",
    )
    p.add_argument(
        "--weight-decay",
        type=options.non_negative_float,
        default=2e-3,
        help="SGD weight decay (not TSN). Default: 0.002",
    )
    p.add_argument(
        "--train-per-class",
        type=options.non_negative_int,
        default=32,
        help="training maps per class, spread evenly over each class's list; 0 = every training map. Default: 32",
    )
    p.add_argument(
        "--tsn-epochs",
        type=options.positive_int,
        default=60,
        help="epochs of TSN (batches of 32, lr 0.01). Default: 60",
    )
    p.add_argument(
        "--densities",
        type=options.positive_int,
        nargs="+",
        default=[25, 32, 64, 128, 256],
        metavar="T",
        help="frames per video at test time for Fig. 5. Default: 25 32 64 128 256 (the paper's)",
    )
    p.add_argument(
        "--density-store",
        type=options.folder,
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
    p.add_argument(
        "--failures", type=options.non_negative_int, default=4, help="failure cases shown in Fig. 11. Default: 4"
    )
    p.add_argument("--top-classes", type=options.positive_int, default=25, help="classes shown in Fig. 6. Default: 25")
    options.add_split(p, "official HMDB51/UCF101 split (ignored for folder datasets). Default: 1")
    options.add_engine(p, when=" when the density store must be extracted")
    p.add_argument("--force", action="store_true", help="retrain the heads in OUT/heads even when reusable")
    options.add_device(p)
    options.add_quiet(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tsmap.report import ReportOptions, build_report
    from tsmap.videomap.store import StoreError, VideoMapStore

    if not (args.store / "store.json").is_file():
        hint = " (run `tsmap demo` first, or give --store)" if args.store == DEMO / "store" else ""
        raise StoreError(f"{args.store} is not a VideoMap store{hint}")
    VideoMapStore.open(args.store)  # a damaged store.json is named before the report folder is made
    out = args.out or args.store.resolve().parent / "report"
    options.check_writable(out, "--out")
    run_dir = args.run
    if (
        run_dir is None
        and args.store == DEMO / "store"
        and all((DEMO / "run" / f).is_file() for f in ("videomap.pt", "tsn.pt"))
    ):
        run_dir = DEMO / "run"  # the demo's fully trained heads explain better than a report's short-schedule ones
        print(f"explaining the heads of {run_dir} (--run)")
    report_options = ReportOptions(
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
    report = build_report(args.store, out, report_options, run_dir=run_dir)  # writes the outputs too
    print()
    for check in report["checks"]:
        print(f"  [{'ok' if check['holds'] else 'NO'}] {check['claim']}: {check['numbers']}")
    print(f"report: {out / 'report.md'} and {out / 'report.html'} ({report['timings_s']['total']:.0f} s)")
    return OK
