"""The real-footage benchmark's dataset: H.264 clips made from real photographs and real videos.

Sources (nothing is downloaded; what is missing is named in one line):

- **scikit-image's photographs** (required; ``pip install scikit-image``, already a test
  dependency of tsmap): astronaut, coffee, chelsea, rocket, camera, coins, the left view of
  stereo_motorcycle (the camera pool), and brick, grass, gravel (textures) and
  immunohistochemistry, retina, hubble_deep_field, moon (science images) for the two
  appearance classes.
- **Debian's opencv-doc** (optional; ``apt-get install opencv-doc``): its sample videos
  (vtest.avi: pedestrians on a plaza; Megamind.avi; tree.avi; box.mp4 and cup.mp4, hand-held
  shots, shipped gzipped) for the play_forward / play_reversed pair, and 19 of its
  photographs, added to the camera pool. Without it the dataset has 8 classes instead of 10
  (no play pair, 7 photos in the camera pool) and says so in ``dataset.json``.

Classes. Four pairs whose two classes differ only in the ORDER of the frames: every video of
the second class is a draw of the first class played backwards, so the two have exactly the
same distribution of frames (which photo or scene, where the window starts, speed, size,
noise, brightness) and a frame-averaging model is at chance between them:

- ``pan_right`` / ``pan_left``: a window sliding horizontally over a photo of the camera pool;
- ``zoom_in`` / ``zoom_out``: a window shrinking (by 1.6-2.6x) towards a random point;
- ``rotate_ccw`` / ``rotate_cw``: a window turning by 35-80 degrees (content turns
  anticlockwise on screen in ``rotate_ccw``) about a random centre, from a random angle;
- ``play_forward`` / ``play_reversed``: a clip cut from a sample video (random source, start,
  stride 1-2, crop window, flip), played as recorded or backwards.

and two appearance classes (``texture``, ``science``: photos of their own pools under a camera
motion drawn at random, pan / zoom / rotation / hold in either direction, so that only what
the frames show tells them apart).

Every camera-class video draws a photo of the same pool, a random horizontal flip of it, a
random start position, span, speed and easing (linear, ease-in, ease-out or both, so that
easing carries no direction), hand-held shake (stationary sinusoids), a size among
``FRAME_SIZES``, 48-100 frames at 24/25/30 fps, brightness / contrast / saturation jitter,
sensor noise and an H.264 quality (CRF 18-28). Everything of a video is drawn from
``numpy.random.default_rng([seed, class index, video index])``: the dataset is the same on
every machine, and a rerun only writes the videos that are missing.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from tsmap.data.synthetic import write_video

OPENCV_DOC = Path("/usr/share/doc/opencv-doc")
SKIMAGE_CAMERA = ["astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "stereo_motorcycle"]
SKIMAGE_TEXTURE = ["brick", "grass", "gravel"]
SKIMAGE_SCIENCE = ["immunohistochemistry", "retina", "hubble_deep_field", "moon"]
OPENCV_PHOTOS = [
    "aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "board.jpg", "building.jpg", "butterfly.jpg",
    "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "leuvenA.jpg", "messi5.jpg", "orange.jpg",
    "rubberwhale1.png", "smarties.png", "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg",
]  # fmt: skip
OPENCV_VIDEOS = ["vtest.avi", "Megamind.avi", "tree.avi", "box.mp4.gz", "cup.mp4.gz"]

CAMERA_PAIRS = [("pan_right", "pan_left"), ("zoom_in", "zoom_out"), ("rotate_ccw", "rotate_cw")]
PLAY_PAIR = ("play_forward", "play_reversed")
APPEARANCE = ["texture", "science"]
FRAME_SIZES = [(256, 192), (288, 216), (320, 240), (320, 180), (240, 240)]
FPS_CHOICES = [24, 25, 30]
MIN_FRAMES, MAX_FRAMES = 48, 100
SOURCE_WIDTH = 384  # source videos are decoded at this width (the clips are at most 320 wide)


class MissingSource(Exception):
    """A required source is not installed; the message is one line naming what to install."""


# -- sources -----------------------------------------------------------------------------
def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).astype(np.uint8) if image.max() <= 1 else image.astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def skimage_photos(names: list[str]) -> dict[str, np.ndarray]:
    try:
        import skimage.data
    except ImportError as exc:
        raise MissingSource("scikit-image is required for its photographs: pip install scikit-image") from exc
    photos = {}
    for name in names:
        image = getattr(skimage.data, name)()
        if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
            image = image[0]
        photos[f"skimage:{name}"] = _rgb(image)
    return photos


def opencv_doc_data(root: Path = OPENCV_DOC) -> Path | None:
    """The opencv-doc examples' data folder, or None when the package is not installed."""
    data = root / "examples" / "data"
    return data if (data / "vtest.avi").is_file() else None


def _find_opencv_file(root: Path, name: str) -> Path | None:
    data = root / "examples" / "data"
    for path in [data / name, *sorted(root.rglob(name))]:
        if path.is_file():
            return path
    return None


def opencv_photos(root: Path = OPENCV_DOC) -> dict[str, np.ndarray]:
    import cv2

    photos = {}
    for name in OPENCV_PHOTOS:
        path = _find_opencv_file(root, name)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path is not None else None
        if image is not None:
            photos[f"opencv-doc:{name}"] = np.ascontiguousarray(image[:, :, ::-1])
    return photos


def opencv_videos(root: Path = OPENCV_DOC) -> dict[str, Path]:
    videos = {}
    for name in OPENCV_VIDEOS:
        path = _find_opencv_file(root, name)
        if path is not None:
            videos[f"opencv-doc:{name.removesuffix('.gz')}"] = path
    return videos


def photo_pools(opencv_root: Path | None) -> dict[str, dict[str, np.ndarray]]:
    camera = skimage_photos(SKIMAGE_CAMERA)
    if opencv_root is not None:
        camera |= opencv_photos(opencv_root)
    return {"camera": camera, "texture": skimage_photos(SKIMAGE_TEXTURE), "science": skimage_photos(SKIMAGE_SCIENCE)}


_VIDEO_CACHE: dict[str, np.ndarray] = {}


def decode_source(path: Path, cache_dir: Path) -> np.ndarray:
    """All frames of a source video, RGB, resized to SOURCE_WIDTH wide (cached per process)."""
    key = str(path)
    if key in _VIDEO_CACHE:
        return _VIDEO_CACHE[key]
    import av
    import cv2

    if path.suffix == ".gz":
        plain = cache_dir / path.name.removesuffix(".gz")
        if not plain.is_file():
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = plain.with_name(f".{plain.name}.{os.getpid()}.tmp")
            with gzip.open(path, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, plain)
        path = plain
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="rgb24")
            h, w = image.shape[:2]
            size = (SOURCE_WIDTH, int(round(h * SOURCE_WIDTH / w / 2)) * 2)
            frames.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    _VIDEO_CACHE[key] = np.stack(frames)
    return _VIDEO_CACHE[key]


# -- drawing one video -------------------------------------------------------------------
def _ease(rng: np.random.Generator, n: int) -> tuple[str, np.ndarray]:
    """Progress 0 -> 1 over n frames. Ease-in and ease-out are equally likely, so that the
    easing says nothing about the direction once a class is played backwards."""
    t = np.linspace(0.0, 1.0, n)
    kind = str(rng.choice(["linear", "in", "out", "in_out"]))
    curve = {"linear": t, "in": t**2, "out": 1 - (1 - t) ** 2, "in_out": 0.5 - 0.5 * np.cos(np.pi * t)}[kind]
    return kind, curve


def _shake(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    """(n, 2) stationary hand-held shake: two sinusoids per axis with random phases."""
    t = np.arange(n)[:, None]
    out = np.zeros((n, 2))
    for _ in range(2):
        freq = rng.uniform(0.02, 0.15, size=2)
        phase = rng.uniform(0, 2 * np.pi, size=2)
        out += amplitude * rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * freq * t + phase)
    return out


def _photometric(rng: np.random.Generator) -> dict:
    return {
        "gain": float(rng.uniform(0.75, 1.25)),
        "contrast": float(rng.uniform(0.8, 1.2)),
        "saturation": float(rng.uniform(0.6, 1.2)),
        "noise": float(rng.uniform(0.0, 5.0)),
        "crf": int(rng.integers(18, 29)),
    }


def draw_camera(rng: np.random.Generator, motion: str, photo_shape: tuple[int, int], out: tuple[int, int]) -> dict:
    """Window centre (x, y), scale (photo px per output px) and angle (degrees) per frame of a
    forward camera motion over a photo of ``photo_shape`` (H, W); ``motion`` is pan, zoom,
    rotate or hold."""
    h0, w0 = photo_shape
    w, h = out
    n = int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
    easing, p = _ease(rng, n)
    aspect = h / w
    angle = np.zeros(n)
    if motion == "pan":
        ww = rng.uniform(0.4, 0.65) * w0
        ww = min(ww, 0.95 * h0 / aspect, 0.75 * w0)
        travel = min(rng.uniform(0.2, 0.5) * w0, w0 - ww)
        x0 = rng.uniform(0, w0 - ww - travel) + ww / 2
        wh = ww * aspect
        y0 = rng.uniform(wh / 2, h0 - wh / 2)
        y1 = float(np.clip(y0 + rng.uniform(-0.1, 0.1) * h0, wh / 2, h0 - wh / 2))
        cx, cy = x0 + travel * p, y0 + (y1 - y0) * p
        width = np.full(n, ww)
    elif motion == "zoom":
        wide = min(w0, h0 / aspect) * rng.uniform(0.7, 1.0)
        narrow = wide / rng.uniform(1.6, 2.6)
        ax = rng.uniform(wide / 2, w0 - wide / 2)
        ay = rng.uniform(wide * aspect / 2, h0 - wide * aspect / 2)
        # the point zoomed into lies inside the wide view, its window inside the wide window
        bx = ax + rng.uniform(-1, 1) * (wide - narrow) / 2
        by = ay + rng.uniform(-1, 1) * (wide - narrow) * aspect / 2
        width = wide * (narrow / wide) ** p
        cx, cy = ax + (bx - ax) * p, ay + (by - ay) * p
    elif motion == "rotate":
        radius = 0.48 * min(w0, h0)  # the turning window's corners stay inside the photo
        ww = 2 * radius / math.sqrt(1 + aspect**2) * rng.uniform(0.7, 1.0)
        half_diag = ww * math.sqrt(1 + aspect**2) / 2
        x = rng.uniform(half_diag, w0 - half_diag)
        y = rng.uniform(half_diag, h0 - half_diag)
        turn = rng.uniform(35, 80)
        middle = rng.uniform(-25, 25)
        angle = middle - turn / 2 + turn * p
        cx, cy, width = np.full(n, x), np.full(n, y), np.full(n, ww)
    elif motion == "hold":
        ww = min(w0, h0 / aspect) * rng.uniform(0.4, 0.9)
        cx = np.full(n, rng.uniform(ww / 2, w0 - ww / 2))
        cy = np.full(n, rng.uniform(ww * aspect / 2, h0 - ww * aspect / 2))
        width = np.full(n, ww)
    else:
        raise ValueError(motion)
    shake = _shake(rng, n, rng.uniform(0.0, 0.012) * w0)
    return {
        "motion": motion,
        "frames": n,
        "easing": easing,
        "cx": (cx + shake[:, 0]).tolist(),
        "cy": (cy + shake[:, 1]).tolist(),
        "scale": (np.asarray(width) / w).tolist(),
        "angle": np.asarray(angle).tolist(),
    }


def render_camera(photo: np.ndarray, params: dict, out: tuple[int, int]) -> list[np.ndarray]:
    import cv2

    w, h = out
    pyramid = [photo]
    while min(pyramid[-1].shape[:2]) > 64 and len(pyramid) < 4:
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    frames = []
    for cx, cy, s, a in zip(params["cx"], params["cy"], params["scale"], params["angle"], strict=True):
        level = int(np.clip(math.floor(math.log2(max(s, 1.0))), 0, len(pyramid) - 1))
        src, f = pyramid[level], 2.0**level
        s, cx, cy = s / f, cx / f, cy / f
        c, si = math.cos(math.radians(a)), math.sin(math.radians(a))
        # output pixel (u, v) -> photo point: rotate and scale about the output centre, then move to (cx, cy)
        m = np.array(
            [
                [s * c, -s * si, cx - s * c * (w - 1) / 2 + s * si * (h - 1) / 2],
                [s * si, s * c, cy - s * si * (w - 1) / 2 - s * c * (h - 1) / 2],
            ]
        )
        frames.append(
            cv2.warpAffine(
                src, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT101
            )
        )
    return frames


def draw_play(rng: np.random.Generator, source_frames: int, source_shape: tuple[int, int], out: tuple[int, int]):
    h0, w0 = source_shape
    w, h = out
    stride = int(rng.integers(1, 3))
    n = int(rng.integers(MIN_FRAMES, MAX_FRAMES + 1))
    n = min(n, (source_frames - 1) // stride + 1)
    start = int(rng.integers(0, source_frames - (n - 1) * stride))
    aspect = h / w
    ww = min(w0, h0 / aspect) * rng.uniform(0.6, 1.0)
    x = rng.uniform(ww / 2, w0 - ww / 2)
    y = rng.uniform(ww * aspect / 2, h0 - ww * aspect / 2)
    shake = _shake(rng, n, rng.uniform(0.0, 0.006) * w0)
    return {
        "frames": n,
        "start": start,
        "stride": stride,
        "cx": (x + shake[:, 0]).tolist(),
        "cy": (y + shake[:, 1]).tolist(),
        "scale": np.full(n, ww / w).tolist(),
        "angle": np.zeros(n).tolist(),
    }


def render_play(source: np.ndarray, params: dict, out: tuple[int, int]) -> list[np.ndarray]:
    frames = []
    for i in range(params["frames"]):
        one = {k: params[k][i : i + 1] for k in ("cx", "cy", "scale", "angle")}
        frames += render_camera(source[params["start"] + i * params["stride"]], one, out)
    return frames


def finish(frames: list[np.ndarray], rng: np.random.Generator, look: dict, flip: bool) -> list[np.ndarray]:
    """Flip (played clips only, see ``_make_video``), saturation, contrast and brightness (one
    affine map per pixel) and per-frame sensor noise."""
    import cv2

    sat, con, gain = look["saturation"], look["contrast"], look["gain"]
    # y = ((grey + sat * (x - grey) - 128) * con + 128) * gain
    a, b, c = sat * con * gain, (1 - sat) * con * gain, 128 * (1 - con) * gain
    cv2.setRNGSeed(int(rng.integers(2**31)))  # OpenCV's generator: ~5x faster than NumPy's here
    noise = np.empty(frames[0].shape, np.float32)
    out = []
    for frame in frames:
        if flip:
            frame = cv2.flip(frame, 1)
        grey = cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        x = cv2.addWeighted(frame, a, grey, b, c, dtype=cv2.CV_32F)
        cv2.randn(noise, (0.0, 0.0, 0.0), (look["noise"],) * 3)  # one scalar would noise channel 0 only
        out.append(cv2.add(x, noise, dtype=cv2.CV_8U))  # rounds and saturates to 0..255
    return out


# -- the dataset -------------------------------------------------------------------------
class Plan:
    """Which classes and sources this machine gives, and the settings that fix every video."""

    def __init__(self, per_class: int, seed: int = 0, opencv_root: Path | None = OPENCV_DOC):
        self.per_class, self.seed = per_class, seed
        self.opencv = opencv_doc_data(opencv_root) if opencv_root is not None else None
        self.pools = photo_pools(self.opencv.parent.parent if self.opencv else None)
        self.videos = opencv_videos(self.opencv.parent.parent) if self.opencv else {}
        self.pairs = list(CAMERA_PAIRS) + ([PLAY_PAIR] if self.videos else [])
        self.classes = [c for pair in self.pairs for c in pair] + APPEARANCE

    def describe(self) -> dict:
        return {
            "seed": self.seed,
            "classes": self.classes,
            "order_pairs": [list(p) for p in self.pairs],
            "appearance": APPEARANCE,
            "photos": {pool: sorted(photos) for pool, photos in self.pools.items()},
            "videos": sorted(self.videos),
            "frame_sizes": FRAME_SIZES,
            "frames": [MIN_FRAMES, MAX_FRAMES],
            "generator": GENERATOR_VERSION,
        }

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()[:16]


# 2: the flip of a camera-class video mirrors its photo before the camera moves over it.
# Version 1 mirrored the rendered frames, which turns a pan right into a pan left and an
# anticlockwise turn into a clockwise one: half of those videos carried the wrong label.
GENERATOR_VERSION = 2


def _make_video(plan: Plan, root: Path, label: int, index: int) -> dict:
    """Draw (and write, unless present) video ``index`` of class ``label``; return its record.

    The second class of a pair draws exactly as the first (its own random stream, the same
    distribution) and is then played backwards."""
    name = plan.classes[label]
    rng = np.random.default_rng([plan.seed, label, index])
    partner = {b: a for a, b in plan.pairs}
    base = partner.get(name, name)
    reverse = name in partner
    rel = f"{name}/{name}_{index:03d}.mp4"
    out = FRAME_SIZES[int(rng.integers(len(FRAME_SIZES)))]
    fps = int(rng.choice(FPS_CHOICES))
    look = _photometric(rng)
    flip = bool(rng.integers(2))
    record = {"path": rel, "label": name, "size": list(out), "fps": fps, "flip": flip, **look}
    if base == PLAY_PAIR[0]:
        source_name = sorted(plan.videos)[int(rng.integers(len(plan.videos)))]
        source = decode_source(plan.videos[source_name], root / ".sources")
        params = draw_play(rng, len(source), source.shape[1:3], out)
        record |= {"source": source_name, "start": params["start"], "stride": params["stride"]}
        render = lambda: render_play(source, params, out)  # noqa: E731
    else:
        pool = plan.pools[base if base in APPEARANCE else "camera"]
        photo_name = sorted(pool)[int(rng.integers(len(pool)))]
        photo = pool[photo_name]
        if flip:  # mirror the scene, not the motion: a mirrored pan right would be a pan left
            photo = np.ascontiguousarray(photo[:, ::-1])
        if base in APPEARANCE:
            # any motion, either way: only what the frames show tells these classes
            motion = str(rng.choice(["pan", "zoom", "rotate", "hold"]))
            reverse = bool(rng.integers(2))
        else:
            motion = base.split("_")[0]
        params = draw_camera(rng, motion, photo.shape[:2], out)
        record |= {"source": photo_name, "motion": motion, "easing": params["easing"]}
        render = lambda: render_camera(photo, params, out)  # noqa: E731
    record |= {"frames": params["frames"], "reversed": reverse}
    path = root / rel
    if not path.is_file():
        # A played clip is mirrored frame by frame (the arrow of time survives a mirror).
        frames = finish(render(), rng, look, flip and base == PLAY_PAIR[0])
        if reverse:
            frames = frames[::-1]
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, frames, fps=fps, crf=look["crf"])
    return record


_PLAN: Plan | None = None


def _init_worker(plan: Plan) -> None:
    global _PLAN
    _PLAN = plan


def _worker(args: tuple[Path, int, int]) -> dict:
    root, label, index = args
    return _make_video(_PLAN, root, label, index)


def build_dataset(
    root: Path, per_class: int, seed: int = 0, opencv_root: Path | None = OPENCV_DOC, workers: int = 1
) -> dict:
    """Write ``root/<class>/<class>_NNN.mp4``, ``root/classes.txt`` and ``root/dataset.json``.

    Videos already present are kept (their records are drawn again, not read). A folder built
    from other sources or settings is refused, so that a rerun never mixes two datasets.
    """
    plan = Plan(per_class, seed, opencv_root)
    root.mkdir(parents=True, exist_ok=True)
    info_path = root / "dataset.json"
    if info_path.is_file():
        old = json.loads(info_path.read_text())
        if old.get("fingerprint") != plan.fingerprint():
            raise MissingSource(
                f"{root} holds a dataset built from other sources or settings; use another --out or delete it"
            )
    tasks = [(root, label, i) for label in range(len(plan.classes)) for i in range(per_class)]
    if workers > 1:
        # fork: the workers share the photos already loaded; each decodes the source videos it needs
        with ProcessPoolExecutor(
            workers, mp_context=get_context("fork"), initializer=_init_worker, initargs=(plan,)
        ) as ex:
            records = list(ex.map(_worker, tasks, chunksize=4))
    else:
        records = [_make_video(plan, *task) for task in tasks]
    info = {**plan.describe(), "fingerprint": plan.fingerprint(), "per_class": per_class, "videos_list": records}
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in plan.classes))
    tmp = info_path.with_name(".dataset.json.tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, info_path)
    return info


def split_lists(info: dict, out_dir: Path, draw: int, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> dict[str, Path]:
    """A seeded stratified train / val / test split (draw ``draw``) as ``<path> <class>`` lists:
    train.txt (without val), val.txt, test.txt and trainval.txt."""
    rng = np.random.default_rng([seed, draw])
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    by_class: dict[str, list[str]] = {}
    for record in info["videos_list"]:
        by_class.setdefault(record["label"], []).append(record["path"])
    for name in info["classes"]:
        paths = sorted(by_class.get(name, []))
        order = rng.permutation(len(paths))
        n_val = int(round(fractions[1] * len(paths)))
        n_test = int(round(fractions[2] * len(paths)))
        for k, i in enumerate(order):
            split = "test" if k < n_test else "val" if k < n_test + n_val else "train"
            parts[split].append(f"{paths[i]} {name}\n")
    parts["trainval"] = parts["train"] + parts["val"]
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, lines in parts.items():
        files[split] = out_dir / f"{split}.txt"
        files[split].write_text("".join(sorted(lines)))
    return files
