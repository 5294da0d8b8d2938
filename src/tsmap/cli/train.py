"""`tsmap train`: the VideoMap head and/or the TSN baseline on a store's training maps."""

from __future__ import annotations

import argparse

from tsmap.cli import options
from tsmap.cli.errors import EXIT_CODES_NO_FAILURES, OK

VAL_FRACTION = 0.1  # tsmap.data.subsets.DEFAULT_VAL_FRACTION (not imported: it pulls in NumPy and the datasets)


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="train the VideoMap head and/or the TSN baseline on a store",
        description="Train heads on the training split of the store's dataset, less a validation part that picks "
        "the epoch whose weights are kept. Checkpoints go to RUN/videomap.pt and RUN/tsn.pt (RUN/split<N>/ for "
        "HMDB51/UCF101). After every epoch the training state is saved, so a killed run continues where it "
        "stopped when rerun; a head already trained with the same settings is kept.",
        epilog=EXIT_CODES_NO_FAILURES,
    )
    options.add_store(p)
    p.add_argument(
        "--run",
        "--run-dir",
        dest="run",
        type=options.folder,
        required=True,
        help="run folder for checkpoints and results (spell it --run-dir under torchrun, whose own --run-path "
        "option makes --run ambiguous)",
    )
    options.add_train_options(p)
    p.add_argument(
        "--val-fraction",
        type=options.probability,
        default=VAL_FRACTION,
        metavar="FRACTION",
        help="fraction of each class's training videos held out to pick the epoch whose weights are kept, in "
        f"[0, 1); 0 keeps the last epoch. Default: {VAL_FRACTION}",
    )
    p.add_argument(
        "--val-seed", type=options.non_negative_int, default=0, help="seed of that validation carve. Default: 0"
    )
    p.add_argument(
        "--force", action="store_true", help="retrain heads even when RUN holds them trained with the same settings"
    )
    p.add_argument(
        "--memory-budget",
        type=options.non_negative_float,
        default=2.0,
        metavar="GIB",
        help="load the training maps into memory when they take at most this many GiB (float16); "
        "larger stores are read memory-mapped from disk. Default: 2",
    )
    options.add_device(p)
    options.add_quiet(p)
    return p


def train_configs(args: argparse.Namespace) -> dict:
    """The recipe of --schedule with the settings the user gave; the same for both heads."""
    from tsmap.train_config import recipe

    names = ("epochs", "batch_size", "lr", "lr_step", "weight_decay", "label_smoothing", "temporal_crop")
    names += ("feature_dropout", "mixup", "weight_average", "patience", "micro_batch", "seed")
    base = recipe(args.schedule, **{name: getattr(args, name) for name in names})
    return {"videomap": base, "tsn": base}


def run(args: argparse.Namespace) -> int:
    from tsmap import steps
    from tsmap.steps.train import kept_epoch
    from tsmap.training import collapse_epoch
    from tsmap.videomap.store import VideoMapStore

    store = VideoMapStore.open(args.store)
    heads = list(steps.HEADS) if args.head == "both" else [args.head]
    run_dir = steps.run_folder(args.run, store, args.split)
    options.check_writable(run_dir, "--run")
    configs = train_configs(args)
    histories = steps.train(
        store,
        run_dir,
        heads,
        configs,
        attention=args.attention,
        attention_scoring=args.attention_scoring,
        device=args.device,
        show_progress=not args.quiet,
        official_split=args.split,
        force=args.force,
        memory_budget_gib=args.memory_budget,
        val_fraction=args.val_fraction,
        val_seed=args.val_seed,
    )
    for kind, history in histories.items():
        last = history[-1]
        kept = kept_epoch(history)
        line = f"{kind}: {len(history)} epochs, final loss {last['loss']:.3f}, train top-1 {last['train_top1']:.1%}"
        if "val_top1" in kept:
            line += f"; kept epoch {kept['epoch']} (validation top-1 {kept['val_top1']:.1%})"
        print(f"{line} -> {run_dir / (kind + '.pt')}")
        lr = configs[kind].lr * last.get("lr_scale", 1.0)
        if "lr_scale" in last:
            print(f"note: {kind}: the head collapsed at --lr {configs[kind].lr:g}; the one kept was trained at {lr:g}")
        collapsed = collapse_epoch(history)
        if collapsed:
            print(
                f"warning: {kind}: training collapsed at epoch {collapsed} and stopped: the head gave every map the "
                f"same scores (its ReLUs died), so the kept epoch is from before it; retrain with a smaller learning "
                f"rate (--lr {lr / 2:g} --force)"
            )
    return OK
