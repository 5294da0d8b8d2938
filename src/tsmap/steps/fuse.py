"""Step 4 (two streams), fuse: the RGB and flow runs' test scores, head by head."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tsmap.evaluation.fusion import TSN_WEIGHTS, FusionError, choose_flow_weight, fuse_runs
from tsmap.evaluation.metrics import confusion_matrix
from tsmap.evaluation.plots import plot_confusion
from tsmap.fileio import save_numpy, write_json
from tsmap.steps.common import HEADS, SCORES_KEYS_FILE
from tsmap.steps.evaluate import group_accuracies, write_confusion_csv


def _read_run(run_dir: Path) -> tuple[dict, dict]:
    """results.json and scores_keys.json of an evaluated run, or a FusionError saying what is missing."""
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        splits = sorted(p.name for p in run_dir.glob("split[123]") if (p / "results.json").is_file())
        hint = f" (official splits: give {run_dir / splits[0]})" if splits else "; run `tsmap evaluate` on it first"
        raise FusionError(f"{run_dir} has no results.json{hint}")
    keys_path = run_dir / SCORES_KEYS_FILE
    if not keys_path.is_file():
        raise FusionError(
            f"{run_dir} has no {SCORES_KEYS_FILE} (evaluated by an older tsmap): run `tsmap evaluate` on it again"
        )
    return _read_json(results_path, run_dir), _read_json(keys_path, run_dir)


def _read_json(path: Path, run_dir: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FusionError(f"{path} is not valid JSON ({exc}); run `tsmap evaluate` on {run_dir} again") from exc
    if not isinstance(data, dict):
        raise FusionError(f"{path} is not what `tsmap evaluate` writes; run `tsmap evaluate` on {run_dir} again")
    return data


def _head(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _read_scores(path: Path, run: Path) -> np.ndarray:
    """A run's score matrix, or a FusionError naming the file (truncated, empty, not a score matrix)."""
    try:
        scores = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        if isinstance(exc, PermissionError):
            why = "permission denied"
        elif path.stat().st_size == 0:
            why = "an empty file"
        elif _head(path, 6) != b"\x93NUMPY":
            why = "not a NumPy .npy file"
        else:
            why = f"truncated or damaged: {exc}"
        raise FusionError(f"{path} is not a readable score file ({why}); run `tsmap evaluate` on {run} again") from exc
    if not isinstance(scores, np.ndarray) or scores.ndim != 2 or not np.issubdtype(scores.dtype, np.number):
        raise FusionError(f"{path} is not a score matrix (videos x classes); run `tsmap evaluate` on {run} again")
    return scores


def fuse(
    rgb_run: Path,
    flow_run: Path,
    out_dir: Path,
    weights: tuple[float, float] = TSN_WEIGHTS,
    kind: str = "raw",
    choose: bool = False,
) -> dict:
    """Fuse the test scores of an RGB run and a flow run, head by head; write fusion.json and plots.

    ``choose``: instead of ``weights``, each head's flow weight (RGB's is 1) is the one of
    ``FLOW_WEIGHT_GRID`` that fuses best on the runs' scores, which must be validation
    scores (``tsmap evaluate --subset val``): choosing on test scores is refused.

    The runs must have been evaluated (``evaluate``) on the same videos with the same
    classes; their scores are aligned by video key. Writes ``out_dir/fusion.json`` (top-1,
    top-5 and mean class accuracy of each stream and of the fusion, per head),
    ``out_dir/scores_fusion_<head>.npy`` with ``scores_keys.json`` (rows in the RGB run's
    order) and the fused VideoMap head's confusion matrix (PNG and CSV).
    """
    (rgb_results, rgb_keys), (flow_results, flow_keys) = _read_run(rgb_run), _read_run(flow_run)
    streams = (rgb_results.get("stream", "rgb"), flow_results.get("stream", "flow"))
    if streams != ("rgb", "flow"):
        raise FusionError(
            f"--runs takes the RGB run first and the flow run second; {rgb_run} holds {streams[0]} scores and "
            f"{flow_run} {streams[1]} ones"
        )
    if rgb_keys.get("split") != flow_keys.get("split"):
        raise FusionError(f"{rgb_run} was evaluated on {rgb_keys.get('split')}, {flow_run} on {flow_keys.get('split')}")
    if choose and rgb_keys.get("split") != "val":
        raise FusionError(
            f"--choose-weights reads validation scores, and {rgb_run} holds {rgb_keys.get('split')} scores: "
            "run `tsmap evaluate --subset val` on both runs, choose the weights there, then fuse the test "
            "scores with --weights 1 W"
        )
    heads = [k for k in HEADS if k in rgb_results["heads"] and k in flow_results["heads"]]
    if not heads:
        raise FusionError(f"{rgb_run} and {flow_run} have no evaluated head in common")
    summary: dict = {
        "runs": {"rgb": str(rgb_run), "flow": str(flow_run)},
        "weights": None if choose else {"rgb": weights[0], "flow": weights[1]},
        "weights_chosen_on": "val" if choose else None,
        "scores": kind,
        "split": rgb_keys.get("split"),
        "num_videos": len(rgb_keys["keys"]),
        "classes": rgb_keys["classes"],
        "heads": {},
    }
    # Every score file is read and fused before anything is written: a bad one leaves OUT as it was.
    fused_heads = {}
    for head in heads:
        scores = []
        for run in (rgb_run, flow_run):
            path = run / f"scores_{head}.npy"
            if not path.is_file():
                raise FusionError(f"{path} is missing: run `tsmap evaluate` on {run} again")
            scores.append(_read_scores(path, run))
        task = (
            scores,
            [rgb_keys["keys"], flow_keys["keys"]],
            [np.asarray(rgb_keys["labels"]), np.asarray(flow_keys["labels"])],
            [rgb_keys["classes"], flow_keys["classes"]],
        )
        fused = fuse_runs(*task, weights, kind, names=("rgb", "flow"))
        head_weights, sweep = weights, None
        if choose:
            flow_weight, sweep = choose_flow_weight(*fused["streams"], fused["labels"], kind)
            head_weights = (1.0, flow_weight)
            fused = fuse_runs(*task, head_weights, kind, names=("rgb", "flow"))
        fused["figures"]["weights"] = {"rgb": head_weights[0], "flow": head_weights[1]}
        if sweep is not None:
            fused["figures"]["weight_sweep"] = sweep
        if groups := rgb_keys.get("groups"):
            for name, values in zip(("rgb", "flow", "fusion"), [*fused["streams"], fused["fused"]], strict=True):
                fused["figures"][name] |= group_accuracies(values, fused["labels"], groups)
        summary["heads"][head] = fused["figures"]
        fused_heads[head] = fused
    out_dir.mkdir(parents=True, exist_ok=True)
    for head, fused in fused_heads.items():
        save_numpy(out_dir / f"scores_fusion_{head}.npy", fused["fused"])
        if head == "videomap":
            cm = confusion_matrix(fused["fused"].argmax(1), fused["labels"], len(rgb_keys["classes"]))
            write_confusion_csv(out_dir / "confusion_fusion_videomap.csv", cm, rgb_keys["classes"])
            top1, w = fused["figures"]["fusion"]["top1"], fused["figures"]["weights"]
            plot_confusion(
                cm,
                rgb_keys["classes"],
                out_dir / "confusion_fusion_videomap.png",
                f"VideoMap head, RGB + flow ({w['rgb']:g} : {w['flow']:g}): top-1 {top1:.1%}",
            )
    write_json(out_dir / SCORES_KEYS_FILE, {**rgb_keys})
    write_json(out_dir / "fusion.json", summary)
    return summary
