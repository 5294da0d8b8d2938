"""VideoMap head training: speed against the CPU's GEMM peak, and memory against the store's size.

    python benchmarks/train_head.py [--maps 256] [--frames 256] [--batch-size 128] [--epochs 1]

Writes a store of random float16 maps (T x 1280, as Lite0 gives) to a temporary
folder, then trains the paper's head (A0A1A2) on it through ``train_head``, the path
``tsmap train`` takes, once with the maps loaded into memory and once memory-mapped,
each in a fresh process so that peak memory is its own; then once more in memory with the
paper's global attention FC (``attention_scoring="global"``) as the baseline that the
default per-row attention branch is compared with. Reports per run:

  maps/s, achieved GFLOP/s (forward + backward FLOPs counted by PyTorch's FLOP counter)
  and their share of an fp32 GEMM peak measured in the same run; the time of one
  HMDB51-sized epoch (3,570 maps) next to its floor (FLOPs / peak); the memory the
  training maps take once loaded ("data", as a multiple of the store's size) and the
  peak above the process's baseline (PyTorch loaded, head built), which adds the
  activations of one batch (they grow with batch x T x L, not with the store).

Figures go to benchmarks/results/train_head.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import save_results
from torch.utils.flop_counter import FlopCounterMode

from tsmap.data.datasets import Clip
from tsmap.heads.videomap_head import VideoMapHead
from tsmap.train_config import TrainConfig
from tsmap.training import train_head
from tsmap.videomap.loader import MapDataset
from tsmap.videomap.store import VideoMapStore

FEATURES = 1280
CLASSES = 51
HMDB51_TRAIN_MAPS = 3570


def gemm_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def training_flops_per_map(frames: int, scoring: str, batch: int = 4) -> float:
    """Forward + backward FLOPs of one map (convolutions and matmuls, as PyTorch counts them)."""
    model = VideoMapHead(CLASSES, frames, FEATURES, attention_scoring=scoring)
    x = torch.randn(batch, frames, FEATURES)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).sum().backward()
    return counter.get_total_flops() / batch


def write_store(root: Path, maps: int, frames: int) -> VideoMapStore:
    settings = {"stream": "rgb", "backbone": "random", "feature_dim": FEATURES, "frames": frames, "dtype": "float16"}
    store = VideoMapStore.create_or_open(root, settings)
    rng = np.random.default_rng(0)
    for i in range(maps):
        store.write(f"c{i % CLASSES}/v{i}.mp4", rng.standard_normal((frames, FEATURES), dtype=np.float32))
    return store


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(args: argparse.Namespace) -> None:
    """One training run in this process; prints one JSON line."""
    store = VideoMapStore.open(args.store)
    clips = [Clip(key, int(key.split("/")[0][1:])) for key in sorted(store.keys())]
    torch.manual_seed(0)
    model = VideoMapHead(CLASSES, store.num_frames, FEATURES, attention_scoring=args.scoring)
    baseline = rss_mib()
    data = MapDataset(store, clips, in_memory=args.child == "memory")
    loaded = rss_mib()
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size)
    start = time.perf_counter()
    train_head(model, data, config, show_progress=False)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record = {"seconds": seconds, "baseline_mib": baseline, "data_mib": loaded - baseline, "peak_mib": peak}
    print(json.dumps(record | {"maps": len(data)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maps", type=int, default=256, help="maps in the generated store. Default: 256")
    parser.add_argument("--frames", type=int, default=256, help="T of each map. Default: 256 (the paper's)")
    parser.add_argument("--batch-size", type=int, default=128, help="maps per step. Default: 128 (the paper's)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per mode. Default: 1")
    parser.add_argument("--child", choices=["memory", "mmap"], help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scoring", default="rows", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    peak = gemm_peak_gflops()
    flops_of = {scoring: training_flops_per_map(args.frames, scoring) for scoring in ("rows", "global")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = write_store(Path(tmp) / "store", args.maps, args.frames)
        store_mib = sum(p.stat().st_size for p in (store.root / "maps").rglob("*.npy")) / 2**20
        for mode, scoring in (("memory", "rows"), ("mmap", "rows"), ("memory", "global")):
            cmd = [sys.executable, __file__, "--child", mode, "--store", str(store.root), "--scoring", scoring]
            cmd += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
            flops = flops_of[scoring]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            run = json.loads(out.strip().splitlines()[-1])
            # The standardiser's pass over the data is part of train_head: one forward-free read.
            maps_per_s = run["maps"] * args.epochs / run["seconds"]
            rows.append(
                {
                    "mode": mode if scoring == "rows" else f"{mode}, global attention",
                    "attention_scoring": scoring,
                    "training_flops_per_map": flops,
                    "maps_per_s": maps_per_s,
                    "gflops": flops * maps_per_s / 1e9,
                    "share_of_peak": flops * maps_per_s / 1e9 / peak,
                    "hmdb51_epoch_s": HMDB51_TRAIN_MAPS / maps_per_s,
                    "hmdb51_epoch_floor_s": HMDB51_TRAIN_MAPS * flops / (peak * 1e9),
                    "memory_above_baseline_mib": run["peak_mib"] - run["baseline_mib"],
                    "data_over_store": run["data_mib"] / store_mib,
                    **run,
                }
            )

    print(
        f"VideoMap head (A0A1A2, widths 16/32/32) on {args.maps} maps of {args.frames} x {FEATURES}, "
        f"batch {args.batch_size}; store {store_mib:.0f} MiB; {torch.get_num_threads()} threads"
    )
    print(
        f"fp32 GEMM peak {peak:.0f} GFLOP/s; training FLOPs per map {flops_of['rows'] / 1e9:.2f} GFLOP "
        f"({flops_of['global'] / 1e9:.2f} with the global attention FC)"
    )
    header = ["mode", "maps/s", "GFLOP/s", "of peak", "HMDB51 epoch", "floor", "data MiB", "x store", "peak MiB"]
    print("".join(f"{h:>13}" if i else f"{h:<26}" for i, h in enumerate(header)))
    for r in rows:
        cells = [
            r["mode"],
            f"{r['maps_per_s']:.2f}",
            f"{r['gflops']:.0f}",
            f"{r['share_of_peak']:.0%}",
            f"{r['hmdb51_epoch_s'] / 60:.1f} min",
            f"{r['hmdb51_epoch_floor_s'] / 60:.1f} min",
            f"{r['data_mib']:.0f}",
            f"{r['data_over_store']:.2f}",
            f"{r['memory_above_baseline_mib']:.0f}",
        ]
        print("".join(f"{c:>13}" if i else f"{c:<26}" for i, c in enumerate(cells)))
    per_row, global_fc = rows[0]["maps_per_s"], rows[2]["maps_per_s"]
    print(f"per-row attention branch: {per_row / global_fc:.2f} x the maps/s of the global one (same run, in memory)")
    record = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("child", "store")},
        "gemm_peak_gflops": peak,
        "training_flops_per_map": flops_of["rows"],
        "training_flops_per_map_global_attention": flops_of["global"],
        "per_row_over_global_maps_per_s": per_row / global_fc,
        "store_mib": store_mib,
        "modes": rows,
    }
    save_results("train_head", record)


if __name__ == "__main__":
    main()
