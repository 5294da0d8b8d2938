"""`tsmap join`: one store of several stores' maps side by side (RGB and flow), for one head on both."""

from __future__ import annotations

import argparse

from tsmap.cli import options
from tsmap.cli.errors import EXIT_CODES_NO_FAILURES, OK


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "join",
        help="one store of an RGB and a flow store's maps side by side, for one head on both streams",
        description="Write a store whose VideoMaps are the given stores' maps side by side (T x L1+L2: an RGB "
        "and a flow store of the same videos give T x 2560), to train one head on both streams with `tsmap "
        "train` instead of fusing two heads' scores with `tsmap fuse`: the head can then read appearance in "
        "the RGB columns and motion in the flow columns. The stores must map the same dataset and split "
        "with the same --frames, one view a video. `tsmap train`, `evaluate` and `report` take the joined "
        "store as any other; `tsmap predict` maps a new video with each part's settings. Rerun it after "
        "extracting more videos or pointing the stores at other lists: only changed maps are written.",
        epilog=EXIT_CODES_NO_FAILURES,
    )
    p.add_argument(
        "--stores",
        type=options.folder,
        nargs="+",
        required=True,
        metavar="STORE",
        help="the stores to join, in column order (e.g. MAPS_RGB MAPS_FLOW), each made by `tsmap extract`",
    )
    p.add_argument("--store", type=options.folder, required=True, help="the joined store's folder (made if absent)")
    options.add_quiet(p)
    return p


def run(args: argparse.Namespace) -> int:
    from tsmap.steps.join import join

    options.check_writable(args.store, "--store")
    result = join(args.stores, args.store)
    store = result["store"]
    print(
        f"joined {len(args.stores)} stores into {args.store}: {result['joined']} maps written, {result['kept']} "
        f"unchanged; maps of {store.num_frames} x {store.feature_dim} ({store.map_settings.stream})"
    )
    if result["missing"]:
        print(
            f"note: {len(result['missing'])} videos are mapped in some of the stores only and were left out "
            f"(e.g. {result['missing'][0]}); extract them into every store, then join again"
        )
    return OK
