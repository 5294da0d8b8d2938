"""The built-in "arrow of time" dataset: real H.264 videos generated from a seed.

Most classes come in pairs whose videos are each other's time reversal: a video of
``shrink`` is a ``grow`` video played backwards. The two classes of a pair therefore
have exactly the same distribution of frames, and only the order of the frames tells
them apart: a frame-averaging model (TSN) is at chance on them, a model that reads the
VideoMap in order is not. Two more classes differ in appearance only.

The action fills 30-55 % of a video, at a random place. Before and after it, a grey
bystander disc grows or shrinks: frames that carry no class but move like ``grow`` or
``shrink``, the "irrelevant frames that may hurt by introducing noise" that the paper's
temporal attention is meant to discount. The action's frame interval is recorded in
``dataset.json`` so attention and Grad-CAM can be checked against it.

Why no "move left" vs "move right" or "rotate clockwise" vs "anticlockwise" pair: the
frame encoder's global average pooling discards where an object is and, largely, which
way it points (a linear probe on Lite0 features could not recover the horizontal
position; a linear model on end-minus-start features told rotation directions apart at
chance while it separated every pair below). The pairs change what pooling keeps:
scale, brightness, number of objects, shape, presence.

Those are exactly the pairs the motion stream is for: with ``DemoConfig(motion=True)``
(``tsmap demo --streams rgb,flow``) the dataset adds ``MOTION_PAIRS``, classes of the same
appearance that differ only in the direction of motion: a randomly textured disc turning
clockwise or anticlockwise, and a camera panning right or left over a random scene. Each
is again the time reversal of its partner, so RGB frames cannot tell them apart, pooled or
in order, while optical flow can. The pairs were chosen for what a flow ConvNet with
TSN's cross-modality initialisation (and no fine-tuning) can see: its first convolution
sums the 10 flow channels, so it sees dx + dy, and "shaking left-right" vs "up-down" would
give it the same image; the sign of dx + dy (pan left vs right) and the direction of its
ramp across a turning disc (clockwise vs anticlockwise) it does see. Motion classes come
after the base classes, so the base classes' videos are the same with or without them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import av
import numpy as np

from tsmap.fileio import atomic_write_text, replacing, write_json

# (forward class, its time reversal). The forward generator draws the video; the
# reversed class is the same draw played backwards.
ORDER_PAIRS = [
    ("grow", "shrink"),
    ("brighten", "dim"),
    ("dots_appear", "dots_vanish"),
    ("circle_to_square", "square_to_circle"),
    ("slide_in", "slide_out"),
]
APPEARANCE_CLASSES = ["striped_patch", "dotted_patch"]
# (forward class, its time reversal), added with DemoConfig(motion=True): same appearance,
# opposite motion; told apart by the flow stream, not by RGB.
MOTION_PAIRS = [
    ("rotate_clockwise", "rotate_anticlockwise"),
    ("pan_right", "pan_left"),
]
MOTION_FORWARD = {fwd for fwd, _ in MOTION_PAIRS}
FRAME_SIZES = [(128, 128), (160, 120), (144, 112)]
FPS = 25


@dataclass(frozen=True)
class DemoConfig:
    train_per_class: int = 16
    test_per_class: int = 8
    min_frames: int = 40
    max_frames: int = 160
    seed: int = 0
    motion: bool = False  # add MOTION_PAIRS (for the two-stream demo)

    @property
    def classes(self) -> list[str]:
        base = [c for pair in ORDER_PAIRS for c in pair] + APPEARANCE_CLASSES
        return base + ([c for pair in MOTION_PAIRS for c in pair] if self.motion else [])


class Scene:
    """A random background with a gradient, and the pixel grid to draw shapes on."""

    def __init__(self, rng: np.random.Generator, width: int, height: int):
        self.rng = rng
        self.h, self.w = height, width
        self.yy, self.xx = np.mgrid[0:height, 0:width].astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * self.xx / width + np.sin(angle) * self.yy / height)[..., None]
        c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
        self.endpoints = (c0, c1)
        self.background = (c0 + (c1 - c0) * (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)).astype(np.float32)
        # Drawing fresh Gaussian noise for every frame costs more than the encoder;
        # a per-video bank of noise frames, drawn from at random, looks the same.
        self.noise = rng.standard_normal((16, height, width, 3), dtype=np.float32) * 3.0

    def shape_mask(self, cx: float, cy: float, r: float, angle: float = 0.0, p: float = 2.0) -> np.ndarray:
        """Superellipse |u|^p + |v|^p <= r^p: a circle for p=2, close to a square for p>=8."""
        c, s = np.cos(angle), np.sin(angle)
        u = (self.xx - cx) * c + (self.yy - cy) * s
        v = -(self.xx - cx) * s + (self.yy - cy) * c
        return (np.abs(u) ** p + np.abs(v) ** p) <= r**p

    def paint(self, layers: list[tuple[np.ndarray, np.ndarray]], gain: float = 1.0) -> np.ndarray:
        img = self.background.copy()
        for mask, colour in layers:
            img[mask] = colour
        img = img * gain + self.noise[self.rng.integers(len(self.noise))]
        return np.clip(img, 0, 255).astype(np.uint8)


def object_colour(rng: np.random.Generator, scene: Scene, min_distance: float = 90.0) -> np.ndarray:
    """A random colour that stands out from the whole background gradient.

    Without it, some draws put a dark object on a dark background: a video whose
    action is invisible, which no model could label.
    """
    for _ in range(100):
        colour = rng.uniform(0, 255, 3)
        if all(np.linalg.norm(colour - c) >= min_distance for c in scene.endpoints):
            return colour.astype(np.float32)
    return (255 - scene.endpoints[0]).astype(np.float32)


def blob_texture(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Random two-level blobs of about ``scale`` pixels (bool H x W): texture for flow to follow."""
    gh, gw = max(2, int(np.ceil(h / scale)) + 2), max(2, int(np.ceil(w / scale)) + 2)
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    # Bilinear upsampling of coarse noise: smooth blobs whose size is set by ``scale``.
    ys, xs = np.linspace(0, gh - 1.001, h), np.linspace(0, gw - 1.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a, b = coarse[y0][:, x0], coarse[y0][:, x0 + 1]
    c, d = coarse[y0 + 1][:, x0], coarse[y0 + 1][:, x0 + 1]
    field = (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy
    return field > 0


def _rotate_nearest(img: np.ndarray, angle: float, cx: float, cy: float) -> np.ndarray:
    """``img`` turned by ``angle`` radians about (cx, cy), nearest neighbour (edge pixels repeat)."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    # Inverse map: the output pixel at (x, y) shows the source pixel turned back by -angle.
    sx = c * (xx - cx) + s * (yy - cy) + cx
    sy = -s * (xx - cx) + c * (yy - cy) + cy
    sx = np.clip(np.rint(sx), 0, w - 1).astype(np.int64)
    sy = np.clip(np.rint(sy), 0, h - 1).astype(np.int64)
    return img[sy, sx]


def _progress_curve(n_frames: int, start: int, end: int) -> np.ndarray:
    """0 before the action, a smooth ramp 0 -> 1 during [start, end), 1 after."""
    t = (np.arange(n_frames) - start) / max(end - start - 1, 1)
    t = np.clip(t, 0, 1)
    return 0.5 - 0.5 * np.cos(np.pi * t)


def _forward_video(name: str, rng: np.random.Generator, n: int, start: int, end: int) -> list[np.ndarray]:
    w, h = FRAME_SIZES[rng.integers(len(FRAME_SIZES))]
    scene = Scene(rng, w, h)
    colour = object_colour(rng, scene)
    progress = _progress_curve(n, start, end)
    cx, cy = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
    side = min(w, h)
    frames = []
    if name == "grow":
        r0 = rng.uniform(0.06, 0.1) * side
        r1 = rng.uniform(0.3, 0.42) * side
        p = rng.choice([2.0, 8.0])
        for a in progress:
            frames.append(scene.paint([(scene.shape_mask(cx, cy, r0 + (r1 - r0) * a, p=p), colour)]))
    elif name == "brighten":
        r = rng.uniform(0.15, 0.3) * side
        g0 = rng.uniform(0.15, 0.35)
        for a in progress:
            frames.append(scene.paint([(scene.shape_mask(cx, cy, r), colour)], gain=g0 + (1 - g0) * a))
    elif name == "dots_appear":
        k = int(rng.integers(8, 15))
        r = rng.uniform(0.04, 0.07) * side
        xs, ys = rng.uniform(r, w - r, k), rng.uniform(r, h - r, k)
        masks = [scene.shape_mask(x, y, r) for x, y in zip(xs, ys, strict=True)]
        for a in progress:  # dot j is shown once the action is j/k done
            shown = np.zeros((h, w), dtype=bool)
            for mask in masks[: int(round(a * k))]:
                shown |= mask
            frames.append(scene.paint([(shown, colour)]))
    elif name == "circle_to_square":
        r = rng.uniform(0.2, 0.32) * side
        angle = rng.uniform(0, np.pi / 2)
        for a in progress:
            p = 2.0 * (6.0**a)  # 2 -> 12 geometrically: even steps in perceived shape
            frames.append(scene.paint([(scene.shape_mask(cx, cy, r, angle, p), colour)]))
    elif name == "slide_in":
        r = rng.uniform(0.15, 0.25) * side
        direction = rng.uniform(0, 2 * np.pi)
        reach = 0.5 * np.hypot(w, h) + r
        sx, sy = cx + reach * np.cos(direction), cy + reach * np.sin(direction)
        p = rng.choice([2.0, 8.0])
        for a in progress:
            x, y = sx + (cx - sx) * a, sy + (cy - sy) * a
            frames.append(scene.paint([(scene.shape_mask(x, y, r, p=p), colour)]))
    elif name == "rotate_clockwise":
        # A disc of random blobs turning about its centre: its outline never changes, only
        # the texture inside turns (clockwise on screen: angle grows with rows pointing down).
        r = rng.uniform(0.25, 0.38) * side
        colour2 = object_colour(rng, scene)
        pattern = blob_texture(rng, h, w, rng.uniform(5, 9))
        disc = scene.shape_mask(cx, cy, r)
        turn = rng.uniform(0.6, 1.0) * np.pi  # total angle of the action
        for a in progress:
            texture = _rotate_nearest(pattern, turn * a, cx, cy)
            frames.append(scene.paint([(disc, colour), (disc & texture, colour2)]))
    elif name == "pan_right":
        # A wide layer of random blobs slides right across the whole frame, over the still
        # background gradient (as a camera panning over a scene of blobs).
        travel = int(rng.uniform(0.6, 1.0) * w)
        colour2 = object_colour(rng, scene)
        pattern = blob_texture(rng, h, w + travel, rng.uniform(6, 12))
        for a in progress:
            offset = int(round(travel * (1 - a)))  # content moves right as the window moves left
            frames.append(scene.paint([(pattern[:, offset : offset + w], colour2)]))
    elif name in APPEARANCE_CLASSES:
        r = rng.uniform(0.2, 0.3) * side
        colour2 = rng.uniform(0, 255, 3).astype(np.float32)
        period = rng.uniform(5, 9)
        x, y = cx, cy
        for _ in range(n):
            x = float(np.clip(x + rng.normal(0, 1.5), r, w - r))
            y = float(np.clip(y + rng.normal(0, 1.5), r, h - r))
            patch = scene.shape_mask(x, y, r, p=8.0)
            if name == "striped_patch":
                texture = np.sin(2 * np.pi * (scene.yy - y) / period) > 0
            else:
                texture = (
                    np.sin(2 * np.pi * (scene.xx - x) / period) * np.sin(2 * np.pi * (scene.yy - y) / period)
                ) > 0.5
            frames.append(scene.paint([(patch, colour), (patch & texture, colour2)]))
    else:
        raise ValueError(f"unknown demo class {name!r}")
    if name not in MOTION_FORWARD:
        # The object is on screen during the action only. Before and after it, a bystander
        # acts out noise that looks like the classes' actions: frames that a model reading
        # every row equally must learn to discount (the paper's case for attention).
        frames[:start] = bystander_frames(rng, scene, start)
        frames[end:] = bystander_frames(rng, scene, n - end)
    return frames


def bystander_frames(rng: np.random.Generator, scene: Scene, n: int) -> list[np.ndarray]:
    """``n`` frames of a grey disc growing or shrinking at a random place, for any class.

    It is drawn the same way for every class (and grows as often as it shrinks), so it only
    adds noise, and it moves like ``grow``/``shrink``; it is grey, where the actions' objects
    are coloured, so a frame's content tells it apart from the action's frames.
    """
    side = min(scene.w, scene.h)
    cx, cy = rng.uniform(0.3, 0.7) * scene.w, rng.uniform(0.3, 0.7) * scene.h
    r0, r1 = rng.uniform(0.05, 0.35, 2) * side
    grey = np.full(3, rng.uniform(60, 200), dtype=np.float32)
    return [scene.paint([(scene.shape_mask(cx, cy, r), grey)]) for r in np.linspace(r0, r1, n)]


def draw_interval(rng: np.random.Generator, n: int) -> tuple[int, int]:
    """The action's frames [start, end) in a forward video: 30-55 % of it, anywhere."""
    length = int(rng.uniform(0.3, 0.55) * n)
    start = int(rng.integers(0, n - length + 1))
    return start, start + length


def render_clip(name: str, rng: np.random.Generator, n: int) -> tuple[list[np.ndarray], tuple[int, int]]:
    """Frames of one video of class ``name`` and its action interval [start, end)."""
    start, end = draw_interval(rng, n)
    reversed_of = {rev: fwd for fwd, rev in ORDER_PAIRS + MOTION_PAIRS}
    if name in reversed_of:
        frames = _forward_video(reversed_of[name], rng, n, start, end)[::-1]
        return frames, (n - end, n - start)
    return _forward_video(name, rng, n, start, end), (start, end)


def write_video(path: Path, frames: list[np.ndarray], fps: int = FPS, crf: int = 18) -> None:
    """Encode RGB frames as H.264 (yuv420p) through PyAV, atomically. ``crf=0`` is lossless."""
    h, w = frames[0].shape[:2]
    with replacing(path) as tmp, av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "ultrafast"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _make_clip(root: Path, config: DemoConfig, label: int, index: int) -> dict:
    """Write one clip (unless present) and return its record. Deterministic per clip."""
    name = config.classes[label]
    rng = np.random.default_rng([config.seed, label, index])
    n = int(rng.integers(config.min_frames, config.max_frames + 1))
    rel = f"{name}/{name}_{index:03d}.mp4"
    if (root / rel).exists():
        start, end = draw_interval(rng, n)
        if name in {rev for _, rev in ORDER_PAIRS + MOTION_PAIRS}:
            start, end = n - end, n - start
    else:
        frames, (start, end) = render_clip(name, rng, n)
        write_video(root / rel, frames)
    split = "train" if index < config.train_per_class else "test"
    return {"path": rel, "label": name, "frames": n, "action": [start, end], "split": split}


def generate_demo_dataset(
    root: Path,
    config: DemoConfig = DemoConfig(),
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> Path:
    """Write the demo videos, ``train.txt``/``test.txt`` and ``dataset.json`` under ``root``.

    Deterministic for a seed; videos already present (from an interrupted run) are kept.
    Clips are drawn and encoded in ``workers`` processes (default: one per CPU).
    """
    root.mkdir(parents=True, exist_ok=True)
    for name in config.classes:
        (root / name).mkdir(exist_ok=True)
    jobs = [
        (label, i)
        for label in range(len(config.classes))
        for i in range(config.train_per_class + config.test_per_class)
    ]
    workers = workers or min(os.cpu_count() or 1, 4)
    records = []
    if workers > 1 and len(jobs) > 4:
        # fork, not spawn: the workers need no fresh interpreter (and spawn would
        # re-import the caller's __main__). They only use NumPy and PyAV.
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
            futures = [pool.submit(_make_clip, root, config, label, i) for label, i in jobs]
            for future in futures:
                records.append(future.result())
                if progress:
                    progress(1)
    else:
        for label, i in jobs:
            records.append(_make_clip(root, config, label, i))
            if progress:
                progress(1)
    for split in ("train", "test"):
        lines = [r["path"] for r in records if r["split"] == split]
        atomic_write_text(root / f"{split}.txt", "\n".join(lines) + "\n")
    info = {
        "name": "arrow-of-time demo",
        "seed": config.seed,
        "classes": config.classes,
        "order_pairs": [list(p) for p in ORDER_PAIRS],
        **({"motion_pairs": [list(p) for p in MOTION_PAIRS]} if config.motion else {}),
        "fps": FPS,
        "videos": records,
    }
    write_json(root / "dataset.json", info)
    return root
