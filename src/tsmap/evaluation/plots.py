"""Figures as PNG files (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tsmap.fileio import atomic_write  # noqa: E402


def save_figure(fig, path: Path, **options) -> None:
    """``fig.savefig`` as PNG through ``fileio.atomic_write``: the file is the old one or the new one."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", **options))


def plot_confusion(cm: np.ndarray, classes: list[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix with counts written in the cells."""
    n = len(classes)
    size = max(5.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        str(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ticks = np.arange(n)
    fontsize = 8 if n <= 30 else 5
    ax.set_xticks(ticks, classes, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, classes, fontsize=fontsize)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


# -- the report's figures (tsmap report / tsmap explain) ---------------------------
SERIES_COLOURS = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
    "tab:gray",
)


def _seeds(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def plot_seed_bars(rows: list[tuple[str, list[float]]], path: Path, title: str, ylabel: str) -> Path:
    """One bar per row at the mean over seeds, the standard deviation as an error bar, each seed a dot."""
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(rows) + 2), 4.6))
    for i, (_, values) in enumerate(rows):
        values = np.asarray(values, dtype=float) * 100
        mean, std = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
        ax.bar(i, mean, color=SERIES_COLOURS[i % len(SERIES_COLOURS)], alpha=0.75, width=0.65)
        ax.errorbar(i, mean, yerr=std, color="black", capsize=5, linewidth=1.5)
        ax.scatter(
            np.full(len(values), i) + np.linspace(-0.15, 0.15, len(values)), values, color="black", s=14, zorder=3
        )
        ax.text(i, mean + std + 1.5, f"{mean:.1f}", ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(rows)), [label for label, _ in rows], rotation=15, ha="right", fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 110)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_density_curve(
    densities: list[int],
    series: dict[str, np.ndarray],
    path: Path,
    title: str,
    dashed: dict[str, np.ndarray] | None = None,
) -> Path:
    """Top-1 (%) against test-time frames T'; ``series`` values are seeds x densities (mean, +-1 std band)."""
    fig, ax = plt.subplots(figsize=(8, 5.4))
    x = np.asarray(densities)
    for i, (label, values) in enumerate(series.items()):
        values = np.atleast_2d(np.asarray(values, dtype=float)) * 100
        mean = values.mean(0)
        std = values.std(0, ddof=1) if len(values) > 1 else np.zeros_like(mean)
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        ax.plot(x, mean, marker="o", color=colour, label=f"{label}: mean of {_seeds(len(values))}, band = 1 std")
        ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2)
        # Values above the first series' points and below the others', clear of the dashed lines.
        for v, m in zip(x, mean, strict=True):
            ax.annotate(
                f"{m:.1f}",
                (v, m),
                textcoords="offset points",
                xytext=(0, 7 if i == 0 else -13),
                ha="center",
                fontsize=8,
                color=colour,
            )
    for i, (label, values) in enumerate((dashed or {}).items()):
        ax.plot(x, np.asarray(values) * 100, linestyle="--", marker="x", color=SERIES_COLOURS[i], label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [str(v) for v in x])
    ax.minorticks_off()
    ax.set_xlabel("frames per video at test time, T'")
    ax.set_ylabel("top-1 accuracy on the test split (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    return _save(fig, path)


def plot_class_gain(names: list[str], gains: list[float], path: Path, title: str) -> Path:
    """Bars of per-class accuracy gain (percentage points), in the order given."""
    values = np.asarray(gains, dtype=float) * 100
    fig, ax = plt.subplots(figsize=(max(6.0, 0.4 * len(names) + 2), 4.8))
    colours = ["tab:green" if v > 0 else ("tab:red" if v < 0 else "tab:gray") for v in values]
    ax.bar(range(len(names)), values, color=colours)
    for i, v in enumerate(values):
        ax.text(i, v + (1 if v >= 0 else -1), f"{v:+.0f}", ha="center", va="bottom" if v >= 0 else "top", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_xlabel("class")
    ax.set_ylabel("top-1 of the VideoMap head minus TSN\n(percentage points)")
    span = max(10.0, float(np.abs(values).max()) + 8) if len(values) else 10.0
    ax.set_ylim(min(-5.0, -span if values.min(initial=0) < 0 else -5.0), span)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_partial_confusion(
    cms: dict[str, np.ndarray], classes: list[str], group: list[int], path: Path, title: str
) -> Path:
    """Side-by-side confusion matrices restricted to ``group`` (rows: true, columns: predicted).

    Cells are shares of each true class's test videos; the extra column counts the
    videos predicted as any class outside the group, so every row sums to 1.
    """
    names = [classes[i] for i in group]
    fig, axes = plt.subplots(
        1, len(cms), figsize=(4.3 * len(cms) + 1, max(3.8, 0.55 * len(group) + 2.6)), squeeze=False
    )
    for ax, (label, cm) in zip(axes[0], cms.items(), strict=True):
        totals = cm[group].sum(1)
        counts = np.concatenate([cm[np.ix_(group, group)], (totals - cm[np.ix_(group, group)].sum(1))[:, None]], 1)
        share = np.divide(counts, totals[:, None], out=np.zeros(counts.shape), where=totals[:, None] > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(share.shape[0]):
            for j in range(share.shape[1]):
                ax.text(
                    j,
                    i,
                    f"{share[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black",
                )
        ax.set_xticks(range(len(names) + 1), [*names, "other"], rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(label, fontsize=10)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_explanation(
    frames: np.ndarray,
    frame_ids: list[int],
    videomap: np.ndarray,
    row_frames: np.ndarray,
    attention: np.ndarray | None,
    grad_cam: np.ndarray,
    num_video_frames: int,
    path: Path,
    title: str,
    interval: tuple[int, int] | None = None,
) -> Path:
    """The paper's Fig. 8 for one video: frames, VideoMap (time across), a0 and Grad-CAM over time.

    Every panel below the frames shares one time axis in video frames; ``row_frames[t]``
    is the frame that the head's row t shows, and the shaded span is the action interval.
    """
    panels = 4 if attention is not None else 3
    # The frame strip's height follows the frames' aspect (8 frames across 11 inches).
    strip_height = 11 / max(len(frames), 1) * frames.shape[1] / frames.shape[2] + 0.4
    fig = plt.figure(figsize=(11, strip_height + 1.9 * (panels - 1) + 0.8))
    grid = fig.add_gridspec(panels, 1, height_ratios=[strip_height] + [1.9] * (panels - 1), hspace=0.35)
    strip = grid[0].subgridspec(1, len(frames), wspace=0.05)
    for i, (img, fid) in enumerate(zip(frames, frame_ids, strict=True)):
        ax = fig.add_subplot(strip[0, i])
        ax.imshow(img)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"frame {fid}", fontsize=8)
        if interval is not None and interval[0] <= fid < interval[1]:
            for side in ax.spines.values():
                side.set_color("tab:red")
                side.set_linewidth(2)
    # Row t covers the frames from halfway to the previous row to halfway to the next.
    edges = np.concatenate([[0], (row_frames[:-1] + row_frames[1:]) / 2 + 0.5, [num_video_frames]])
    ax_map = fig.add_subplot(grid[1])
    ax_map.pcolormesh(
        edges,
        np.arange(videomap.shape[1] + 1),
        np.clip(videomap.T, -3, 3),
        cmap="viridis",
        vmin=-3,
        vmax=3,
        shading="flat",
        rasterized=True,
    )
    ax_map.set_ylabel("feature\n(standardised)")
    ax_map.set_title(
        "VideoMap as the head sees it: standardised features (colour, clipped to +-3), time across, one column per row",
        fontsize=9,
    )
    axes = [ax_map]
    curves = [("attention a0 (1 = uniform)", attention, "tab:purple")] if attention is not None else []
    curves.append(("Grad-CAM over time\n(share of mass per row)", grad_cam / max(grad_cam.sum(), 1e-12), "tab:red"))
    for k, (label, values, colour) in enumerate(curves):
        ax = fig.add_subplot(grid[2 + k], sharex=ax_map)
        ax.stairs(values, edges, color=colour, fill=True, alpha=0.5)
        ax.stairs(values, edges, color=colour, linewidth=1.2)
        if attention is not None and k == 0:
            ax.axhline(1.0, color="black", linestyle=":", linewidth=1)
        else:
            ax.axhline(1.0 / len(values), color="black", linestyle=":", linewidth=1)
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(0, float(np.max(values)) * 1.15 + 1e-9)
        axes.append(ax)
    for ax in axes:
        if interval is not None:
            ax.axvspan(interval[0], interval[1], color="tab:red", alpha=0.12, label="action interval")
        ax.set_xlim(0, num_video_frames)
    axes[-1].set_xlabel("time (video frame); dotted line = uniform weights, red span = action interval")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_failures(cases: list[dict], path: Path, title: str) -> Path:
    """The paper's Fig. 11: per failure case, a few frames and the top-5 classes with probabilities.

    Each case: ``frames`` (k x H x W x 3 or None), ``top5`` [(name, probability)], ``truth``, ``video``.
    """
    fig, axes = plt.subplots(
        len(cases), 2, figsize=(12, 2.3 * len(cases) + 0.6), squeeze=False, gridspec_kw={"width_ratios": [2.2, 1]}
    )
    for (ax_img, ax_bar), case in zip(axes, cases, strict=True):
        if case.get("frames") is not None:
            ax_img.imshow(np.concatenate(list(case["frames"]), axis=1))
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        ax_img.set_title(f"{case['video']} (true class: {case['truth']})", fontsize=9)
        names = [n for n, _ in case["top5"]][::-1]
        shown = [f"{n} (true)" if n == case["truth"] else n for n in names]
        probs = [p for _, p in case["top5"]][::-1]
        colours = ["tab:green" if n == case["truth"] else "tab:gray" for n in names]
        colours[-1] = "tab:red" if names[-1] != case["truth"] else "tab:green"
        ax_bar.barh(range(len(names)), probs, color=colours)
        for i, p in enumerate(probs):
            ax_bar.text(min(p + 0.02, 0.8), i, f"{p:.3f}", va="center", fontsize=8)
        ax_bar.set_yticks(range(len(names)), shown, fontsize=8)
        ax_bar.set_xlim(0, 1)
        ax_bar.set_xlabel("probability (red: top-1, wrong; green: the true class)", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_training_curves(histories: dict[str, list[list[dict]]], path: Path, title: str) -> Path:
    """Training loss per epoch of each head (one line per seed, one colour per head); heads
    trained for different numbers of epochs (TSN's long schedule) get their own panel."""
    lengths = sorted({len(runs[0]) for runs in histories.values() if runs})
    fig, axes = plt.subplots(1, len(lengths), figsize=(6.5 * len(lengths), 4.6), squeeze=False)
    for ax, length in zip(axes[0], lengths, strict=True):
        for i, (label, runs) in enumerate(histories.items()):
            if not runs or len(runs[0]) != length:
                continue
            colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
            for k, history in enumerate(runs):
                ax.plot(
                    [r["epoch"] for r in history],
                    [r["loss"] for r in history],
                    color=colour,
                    alpha=0.8,
                    marker="." if length <= 20 else None,
                    label=label if k == 0 else None,
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (cross-entropy)")
        ax.set_ylim(bottom=0)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_time_profile(
    attention: np.ndarray | None, grad_cams: dict[str, np.ndarray], inside: np.ndarray, path: Path, title: str
) -> Path:
    """Mean over videos, row by row, of a0 and of Grad-CAM at each layer given (label -> B x T,
    rescaled so that uniform = 1), with the share of videos whose action covers each row:
    whether the curves follow the action or the clock."""
    rows = np.arange(inside.shape[1])
    fig, ax = plt.subplots(figsize=(8, 4.8))
    colours = iter(["tab:red", "tab:orange", "tab:brown"])
    curves = []
    for label, grad_cam in grad_cams.items():
        cam = grad_cam / np.maximum(grad_cam.sum(1, keepdims=True), 1e-12) * grad_cam.shape[1]
        curves.append((f"Grad-CAM {label} (uniform = 1)", cam, next(colours)))
    if attention is not None:
        curves.insert(0, ("attention a0 (uniform = 1)", attention, "tab:purple"))
    for label, values, colour in curves:
        mean, std = values.mean(0), values.std(0)
        ax.plot(rows, mean, color=colour, marker=".", label=f"{label}: mean over videos, band = 1 std")
        ax.fill_between(rows, mean - std, mean + std, color=colour, alpha=0.15)
    ax.axhline(1.0, color="black", linestyle=":", linewidth=1)
    ax.set_xlabel("row of the head's map (time)")
    ax.set_ylabel("weight (1 = uniform)")
    ax.set_ylim(bottom=0)
    share = ax.twinx()
    share.step(
        rows, inside.mean(0), where="mid", color="gray", linewidth=1.5, label="videos whose action covers the row"
    )
    share.set_ylim(0, 1.05)
    share.set_ylabel("share of videos in their action", color="gray")
    lines = ax.get_legend_handles_labels()
    more = share.get_legend_handles_labels()
    ax.legend(
        lines[0] + more[0], lines[1] + more[1], fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2
    )
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)
