"""Frame-encoder engines side by side: frames/s of the bare backbone, same run, same frames.

    python benchmarks/encoder_engines.py [--sizes 224 128] [--frames 64] [--rounds 3]

Rows, per image size (uint8 NHWC frames in memory, as decoded):
  torch NCHW b32         eager PyTorch, BatchNorm unfolded, NCHW, batch 32: the
                         mmaction2-style baseline every ratio is taken against
  torch channels_last b16  FrameEncoder(engine="torch"): BN folded, channels_last
  onnx uint8 b16 / b32   FrameEncoder(engine="onnx"): ONNX Runtime, uint8 input,
                         normalisation in the graph, pads folded into the convs
  onnx float32 b16       the same graph with a float32 input (NumPy casts the frames)
  onnx unfolded pads b16 the graph as traced, explicit Pad nodes kept

Rounds run every row in turn, so a load change on a shared machine hits all rows alike;
the table shows each row's median over rounds (best in the JSON). ONNX files are exported
into a temporary cache (--cache-dir to keep them) and the export + check time is reported.
Figures go to benchmarks/results/encoder_engines.json.

    python benchmarks/encoder_engines.py --backbones [efficientnet_lite0 efficientnet_lite1 ...]

instead compares backbones: FrameEncoder on the torch and onnx engines (batch 16) for each
backbone at 224 px and at the size its ImageNet weights were trained at, every frames/s
also as a ratio to Lite0 at 224 px on the same engine, measured in the same rounds.
Figures go to benchmarks/results/encoder_backbones.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from tsmap.frames import onnx_runtime
from tsmap.frames.backbones import backbone_spec
from tsmap.frames.efficientnet_lite import load_pretrained_lite0
from tsmap.frames.encoder import FrameEncoder

RESULTS = Path(__file__).parent / "results"

Encode = Callable[[np.ndarray], np.ndarray]


def batched(fn: Encode, batch_size: int) -> Encode:
    return lambda frames: np.concatenate([fn(frames[i : i + batch_size]) for i in range(0, len(frames), batch_size)])


def nchw_baseline(batch_size: int) -> Encode:
    """Unfolded BN, contiguous NCHW float input: how a generic PyTorch pipeline runs Lite0."""
    model = load_pretrained_lite0()

    @torch.inference_mode()
    def run(frames: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float().contiguous()
        return model.features((x - 127.5) / 127.5).numpy()

    return batched(run, batch_size)


def session_encode(data: bytes, input_dtype: str = "uint8") -> Encode:
    session = onnx_runtime.make_session(data)
    return lambda frames: session.run(None, {"frames": np.ascontiguousarray(frames, dtype=input_dtype)})[0]


def measure(rows: dict[str, Encode], frames: np.ndarray, rounds: int) -> dict[str, list[float]]:
    for fn in rows.values():  # warm-up: kernel selection, thread pools, first allocations
        fn(frames[:32])
    fps: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(rounds):
        for name, fn in rows.items():
            start = time.perf_counter()
            fn(frames)
            fps[name].append(len(frames) / (time.perf_counter() - start))
    return fps


def bench_size(size: int, args: argparse.Namespace, cache_dir: Path) -> dict:
    frames = np.random.default_rng(0).integers(0, 256, (args.frames, size, size, 3), dtype=np.uint8)
    torch_enc = FrameEncoder(engine="torch", batch_size=16)
    start = time.perf_counter()
    onnx_enc = FrameEncoder(engine="onnx", batch_size=16, image_size=size, cache_dir=str(cache_dir))
    export_s = time.perf_counter() - start
    runner = onnx_enc._runners[(size, size)]
    float_runner = onnx_runtime.OnnxFeatureRunner(
        onnx_enc.model,
        "efficientnet_lite0",
        onnx_enc._scale,
        onnx_enc._shift,
        size,
        size,
        reference=torch_enc.encode,
        cache_dir=cache_dir,
        input_dtype="float32",
    )
    unfolded = onnx_runtime.export_features(
        onnx_enc.model, onnx_enc._scale, onnx_enc._shift, size, size, fold_pads=False
    )
    rows = {
        "torch NCHW b32": nchw_baseline(32),
        "torch channels_last b16": torch_enc.encode,
        "onnx uint8 b16": batched(runner, 16),
        "onnx uint8 b32": batched(runner, 32),
        "onnx float32 b16": batched(float_runner, 16),
        "onnx unfolded pads b16": batched(session_encode(unfolded), 16),
    }
    reference = torch_enc.encode(frames[:16])
    max_diff = {name: float(np.abs(fn(frames[:16]) - reference).max()) for name, fn in rows.items()}
    fps = measure(rows, frames, args.rounds)
    base = statistics.median(fps["torch NCHW b32"])
    print(f"\n{size} px: {args.frames} frames x {args.rounds} rounds; ONNX export + check {export_s:.1f} s")
    print(f"{'engine':<26}{'frames/s':>10}{'best':>8}{'x NCHW':>8}{'max|d| vs torch':>17}")
    result = {"onnx_export_and_check_s": export_s, "onnx_check": runner.check, "rows": {}}
    for name, values in fps.items():
        med = statistics.median(values)
        print(f"{name:<26}{med:>10.1f}{max(values):>8.1f}{med / base:>8.2f}{max_diff[name]:>17.2e}")
        result["rows"][name] = {
            "frames_per_s_median": med,
            "frames_per_s_best": max(values),
            "frames_per_s_rounds": values,
            "ratio_vs_nchw_b32": med / base,
            "max_abs_diff_vs_torch": max_diff[name],
        }
    return result


def bench_backbones(args: argparse.Namespace, cache_dir: Path) -> dict:
    """Each backbone at 224 px and at its native size, on both engines, in interleaved rounds."""
    configs = [(name, size) for name in args.backbones for size in sorted({224, backbone_spec(name).native_size})]
    rng = np.random.default_rng(0)
    frames = {size: rng.integers(0, 256, (args.frames, size, size, 3), dtype=np.uint8) for _, size in configs}
    rows: dict[str, tuple[Encode, int]] = {}
    export_s = {}
    for name, size in configs:
        rows[f"{name} {size} torch"] = (FrameEncoder(name, engine="torch", batch_size=16).encode, size)
        start = time.perf_counter()
        enc = FrameEncoder(name, engine="onnx", batch_size=16, image_size=size, cache_dir=str(cache_dir))
        export_s[f"{name} {size}"] = time.perf_counter() - start
        rows[f"{name} {size} onnx"] = (enc.encode, size)
    for fn, size in rows.values():  # warm-up
        fn(frames[size][:16])
    fps: dict[str, list[float]] = {row: [] for row in rows}
    for _ in range(args.rounds):
        for row, (fn, size) in rows.items():
            start = time.perf_counter()
            fn(frames[size])
            fps[row].append(args.frames / (time.perf_counter() - start))
    base = {e: statistics.median(fps[f"{args.backbones[0]} 224 {e}"]) for e in ("torch", "onnx")}
    best = {e: max(fps[f"{args.backbones[0]} 224 {e}"]) for e in ("torch", "onnx")}
    print(
        f"\n{args.frames} frames x {args.rounds} rounds, batch 16; frames/s median over rounds, x: ratio to "
        f"{args.backbones[0]} at 224 px on the same engine (of the medians, and of the best rounds)"
    )
    print(
        f"{'backbone':<20}{'px':>5}{'torch f/s':>11}{'x med':>7}{'x best':>7}{'onnx f/s':>10}{'x med':>7}{'x best':>7}"
    )
    result = {}
    for name, size in configs:
        key = f"{name} {size}"
        line = f"{name:<20}{size:>5}"
        result[key] = {"onnx_export_and_check_s": export_s[key]}
        for e, width in (("torch", 11), ("onnx", 10)):
            values = fps[f"{key} {e}"]
            med = statistics.median(values)
            line += f"{med:>{width}.1f}{med / base[e]:>7.2f}{max(values) / best[e]:>7.2f}"
            result[key] |= {
                f"{e}_frames_per_s_rounds": values,
                f"{e}_ratio_median": med / base[e],
                f"{e}_ratio_best": max(values) / best[e],
            }
        print(line)
    print("ONNX export + check: " + ", ".join(f"{key} {s:.1f} s" for key, s in export_s.items()))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 128], help="image sizes. Default: 224 128")
    parser.add_argument("--frames", type=int, default=64, help="frames per timed run. Default: 64")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per row. Default: 3")
    parser.add_argument("--cache-dir", type=Path, help="ONNX cache to use (default: a temporary one)")
    parser.add_argument(
        "--backbones",
        nargs="*",
        help="compare these backbones instead (none named: efficientnet_lite0 efficientnet_lite1 efficientnet_lite2)",
    )
    args = parser.parse_args()
    if args.backbones is not None:
        args.backbones = args.backbones or ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]

    load = os.getloadavg()
    print(
        f"{'backbones' if args.backbones else 'EfficientNet-Lite0'}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} with {torch.get_num_threads()} "
        f"threads, onnxruntime {onnxruntime.__version__} with {onnx_runtime.usable_cores()} threads; "
        f"load average {load[0]:.1f} at start"
    )
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or Path(tmp)
        if args.backbones:
            sizes = bench_backbones(args, cache_dir)
        else:
            sizes = {str(size): bench_size(size, args, cache_dir) for size in args.sizes}
    RESULTS.mkdir(exist_ok=True)
    record = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "usable_cores": onnx_runtime.usable_cores(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "onnxruntime": onnxruntime.__version__,
            "load_average_start": load,
            "load_average_end": os.getloadavg(),
        },
        "settings": vars(args) | {"cache_dir": str(args.cache_dir) if args.cache_dir else None},
        "backbones" if args.backbones else "sizes": sizes,
    }
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    name = "encoder_backbones.json" if args.backbones else "encoder_engines.json"
    (RESULTS / name).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
