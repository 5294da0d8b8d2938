"""VideoMap head training: speed against the CPU's GEMM peak, and memory against the store's size.

    python benchmarks/train_head.py [--maps 256] [--frames 256] [--batch-size 128] [--epochs 1]

Writes a store of random float16 maps (T x 1280, as Lite0 gives) to a temporary
folder, then trains the paper's head (A0A1A2) on it through ``train_head``, the path
``tsmap train`` takes, with the maps loaded into memory, once with the fused conv blocks
(``ConvBlock``, the default) and once with the reference layers (``reference_layers()``:
the same run's "before"); once memory-mapped; each in a fresh process so that peak memory
is its own; then once more in memory with the paper's global attention FC
(``attention_scoring="global"``) as the baseline that the default per-row attention branch
is compared with. Reports per run:

  maps/s, achieved GFLOP/s (forward + backward FLOPs counted by PyTorch's FLOP counter)
  and their share of an fp32 GEMM peak measured in the same run; the time of one
  HMDB51-sized epoch (3,570 maps) next to its floor (FLOPs / peak); the memory the
  training maps take once loaded ("data", as a multiple of the store's size) and the
  peak above the process's baseline (PyTorch loaded, head built), which adds the
  activations of one batch (they grow with batch x T x L, not with the store); minor page
  faults (``getrusage``) of the first optimiser step (the heap grows to its peak) and per
  later step; the seconds before the first pass (the standardiser's fit, data loading) and
  the share of the peak over the steps after the first ("later/peak": the steady state).
  Each child calls ``tsmap.malloc.tune_malloc()`` first, as ``tsmap``'s CLI does
  (``--no-malloc-tuning``: glibc's defaults, a fresh mapping for every large tensor).

Before those runs, a per-layer breakdown (one more child): each conv block of the head
(conv, max-pool, ReLU), forward and backward on one training pass (``auto_micro_batch``
maps, 16 at 256 x 1280) with a random output gradient, timed next to its FLOPs and the
GEMM peak, once with the fused blocks (``ConvBlock``: what training runs) and once with
the reference layers (``reference_layers()``: nn.Conv2d, nn.MaxPool2d, nn.ReLU one by
one), interleaved with GEMM peak samples; then the whole training step of that pass both
ways; "rest" is the step minus the blocks (standardiser, attention FC and softmax, Eq. 2
scaling, the FC, the loss). Every figure is the fastest of ``--repeats`` (the least
disturbed on a shared machine); with ``--threads 1`` the times are the thread's CPU time.
FLOPs are always those of the reference layers.

Figures go to benchmarks/results/train_head.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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
from tsmap.heads.videomap_head import VideoMapHead, channels_last_1ch, pooled_size, reference_layers
from tsmap.train_config import TrainConfig
from tsmap.training import auto_micro_batch, train_head
from tsmap.videomap.loader import MapDataset
from tsmap.videomap.store import VideoMapStore

FEATURES = 1280
CLASSES = 51
HMDB51_TRAIN_MAPS = 3570
# Training runs: (maps in memory or memory-mapped, attention scoring, reference layers instead of the fused blocks).
MODES = (("memory", "rows", False), ("memory", "rows", True), ("mmap", "rows", False), ("memory", "global", False))


def gemm_peak_gflops(n: int = 2048, repeats: int = 10, clock=time.perf_counter) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = clock()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (clock() - start) / 1e9


def layer_clock():
    """Wall time; with one thread, that thread's CPU time: what it computed, however many other
    processes share the cores (wall time on a shared machine mostly measures the sharing)."""
    return time.thread_time if torch.get_num_threads() == 1 else time.perf_counter


def training_flops_per_map(frames: int, scoring: str, batch: int = 4) -> float:
    """Forward + backward FLOPs of one map (convolutions and matmuls, as PyTorch counts them
    on the reference layers: the fused blocks' own kernels do some multiply-adds twice)."""
    model = VideoMapHead(CLASSES, frames, FEATURES, attention_scoring=scoring)
    x = torch.randn(batch, frames, FEATURES)
    return flops_of(lambda: model(x).sum().backward()) / batch


def flops_of(fn) -> float:
    """FLOPs of ``fn()`` counted on the reference layers."""
    counter = FlopCounterMode(display=False)
    with counter, reference_layers():
        fn()
    return counter.get_total_flops()


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def head_layers(model: VideoMapHead, batch: int) -> list[tuple[str, torch.nn.Module, torch.Tensor]]:
    """(name, block, input) for each conv block of the head, inputs shaped as in training: a
    1-channel map for the first convs (the head's needs a gradient: a0 scales it), ReLU
    outputs (half zeros) for the others."""
    t, ell = model.num_frames, model.config["feature_dim"]
    gen = torch.Generator().manual_seed(0)

    def image(c: int, h: int, w: int, grad: bool) -> torch.Tensor:
        x = torch.randn(batch, c, h, w, generator=gen)
        x = channels_last_1ch(x) if c == 1 else x.relu().contiguous(memory_format=torch.channels_last)
        return x.requires_grad_(grad)

    layers = []
    if model.attention is not None:
        blocks = model.attention.blocks
        c1, c2 = blocks[0][0].out_channels, blocks[1][0].out_channels
        t1 = t if model.attention.scoring == "rows" else pooled_size(t)
        layers.append((f"attention block 1 (1->{c1})", blocks[0], image(1, t, ell, False)))
        layers.append((f"attention block 2 ({c1}->{c2})", blocks[1], image(c1, t1, pooled_size(ell), True)))
    h, w, c = t, ell, 1
    for i, block in enumerate((model.block1, model.block2, model.block3), 1):
        out = block[0].out_channels
        layers.append((f"block {i} ({c}->{out})", block, image(c, h, w, i > 1 or model.use["A0"])))
        h, w, c = pooled_size(h), pooled_size(w), out
    return layers


def layer_breakdown(frames: int, batch: int, repeats: int) -> dict:
    """Per-layer and whole-step times of one training pass, fused blocks and reference layers."""
    torch.manual_seed(0)
    model = VideoMapHead(CLASSES, frames, FEATURES).train()
    layers = head_layers(model, batch)
    maps = torch.randn(batch, frames, FEATURES)
    labels = torch.randint(0, CLASSES, (batch,))
    with torch.no_grad(), reference_layers():
        grads = {name: torch.randn_like(block(x)) for name, block, x in layers}
    passes = {name: (lambda b=block, x=x, g=grads[name]: b(x).backward(g)) for name, block, x in layers}
    passes["step"] = lambda: torch.nn.functional.cross_entropy(model(maps), labels).backward()
    flops = {name: flops_of(fn) for name, fn in passes.items()}

    best: dict[str, float] = {}
    faults: dict[str, list[int]] = {"now": [], "reference": []}
    clock = layer_clock()
    for fn in passes.values():  # warm-up: oneDNN primitives, the allocator's heap
        fn()
    for _ in range(repeats):
        best["peak"] = max(best.get("peak", 0.0), gemm_peak_gflops(clock=clock))
        for name, fn in passes.items():
            for key in ("now", "reference"):
                with reference_layers() if key == "reference" else contextlib.nullcontext():
                    before = minor_faults()
                    start = clock()
                    fn()
                    seconds = clock() - start
                    if name == "step":
                        faults[key].append(minor_faults() - before)
                best[f"{name}|{key}"] = min(best.get(f"{name}|{key}", float("inf")), seconds)
    peak = best["peak"]

    def row(name: str, gflop: float, seconds: dict[str, float]) -> dict:
        out = {"layer": name, "gflop_per_map": gflop / batch}
        for key, s in seconds.items():
            out[f"{key}_ms_per_map"] = s / batch * 1e3
            out[f"{key}_share_of_peak"] = gflop / s / peak
        out["speedup"] = seconds["reference"] / seconds["now"]
        return out

    keys = ("now", "reference")
    rows = [row(name, flops[name] / 1e9, {k: best[f"{name}|{k}"] for k in keys}) for name in passes]
    blocks, step = rows[:-1], rows[-1]
    rest_ms = {k: step[f"{k}_ms_per_map"] - sum(r[f"{k}_ms_per_map"] for r in blocks) for k in keys}
    rest_seconds = {k: ms * batch / 1e3 for k, ms in rest_ms.items()}
    rest_gflop = (step["gflop_per_map"] - sum(r["gflop_per_map"] for r in blocks)) * batch
    rows.insert(-1, row("rest", rest_gflop, rest_seconds))
    rows[-1]["layer"] = "whole training step"
    return {
        "maps_per_pass": batch,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "clock": "thread CPU time" if clock is time.thread_time else "wall time",
        "gemm_peak_gflops": peak,
        "minor_faults_per_step": {key: sorted(f)[len(f) // 2] for key, f in faults.items()},
        "layers": rows,
    }


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
    """One training run (or the per-layer breakdown) in this process; prints one JSON line."""
    if args.threads:
        torch.set_num_threads(args.threads)
    malloc_tuned = False
    if not args.no_malloc_tuning:
        from tsmap.malloc import tune_malloc

        malloc_tuned = tune_malloc()
    if args.child == "layers":
        batch = auto_micro_batch(args.batch_size, args.frames, FEATURES, "cpu")
        print(json.dumps(layer_breakdown(args.frames, batch, args.repeats) | {"malloc_tuned": malloc_tuned}))
        return
    store = VideoMapStore.open(args.store)
    clips = [Clip(key, int(key.split("/")[0][1:])) for key in sorted(store.keys())]
    torch.manual_seed(0)
    model = VideoMapHead(CLASSES, store.num_frames, FEATURES, attention_scoring=args.scoring)
    baseline = rss_mib()
    data = MapDataset(store, clips, in_memory=args.child == "memory")
    loaded = rss_mib()
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size)
    # Time and page faults at the start of every forward pass (a hook on the head itself, which
    # leaves the fused blocks on): before the first pass train_head fits the standardiser; the
    # first optimiser step grows the heap (and creates oneDNN's kernels), the later ones reuse it.
    marks = []
    model.register_forward_pre_hook(lambda module, inputs: marks.append((time.perf_counter(), minor_faults())))
    start = time.perf_counter()
    with reference_layers() if args.reference_layers else contextlib.nullcontext():
        train_head(model, data, config, show_progress=False)
    end = time.perf_counter()
    marks.append((end, minor_faults()))
    per_pass = np.diff([faults for _, faults in marks])
    micro = auto_micro_batch(args.batch_size, store.num_frames, FEATURES, "cpu")
    passes = -(-args.batch_size // micro)
    later = per_pass[passes:]
    later_maps = len(data) * args.epochs - args.batch_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    record = {"seconds": end - start, "baseline_mib": baseline, "data_mib": loaded - baseline, "peak_mib": peak}
    record |= {
        "seconds_before_first_pass": marks[0][0] - start,
        "later_steps_maps_per_s": later_maps / (end - marks[passes][0]) if later_maps > 0 else None,
        "minor_faults_first_step": int(per_pass[:passes].sum()),
        "minor_faults_per_later_step": float(later.mean() * passes) if len(later) else None,
        "malloc_tuned": malloc_tuned,
    }
    print(json.dumps(record | {"maps": len(data)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maps", type=int, default=256, help="maps in the generated store. Default: 256")
    parser.add_argument("--frames", type=int, default=256, help="T of each map. Default: 256 (the paper's)")
    parser.add_argument("--batch-size", type=int, default=128, help="maps per step. Default: 128 (the paper's)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per mode. Default: 1")
    parser.add_argument("--repeats", type=int, default=3, help="samples of each per-layer figure. Default: 3")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer breakdown")
    parser.add_argument("--no-training", action="store_true", help="only the per-layer breakdown")
    parser.add_argument("--no-malloc-tuning", action="store_true", help="children keep glibc's malloc defaults")
    parser.add_argument(
        "--threads", type=int, default=0, help="PyTorch threads of the children (1: CPU time per layer). Default: all"
    )
    parser.add_argument("--child", choices=["memory", "mmap", "layers"], help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scoring", default="rows", help=argparse.SUPPRESS)
    parser.add_argument("--reference-layers", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    tuning = ["--no-malloc-tuning"] if args.no_malloc_tuning else []
    tuning += ["--threads", str(args.threads)]
    if args.threads:
        torch.set_num_threads(args.threads)
    breakdown = None
    if not args.no_layers:
        cmd = [sys.executable, __file__, "--child", "layers", "--frames", str(args.frames)]
        cmd += ["--batch-size", str(args.batch_size), "--repeats", str(args.repeats), *tuning]
        breakdown = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        print_breakdown(breakdown, args.frames)
    if args.no_training:
        save_results("train_head", {"settings": settings(args), "layers": breakdown})
        return

    peak = gemm_peak_gflops()
    flops_per_map = {scoring: training_flops_per_map(args.frames, scoring) for scoring in ("rows", "global")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = write_store(Path(tmp) / "store", args.maps, args.frames)
        store_mib = sum(p.stat().st_size for p in (store.root / "maps").rglob("*.npy")) / 2**20
        for mode, scoring, reference in MODES:
            cmd = [sys.executable, __file__, "--child", mode, "--store", str(store.root), "--scoring", scoring]
            cmd += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), *tuning]
            cmd += ["--reference-layers"] if reference else []
            flops = flops_per_map[scoring]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            run = json.loads(out.strip().splitlines()[-1])
            # The standardiser's pass over the data is part of train_head: one forward-free read.
            maps_per_s = run["maps"] * args.epochs / run["seconds"]
            rows.append(
                {
                    "mode": mode
                    + (", global attention" if scoring == "global" else "")
                    + (", reference" if reference else ""),
                    "attention_scoring": scoring,
                    "reference_layers": reference,
                    "training_flops_per_map": flops,
                    "maps_per_s": maps_per_s,
                    "gflops": flops * maps_per_s / 1e9,
                    "share_of_peak": flops * maps_per_s / 1e9 / peak,
                    "later_steps_share_of_peak": flops * (run["later_steps_maps_per_s"] or float("nan")) / 1e9 / peak,
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
        f"fp32 GEMM peak {peak:.0f} GFLOP/s; training FLOPs per map {flops_per_map['rows'] / 1e9:.2f} GFLOP "
        f"({flops_per_map['global'] / 1e9:.2f} with the global attention FC); load {load()}"
    )
    header = ["mode", "maps/s", "GFLOP/s", "of peak", "HMDB51 epoch", "floor", "data MiB", "x store", "peak MiB"]
    header += ["faults 1st", "later", "setup s", "later/peak"]
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
            f"{r['minor_faults_first_step']}",
            "-" if r["minor_faults_per_later_step"] is None else f"{r['minor_faults_per_later_step']:.0f}",
            f"{r['seconds_before_first_pass']:.1f}",
            f"{r['later_steps_share_of_peak']:.0%}",
        ]
        print("".join(f"{c:>13}" if i else f"{c:<26}" for i, c in enumerate(cells)))
    per_row, reference, global_fc = (rows[i]["maps_per_s"] for i in (0, 1, 3))
    print(f"fused blocks: {per_row / reference:.2f} x the maps/s of the reference layers (same run, in memory)")
    print(f"per-row attention branch: {per_row / global_fc:.2f} x the maps/s of the global one (same run, in memory)")
    record = {
        "settings": settings(args),
        "gemm_peak_gflops": peak,
        "training_flops_per_map": flops_per_map["rows"],
        "training_flops_per_map_global_attention": flops_per_map["global"],
        "per_row_over_global_maps_per_s": per_row / global_fc,
        "fused_over_reference_maps_per_s": per_row / reference,
        "store_mib": store_mib,
        "modes": rows,
        "layers": breakdown,
    }
    save_results("train_head", record)


def settings(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items() if k not in ("child", "store")}


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def print_breakdown(breakdown: dict, frames: int) -> None:
    print(
        f"Per layer, forward + backward on a pass of {breakdown['maps_per_pass']} maps of {frames} x {FEATURES} "
        f"(fastest of {breakdown['repeats']}); GEMM peak {breakdown['gemm_peak_gflops']:.0f} GFLOP/s in this run; "
        f"{breakdown['threads']} threads ({breakdown['clock']}); load {load()}"
    )
    header = ["layer", "GFLOP/map", "ms/map", "of peak", "reference ms", "of peak", "speed-up"]
    print("".join(f"{h:>13}" if i else f"{h:<28}" for i, h in enumerate(header)))
    for r in breakdown["layers"]:
        cells = [
            r["layer"],
            f"{r['gflop_per_map']:.3f}",
            f"{r['now_ms_per_map']:.1f}",
            f"{r['now_share_of_peak']:.0%}",
            f"{r['reference_ms_per_map']:.1f}",
            f"{r['reference_share_of_peak']:.0%}",
            f"{r['speedup']:.2f}",
        ]
        print("".join(f"{c:>13}" if i else f"{c:<28}" for i, c in enumerate(cells)))
    faults = breakdown["minor_faults_per_step"]
    print(
        f"minor page faults per training step (pass of {breakdown['maps_per_pass']} maps, median): "
        f"{faults['now']} (reference layers {faults['reference']}); malloc tuned: {breakdown['malloc_tuned']}"
    )


if __name__ == "__main__":
    main()
