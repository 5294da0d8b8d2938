"""BN-Inception (Inception v2 with batch norm, Ioffe & Szegedy 2015) as used by TSN.

This is the frame ConvNet of the paper: 224 x 224 input, 7 x 7 x 1024 last feature
maps, global average pooling to a 1024-d vector. The layer sizes follow Table 1 of
the batch-norm paper, in the Caffe model that TSN released and that TSN-PyTorch
(``bn_inception.yaml``), mmaction (v1) and Cadene's ``pretrainedmodels`` converted:
every convolution has a bias and is followed by BatchNorm (eps 1e-5) and ReLU, every
pooling uses Caffe's ceil mode, and the 3 x 3 average pools count the padding.

No weights are bundled or downloaded: pass a state dict (or a checkpoint file) to
``load_bninception_state_dict``; the TSN-PyTorch, mmaction and pretrainedmodels key
layouts are mapped onto this module's names.

Input convention of all those checkpoints (the Caffe model's): **BGR** channel order,
values on the 0-255 scale, minus the per-channel mean ``MEAN_BGR = (104, 117, 128)``,
std 1 (no division). Optical flow (TSN): 0-255 flow images minus ``FLOW_MEAN = 128``,
std 1, x/y channels interleaved (x1, y1, x2, y2, ...), 10 channels for 5 frames.
``rgb_input`` permutes the first convolution once so the model takes RGB input
(minus ``MEAN_RGB``) at no run-time cost.
"""

from __future__ import annotations

import copy
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1e-5
FEATURE_DIM = 1024
INPUT_SIZE = 224
# Normalisation the released BN-Inception / TSN weights expect (0-255 scale, std 1).
MEAN_BGR = (104.0, 117.0, 128.0)
MEAN_RGB = (128.0, 117.0, 104.0)  # the same means in RGB order, for use after ``rgb_input``
STD = (1.0, 1.0, 1.0)
FLOW_MEAN = 128.0
FLOW_STD = 1.0

# Inception blocks, Table 1 of the BN paper: (name, #1x1, #3x3 reduce, #3x3, double #3x3 reduce,
# double #3x3, pool, pool proj). #1x1 == 0 marks a reduction block: stride-2 3x3 convs and a
# stride-2 max pool passed through without projection.
INCEPTION_BLOCKS = [
    ("3a", 64, 64, 64, 64, 96, "avg", 32),  # -> 256
    ("3b", 64, 64, 96, 64, 96, "avg", 64),  # -> 320
    ("3c", 0, 128, 160, 64, 96, "max", 0),  # -> 576, stride 2
    ("4a", 224, 64, 96, 96, 128, "avg", 128),  # -> 576
    ("4b", 192, 96, 128, 96, 128, "avg", 128),  # -> 576
    ("4c", 160, 128, 160, 128, 160, "avg", 128),  # -> 608
    ("4d", 96, 128, 192, 160, 192, "avg", 128),  # -> 608
    ("4e", 0, 128, 192, 192, 256, "max", 0),  # -> 1056, stride 2
    ("5a", 352, 192, 320, 160, 224, "avg", 128),  # -> 1024
    ("5b", 352, 192, 320, 192, 224, "max", 128),  # -> 1024
]

# Branch attribute of ``Inception`` -> suffix of the Caffe layer name (``inception_3a_<suffix>``).
BRANCH_SUFFIXES = {
    "conv_1x1": "1x1",
    "conv_3x3_reduce": "3x3_reduce",
    "conv_3x3": "3x3",
    "conv_double_3x3_reduce": "double_3x3_reduce",
    "conv_double_3x3_1": "double_3x3_1",
    "conv_double_3x3_2": "double_3x3_2",
    "conv_pool_proj": "pool_proj",
}


class ConvBNReLU(nn.Module):
    """Convolution (with bias, as in the Caffe model) -> BatchNorm -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=True)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Inception(nn.Module):
    """One BN-Inception block: 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | pool(-1x1), concatenated."""

    def __init__(
        self,
        in_ch: int,
        c1x1: int,
        c3x3_reduce: int,
        c3x3: int,
        cdbl_reduce: int,
        cdbl: int,
        pool: str,
        pool_proj: int,
    ):
        super().__init__()
        self.reduction = c1x1 == 0
        stride = 2 if self.reduction else 1
        if not self.reduction:
            self.conv_1x1 = ConvBNReLU(in_ch, c1x1, 1)
        self.conv_3x3_reduce = ConvBNReLU(in_ch, c3x3_reduce, 1)
        self.conv_3x3 = ConvBNReLU(c3x3_reduce, c3x3, 3, stride=stride, padding=1)
        self.conv_double_3x3_reduce = ConvBNReLU(in_ch, cdbl_reduce, 1)
        self.conv_double_3x3_1 = ConvBNReLU(cdbl_reduce, cdbl, 3, padding=1)
        self.conv_double_3x3_2 = ConvBNReLU(cdbl, cdbl, 3, stride=stride, padding=1)
        self.pool = pool
        if pool_proj:
            self.conv_pool_proj = ConvBNReLU(in_ch, pool_proj, 1)
        self.out_channels = c1x1 + c3x3 + cdbl + (pool_proj or in_ch)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if not self.reduction:
            if self.pool == "avg":  # Caffe AVE pooling divides by 9 at the borders too
                return F.avg_pool2d(x, 3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
            return F.max_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
        # Stride 2, no padding, ceil mode: matches the padded stride-2 convs on even sizes (all
        # sizes met at 224 input). On an odd size it would give one row/column fewer than the
        # convs, so pad bottom/right with -inf there (never happens at 224).
        h, w = x.shape[-2:]
        if h % 2 or w % 2:
            x = F.pad(x, (0, w % 2, 0, h % 2), value=float("-inf"))
        return F.max_pool2d(x, 3, stride=2, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [] if self.reduction else [self.conv_1x1(x)]
        outs.append(self.conv_3x3(self.conv_3x3_reduce(x)))
        outs.append(self.conv_double_3x3_2(self.conv_double_3x3_1(self.conv_double_3x3_reduce(x))))
        pooled = self._pool(x)
        outs.append(self.conv_pool_proj(pooled) if hasattr(self, "conv_pool_proj") else pooled)
        return torch.cat(outs, dim=1)


class BNInception(nn.Module):
    """BN-Inception trunk; ``features`` gives the globally average-pooled 1024-d vector.

    ``num_classes`` adds a linear classifier ``fc`` (for fine-tuning); without it
    ``forward`` is ``features``. The checkpoint loader never reads classifier weights.
    """

    def __init__(self, num_classes: int | None = None, in_channels: int = 3):
        super().__init__()
        self.conv1_7x7_s2 = ConvBNReLU(in_channels, 64, 7, stride=2, padding=3)
        self.conv2_3x3_reduce = ConvBNReLU(64, 64, 1)
        self.conv2_3x3 = ConvBNReLU(64, 192, 3, padding=1)
        in_ch = 192
        for name, *cfg in INCEPTION_BLOCKS:
            block = Inception(in_ch, *cfg)
            self.add_module(f"inception_{name}", block)
            in_ch = block.out_channels
        assert in_ch == FEATURE_DIM
        self.fc = nn.Linear(FEATURE_DIM, num_classes) if num_classes else None

    def feature_maps(self, x: torch.Tensor) -> torch.Tensor:
        """N x 1024 x 7 x 7 for 224 x 224 input."""
        x = F.max_pool2d(self.conv1_7x7_s2(x), 3, stride=2, ceil_mode=True)
        x = self.conv2_3x3(self.conv2_3x3_reduce(x))
        x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        for name, *_ in INCEPTION_BLOCKS:
            x = getattr(self, f"inception_{name}")(x)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The paper's V(S_k): global average pooling of the last feature maps (any input size)."""
        return self.feature_maps(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.fc(f) if self.fc is not None else f


# --- checkpoints --------------------------------------------------------------------------

_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# Prefixes of wrappers: DataParallel, TSN-PyTorch's TSN module, mmaction(2) recognisers.
_WRAPPER_PREFIXES = ("module.", "base_model.", "backbone.", "model.")
# Classifiers and other non-backbone entries that are skipped, after the wrapper prefixes go.
_IGNORED_PREFIXES = ("fc.", "fc_action.", "last_linear.", "new_fc.", "cls_head.", "fc_cls.", "data_preprocessor.")


def _conv_units(model: BNInception) -> list[tuple[str, str]]:
    """(module path in this model, Caffe layer name) for every ConvBNReLU."""
    units = []
    for path, module in model.named_modules():
        if not isinstance(module, ConvBNReLU):
            continue
        if "." in path:
            block, branch = path.split(".")
            units.append((path, f"{block}_{BRANCH_SUFFIXES[branch]}"))
        else:
            units.append((path, path))
    return units


def _flat_names(model: BNInception) -> dict[str, str]:
    """This model's key -> the flat Caffe-style key (``inception_3a_1x1_bn.running_mean``)."""
    names = {}
    for path, caffe in _conv_units(model):
        for p in ("weight", "bias"):
            names[f"{path}.conv.{p}"] = f"{caffe}.{p}"
        for p in _BN_KEYS:
            names[f"{path}.bn.{p}"] = f"{caffe}_bn.{p}"
    return names


def _key_aliases(model: BNInception) -> dict[str, str]:
    """Every accepted checkpoint key (prefixes stripped) -> this model's key.

    Flat Caffe names (TSN-PyTorch, mmaction v1, pretrainedmodels): ``inception_3a_1x1.weight``
    and ``inception_3a_1x1_bn.running_mean``. ConvModule style: ``inception_3a_1x1.conv.weight``
    and ``inception_3a_1x1.bn.running_mean``. And this module's own names.
    """
    aliases = {}
    for ours, flat in _flat_names(model).items():
        unit, param = flat.rsplit(".", 1)
        kind = ours.rsplit(".", 2)[1]  # "conv" or "bn"
        convmodule = f"{unit.removesuffix('_bn')}.{kind}.{param}"
        for src in (flat, convmodule, ours):
            aliases[src] = ours
    return aliases


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _unwrap(obj: object) -> Mapping[str, torch.Tensor]:
    """The tensor dict inside a checkpoint: ``{"state_dict": ...}`` (TSN, mmcv/mmengine) or ``{"model": ...}``."""
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    return obj


def _listing(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_bninception_state_dict(
    model: BNInception, state_dict_or_path: Mapping[str, torch.Tensor] | str | os.PathLike
) -> BNInception:
    """Load BN-Inception weights from a state dict or a checkpoint file into ``model`` (in place).

    Accepted layouts (keys are matched after stripping ``module.``, ``base_model.``,
    ``backbone.`` and ``model.`` prefixes, and after unwrapping a ``state_dict`` entry):

    - TSN-PyTorch: ``module.base_model.conv1_7x7_s2.weight``,
      ``module.base_model.inception_3a_1x1_bn.running_mean`` under ``state_dict``;
      its ImageNet file ``bn_inception-9f5701afb96c8044.pth`` has no prefix and stores BN
      vectors as [1, C] (reshaped here).
    - mmaction (v1) / mmaction2-style recognisers: ``backbone.conv1_7x7_s2.weight``,
      ``backbone.inception_3a_1x1_bn.weight`` under ``state_dict``; ConvModule-style
      ``backbone.inception_3a_1x1.conv.weight`` / ``.bn.running_var`` is accepted too.
    - pretrainedmodels (Cadene): ``conv1_7x7_s2.weight``, ``inception_5b_pool_proj_bn.bias``.
    - this module's own names (``inception_3a.conv_1x1.conv.weight``).

    Classifier keys (``fc``, ``fc_action``, ``last_linear``, ``new_fc``, ``cls_head.*``) are
    ignored; ``num_batches_tracked`` may be absent. Anything else missing or unexpected, or a
    shape mismatch, raises ValueError. A 10-channel (flow) checkpoint needs
    ``cross_modality_init(model, 10)`` first. Files are read with ``weights_only=True``.
    """
    if isinstance(state_dict_or_path, str | os.PathLike):
        path = Path(state_dict_or_path)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:  # the checkpoint holds objects other than tensors and containers
            raise ValueError(
                f"cannot read {path} with torch.load(weights_only=True): {exc}\n"
                "If you trust the file, save its plain state dict first, e.g. "
                "torch.save(torch.load(f, weights_only=False)['state_dict'], 'weights.pth')"
            ) from exc
    else:
        obj = state_dict_or_path
    source = _unwrap(obj)

    aliases = _key_aliases(model)
    target = model.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    unexpected, mismatched = [], []
    for key, value in source.items():
        short = _strip_prefixes(key)
        if short.startswith(_IGNORED_PREFIXES):
            continue
        ours = aliases.get(short)
        if ours is None or not isinstance(value, torch.Tensor):
            unexpected.append(key)
            continue
        if ours in loaded:
            raise ValueError(f"keys {origin[ours]!r} and {key!r} both map to {ours!r}")
        want = target[ours].shape
        if value.shape != want:
            if value.numel() == target[ours].numel() and value.dim() != len(want):  # Caffe's [1, C] BN vectors
                value = value.reshape(want)
            else:
                mismatched.append(f"{key}: {tuple(value.shape)} vs model {tuple(want)}")
                continue
        loaded[ours], origin[ours] = value, key
    required = [k for k in target if not k.endswith("num_batches_tracked") and not k.startswith("fc.")]
    flat = _flat_names(model)
    missing = [f"{k} ({flat[k]})" if k in flat else k for k in required if k not in loaded]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if mismatched:
        hint = ""
        if any("conv1_7x7_s2" in m for m in mismatched):
            hint = " (a flow checkpoint? call cross_modality_init(model, in_channels) before loading)"
        problems.append(f"shape mismatches ({len(mismatched)}): {_listing(mismatched)}{hint}")
    if problems:
        raise ValueError("BN-Inception state dict does not fit the model: " + "; ".join(problems))
    full = dict(target)
    full.update(loaded)
    model.load_state_dict(full, strict=True)
    return model


# --- input adaptations ----------------------------------------------------------------------


def first_conv(model: nn.Module) -> tuple[nn.Module, str, nn.Conv2d]:
    """(parent module, attribute name, conv) of the first nn.Conv2d registered in ``model``."""
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            parent_path, _, name = path.rpartition(".")
            return model.get_submodule(parent_path), name, module
    raise ValueError(f"{type(model).__name__} has no nn.Conv2d")


@torch.no_grad()
def cross_modality_init(model: nn.Module, in_channels: int = 10, conv: str | None = None) -> nn.Module:
    """TSN's cross-modality initialisation, for a network taking ``in_channels`` inputs (flow: 10).

    The first convolution's weights are averaged over their input (RGB) channels and the
    average is replicated ``in_channels`` times; the bias and every other layer are kept.
    ``conv`` names the convolution (e.g. ``"conv1_7x7_s2.conv"``, ``"_conv_stem"``); by default
    the first nn.Conv2d registered in ``model``. The new conv is a copy of the old module
    (same class, so EfficientNet-Lite0's 'same'-padding stem keeps its padding). The model
    is changed in place and returned; build optimizers afterwards (the conv is a new module).
    """
    if conv is None:
        parent, name, old = first_conv(model)
    else:
        parent_path, _, name = conv.rpartition(".")
        parent, old = model.get_submodule(parent_path), model.get_submodule(conv)
        if not isinstance(old, nn.Conv2d):
            raise ValueError(f"{conv!r} is a {type(old).__name__}, not an nn.Conv2d")
    if old.groups != 1:
        raise ValueError(f"cannot re-initialise a grouped first convolution (groups={old.groups})")
    mean = old.weight.mean(dim=1, keepdim=True)
    new = copy.deepcopy(old)
    new.in_channels = in_channels
    new.weight = nn.Parameter(mean.repeat(1, in_channels, 1, 1).contiguous(), requires_grad=old.weight.requires_grad)
    setattr(parent, name, new)
    return model


@torch.no_grad()
def rgb_input(model: BNInception) -> BNInception:
    """Permute conv1's input channels (in place) so the model takes RGB instead of BGR.

    Afterwards normalise with ``MEAN_RGB`` / ``STD``; outputs equal the original model's
    on the same image given as BGR minus ``MEAN_BGR``.
    """
    conv = model.conv1_7x7_s2.conv
    if conv.in_channels != 3:
        raise ValueError(f"rgb_input needs a 3-channel conv1, this one has {conv.in_channels}")
    conv.weight.copy_(conv.weight.flip(1))
    return model


@torch.no_grad()
def fold_bninception_batchnorm(model: BNInception) -> BNInception:
    """Fold every inference-mode BatchNorm into the conv before it (in place; inference only)."""
    for path, _ in _conv_units(model):
        unit = model.get_submodule(path)
        bn = unit.bn
        if isinstance(bn, nn.Identity):
            continue
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        unit.conv.weight.mul_(scale.view(-1, 1, 1, 1))
        unit.conv.bias.copy_((unit.conv.bias - bn.running_mean) * scale + bn.bias)
        unit.bn = nn.Identity()
    return model
