"""Predict latency for one video at the paper's density (T = 256), stage by stage.

    python benchmarks/predict.py [--frames 256] [--video-frames 300] [--rounds 3]

Writes a 340 x 256 H.264 video (HMDB51's frame size) of a textured scene panning under
a moving square, and a run folder holding a VideoMap head (A0A1A2, 51 classes, T x 1280,
randomly initialised: latency does not depend on the weights). Then ``tsmap predict``'s
path (``steps.predict_video``, engine auto) end to end, its first call apart (it
builds the encoder and exports the ONNX model, once per frame size); then per
frame-ConvNet engine its stages timed apart: decode + sample + resize/crop, the ConvNet
on the T frames, the head. Medians of ``--rounds`` calls. Figures go to
benchmarks/results/predict.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import save_results

from tsmap.data.synthetic import write_video
from tsmap.data.video import FrameGeometry, read_distinct_frames
from tsmap.frames.encoder import FrameEncoder
from tsmap.frames.onnx_runtime import missing_packages
from tsmap.heads.checkpoint import save_head
from tsmap.heads.videomap_head import VideoMapHead
from tsmap.steps import predict_video
from tsmap.videomap.extract import extraction_settings


def panning_video(path: Path, frames: int, width: int = 340, height: int = 256, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    scene = rng.integers(0, 256, (height // 8, (width + 2 * frames) // 8, 3), dtype=np.uint8)
    scene = np.repeat(np.repeat(scene, 8, axis=0), 8, axis=1)
    out = []
    for t in range(frames):
        img = scene[:height, 2 * t : 2 * t + width].copy()
        x = (3 * t) % (width - 40)
        img[100:140, x : x + 40] = (255, 40, 40)
        out.append(img)
    write_video(path, out)
    return path


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=256, help="T of the head. Default: 256 (the paper's)")
    parser.add_argument("--video-frames", type=int, default=300, help="frames of the test video. Default: 300")
    parser.add_argument("--image-size", type=int, default=224, help="ConvNet input size. Default: 224")
    parser.add_argument("--rounds", type=int, default=3, help="timed calls after the first. Default: 3")
    args = parser.parse_args()

    geometry = FrameGeometry(args.image_size, round(args.image_size * 256 / 224))
    engines = ["torch"] + ([] if missing_packages() else ["onnx"])
    stages: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TSMAP_CACHE"] = str(Path(tmp) / "cache")  # the first call exports the ONNX model afresh
        video = panning_video(Path(tmp) / "video.mp4", args.video_frames)
        torch.manual_seed(0)
        head = VideoMapHead(51, args.frames, 1280).eval()
        head.standardize.fit([torch.randn(8, args.frames, 1280)])
        settings = extraction_settings(FrameEncoder(engine="torch"), args.frames, geometry)
        run = Path(tmp) / "run"
        save_head(run / "videomap.pt", head, [f"class{i}" for i in range(51)], settings)
        first = timed(predict_video, video, run, "videomap", 5, "cpu")[1]
        total = statistics.median(timed(predict_video, video, run, "videomap", 5, "cpu")[1] for _ in range(args.rounds))
        auto = FrameEncoder(image_size=args.image_size).engine
        for engine in engines:
            encoder = FrameEncoder(engine=engine, image_size=args.image_size)
            times: dict[str, list[float]] = {"decode": [], "convnet": [], "head": []}
            for _ in range(args.rounds):
                (frames, rows, _), t_decode = timed(read_distinct_frames, video, args.frames, geometry)
                features, t_encode = timed(encoder.encode, frames)
                with torch.inference_mode():
                    _, t_head = timed(head, torch.from_numpy(features[rows])[None])
                for key, value in zip(times, (t_decode, t_encode, t_head), strict=True):
                    times[key].append(value)
            stages[engine] = {key: statistics.median(values) for key, values in times.items()}
            stages[engine]["sum"] = sum(stages[engine].values())
    print(
        f"predict one {args.video_frames}-frame 340 x 256 video at T = {args.frames}, Lite0 at {args.image_size} px, "
        f"{torch.get_num_threads()} threads; medians of {args.rounds} rounds"
    )
    print(
        f"tsmap predict's path (engine auto = {auto}): first call {first:.2f} s (builds the encoder, exports the "
        f"ONNX model), then {total:.2f} s a video"
    )
    print(f"{'stage':<10}" + "".join(f"{e:>10}" for e in engines))
    for key in ("decode", "convnet", "head", "sum"):
        print(f"{key:<10}" + "".join(f"{stages[e][key]:>9.2f}s" for e in engines))
    if len(engines) > 1:
        print(f"ConvNet onnx vs torch: {stages['torch']['convnet'] / stages['onnx']['convnet']:.2f}x")
    record = {
        "settings": vars(args),
        "auto_engine": auto,
        "first_call_s": first,
        "predict_s": total,
        "stages_s": stages,
    }
    save_results("predict", record)


if __name__ == "__main__":
    main()
