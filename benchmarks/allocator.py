"""Head training with and without tsmap's malloc tuning: wall, CPU, kernel time and page faults.

    python benchmarks/allocator.py [--maps 96] [--frames 64] [--epochs 5] [--batch-size 128] [--repeats 2]

Writes a store of random float16 maps (T x 1280, as Lite0 gives; the 96-map, T = 64
store of the issue by default) and trains the VideoMap head (A0A1A2) on it through
``train_head``, the path ``tsmap train`` takes, each run in a fresh process, under:

  no tuning        TSMAP_NO_MALLOC_TUNING=1: glibc's defaults
  tune_malloc      ``tsmap.malloc.tune_malloc()`` first thing in the process, as the CLI does
  tune_malloc late the same call after PyTorch is imported and the maps loaded
  GLIBC_TUNABLES   the environment the issue measured (mmap threshold 32 MiB, trim 4 GiB, top pad 1 GiB)
  torch THP        THP_MEM_ALLOC_ENABLE=1: PyTorch asks for transparent huge pages on buffers of 2 MiB and more
  jemalloc, tcmalloc  LD_PRELOAD of the system's library, when one is installed (Debian: libjemalloc2,
                   libtcmalloc-minimal4; neither is on PyPI as a library a pip install could preload)

The runs are interleaved (each variant once, then again) and the median of each variant
is reported: training wall time, user and system CPU seconds and minor page faults of the
training itself (the child's own getrusage around ``train_head``), the kernel's share of
the training CPU time, faults per optimiser step, the same over the epochs after the
first ("later": the heap has grown to its peak by then), and the child's peak RSS. The whole
child (imports, store loading) is also measured from the parent with
``getrusage(RUSAGE_CHILDREN)``. Figures go to benchmarks/results/allocator.json
(allocator_<maps>x<frames>.json for another store shape).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPT_OUT = {"TSMAP_NO_MALLOC_TUNING": "1"}
ISSUE_TUNABLES = (
    "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296:glibc.malloc.top_pad=1073741824"
)
PRELOADS = {
    "jemalloc": ["/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2"],
    "tcmalloc": [
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
        "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    ],
}


def variants() -> dict[str, tuple[dict, str]]:
    """name -> (environment added to the child's, when the child calls tune_malloc: early / late)."""
    out = {
        "no tuning": (OPT_OUT, "early"),
        "tune_malloc": ({}, "early"),
        "tune_malloc late": ({}, "late"),
        "GLIBC_TUNABLES": (OPT_OUT | {"GLIBC_TUNABLES": ISSUE_TUNABLES}, "early"),
        "torch THP": (OPT_OUT | {"THP_MEM_ALLOC_ENABLE": "1"}, "early"),
    }
    for name, paths in PRELOADS.items():
        found = next((p for p in paths if os.path.exists(p)), None)
        if found:
            out[name] = ({"LD_PRELOAD": found}, "early")
    return out


def usage(who: int) -> dict:
    r = resource.getrusage(who)
    return {"user_s": r.ru_utime, "sys_s": r.ru_stime, "minflt": r.ru_minflt, "majflt": r.ru_majflt}


def diff(after: dict, before: dict) -> dict:
    return {k: after[k] - before[k] for k in after}


def child(args: argparse.Namespace) -> None:
    """One training run in this process; prints one JSON line."""
    from tsmap.malloc import tune_malloc, tuning_status

    if args.tune == "early":  # before PyTorch is imported, as tsmap's main does
        tune_malloc()
    import torch

    from tsmap.data.datasets import Clip
    from tsmap.heads.videomap_head import VideoMapHead
    from tsmap.train_config import TrainConfig
    from tsmap.training import train_head
    from tsmap.videomap.loader import MapDataset
    from tsmap.videomap.store import VideoMapStore

    store = VideoMapStore.open(args.store)
    clips = [Clip(key, int(key.split("/")[0][1:])) for key in sorted(store.keys())]
    torch.manual_seed(0)
    model = VideoMapHead(args.classes, store.num_frames, store.feature_dim)
    data = MapDataset(store, clips, in_memory=True)
    if args.tune == "late":
        tune_malloc()
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size)
    # Usage at every forward pass (micro-batch), to tell the first epoch (the heap grows
    # to its peak) from the later ones (the steady state).
    marks: list[tuple[float, dict]] = []
    model.register_forward_pre_hook(lambda *_: marks.append((time.perf_counter(), usage(resource.RUSAGE_SELF))))
    before, start = usage(resource.RUSAGE_SELF), time.perf_counter()
    train_head(model, data, config, show_progress=False)
    seconds, end = time.perf_counter() - start, usage(resource.RUSAGE_SELF)
    spent = diff(end, before)
    steps_per_epoch = math.ceil(len(data) / args.batch_size)
    record = {"wall_s": seconds, **spent, "steps": args.epochs * steps_per_epoch}
    if args.epochs > 1 and len(marks) % args.epochs == 0:
        t0, first = marks[len(marks) // args.epochs]  # the first pass of epoch 2
        later = diff(end, first) | {"wall_s": time.perf_counter() - t0}
        record["after_first_epoch"] = later | {"steps": (args.epochs - 1) * steps_per_epoch}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(record | {"peak_rss_mib": peak, "malloc_tuning": tuning_status()}))


def run_child(store: Path, args: argparse.Namespace, env_add: dict, tune: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD", "TSMAP_NO_MALLOC_TUNING")}
    env |= env_add
    cmd = [sys.executable, __file__, "--child", "--store", str(store), "--tune", tune, "--classes", str(args.classes)]
    cmd += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    before, start = usage(resource.RUSAGE_CHILDREN), time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    whole = diff(usage(resource.RUSAGE_CHILDREN), before) | {"wall_s": time.perf_counter() - start}
    if out.returncode:
        raise SystemExit(f"child failed ({' '.join(cmd)}):\n{out.stderr[-3000:]}")
    run = json.loads(out.stdout.strip().splitlines()[-1])
    return {"training": run, "process": whole, "load_average": list(os.getloadavg())}


def steady(runs: list[dict]) -> dict:
    """Medians over the epochs after the first (the heap already grown): faults a step, kernel share."""
    later = [r["training"]["after_first_epoch"] for r in runs if "after_first_epoch" in r["training"]]
    if not later:
        return {}
    return {
        "steady_minflt_per_step": statistics.median(x["minflt"] / x["steps"] for x in later),
        "steady_kernel_share": statistics.median(x["sys_s"] / (x["user_s"] + x["sys_s"]) for x in later),
        "steady_s_per_step": statistics.median(x["wall_s"] / x["steps"] for x in later),
    }


def summarise(runs: list[dict]) -> dict:
    def med(path: tuple[str, str]) -> float:
        return statistics.median(r[path[0]][path[1]] for r in runs)

    cpu = med(("training", "user_s")) + med(("training", "sys_s"))
    steps = runs[0]["training"]["steps"]
    return {
        "wall_s": med(("training", "wall_s")),
        "user_s": med(("training", "user_s")),
        "sys_s": med(("training", "sys_s")),
        "kernel_share": statistics.median(
            r["training"]["sys_s"] / (r["training"]["user_s"] + r["training"]["sys_s"]) for r in runs
        ),
        "cpu_s": cpu,
        "minflt": med(("training", "minflt")),
        "minflt_per_step": med(("training", "minflt")) / steps,
        "peak_rss_mib": med(("training", "peak_rss_mib")),
        **steady(runs),
        "process_wall_s": med(("process", "wall_s")),
        "process_user_s": med(("process", "user_s")),
        "process_sys_s": med(("process", "sys_s")),
        "process_minflt": med(("process", "minflt")),
        "malloc_tuning": runs[0]["training"]["malloc_tuning"],
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--maps", type=int, default=96, help="maps in the generated store. Default: 96")
    parser.add_argument("--frames", type=int, default=64, help="T of each map. Default: 64")
    parser.add_argument("--batch-size", type=int, default=128, help="maps per step. Default: 128 (tsmap train's)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per run. Default: 5")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each variant (interleaved). Default: 2")
    parser.add_argument("--only", nargs="+", help="variants to run (default: all available)")
    parser.add_argument("--classes", type=int, default=51, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tune", default="early", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    sys.path.insert(0, str(Path(__file__).parent))
    from machine import save_results
    from train_head import CLASSES, write_store

    args.classes = CLASSES
    chosen = variants()
    if args.only:
        unknown = set(args.only) - set(chosen)
        if unknown:
            raise SystemExit(f"unknown or unavailable variants {sorted(unknown)}; choose from {sorted(chosen)}")
        chosen = {k: v for k, v in chosen.items() if k in args.only}
    load_before = list(os.getloadavg())
    runs: dict[str, list[dict]] = {name: [] for name in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        store = write_store(Path(tmp) / "store", args.maps, args.frames).root
        for _ in range(args.repeats):
            for name, (env_add, tune) in chosen.items():
                runs[name].append(run_child(store, args, env_add, tune))
                r = runs[name][-1]["training"]
                print(
                    f"  {name}: {r['wall_s']:.1f} s, sys {r['sys_s']:.1f} s, {r['minflt']} faults "
                    f"(load {runs[name][-1]['load_average'][0]:.2f})",
                    file=sys.stderr,
                )
    results = {name: summarise(r) for name, r in runs.items()}
    steps = next(iter(results.values()))["runs"][0]["training"]["steps"]
    print(
        f"VideoMap head (A0A1A2) on {args.maps} maps of {args.frames} x 1280, batch {args.batch_size}, "
        f"{args.epochs} epochs = {steps} steps; median of {args.repeats} runs each; "
        f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    header = ["variant", "wall s", "user s", "sys s", "kernel", "faults/step", "later", "kernel later", "peak MiB"]
    print("".join(f"{h:>13}" if i else f"{h:<18}" for i, h in enumerate(header)))
    base = results.get("no tuning")
    for name, r in results.items():
        cells = [
            name,
            f"{r['wall_s']:.1f}",
            f"{r['user_s']:.1f}",
            f"{r['sys_s']:.1f}",
            f"{r['kernel_share']:.0%}",
            f"{r['minflt_per_step']:,.0f}",
            f"{r['steady_minflt_per_step']:,.0f}" if "steady_minflt_per_step" in r else "-",
            f"{r['steady_kernel_share']:.0%}" if "steady_kernel_share" in r else "-",
            f"{r['peak_rss_mib']:.0f}",
        ]
        print("".join(f"{c:>13}" if i else f"{c:<18}" for i, c in enumerate(cells)))
    if base:
        for name, r in results.items():
            if name != "no tuning":
                print(f"{name}: {base['wall_s'] / r['wall_s']:.2f} x the speed of no tuning (training wall)")
    record = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("child", "store", "tune", "only")},
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
        "steps": steps,
        "variants": results,
    }
    default_shape = (args.maps, args.frames) == (parser.get_default("maps"), parser.get_default("frames"))
    save_results("allocator" if default_shape else f"allocator_{args.maps}x{args.frames}", record)


if __name__ == "__main__":
    main()
