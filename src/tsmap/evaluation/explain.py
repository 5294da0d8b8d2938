"""Where in time a trained VideoMap head looks: attention a0, Grad-CAM, action-interval shares.

- **Attention.** a0 (Eq. 2) is one weight per row of the head's trained grid (softmax over
  time x T, so it averages 1).
- **Grad-CAM over time** (Selvaraju et al., the paper's Fig. 8). Activations A_k of a conv
  layer of the head, gradients of the class score S_c with respect to them, channel
  weights alpha_k = mean over the layer's (time, feature) cells of dS_c/dA_k, map
  ReLU(sum_k alpha_k A_k); its mean over the feature axis is a curve over the layer's time
  cells, interpolated back to the head's T rows. The default layer is the paper's "Conv-3":
  the ReLU output of the third conv, before the block's pool, which keeps T/4 time cells
  (the block's pooled output, ``layer="block3"``, has only T/8: 4 cells for T = 32).
  ``conv1`` and ``conv2`` (T and T/2 cells) say where in time the early layers find the
  evidence: at T = 32, conv-3's 8 cells, each seeing 35 rows, blur an action's edges
  over several rows each side.
  Cell j of a layer after k stride-2 pools is centred on input row j * 2^k (the pools
  have kernel 3, stride 2, padding 1), and the interpolation puts it there.
- **Rows -> video frames.** Row t of a map sampled from a video of n frames shows frame
  ``uniform_indices(n, T)[t]``; a head fed a map of T' != T rows first resamples it to
  its T rows with ``uniform_indices(T', T)``. ``head_row_frames`` composes the two, and
  ``mass_share`` then measures how much of a weight curve falls on the frames of an
  action interval [start, end). Uniform weights give the interval's share of the rows,
  the baseline a curve that points at the action must beat.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tsmap.data.video import uniform_indices
from tsmap.evaluation.plots import plot_explanation
from tsmap.heads.videomap_head import VideoMapHead, resample_time

GRAD_CAM_LAYERS = ("conv1", "conv2", "conv3", "block3")


def head_row_frames(num_video_frames: int, map_rows: int, head_rows: int) -> np.ndarray:
    """The video frame shown by each of the head's ``head_rows`` rows, for a map of ``map_rows``."""
    return uniform_indices(num_video_frames, map_rows)[uniform_indices(map_rows, head_rows)]


def rows_in_interval(frames: np.ndarray, start: int, end: int) -> np.ndarray:
    """Which rows show a frame of the interval [start, end)."""
    return (frames >= start) & (frames < end)


def mass_share(weights: np.ndarray, inside: np.ndarray) -> float:
    """Share of the (non-negative) mass of ``weights`` on the rows marked ``inside``; NaN if no mass."""
    weights = np.clip(np.asarray(weights, dtype=np.float64), 0, None)
    total = weights.sum()
    return float(weights[inside].sum() / total) if total > 0 else float("nan")


@dataclass
class Explanation:
    """What a VideoMap head makes of a batch of maps (arrays over the batch, rows = head's T)."""

    probs: np.ndarray  # B x C softmax
    target: np.ndarray  # B: the class the Grad-CAM explains (the prediction unless asked)
    attention: np.ndarray | None  # B x T: a0, or None for a head without attention
    grad_cam: np.ndarray  # B x T, >= 0
    standardized: np.ndarray  # B x T x L: the map as the head's first conv sees it (before a0)


def _layer_module(model: VideoMapHead, layer: str) -> tuple[torch.nn.Module, int]:
    """The module whose output is the Grad-CAM layer, and the number of stride-2 pools before it."""
    if layer in ("conv1", "conv2", "conv3"):
        k = int(layer[-1])  # the k-th conv (its ReLU is applied in the hook), after k - 1 pools
        return getattr(model, f"block{k}")[0], k - 1
    if layer == "block3":
        return model.block3, 3
    raise ValueError(f"Grad-CAM layer must be one of {GRAD_CAM_LAYERS}, got {layer!r}")


def cells_to_rows(curve: np.ndarray, num_rows: int, pools: int) -> np.ndarray:
    """B x cells -> B x num_rows: linear interpolation with cell j centred on row j * 2**pools."""
    cells = np.arange(curve.shape[1]) * float(2**pools)
    rows = np.arange(num_rows, dtype=np.float64)
    return np.stack([np.interp(rows, cells, c) for c in curve])


def explain_maps(
    model: VideoMapHead, maps: torch.Tensor, target: torch.Tensor | None = None, layer: str = "conv3"
) -> Explanation:
    """Class probabilities, a0 and Grad-CAM over time of ``maps`` (B x T' x L, any T')."""
    if not isinstance(model, VideoMapHead):
        raise TypeError(f"Grad-CAM and attention need a VideoMap head, not {type(model).__name__}")
    module, pools = _layer_module(model, layer)
    model.eval()
    device = next(model.parameters()).device
    maps = maps.to(device)
    captured: dict[str, torch.Tensor] = {}

    def capture(_module: torch.nn.Module, _inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        # The head pools before its ReLU (same values, less work); Grad-CAM wants the ReLU
        # output of the conv, so the hook hands the pool ReLU(conv), which changes nothing
        # downstream (the pool's own ReLU is then a no-op) and keeps it in the graph.
        captured["a"] = torch.relu(out) if layer.startswith("conv") else out
        return captured["a"]

    handle = module.register_forward_hook(capture)
    try:
        with torch.enable_grad():
            scores = model(maps)
            chosen = scores.argmax(1) if target is None else target.to(device)
            (grads,) = torch.autograd.grad(scores.gather(1, chosen[:, None]).sum(), captured["a"])
    finally:
        handle.remove()
    acts = captured["a"].detach()
    alpha = grads.mean(dim=(2, 3), keepdim=True)  # one weight per channel
    cam = torch.relu((alpha * acts).sum(1)).mean(2)  # B x cells: mean over the feature axis
    with torch.no_grad():
        standardized = model.standardize(resample_time(maps, model.num_frames).float())
    attention = model.last_attention
    return Explanation(
        probs=torch.softmax(scores.detach().float(), 1).cpu().numpy(),
        target=chosen.cpu().numpy(),
        attention=None if attention is None else attention.float().cpu().numpy(),
        grad_cam=cells_to_rows(cam.float().cpu().numpy(), model.num_frames, pools),
        standardized=standardized.cpu().numpy(),
    )


def interval_shares(
    explanation: Explanation, index: int, frames: np.ndarray, start: int, end: int, num_video_frames: int
) -> dict:
    """Attention and Grad-CAM mass on the action [start, end) of one explained map, with baselines.

    A share is None for a curve without mass: no attention branch, or a Grad-CAM that is 0
    everywhere (every channel argues against the class, and the ReLU leaves nothing).
    """
    inside = rows_in_interval(frames, start, end)
    attention = explanation.attention

    def share(weights: np.ndarray) -> float | None:
        value = mass_share(weights, inside)
        return None if np.isnan(value) else value

    return {
        "attention_share": None if attention is None else share(attention[index]),
        "grad_cam_share": share(explanation.grad_cam[index]),
        "interval_share_rows": float(inside.mean()),  # what uniform weights would give
        "interval_share_frames": (end - start) / num_video_frames,
    }


@dataclass(frozen=True)
class ActionInterval:
    start: int
    end: int  # exclusive
    frames: int  # frames in the video


def load_action_intervals(dataset_root: Path) -> dict[str, ActionInterval]:
    """Action intervals recorded in ``dataset.json`` (the demo's), by clip key; {} when none."""
    path = Path(dataset_root) / "dataset.json"
    if not path.is_file():
        return {}
    try:
        videos = json.loads(path.read_text()).get("videos", [])
    except (json.JSONDecodeError, AttributeError):
        return {}
    out = {}
    for v in videos:
        if isinstance(v, dict) and "action" in v and "frames" in v and "path" in v:
            start, end = (int(x) for x in v["action"])
            out[str(v["path"])] = ActionInterval(start, end, int(v["frames"]))
    return out


def find_action_interval(video: Path) -> ActionInterval | None:
    """The interval of ``video`` if a ``dataset.json`` in one of its parent folders records it."""
    video = Path(video).resolve()
    for root in video.parents:
        intervals = load_action_intervals(root)
        if intervals:
            return intervals.get(video.relative_to(root).as_posix())
    return None


def plot_explained(
    ex: Explanation,
    frames: np.ndarray,
    frame_ids: list[int],
    row_frames: np.ndarray,
    num_video_frames: int,
    path: Path,
    title: str,
    interval: ActionInterval | None = None,
) -> Path:
    """Fig. 8 of the first map of ``ex``: its frames, VideoMap, a0 and Grad-CAM over time."""
    return plot_explanation(
        frames,
        frame_ids,
        ex.standardized[0],
        row_frames,
        None if ex.attention is None else ex.attention[0],
        ex.grad_cam[0],
        num_video_frames,
        path,
        title,
        interval=None if interval is None else (interval.start, interval.end),
    )


def describe_shares(shares: dict, start: int, end: int) -> str:
    """One line: the action's frames and share of the rows, and the curves' shares on it."""

    def pct(x: float | None) -> str:
        return "no mass" if x is None else f"{x:.0%}"

    text = (
        f"action = frames {start}-{end - 1} ({shares['interval_share_rows']:.0%} of the rows); on it: "
        f"{pct(shares['grad_cam_share'])} of the Grad-CAM"
    )
    if shares["attention_share"] is not None:
        text += f", {pct(shares['attention_share'])} of the attention"
    return text


# -- one video, end to end (`tsmap explain`) -----------------------------------------------
@dataclass
class Explainer:
    """A run's VideoMap head, ready to explain videos: the head, its classes, and the
    frame ConvNet that maps videos the way its training maps were made."""

    model: VideoMapHead
    classes: list[str]
    settings: object  # tsmap.videomap.settings.MapSettings
    encoder: object  # tsmap.frames.encoder.FrameEncoder
    checkpoint: Path

    def class_index(self, name: str | None) -> int | None:
        """The index of class ``name`` (None: the predicted class); a DatasetError for an unknown one."""
        if name is None:
            return None
        if name not in self.classes:
            from tsmap.data.datasets import DatasetError

            raise DatasetError(f"unknown class {name!r}; the run's classes are {', '.join(self.classes)}")
        return self.classes.index(name)


def load_explainer(run_dir: Path, device: str = "cpu") -> Explainer:
    """The VideoMap head of ``run_dir/videomap.pt`` and its frame ConvNet (RGB runs only)."""
    from tsmap.heads.checkpoint import CheckpointError, load_head
    from tsmap.videomap.extract import encoder_for_store
    from tsmap.videomap.settings import MapSettings
    from tsmap.videomap.store import StoreError

    path = Path(run_dir) / "videomap.pt"
    model, meta = load_head(path, device)
    if not isinstance(model, VideoMapHead):
        raise CheckpointError(f"{path} is not a VideoMap head")
    settings = MapSettings.from_dict(meta["store_settings"])
    if settings.stream != "rgb":
        raise StoreError(f"{path} was trained on {settings.stream} maps; explain reads RGB frames")
    return Explainer(model, list(meta["classes"]), settings, encoder_for_store(settings, device), path)


def explain_video(
    video: Path,
    run: Path | Explainer,
    out_dir: Path | None = None,
    target: str | None = None,
    layer: str = "conv3",
    action: tuple[int, int] | None = None,
    frames_shown: int = 8,
    device: str = "cpu",
) -> dict:
    """Fig. 8 for one video: writes ``out_dir/<video>.png`` and ``out_dir/<video>.json``, returns the numbers.

    ``run`` is a run folder (its ``videomap.pt``) or an ``Explainer`` loaded once for
    several videos; ``out_dir`` defaults to RUN/explain. ``target`` is the class whose
    Grad-CAM is shown (default: the predicted one); ``action`` the action's frames
    [start, end) (default: from a ``dataset.json`` above the video, the demo's, else none).
    The result holds the top-5 classes, the attention and Grad-CAM per row, with an
    interval their shares on it (and ``"summary"``, one line saying so), and the paths
    written (``"figure"``, ``"numbers"``).
    """
    from tsmap.data.video import read_distinct_frames
    from tsmap.fileio import write_json
    from tsmap.videomap.extract import videomap_from_frames

    explainer = run if isinstance(run, Explainer) else load_explainer(Path(run), device)
    index = explainer.class_index(target)
    out_dir = Path(out_dir) if out_dir is not None else explainer.checkpoint.parent / "explain"
    video = Path(video)
    s = explainer.settings
    distinct, sample, count = read_distinct_frames(video, s.frames, s.geometry)
    videomap = torch.from_numpy(videomap_from_frames(distinct, explainer.encoder, sample))[None]
    frames = distinct[sample]
    ex = explain_maps(explainer.model, videomap, None if index is None else torch.tensor([index]), layer=layer)
    rows = head_row_frames(count, videomap.shape[1], explainer.model.num_frames)
    iv = ActionInterval(action[0], action[1], count) if action is not None else find_action_interval(video)
    probs = ex.probs[0]
    top = np.argsort(-probs, kind="stable")[:5]
    classes = explainer.classes
    result: dict = {
        "video": str(video),
        "frames": count,
        "top5": [[classes[k], float(probs[k])] for k in top],
        "explained_class": classes[int(ex.target[0])],
        "grad_cam_layer": layer,
        "row_frames": rows.tolist(),
        "attention": None if ex.attention is None else ex.attention[0].tolist(),
        "grad_cam": ex.grad_cam[0].tolist(),
    }
    title = (
        f"{video.name}: predicted {classes[top[0]]} ({probs[top[0]]:.0%}); "
        f"Grad-CAM ({layer}) of {result['explained_class']}"
    )
    summary = None
    if iv is not None:
        shares = interval_shares(ex, 0, rows, iv.start, iv.end, count)
        result["action"] = [iv.start, iv.end]
        result.update(shares)
        summary = describe_shares(shares, iv.start, iv.end)
        title += "\n" + summary
    shown = uniform_indices(len(frames), frames_shown)
    ids = uniform_indices(count, len(frames))[shown].tolist()
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_explained(ex, frames[shown], ids, rows, count, out_dir / f"{video.stem}.png", title, iv)
    numbers = out_dir / f"{video.stem}.json"
    write_json(numbers, result)
    return result | {"summary": summary, "figure": str(png), "numbers": str(numbers)}
