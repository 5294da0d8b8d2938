"""The report as a document (report.md, report.html), its CSV tables and report.json.

``document(report)`` returns blocks, one function per section: ("h", level, text),
("p", text), ("table", header, rows), ("img", file, caption); ``to_markdown`` and
``to_html`` render them."""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

from tsmap.fileio import atomic_write_text, write_json
from tsmap.report.analysis import EARLY_CAM_LAYERS
from tsmap.report.experiments import METRICS


# -- cells -----------------------------------------------------------------------------
def _pct(s: dict | None) -> str:
    return "-" if s is None else f"{s['mean'] * 100:.1f} ± {s['std'] * 100:.1f}"


def _range(s: dict | None) -> str:
    return "-" if s is None else f"{s['min'] * 100:.1f}-{s['max'] * 100:.1f}"


def _seeds(s: dict | None) -> str:
    return "-" if s is None else " / ".join(f"{v * 100:.1f}" for v in s["per_seed"])


def _share(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


# -- sections --------------------------------------------------------------------------
def document(report: dict) -> list[tuple]:
    """The report as blocks: ("h", level, text), ("p", text), ("table", header, rows), ("img", file, caption)."""
    return [
        *intro_section(report),
        *protocol_section(report),
        *design_sections(report),
        *density_section(report),
        *explained_heads_section(report),
        *localization_section(report),
        *closing_section(report),
    ]


def intro_section(report: dict) -> list[tuple]:
    s = report["store_settings"]
    reused = ""
    if report["heads_reused"]:
        reused = f" ({report['heads_reused']} of the {report['heads_total']} heads reused from an earlier run)"
    return [
        ("h", 1, "Temporal-Spatial Mapping: the paper's experiments"),
        (
            "p",
            f"Store {report['store']}: {len(report['classes'])} classes, {s.get('stream', 'rgb')} maps, "
            f"T = {s['frames']}, {s['backbone']} at {s['image_size']} px, L = {s['feature_dim']}; "
            f"{report['num_train_maps']} training maps, {report['num_val_maps']} validation maps, "
            f"{report['num_test_maps']} test maps. Built in {report['timings_s']['total']:.0f} s{reused}.",
        ),
    ]


def splits_text(report: dict) -> str:
    """Which split each figure comes from."""
    fraction = report["options"]["val_fraction"]
    if report["num_val_maps"]:
        val = (
            f"Validation: {report['num_val_maps']} maps, {fraction:.0%} of each class's training clips (seeded), "
            "never trained on; each head keeps the weights of its best epoch on them, and the 'val top-1' "
            "column is measured on them."
        )
    else:
        val = (
            f"Validation: none ({fraction:.0%} of each class's training clips rounds to no clip); each head "
            "keeps its last epoch."
        )
    per_class = report["options"]["train_per_class"]
    taken = f"up to {per_class} per class, spread evenly over" if per_class else "all of"
    return (
        f"Splits. Training: {report['num_train_maps']} maps ({taken} each class's training clips left after "
        f"the validation ones). {val} Test: {report['num_test_maps']} maps of the test split, "
        "scored once per trained head; every other figure of this report (Fig. 5 to 11) is a test figure too. "
        "Nothing is chosen on test: the schedules and learning rates are the report's options; to change "
        "them, compare the val column."
    )


def protocol_section(report: dict) -> list[tuple]:
    cfg = report["train_configs"]
    seeds = ", ".join(map(str, report["seeds"]))
    return [
        ("h", 2, "Protocol"),
        ("p", splits_text(report)),
        (
            "p",
            f"Every row is trained with seeds {seeds} (initial weights, batch order, dropout) on the same "
            "training maps; cells show the mean ± the sample standard deviation over the seeds, then the range "
            f"and each seed. Head designs: {cfg['conv3']['epochs']} epochs, batches of "
            f"{cfg['conv3']['batch_size']}, SGD momentum 0.9, weight decay {cfg['conv3']['weight_decay']}, lr "
            f"{cfg['conv3']['lr']} (LSTM {cfg['lstm']['lr']}, AlexNet-style {cfg['alexnet']['lr']}) divided by 10 "
            f"after 70 % of the steps; TSN {cfg['tsn']['epochs']} epochs, batches of {cfg['tsn']['batch_size']}, "
            f"lr {cfg['tsn']['lr']}, averaging the scores of all the map's rows at test. Table II's heads have no "
            "attention (the paper's 3-layer row is its Table III 'w/o Attn.' row); the 3-layer no-attention head "
            "is trained once for both tables.",
        ),
        (
            "p",
            "Designs (tsmap/heads/ablation_heads.py): 1-layer ConvNet = one block of the paper's head (5x5 conv, "
            "16 channels, ReLU, 3x3 max-pool stride 2), dropout 0.5, FC; AlexNet-style = five convs (11x11 stride "
            "2, 5x5, three 3x3; 24-48-64-64-48 channels, each with BatchNorm), three max-pools, FC 512-512-classes "
            "with dropout 0.5; 3-layer LSTM (hidden 256, dropout 0.5 between layers) classifying the mean over time "
            "of its top layer's outputs. In a short schedule a row shows how fast a design learns as much as what "
            "it can learn: see the training losses.",
        ),
    ]


def design_table(rows: dict[str, dict]) -> tuple:
    groups = [m for m in METRICS if m.endswith("_top1") and m != "top1" and m in next(iter(rows.values()))]
    header = ["design", "val top-1 (%)", "test top-1 (%)", "test top-1 range", "test top-1 per seed"]
    header += ["test top-5 (%)", "test mean class acc. (%)"]
    header += [f"test {m[: -len('_top1')].replace('_', ' ')} top-1 (%)" for m in groups]
    body = [
        [r["label"], _pct(r.get("val_top1")), _pct(r["top1"]), _range(r["top1"]), _seeds(r["top1"]), _pct(r["top5"])]
        + [_pct(r["mean_class_accuracy"])]
        + [_pct(r.get(m)) for m in groups]
        for r in rows.values()
    ]
    return ("table", header, body)


def design_sections(report: dict) -> list[tuple]:
    figures = report["figures"]
    return [
        ("h", 2, "Table II: head designs"),
        design_table(report["table2"]),
        ("img", figures["table2"], "Test top-1 of each head design: mean over seeds, 1 std, each seed."),
        ("img", figures["training"], "Training loss per epoch of every design and seed."),
        ("h", 2, "Table III: temporal attention"),
        design_table(report["table3"]),
        ("img", figures["table3"], "Test top-1 of the attention variants of the 3-layer head."),
    ]


def density_section(report: dict) -> list[tuple]:
    d, frames = report["density"], report["store_settings"]["frames"]
    blocks: list[tuple] = [("h", 2, "Fig. 5: density of temporal sampling at test time")]
    if not d["densities"]:
        return blocks + [("p", f"Not measured: {d['source']}.")]
    blocks.append(
        (
            "p",
            f"Maps: {d['source']}. Protocol: {d['protocol']}. {d['num_videos']} test videos. A head trained at "
            f"T = {frames} sees at most {frames} distinct frames, so above that its curve can only stay level (the "
            "paper trains at T = 256); below it, rows are repeated. TSN's linear classifier sees every T' frame.",
        )
    )
    run = d["run"]
    rows = [
        [str(t), _pct(d["videomap"][str(t)]), _seeds(d["videomap"][str(t)]), _pct(d["tsn"][str(t)])]
        + [f"{run[kind][i] * 100:.1f}" for kind in ("videomap", "tsn") if kind in run]
        for i, t in enumerate(d["densities"])
    ]
    header = ["T'", "VideoMap head A0A1A2 test top-1 (%)", "per seed", "TSN test top-1 (%)"]
    header += [f"run's {name} (%)" for kind, name in (("videomap", "VideoMap head"), ("tsn", "TSN")) if kind in run]
    return blocks + [("table", header, rows), ("img", report["figures"]["density"], "Fig. 5.")]


def explained_heads_section(report: dict) -> list[tuple]:
    labels = report["main_head_labels"]
    blocks: list[tuple] = [
        ("h", 2, "Figs. 6, 9-10, 11: the explained heads"),
        ("p", f"Heads: {report['main_heads']}. Figures on the test split."),
        (
            "table",
            ["head", "test top-1 (%)", "test top-5 (%)", "test mean class acc. (%)"],
            [
                [labels[k], *(f"{f[m] * 100:.1f}" for m in ("top1", "top5", "mean_class_accuracy"))]
                for k, f in report["main_figures"].items()
            ],
        ),
        ("img", report["figures"]["class_gain"], "Fig. 6: per-class gain over TSN."),
    ]
    for name, group in zip(report["figures"]["confusion"], report["confusion_groups"], strict=True):
        blocks.append(("img", name, f"Figs. 9-10: partial confusion matrix of {', '.join(group)}."))
    if not report["confusion_groups"]:
        blocks.append(("p", "No confusions between classes: no partial confusion matrix to show."))
    if not report["failures"]:
        return blocks + [("p", "The VideoMap head classifies every test video correctly: no failure case.")]
    failures = [[f["video"], f["truth"], ", ".join(f"{n} {p:.3f}" for n, p in f["top5"])] for f in report["failures"]]
    return blocks + [
        ("table", ["video", "true class", "top-5 (probability)"], failures),
        ("img", report["figures"]["failures"], "Fig. 11: failure cases."),
    ]


def _share_row(name: str, m: dict) -> list[str]:
    keys = ("attention_share", "grad_cam_share", "interval_share_rows", "interval_share_frames")
    above = ("attention_share_above_interval", "grad_cam_share_above_interval")
    return [name, str(m["videos"]), *(_share(m[k]) for k in keys), *(_share(m[k]) for k in above)]


def localization_section(report: dict) -> list[tuple]:
    blocks: list[tuple] = [("h", 2, "Fig. 8: attention and Grad-CAM over time")]
    loc = report["localization"]
    if loc.get("available"):
        blocks += share_tables(loc, report["seeds"])
    else:
        blocks.append(("p", f"Shares on the action not measured: {loc['reason']}."))
    if "time_profile" in report["figures"]:
        caption = (
            "Attention a0 and Grad-CAM row by row, mean over the test videos, against the share of videos whose "
            "action covers the row: curves that follow the action rise where that share is high."
        )
        blocks.append(("img", report["figures"]["time_profile"], caption))
    for fig in report["figures"]["explained"]:
        blocks.append(
            ("img", fig["file"], f"Fig. 8, {fig['video']}: frames, VideoMap, attention a0 and Grad-CAM over time.")
        )
    return blocks


def share_tables(loc: dict, seeds: list[int]) -> list[tuple]:
    m = loc["main"]
    rows = [_share_row("explained head", m)]
    rows += [_share_row(f"A0A1A2 seed {s}", ms) for s, ms in zip(seeds, loc["a0a1a2_seeds"], strict=True)]
    rows += [
        _share_row(f"A0A1A2, global FC, seed {s}", ms) for s, ms in zip(seeds, loc["a0a1a2_global_seeds"], strict=True)
    ]
    header = ["head", "videos", "attention on action", "Grad-CAM on action", "action's share of rows"]
    header += ["action's share of frames", "videos: attention above", "videos: Grad-CAM above"]
    blocks: list[tuple] = [
        (
            "p",
            "Share of the attention a0 and of the Grad-CAM (conv-3 layer, true class) that falls on the rows "
            "showing frames of the action interval, mean over the test videos; a curve that ignores time would "
            "get the interval's share of the rows.",
        ),
        ("table", header, rows),
    ]
    layers = [
        [name, _share(m.get(key)), _share(m.get(key + "_above_interval"))]
        for name, key in (
            ("conv-1 (a cell per row)", "grad_cam_share_conv1"),
            ("conv-2 (a cell per 2 rows)", "grad_cam_share_conv2"),
            ("conv-3 (a cell per 4 rows, the paper's)", "grad_cam_share"),
        )
        if m.get(key) is not None
    ]
    if len(layers) > 1:
        blocks += [
            (
                "p",
                "Grad-CAM of the explained head by layer: the earlier convs see a few rows each, conv-3's cells "
                f"span 4 rows and each sees 35 rows of the map. The action covers {_share(m['interval_share_rows'])} "
                "of the rows.",
            ),
            ("table", ["layer", "Grad-CAM on action", "videos: Grad-CAM above"], layers),
        ]
    if m.get("attention_spread_between_videos") is not None:
        blocks.append(("p", attention_spread_text(m)))
    return blocks


def attention_spread_text(m: dict) -> str:
    between, within = m["attention_spread_between_videos"], m["attention_spread_within_video"]
    verdict = (
        "The first is under a tenth of the second: a0 is close to one profile over positions shared by every "
        "video, not a response to what the rows show."
        if between < 0.1 * within
        else "It changes with the video, not only with the position."
    )
    return (
        f"Does a0 respond to the video? Between videos, at the same row, it varies by {between:.4f} (standard "
        f"deviation, mean over rows); between the rows of one video, by {within:.4f}. {verdict}"
    )


def closing_section(report: dict) -> list[tuple]:
    return [
        ("h", 2, "Checks"),
        (
            "table",
            ["claim", "holds", "numbers"],
            [[c["claim"], "yes" if c["holds"] else "NO", c["numbers"]] for c in report["checks"]],
        ),
        ("h", 2, "Time"),
        ("table", ["stage", "seconds"], [[k, f"{v:.0f}"] for k, v in report["timings_s"].items()]),
        (
            "p",
            "Every number is in report.json; tables as CSV: table2_heads.csv, table3_attention.csv, density.csv, "
            "per_class.csv, localization.csv.",
        ),
    ]


# -- rendering -------------------------------------------------------------------------
def to_markdown(blocks: list[tuple]) -> str:
    lines = []
    for block in blocks:
        if block[0] == "h":
            lines += ["#" * block[1] + " " + block[2], ""]
        elif block[0] == "p":
            lines += [block[1], ""]
        elif block[0] == "table":
            header, rows = block[1], block[2]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
            lines.append("")
        elif block[0] == "img":
            lines += [f"![{block[2]}]({block[1]})", "", f"*{block[2]}*", ""]
    return "\n".join(lines)


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:3px 8px;font-size:90%}"
    "th{background:#eee}img{max-width:100%}figcaption{font-style:italic;color:#444}"
)


def to_html(blocks: list[tuple]) -> str:
    e = html.escape
    body = []
    for block in blocks:
        if block[0] == "h":
            body.append(f"<h{block[1]}>{e(block[2])}</h{block[1]}>")
        elif block[0] == "p":
            body.append(f"<p>{e(block[1])}</p>")
        elif block[0] == "table":
            head = "".join(f"<th>{e(str(c))}</th>" for c in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif block[0] == "img":
            body.append(
                f'<figure><img src="{e(block[1])}" alt="{e(block[2])}"><figcaption>{e(block[2])}</figcaption></figure>'
            )
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>tsmap report</title><style>{STYLE}</style>"
        f"</head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# -- files -----------------------------------------------------------------------------
def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


def design_csv_rows(report: dict, table: str) -> list[list]:
    rows = []
    for key, r in report[table].items():
        for metric in ("val_top1", *METRICS):
            if r.get(metric) is not None:
                s = r[metric]
                rows.append([key, r["label"], metric, s["mean"], s["std"], s["min"], s["max"], *s["per_seed"]])
    return rows


def density_csv_rows(d: dict) -> list[list]:
    rows = [
        [t, kind, s["mean"], s["std"], s["min"], s["max"], *s["per_seed"]]
        for t in d["densities"]
        for kind in ("videomap", "tsn")
        for s in [d[kind][str(t)]]
    ]
    rows += [
        [t, f"run {kind}", v, "", "", ""]
        for kind, vs in d["run"].items()
        for t, v in zip(d["densities"], vs, strict=True)
    ]
    return rows


def write_outputs(report: dict, out_dir: Path) -> None:
    """report.json, the CSV tables, report.md and report.html in ``out_dir`` (each written atomically)."""
    seed_cols = [f"seed {s}" for s in report["seeds"]]
    for table, name in (("table2", "table2_heads.csv"), ("table3", "table3_attention.csv")):
        header = ["design", "label", "metric", "mean", "std", "min", "max", *seed_cols]
        write_csv(out_dir / name, header, design_csv_rows(report, table))
    header = ["T'", "head", "mean", "std", "min", "max", *seed_cols]
    write_csv(out_dir / "density.csv", header, density_csv_rows(report["density"]))
    keys = ["class", "videomap_top1", "tsn_top1", "gain", "test_videos"]
    write_csv(out_dir / "per_class.csv", keys, [[r[k] for k in keys] for r in report["per_class"]])
    keys = ["video", "attention_share", "grad_cam_share"]
    keys += [f"grad_cam_share_{layer}" for layer in EARLY_CAM_LAYERS] + ["interval_share_rows", "interval_share_frames"]
    per_video = report["localization"].get("main_per_video", [])
    write_csv(out_dir / "localization.csv", keys, [[r.get(k) for k in keys] for r in per_video])
    write_json(out_dir / "report.json", report)
    blocks = document(report)
    atomic_write_text(out_dir / "report.md", to_markdown(blocks))
    atomic_write_text(out_dir / "report.html", to_html(blocks))
