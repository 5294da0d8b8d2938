"""Two streams: flow VideoMap stores, time reversal of flow maps, score fusion, `tsmap fuse`."""

import json
import shutil

import cv2
import numpy as np
import pytest
from conftest import TINY_MAPS, write_test_video

from tsmap.cli import main
from tsmap.data.video import FrameGeometry
from tsmap.evaluation.fusion import (
    FLOW_WEIGHT_GRID,
    FusionError,
    align,
    choose_flow_weight,
    fuse_runs,
    fuse_scores,
    softmax,
)
from tsmap.frames import onnx_runtime
from tsmap.frames.encoder import FrameEncoder
from tsmap.frames.flow import decode_flow, make_flow, read_flow_stacks
from tsmap.videomap.extract import video_to_map
from tsmap.videomap.store import VideoMapStore

FLOW = ["--stream", "flow"]


@pytest.fixture(scope="module")
def two_runs(tiny_demo, tmp_path_factory):
    """An RGB and a flow store of the tiny demo, both heads trained (2 epochs) and evaluated on each."""
    out = tmp_path_factory.mktemp("two_stream")
    for stream in ("rgb", "flow"):
        store, run = out / f"store_{stream}", out / f"run_{stream}"
        extra = FLOW if stream == "flow" else []
        assert main(["--quiet", "extract", "--videos", str(tiny_demo), "--store", str(store), *TINY_MAPS, *extra]) == 0
        assert main(["--quiet", "train", "--store", str(store), "--run", str(run), "--epochs", "2"]) == 0
        assert main(["--quiet", "evaluate", "--store", str(store), "--run", str(run)]) == 0
    return out


# --- flow stores ----------------------------------------------------------------------------------------------------


def test_flow_store_records_its_settings_and_shape(two_runs, tiny_demo):
    store = VideoMapStore.open(two_runs / "store_flow")
    s = store.settings
    assert s["stream"] == "flow" and s["flow_method"] == "dis" and s["flow_preset"] == "medium"
    assert s["flow_stack"] == 5 and s["flow_bound"] == 20.0 and "cross-modality" in s["weights"]
    assert s["frames"] == 8 and s["image_size"] == 64 and s["feature_dim"] == 1280
    keys = list(store.keys())
    listed = [(tiny_demo / f"{split}.txt").read_text().split() for split in ("train", "test")]
    assert len(keys) == sum(map(len, listed))
    flow_map = np.asarray(store.read(keys[0]))
    assert flow_map.shape == (8, 1280) and flow_map.dtype == np.float16 and np.all(np.isfinite(flow_map))
    # Another stream's maps of the same video: not the same numbers.
    rgb_map = np.asarray(VideoMapStore.open(two_runs / "store_rgb").read(keys[0]))
    assert np.abs(rgb_map.astype(np.float32) - flow_map).max() > 0.1
    # The RGB store keeps exactly the keys it always had: old RGB stores stay valid.
    rgb = VideoMapStore.open(two_runs / "store_rgb").settings
    assert rgb["stream"] == "rgb" and not any(k.startswith("flow") or k == "weights" for k in rgb)


def test_streams_never_mix_in_a_store(two_runs, tiny_demo, capsys):
    videos = ["--videos", str(tiny_demo)]
    flow_store, rgb_store = str(two_runs / "store_flow"), str(two_runs / "store_rgb")
    assert main(["--quiet", "extract", *videos, "--store", flow_store, *TINY_MAPS]) == 2
    err = capsys.readouterr().err
    assert "holds flow VideoMaps and cannot take rgb ones" in err and "Traceback" not in err
    assert main(["--quiet", "extract", *videos, "--store", rgb_store, *TINY_MAPS, *FLOW]) == 2
    assert "holds rgb VideoMaps and cannot take flow ones" in capsys.readouterr().err
    # Flow computed another way is another store too.
    assert main(["--quiet", "extract", *videos, "--store", flow_store, *TINY_MAPS, *FLOW, "--flow-preset", "fast"]) == 2
    assert "flow_preset: store has 'medium', asked 'fast'" in capsys.readouterr().err
    # Heads trained on one stream refuse to score the other.
    assert main(["evaluate", "--store", rgb_store, "--run", str(two_runs / "run_flow")]) == 2
    assert "trained on flow VideoMaps" in capsys.readouterr().err
    # Options that do not fit the flow stream are named.
    elsewhere = ["--store", str(two_runs / "x"), *FLOW]
    assert main(["extract", *videos, *elsewhere, "--flow", "tvl1", "--flow-preset", "fast"]) == 2
    assert "--flow tvl1 has the presets default" in capsys.readouterr().err


def test_predict_with_a_flow_run_maps_the_video_as_flow(two_runs, tiny_demo, capsys):
    video = tiny_demo / (tiny_demo / "test.txt").read_text().split()[0]
    capsys.readouterr()
    assert main(["predict", str(video), "--run", str(two_runs / "run_flow")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6 and lines[0].endswith(":")


# --- time reversal --------------------------------------------------------------------------------------------------


def _pan_frames(n: int, size: int) -> list[np.ndarray]:
    """Band-limited noise moving 2 px right and 1 px up per frame (a whole-frame translation)."""
    noise = np.random.default_rng(3).uniform(0, 255, (size + n, size + 2 * n)).astype(np.float32)
    img = cv2.GaussianBlur(noise, (0, 0), 1.5)
    big = np.rint((img - img.min()) / (img.max() - img.min()) * 255).astype(np.uint8)
    return [np.repeat(big[k : k + size, 2 * n - 2 * k : 2 * n - 2 * k + size, None], 3, axis=2) for k in range(n)]


def test_time_reversed_video_gives_row_reversed_negated_flow(tmp_path):
    """Reversing a video reverses the rows of its flow map, and each row becomes the flow negated.

    Sampling is mirror-symmetric (even T), so stack T-1-i of the reversed video holds the
    same frame pairs as stack i of the forward one, in reverse order, each pair run
    backwards. The flow of a pair run backwards is the negated flow (exactly so for a
    translation; DIS is not symmetric, which the tolerances absorb), and negating a field
    maps its code q to 255 - q (codes are symmetric about 127.5, the code of zero flow).

    What is asserted, and why it could fail:
      * stacks: reversed = forward with the fields in reverse order and negated, to one
        code step (0.157 px) on >= 99.9 % of the pixels. Pixels where content enters or
        leaves the frame have no true flow; DIS extrapolates there, differently each way.
      * maps: the reversed video's map, rows reversed, is the map of the negated forward
        stacks (relative difference < 0.3), and is far from the forward map itself (> 2x
        that difference): flow features see the direction of motion, where RGB features of
        a reversed video are exactly the row-reversed map (tests/test_videomap.py). The
        tolerance is loose because a 1-2 px translation is a faint input to the ConvNet (the
        flow divided by 20 px), so the border pixels above are a visible share of it.
    """
    frames = _pan_frames(24, 64)
    forward = write_test_video(tmp_path / "forward.mp4", frames)
    backward = write_test_video(tmp_path / "backward.mp4", frames[::-1])
    geometry, dis, t = FrameGeometry(size=64, resize=64), make_flow("dis"), 6
    fwd, _ = read_flow_stacks(forward, t, geometry, dis)
    bwd, _ = read_flow_stacks(backward, t, geometry, dis)
    assert np.allclose(decode_flow(fwd[:, 8:-8, 8:-8])[..., 0::2].mean(), 2, atol=0.1)
    assert np.allclose(decode_flow(fwd[:, 8:-8, 8:-8])[..., 1::2].mean(), -1, atol=0.1)

    fields_reversed = np.array([[2 * (4 - j), 2 * (4 - j) + 1] for j in range(5)]).ravel()
    negated = 255 - fwd[..., fields_reversed]
    steps = np.abs(bwd[::-1].astype(int) - negated.astype(int))
    assert (steps <= 1).mean() >= 0.999

    encoder = FrameEncoder(stream="flow", batch_size=8)
    m_fwd, m_bwd = video_to_map(forward, encoder, t, geometry, dis), video_to_map(backward, encoder, t, geometry, dis)
    assert m_fwd.shape == (t, 1280)
    m_neg = encoder.encode(negated)
    norm = np.linalg.norm(m_bwd)
    to_negated = np.linalg.norm(m_bwd[::-1] - m_neg) / norm
    to_forward = np.linalg.norm(m_bwd[::-1] - m_fwd) / norm
    assert to_negated < 0.3 and to_forward > 2 * to_negated, (to_negated, to_forward)


def test_flow_encoder_is_cross_modality_initialised():
    """conv1 averaged over RGB and replicated: the network sees only the sum of the 10 channels."""
    encoder = FrameEncoder(stream="flow", batch_size=4, engine="torch")
    assert encoder.engine == "torch" and encoder.in_channels == 10
    w = encoder.model._conv_stem.weight
    assert w.shape[1] == 10 and bool((w == w[:, :1]).all())
    rng = np.random.default_rng(0)
    stacks = rng.integers(100, 156, (2, 64, 64, 10), dtype=np.uint8)
    shuffled = stacks[..., rng.permutation(10)]
    np.testing.assert_allclose(encoder.encode(stacks), encoder.encode(shuffled), atol=1e-4)
    with pytest.raises(ValueError, match="N x H x W x 10"):
        encoder.encode(stacks[..., :3])
    if not onnx_runtime.missing_packages():  # the ONNX engine takes 10-channel stacks too, checked against torch
        ort = FrameEncoder(stream="flow", engine="onnx", image_size=64)
        assert ort.engine == "onnx"
        np.testing.assert_allclose(ort.encode(stacks), encoder.encode(stacks), rtol=1e-3, atol=1e-3)


# --- fusion maths ---------------------------------------------------------------------------------------------------


def test_fuse_scores_weights_softmax_and_raw():
    rgb = np.array([[4.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    flow = np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    np.testing.assert_allclose(softmax(rgb).sum(1), 1)
    np.testing.assert_allclose(fuse_scores([rgb, flow]), rgb + 1.5 * flow)  # TSN's: raw scores, 1 : 1.5
    expected = 1.0 * softmax(rgb) + 1.5 * softmax(flow)
    np.testing.assert_allclose(fuse_scores([rgb, flow], (1, 1.5), "softmax"), expected)
    # The weights decide: all on one stream gives that stream's predictions.
    for kind in ("raw", "softmax"):
        assert fuse_scores([rgb, flow], (1, 0), kind).argmax(1).tolist() == [0, 1]
        assert fuse_scores([rgb, flow], (0, 1), kind).argmax(1).tolist() == [1, 2]
    # Raw fusion ranks classes as the weighted sum of log-probabilities does (a per-video
    # constant apart), so an offset of one stream's scores changes no prediction.
    log_probs = np.log(softmax(rgb)) + 1.5 * np.log(softmax(flow))
    raw = fuse_scores([rgb, flow])
    np.testing.assert_allclose(raw - log_probs, (raw - log_probs)[:, :1] * np.ones((1, 3)), atol=1e-9)
    assert fuse_scores([rgb + np.array([[7.0], [-3.0]]), flow]).argmax(1).tolist() == raw.argmax(1).tolist()
    # Softmax fusion does not depend on a stream's logit offset either; it stays finite when exp() overflows.
    np.testing.assert_allclose(fuse_scores([rgb + 7, flow], kind="softmax"), expected)
    assert np.all(np.isfinite(fuse_scores([rgb * 1000, flow], kind="softmax")))
    for bad in ((1, -1), (0, 0), (1, float("nan"))):
        with pytest.raises(FusionError, match="weights"):
            fuse_scores([rgb, flow], bad)
    with pytest.raises(FusionError, match="2 weights for 3 streams"):
        fuse_scores([rgb, flow, flow], (1, 1))
    with pytest.raises(FusionError, match="differ in shape"):
        fuse_scores([rgb, flow[:1]])
    with pytest.raises(FusionError, match="unknown score kind"):
        fuse_scores([rgb, flow], kind="mean")


def test_fuse_runs_aligns_by_key():
    rng = np.random.default_rng(0)
    keys = [f"c{i % 3}/v{i}.mp4" for i in range(9)]
    labels = np.array([i % 3 for i in range(9)])
    rgb, flow = rng.normal(size=(9, 3)), rng.normal(size=(9, 3))
    classes = ["c0", "c1", "c2"]
    straight = fuse_runs([rgb, flow], [keys, keys], [labels, labels], [classes, classes])
    order = rng.permutation(9)
    shuffled = fuse_runs(
        [rgb, flow[order]], [keys, [keys[i] for i in order]], [labels, labels[order]], [classes, classes]
    )
    np.testing.assert_allclose(shuffled["fused"], straight["fused"])
    np.testing.assert_allclose(shuffled["streams"][1], flow)
    assert shuffled["keys"] == keys and shuffled["figures"] == straight["figures"]
    assert set(straight["figures"]) == {"rgb", "flow", "fusion"}
    assert {"top1", "top5", "mean_class_accuracy"} <= set(straight["figures"]["fusion"])
    np.testing.assert_array_equal(align(keys, keys[::-1]), np.arange(9)[::-1])


def test_fuse_runs_mismatches_are_clear_errors():
    keys = ["a/1.mp4", "a/2.mp4", "b/3.mp4"]
    labels = np.array([0, 0, 1])
    s = np.zeros((3, 2))
    classes = ["a", "b"]
    only = "different videos: 1 only in the rgb run .*b/3.mp4.*1 only in the flow run .*b/4.mp4"
    with pytest.raises(FusionError, match=only):
        fuse_runs([s, s], [keys, ["a/1.mp4", "a/2.mp4", "b/4.mp4"]], [labels, labels], [classes, classes])
    with pytest.raises(FusionError, match="different classes"):
        fuse_runs([s, s], [keys, keys], [labels, labels], [classes, ["a", "c"]])
    with pytest.raises(FusionError, match="different classes .*2 vs 3 classes"):
        fuse_runs([s, np.zeros((3, 3))], [keys, keys], [labels, labels], [classes, ["a", "b", "c"]])
    with pytest.raises(FusionError, match="label video #2 differently"):
        fuse_runs([s, s], [keys, keys], [labels, np.array([0, 0, 0])], [classes, classes])
    with pytest.raises(FusionError, match="lists video 'a/1.mp4' twice"):
        fuse_runs([s, s], [keys, ["a/1.mp4", "a/1.mp4", "b/3.mp4"]], [labels, labels], [classes, classes])
    with pytest.raises(FusionError, match="3 score rows, 2 keys"):
        fuse_runs([s, s], [keys, keys[:2]], [labels, labels], [classes, classes])


# --- tsmap fuse -----------------------------------------------------------------------------------------------------


def test_evaluate_records_the_keys_of_the_score_rows(two_runs):
    for stream in ("rgb", "flow"):
        run = two_runs / f"run_{stream}"
        results = json.loads((run / "results.json").read_text())
        keys = json.loads((run / results["scores_keys"]).read_text())
        assert results["stream"] == stream and keys["split"] == "test"
        scores = np.load(run / "scores_videomap.npy")
        assert len(keys["keys"]) == len(keys["labels"]) == len(scores) == results["num_videos"]
        assert [keys["classes"][y] for y in keys["labels"]] == [k.split("/")[0] for k in keys["keys"]]


def test_fuse_end_to_end(two_runs, capsys):
    rgb_run, flow_run, out = two_runs / "run_rgb", two_runs / "run_flow", two_runs / "fusion"
    capsys.readouterr()
    assert main(["fuse", "--runs", str(rgb_run), str(flow_run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "RGB" in printed and "Flow" in printed and "Fusion (1 : 1.5)" in printed
    assert "VideoMap head" in printed and "TSN (25-frame average)" in printed
    summary = json.loads((out / "fusion.json").read_text())
    assert summary["weights"] == {"rgb": 1.0, "flow": 1.5} and summary["scores"] == "raw"
    rgb_results = json.loads((rgb_run / "results.json").read_text())
    for head in ("videomap", "tsn"):
        figures = summary["heads"][head]
        # The streams' own figures are those `tsmap evaluate` wrote.
        assert figures["rgb"]["top1"] == pytest.approx(rgb_results["heads"][head]["top1"])
        for name in ("rgb", "flow", "fusion"):
            assert {"top1", "top5", "mean_class_accuracy", "order_pairs_top1"} <= set(figures[name])
        fused = np.load(out / f"scores_fusion_{head}.npy")
        rgb, flow = np.load(rgb_run / f"scores_{head}.npy"), np.load(flow_run / f"scores_{head}.npy")
        np.testing.assert_allclose(fused, rgb.astype(float) + 1.5 * flow.astype(float))  # same clip order here
    assert (out / "confusion_fusion_videomap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Probabilities and other weights; the default output folder sits next to the RGB run.
    assert main(["fuse", "--runs", str(rgb_run), str(flow_run), "--weights", "1", "1", "--scores", "softmax"]) == 0
    other = json.loads((two_runs / "fusion" / "fusion.json").read_text())
    assert other["scores"] == "softmax" and other["weights"] == {"rgb": 1.0, "flow": 1.0}
    fused = np.load(two_runs / "fusion" / "scores_fusion_videomap.npy")
    rgb, flow = np.load(rgb_run / "scores_videomap.npy"), np.load(flow_run / "scores_videomap.npy")
    np.testing.assert_allclose(fused, softmax(rgb) + softmax(flow))


def test_fuse_user_errors(two_runs, tmp_path, capsys):
    rgb_run, flow_run = two_runs / "run_rgb", two_runs / "run_flow"
    out = ["--out", str(tmp_path / "f")]
    assert main(["fuse", "--runs", str(flow_run), str(rgb_run), *out]) == 2
    assert "RGB run first" in capsys.readouterr().err
    assert main(["fuse", "--runs", str(rgb_run), str(tmp_path), *out]) == 2
    assert "has no results.json" in capsys.readouterr().err
    # A flow run evaluated on other videos, or with other classes.
    other = tmp_path / "other_flow"
    shutil.copytree(flow_run, other)
    keys = json.loads((other / "scores_keys.json").read_text())
    keys["keys"][0] = "elsewhere/clip.mp4"
    (other / "scores_keys.json").write_text(json.dumps(keys))
    assert main(["fuse", "--runs", str(rgb_run), str(other), *out]) == 2
    err = capsys.readouterr().err
    assert "different videos" in err and "elsewhere/clip.mp4" in err and "Traceback" not in err
    keys = json.loads((flow_run / "scores_keys.json").read_text())
    keys["classes"] = keys["classes"][::-1]
    (other / "scores_keys.json").write_text(json.dumps(keys))
    assert main(["fuse", "--runs", str(rgb_run), str(other), *out]) == 2
    assert "different classes" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fuse", "--runs", str(rgb_run), str(flow_run), "--weights", "1", "-1"])


def test_choose_flow_weight_keeps_the_best_fusion_of_the_grid():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    rgb, flow = rng.normal(size=(400, 4)), rng.normal(size=(400, 4))
    rows = np.arange(400)
    rgb[rows, labels] += np.where(labels < 2, 3.0, 0.0)  # RGB knows classes 0 and 1, flow 2 and 3
    flow[rows, labels] += np.where(labels >= 2, 1.0, 0.0)
    weight, sweep = choose_flow_weight(rgb, flow, labels)
    assert [r["flow_weight"] for r in sweep] == list(FLOW_WEIGHT_GRID)
    top1 = {w: np.mean(fuse_scores([rgb, flow], (1, w)).argmax(1) == labels) for w in FLOW_WEIGHT_GRID}
    assert top1[weight] == max(top1.values()) and 0 < weight < 4  # both streams help here
    assert [r["top1"] for r in sweep] == pytest.approx([top1[w] for w in FLOW_WEIGHT_GRID])
    # A stream that knows nothing gets no say; one that knows everything gets the most.
    assert choose_flow_weight(rgb, rng.normal(size=(400, 4)) * 5, labels)[0] == 0.0
    assert choose_flow_weight(rng.normal(size=(400, 4)) * 5, flow * 0 + np.eye(4)[labels], labels)[0] == 4.0


def test_fuse_chooses_weights_on_validation_scores_only(two_runs, tmp_path, capsys):
    runs = {}
    for stream in ("rgb", "flow"):
        runs[stream], store = tmp_path / f"val_{stream}", str(two_runs / f"store_{stream}")
        held_out = ["--epochs", "1", "--val-fraction", "0.5"]  # the fixture's heads hold out no video
        assert main(["--quiet", "train", "--store", store, "--run", str(runs[stream]), *held_out]) == 0
        assert main(["--quiet", "evaluate", "--store", store, "--run", str(runs[stream]), "--subset", "val"]) == 0
    out = tmp_path / "fused_val"
    capsys.readouterr()
    assert main(["fuse", "--runs", str(runs["rgb"]), str(runs["flow"]), "--choose-weights", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "chosen on val" in printed and "fuse the test scores with VideoMap head --weights 1 " in printed
    summary = json.loads((out / "fusion.json").read_text())
    assert summary["split"] == "val" and summary["weights"] is None and summary["weights_chosen_on"] == "val"
    for head in ("videomap", "tsn"):
        figures = summary["heads"][head]
        w = figures["weights"]["flow"]
        rgb, flow = np.load(runs["rgb"] / f"scores_{head}.npy"), np.load(runs["flow"] / f"scores_{head}.npy")
        labels = np.array(json.loads((runs["rgb"] / "scores_keys.json").read_text())["labels"])
        assert w == choose_flow_weight(rgb, flow, labels)[0] and len(figures["weight_sweep"]) == len(FLOW_WEIGHT_GRID)
        np.testing.assert_allclose(np.load(out / f"scores_fusion_{head}.npy"), rgb + w * flow.astype(float))
    # Test scores are refused, and nothing is written; --weights and --choose-weights exclude each other.
    refused = tmp_path / "fused_test"
    args = ["fuse", "--runs", str(two_runs / "run_rgb"), str(two_runs / "run_flow"), "--out", str(refused)]
    assert main([*args, "--choose-weights"]) == 2
    err = capsys.readouterr().err
    assert "--choose-weights reads validation scores" in err and "--subset val" in err and "Traceback" not in err
    assert not refused.exists()
    with pytest.raises(SystemExit) as exc:
        main([*args, "--choose-weights", "--weights", "1", "1"])
    assert exc.value.code == 2


def test_fuse_and_stream_options_are_explained():
    from tsmap.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    checked = (("fuse", None), ("extract", "--stream"), ("extract", "--flow-preset"), ("demo", "--streams"))
    for command, option in checked:
        for action in commands[command]._actions:
            if action.option_strings and action.dest != "help" and option in (None, *action.option_strings):
                assert action.help and len(action.help) > 10, f"{command} {action.option_strings} has no help"
    args = build_parser().parse_args(["demo", "--streams", "flow,rgb"])
    assert args.streams == ("rgb", "flow")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--streams", "flow"])
