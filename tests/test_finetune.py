"""Stage 1 (TSN fine-tuning of the frame ConvNet) and the backbones extraction can load."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY_MAPS
from torch import nn

from tsmap.cli import build_parser, main
from tsmap.cli.finetune import use_flips
from tsmap.data.datasets import Clip, folder_dataset
from tsmap.finetune.data import SCALES, Crop, SnippetDataset, apply_crop, multiscale_crop, segment_positions
from tsmap.finetune.train import FinetuneConfig, Normalise, SnippetClassifier, batchnorms, finetune, save_finetuned
from tsmap.frames import onnx_runtime
from tsmap.frames.backbones import BackboneError, build_backbone
from tsmap.frames.bninception import MEAN_BGR, BNInception, _flat_names
from tsmap.frames.encoder import FrameEncoder
from tsmap.frames.flow import decode_flow, encode_flow, make_flow


def test_segment_positions_one_random_position_per_segment():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        pos = segment_positions(30, 3, rng)
        assert [p // 10 for p in pos] == [0, 1, 2]  # one in each of the 3 segments, in order
        seen.update(pos.tolist())
    assert len(seen) == 30  # every frame gets drawn: positions are random within segments
    short = segment_positions(2, 3, rng)
    assert len(short) == 3 and np.all(np.diff(short) >= 0) and short.max() <= 1


def test_multiscale_crop_sizes_positions_and_flips():
    rng = np.random.default_rng(0)
    height, width, size = 120, 160, 96
    allowed = {size if abs(int(120 * s) - size) < 3 else int(120 * s) for s in SCALES}
    crops = [multiscale_crop(height, width, size, rng) for _ in range(2000)]
    for c in crops:
        assert c.height in allowed and c.width in allowed
        assert 0 <= c.top and c.top + c.height <= height and 0 <= c.left and c.left + c.width <= width
    sides = sorted(allowed, reverse=True)
    ratios = {(sides.index(c.height), sides.index(c.width)) for c in crops}
    assert all(abs(i - j) <= 1 for i, j in ratios) and (0, 1) in ratios and (3, 3) in ratios
    assert len({(c.top, c.left, c.height, c.width) for c in crops}) > 40
    flips = np.mean([c.flip for c in crops])
    assert 0.4 < flips < 0.6
    assert not any(multiscale_crop(height, width, size, rng, flip=False).flip for _ in range(50))


def test_flips_default_to_off_where_classes_may_be_direction_specific():
    assert [use_flips("auto", d) for d in ("folder", "list", "hmdb51", "ucf101")] == [False, False, True, True]
    assert use_flips("on", "folder") and not use_flips("off", "hmdb51")
    args = build_parser().parse_args(["finetune", "--videos", "v", "--out", "o", "--no-flip", "--dataset", "hmdb51"])
    assert args.flip == "off"


def test_flipped_flow_stack_is_the_mirrored_negated_x_flow():
    rng = np.random.default_rng(1)
    fields = rng.uniform(-15, 15, (5, 32, 40, 2)).astype(np.float32)
    stack = np.concatenate([encode_flow(f) for f in fields], axis=-1)[None]  # 1 x H x W x 10
    out = apply_crop(stack, Crop(0, 0, 32, 40, flip=True), 32, flow=True)  # full frame, resized to 32 x 32
    plain = apply_crop(stack, Crop(0, 0, 32, 40, flip=False), 32, flow=True)
    for j in range(5):
        got = decode_flow(out[0, :, :, 2 * j : 2 * j + 2])
        want = decode_flow(plain[0, :, :, 2 * j : 2 * j + 2])[:, ::-1]
        np.testing.assert_allclose(got[..., 0], -want[..., 0], atol=0.2)  # one uint8 step is 40/255 px
        np.testing.assert_allclose(got[..., 1], want[..., 1], atol=0.2)


def _classifier(partial_bn: bool) -> SnippetClassifier:
    backbone, _ = build_backbone("efficientnet_lite0")
    return SnippetClassifier(backbone, 1280, 4, dropout=0.5, partial_bn=partial_bn).train()


@pytest.mark.parametrize("partial_bn", [True, False])
def test_partial_bn_updates_only_the_first_batchnorm(partial_bn):
    torch.manual_seed(0)
    model = _classifier(partial_bn)
    bns = batchnorms(model.backbone)
    before = [(bn.running_mean.clone(), bn.running_var.clone(), bn.weight.clone()) for bn in bns]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    x = torch.randn(2, 3, 3, 64, 64) * 2 + 0.5
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), torch.tensor([0, 1])).backward()
        opt.step()
    changed = [
        not (torch.equal(bn.running_mean, m) and torch.equal(bn.running_var, v) and torch.equal(bn.weight, w))
        for bn, (m, v, w) in zip(bns, before, strict=True)
    ]
    assert changed[0]
    if partial_bn:
        assert not any(changed[1:])
    else:
        assert all(changed[1:])


@pytest.fixture(scope="module")
def tiny_train(tiny_demo):
    """4 of the demo's classes that differ in appearance (not time reversals of each other,
    which a snippet average cannot tell apart), 2 training videos each, labelled 0-3."""
    dataset = folder_dataset(tiny_demo)
    keep = ["brighten", "circle_to_square", "dotted_patch", "striped_patch"]
    new = {dataset.classes.index(name): i for i, name in enumerate(keep)}
    return dataset, [Clip(c.key, new[c.label]) for c in dataset.clips("train") if c.label in new]


def _mean_loss(model: SnippetClassifier, data: SnippetDataset, normalise: Normalise) -> float:
    data.set_epoch(0)
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([data.clips[i].label for i in range(len(data))])
    model.eval()
    with torch.no_grad():
        return nn.functional.cross_entropy(model(normalise(x)), y).item()


def test_finetune_lowers_the_training_loss(tiny_train, tmp_path):
    dataset, clips = tiny_train
    data = SnippetDataset(clips, dataset.root, segments=3, size=64, resize=72, flip=False, seed=0)
    config = FinetuneConfig(epochs=8, batch_size=4, lr=0.001, lr_steps=[100], dropout=0.5, seed=0)
    torch.manual_seed(0)
    backbone, _ = build_backbone("efficientnet_lite0")
    start = SnippetClassifier(backbone, 1280, 4, 0.5, True)
    normalise = Normalise(*([127.5] * 3,) * 2)
    data_eval = SnippetDataset(clips, dataset.root, segments=3, size=64, resize=72, flip=False, seed=99)
    before = _mean_loss(start, data_eval, normalise)  # fc starts near zero: ~ln(4)
    model, history, skipped = finetune(
        start.backbone, "efficientnet_lite0", "rgb", data, 4, config, workers=0, show_progress=False
    )
    after = _mean_loss(model, data_eval, normalise)
    assert len(history) == 8 and skipped == {}
    assert after < 0.7 * before, (before, after, history)

    # The checkpoint feeds extraction: the encoder's features are the fine-tuned network's.
    path = tmp_path / "rgb-efficientnet_lite0.pt"
    save_finetuned(path, model, "efficientnet_lite0", "rgb", list("abcd"), "imagenet", config, history, data)
    enc = FrameEncoder(weights=path, engine="torch")
    assert enc.weights.startswith("finetuned sha256:")
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        want = model.backbone.eval().features(normalise(torch.from_numpy(frames)[None])[0])
    np.testing.assert_allclose(enc.encode(frames), want.numpy(), rtol=1e-3, atol=1e-3)
    default = FrameEncoder(engine="torch").encode(frames)
    assert np.abs(default - want.numpy()).max() > 1e-2  # fine-tuning changed the features
    with pytest.raises(BackboneError, match="fine-tuned as a efficientnet_lite0 rgb"):
        build_backbone("efficientnet_lite0", "flow", path)


def test_finetune_flow_snippets_are_ten_channel_stacks(tiny_train):
    dataset, clips = tiny_train
    data = SnippetDataset(clips[:2], dataset.root, segments=3, size=48, resize=56, flow=make_flow("dis", "fast"))
    x, label = data[0]
    assert x.shape == (3, 48, 48, 10) and x.dtype == torch.uint8 and label == clips[0].label
    data.set_epoch(1)
    assert not torch.equal(data[0][0], x)  # new positions and crop each epoch
    data.set_epoch(0)
    assert torch.equal(data[0][0], x)  # ... and the same ones again for the same epoch (resume)


def _mmaction_bninception(path, seed: int = 0) -> BNInception:
    torch.manual_seed(seed)
    model = BNInception().eval()
    flat = _flat_names(model)
    state = {f"backbone.{flat[k]}": v for k, v in model.state_dict().items() if k in flat}
    torch.save({"meta": {"epoch": 1}, "state_dict": state}, path)
    return model


def test_bninception_encoder_from_an_mmaction_checkpoint(tmp_path):
    ref = _mmaction_bninception(tmp_path / "tsn_bninception.pth")
    enc = FrameEncoder("bninception", weights=tmp_path / "tsn_bninception.pth", engine="torch")
    frames = np.random.default_rng(0).integers(0, 256, (2, 96, 96, 3), dtype=np.uint8)
    got = enc.encode(frames)
    assert got.shape == (2, 1024)
    bgr = torch.from_numpy(frames[..., ::-1].copy()).permute(0, 3, 1, 2).float() - torch.tensor(MEAN_BGR).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        want = ref.features(bgr).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    if not onnx_runtime.missing_packages():  # BN-Inception on ONNX Runtime: exported, checked, the same features
        ort = FrameEncoder("bninception", weights=tmp_path / "tsn_bninception.pth", engine="onnx", image_size=96)
        np.testing.assert_allclose(ort.encode(frames), got, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    flow = FrameEncoder("bninception", weights=tmp_path / "tsn_bninception.pth", stream="flow", engine="torch")
    assert flow.weights.startswith("checkpoint sha256:") and flow.in_channels == 10
    with pytest.raises(BackboneError, match="no weights built in"):
        FrameEncoder("bninception")


def test_cli_finetune_then_extract_and_predict_with_its_weights(tiny_demo, tmp_path, capsys):
    videos = tmp_path / "videos"
    shutil.copytree(tiny_demo, videos)
    bad = folder_dataset(videos).clips("train")[3].key
    (videos / bad).write_bytes(b"not a video")  # skipped and named, the rest trains
    out = tmp_path / "ft"
    rc = main(
        ["--quiet", "finetune", "--videos", str(videos), "--out", str(out), "--epochs", "1", "--batch-size", "8"]
        + ["--image-size", "64", "--resize", "72", "--workers", "2"]
    )
    assert rc == 0
    ckpt = out / "rgb-efficientnet_lite0.pt"
    printed = capsys.readouterr().out
    assert "flips off (--flip auto)" in printed  # a folder dataset's classes may be direction-specific
    assert "training loss" in printed and f"skipped (unreadable): {videos / bad}" in printed and ckpt.is_file()
    store = tmp_path / "store"
    assert (
        main(["--quiet", "extract", "--videos", str(videos), "--store", str(store), "--weights", str(ckpt)] + TINY_MAPS)
        == 1  # done, but the unreadable video failed: exit status 1
    )
    settings = json.loads((store / "store.json").read_text())
    assert settings["weights"].startswith("finetuned sha256:")
    assert settings["weights_file"] == str(ckpt.resolve())
    # The same weights elsewhere are the same maps: the store takes the new place.
    moved = ckpt.rename(tmp_path / "elsewhere.pt")
    argv = ["--quiet", "extract", "--videos", str(videos), "--store", str(store), "--weights", str(moved)]
    assert main(argv + TINY_MAPS) == 1  # the unreadable video fails again: exit status 1
    assert json.loads((store / "store.json").read_text())["weights_file"] == str(moved.resolve())
    ckpt = moved
    # The same store cannot take maps made with the ImageNet weights.
    assert main(["--quiet", "extract", "--videos", str(videos), "--store", str(store)] + TINY_MAPS) == 2
    assert "weights" in capsys.readouterr().err
    run = tmp_path / "run"
    assert (
        main(["--quiet", "train", "--store", str(store), "--run", str(run), "--epochs", "1", "--head", "videomap"]) == 0
    )
    video = videos / folder_dataset(videos).clips("test")[0].key
    assert main(["--quiet", "predict", str(video), "--run", str(run)]) == 0
    ckpt.write_bytes(ckpt.read_bytes() + b"changed")  # predict refuses weights that changed since extraction
    assert main(["--quiet", "predict", str(video), "--run", str(run)]) == 2


def test_finetune_resumes_only_a_run_with_the_same_inputs(tiny_train, tmp_path, capsys):
    dataset, clips = tiny_train
    state = tmp_path / "state.pt"
    config = FinetuneConfig(epochs=1, batch_size=4, lr=0.001, lr_steps=[100], dropout=0.5)

    def run(resize: int) -> list[dict]:
        data = SnippetDataset(clips, dataset.root, segments=2, size=48, resize=resize, flip=False)
        backbone, _ = build_backbone("efficientnet_lite0")
        _, history, _ = finetune(backbone, "efficientnet_lite0", "rgb", data, 4, config, workers=0, state_path=state)
        return history

    first = run(56)
    capsys.readouterr()
    assert run(56) == first and "resuming" in capsys.readouterr().out  # the saved state, nothing retrained
    run(64)  # other frames: the saved state must not be continued with them
    assert "left by a run with other settings" in capsys.readouterr().out
