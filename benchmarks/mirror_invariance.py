"""How much a mirror changes a frame ConvNet's pooled features, against a step of a pan.

Why it matters: in the real-footage benchmark a pan left is, frame for frame, the mirror
of a pan right over the mirrored photo (and clockwise the mirror of anticlockwise), and
photos are mirrored at random. If pooled features hardly change under a mirror, the two
classes of the pan and rotation pairs give the same distribution of maps, so no head on
RGB maps can name their direction: only motion (the flow stream) can.

For square windows of the camera pool's photos (the side a random 40-60 % of the photo's
shorter side), resized to ``--image-size``, the table gives the median relative change
||f(a) - f(w)|| / ||f(w)|| of the pooled features for a = the mirrored window, the window
moved by 2 % and 10 % of the photo's width (one and five frames of a fast pan), and a
window of another photo.

    python benchmarks/mirror_invariance.py [--backbone efficientnet_lite0] [--image-size 160]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from machine import save_results  # noqa: E402
from real_footage_data import opencv_doc_data, photo_pools  # noqa: E402

from tsmap.frames.encoder import FrameEncoder  # noqa: E402

SHIFTS = (0.02, 0.10)


def crop(photo: np.ndarray, x: int, y: int, side: int, size: int) -> np.ndarray:
    return cv2.resize(photo[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)


def windows(photo: np.ndarray, rng: np.random.Generator, count: int, size: int) -> dict[str, list[np.ndarray]]:
    """``count`` random windows of ``photo``: as they are, mirrored, and moved right by each of SHIFTS."""
    h, w = photo.shape[:2]
    out: dict[str, list[np.ndarray]] = {"window": [], "mirror": [], **{f"shift{s}": [] for s in SHIFTS}}
    for _ in range(count):
        side = int(min(h, w) * rng.uniform(0.4, 0.6))
        x = int(rng.integers(0, w - side - int(max(SHIFTS) * w) + 1))
        y = int(rng.integers(0, h - side + 1))
        window = crop(photo, x, y, side, size)
        out["window"].append(window)
        out["mirror"].append(np.ascontiguousarray(window[:, ::-1]))
        for s in SHIFTS:
            out[f"shift{s}"].append(crop(photo, x + int(s * w), y, side, size))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--windows", type=int, default=20, help="windows per photo (20)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    photos = photo_pools(opencv_doc_data())["camera"]
    rng = np.random.default_rng(args.seed)
    encoder = FrameEncoder(args.backbone, image_size=args.image_size)
    feats: dict[str, list[np.ndarray]] = {}
    for photo in photos.values():
        for kind, frames in windows(photo, rng, args.windows, args.image_size).items():
            feats.setdefault(kind, []).append(encoder.encode(np.stack(frames)))
    f = {kind: np.concatenate(v) for kind, v in feats.items()}
    base = f["window"]
    norm = np.linalg.norm(base, axis=1)
    other = np.roll(base, args.windows, axis=0)  # the same window index of the next photo
    changes = {kind: f[kind] for kind in f if kind != "window"} | {"another photo": other}
    rows = {kind: float(np.median(np.linalg.norm(a - base, axis=1) / norm)) for kind, a in changes.items()}
    print(f"{len(photos)} photos x {args.windows} windows, {args.backbone} at {args.image_size} px")
    print(f"{'change of the window':28s} median ||f(a) - f(w)|| / ||f(w)||")
    for kind, value in rows.items():
        label = f"moved {kind[5:]} x width" if kind.startswith("shift") else kind
        print(f"{label:28s} {value:.3f}")
    save_results("mirror_invariance", {"settings": vars(args), "photos": len(photos), "median_relative_change": rows})


if __name__ == "__main__":
    main()
