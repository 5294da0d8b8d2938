"""BN-Inception: shapes, size, checkpoint key layouts, cross-modality initialisation."""

from __future__ import annotations

import argparse
import copy
import re

import pytest
import torch
from torch import nn

from tsmap.frames.bninception import (
    FEATURE_DIM,
    MEAN_BGR,
    MEAN_RGB,
    BNInception,
    cross_modality_init,
    fold_bninception_batchnorm,
    load_bninception_state_dict,
    rgb_input,
)
from tsmap.frames.efficientnet_lite import EfficientNetLite0, SameConv2d

SMALL = 64  # smallest convenient input: the last feature maps are 2 x 2

# Layer names and shapes as in TSN's bn_inception.yaml / the Caffe model (spot checks).
REFERENCE_SHAPES = {
    "conv1_7x7_s2.weight": (64, 3, 7, 7),
    "conv1_7x7_s2_bn.running_mean": (64,),
    "conv2_3x3_reduce.weight": (64, 64, 1, 1),
    "conv2_3x3.weight": (192, 64, 3, 3),
    "inception_3a_1x1.weight": (64, 192, 1, 1),
    "inception_3a_pool_proj.weight": (32, 192, 1, 1),
    "inception_3b_3x3.weight": (96, 64, 3, 3),
    "inception_3c_3x3.weight": (160, 128, 3, 3),
    "inception_3c_double_3x3_2.weight": (96, 96, 3, 3),
    "inception_4a_1x1.weight": (224, 576, 1, 1),
    "inception_4c_pool_proj.weight": (128, 576, 1, 1),
    "inception_4d_1x1.weight": (96, 608, 1, 1),
    "inception_4e_double_3x3_2.weight": (256, 256, 3, 3),
    "inception_5a_1x1.weight": (352, 1056, 1, 1),
    "inception_5b_double_3x3_1.weight": (224, 192, 3, 3),
    "inception_5b_pool_proj_bn.running_var": (128,),
}


def randomised(seed: int = 0, **kwargs) -> BNInception:
    """A model whose BN statistics and affine parameters are not the defaults, in eval mode."""
    torch.manual_seed(seed)
    model = BNInception(**kwargs)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def caffe_layout(model: BNInception) -> dict[str, torch.Tensor]:
    """The flat Caffe names of TSN-PyTorch / mmaction / pretrainedmodels, written out independently:
    ``inception_3a.conv_1x1.conv.weight`` -> ``inception_3a_1x1.weight``, ``.bn.x`` -> ``inception_3a_1x1_bn.x``."""
    out = {}
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            continue
        unit, kind, param = re.fullmatch(r"(.+)\.(conv|bn)\.(\w+)", key).groups()
        unit = unit.replace(".conv_", "_")
        out[f"{unit}.{param}" if kind == "conv" else f"{unit}_bn.{param}"] = value.clone()
    return out


def fresh() -> BNInception:
    """A model with uninitialised weights, to load into (initialising 10 M weights is slow on CPU)."""
    with torch.device("meta"):
        model = BNInception()
    return model.to_empty(device="cpu").eval()


def assert_same_outputs(a: BNInception, b: BNInception, x: torch.Tensor) -> None:
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


@pytest.fixture(scope="module")
def source() -> BNInception:
    return randomised()


@pytest.fixture(scope="module")
def flat(source) -> dict[str, torch.Tensor]:
    """``source`` in the flat Caffe layout; tests copy the dict before changing it."""
    return caffe_layout(source)


@pytest.fixture(scope="module")
def x_small() -> torch.Tensor:
    return torch.randn(1, 3, SMALL, SMALL, generator=torch.Generator().manual_seed(1)) * 50


@pytest.fixture(scope="module")
def y_small(source, x_small) -> torch.Tensor:
    with torch.no_grad():
        return source(x_small)


def assert_loaded(model: BNInception, x: torch.Tensor, y: torch.Tensor) -> None:
    with torch.no_grad():
        assert torch.equal(model(x), y)


@pytest.fixture(scope="module")
def plain() -> BNInception:
    return BNInception().eval()


def test_features_224(plain):
    model = plain
    with torch.no_grad():
        f = model.features(torch.randn(2, 3, 224, 224))
    assert f.shape == (2, FEATURE_DIM)
    assert torch.isfinite(f).all()


@pytest.mark.parametrize(("size", "spatial"), [(SMALL, 2), (80, 3), (96, 3)])
def test_features_small_inputs(plain, size, spatial):
    # 80 px meets odd feature-map sizes at the stride-2 blocks: the pool branch is padded to match.
    model = plain
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        maps = model.feature_maps(x)
        f = model(x)
    assert maps.shape == (1, FEATURE_DIM, spatial, spatial)
    assert f.shape == (1, FEATURE_DIM) and torch.isfinite(f).all()
    assert torch.allclose(f, maps.mean(dim=(2, 3)))


def test_parameter_count():
    # 10,270,240 parameters without a classifier; 11,295,240 with the 1000-way ImageNet fc.
    with torch.device("meta"):  # shapes only, no weight initialisation
        trunk = sum(p.numel() for p in BNInception().parameters())
        with_fc = sum(p.numel() for p in BNInception(num_classes=1000).parameters())
    assert trunk == 10_270_240
    assert 10e6 < trunk < 11e6
    assert with_fc == 11_295_240


def test_reference_names_and_shapes(flat):
    assert len(flat) == 69 * 7  # 69 conv+BN units: conv weight/bias, BN weight/bias/mean/var/count
    for key, shape in REFERENCE_SHAPES.items():
        assert tuple(flat[key].shape) == shape, key


def test_tsn_pytorch_checkpoint(tmp_path, flat, x_small, y_small):
    sd = {f"module.base_model.{k}": v for k, v in flat.items()}
    sd["module.new_fc.weight"] = torch.zeros(101, FEATURE_DIM)
    sd["module.new_fc.bias"] = torch.zeros(101)
    path = tmp_path / "tsn_rgb_checkpoint.pth.tar"
    torch.save({"epoch": 80, "arch": "BNInception", "state_dict": sd, "best_prec1": torch.tensor(85.1)}, path)
    assert_loaded(load_bninception_state_dict(fresh(), path), x_small, y_small)


def test_tsn_imagenet_file_with_caffe_bn_shapes(flat, x_small, y_small):
    # bn_inception-9f5701afb96c8044.pth: no prefix, BN vectors as [1, C], no num_batches_tracked, fc.
    sd = {}
    for k, v in flat.items():
        if k.endswith("num_batches_tracked"):
            continue
        sd[k] = v.unsqueeze(0) if "_bn." in k else v
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(1000, FEATURE_DIM), torch.zeros(1000)
    assert_loaded(load_bninception_state_dict(fresh(), sd), x_small, y_small)


def test_mmaction_checkpoint(tmp_path, flat, x_small, y_small):
    sd = {f"backbone.{k}": v for k, v in flat.items()}
    sd["cls_head.fc_cls.weight"] = torch.zeros(101, FEATURE_DIM)
    sd["cls_head.fc_cls.bias"] = torch.zeros(101)
    path = tmp_path / "epoch_80.pth"
    torch.save({"meta": {"epoch": 80, "iter": 1000}, "state_dict": sd}, path)
    assert_loaded(load_bninception_state_dict(fresh(), str(path)), x_small, y_small)


def test_convmodule_style_keys(flat, x_small, y_small):
    sd = {}
    for k, v in flat.items():
        unit, param = k.rsplit(".", 1)
        kind = "bn" if unit.endswith("_bn") else "conv"
        sd[f"backbone.{unit.removesuffix('_bn')}.{kind}.{param}"] = v
    assert "backbone.inception_3a_1x1.conv.weight" in sd and "backbone.inception_3a_1x1.bn.running_var" in sd
    assert_loaded(load_bninception_state_dict(fresh(), {"state_dict": sd}), x_small, y_small)


def test_pretrainedmodels_and_own_layouts(source, flat, x_small, y_small):
    sd = dict(flat)
    sd["last_linear.weight"], sd["last_linear.bias"] = torch.zeros(1000, FEATURE_DIM), torch.zeros(1000)
    assert_loaded(load_bninception_state_dict(fresh(), sd), x_small, y_small)
    assert_loaded(load_bninception_state_dict(fresh(), source.state_dict()), x_small, y_small)


def test_missing_key_raises(flat):
    sd = dict(flat)
    del sd["inception_4d_3x3_bn.running_var"]
    with pytest.raises(ValueError, match="inception_4d_3x3_bn.running_var"):
        load_bninception_state_dict(fresh(), sd)


def test_unexpected_key_raises(flat):
    sd = {f"base_model.{k}": v for k, v in flat.items()}
    sd["base_model.inception_6a_1x1.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected.*base_model\.inception_6a_1x1\.weight"):
        load_bninception_state_dict(fresh(), sd)


def test_unsafe_pickle_is_refused(tmp_path, flat):
    path = tmp_path / "with_args.pth"
    torch.save({"state_dict": flat, "args": argparse.Namespace(lr=0.001)}, path)
    with pytest.raises(ValueError, match="weights_only"):
        load_bninception_state_dict(fresh(), path)


def test_cross_modality_init_bninception(source):
    model = copy.deepcopy(source)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    old = model.conv1_7x7_s2.conv.weight.detach().clone()
    assert cross_modality_init(model, in_channels=10) is model
    new = model.conv1_7x7_s2.conv
    assert new.weight.shape == (64, 10, 7, 7) and new.in_channels == 10
    mean = old.mean(dim=1)
    for c in range(10):
        assert torch.allclose(new.weight[:, c], mean)
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        if k != "conv1_7x7_s2.conv.weight":
            assert torch.equal(after[k], v), k
    with torch.no_grad():
        assert model(torch.randn(1, 10, SMALL, SMALL)).shape == (1, FEATURE_DIM)


def test_flow_checkpoint_needs_cross_modality_init(source):
    flow = cross_modality_init(copy.deepcopy(source), 10)
    sd = {f"module.base_model.{k}": v for k, v in caffe_layout(flow).items()}
    with pytest.raises(ValueError, match="cross_modality_init"):
        load_bninception_state_dict(fresh(), sd)
    model = load_bninception_state_dict(cross_modality_init(fresh(), 10), sd)
    x = torch.randn(1, 10, SMALL, SMALL) * 20
    assert_same_outputs(flow, model, x)


def test_cross_modality_init_efficientnet_lite0():
    model = EfficientNetLite0().eval()
    old = model._conv_stem.weight.detach().clone()
    head = model._conv_head.weight.detach().clone()
    cross_modality_init(model, in_channels=10)
    assert isinstance(model._conv_stem, SameConv2d)
    assert model._conv_stem.weight.shape == (32, 10, 3, 3)
    assert torch.allclose(model._conv_stem.weight, old.mean(dim=1, keepdim=True).expand(-1, 10, -1, -1))
    assert torch.equal(model._conv_head.weight, head)
    with torch.no_grad():
        assert model.features(torch.randn(1, 10, SMALL, SMALL)).shape == (1, 1280)


def test_rgb_input_matches_bgr(source):
    rgb = torch.rand(1, 3, SMALL, SMALL) * 255
    bgr = rgb.flip(1)
    mean_bgr = torch.tensor(MEAN_BGR).view(1, 3, 1, 1)
    mean_rgb = torch.tensor(MEAN_RGB).view(1, 3, 1, 1)
    flipped = rgb_input(copy.deepcopy(source))
    with torch.no_grad():
        assert torch.allclose(source(bgr - mean_bgr), flipped(rgb - mean_rgb), rtol=1e-4, atol=1e-4)


def test_fold_batchnorm_keeps_outputs(source, x_small, y_small):
    folded = fold_bninception_batchnorm(copy.deepcopy(source))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        assert torch.allclose(folded(x_small), y_small, rtol=1e-4, atol=1e-4)
