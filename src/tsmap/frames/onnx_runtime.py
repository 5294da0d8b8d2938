"""ONNX Runtime engine for the frame encoder on CPU: exported once, cached, checked.

The folded network's ``features`` is exported with the normalisation inside the graph
and uint8 NHWC frames, exactly as decoded, as its input: ORT then runs the cast, the
affine normalisation and the NHWC -> NCHW transpose as one multi-threaded pass, the
caller hands over a quarter of the bytes a float32 input would take, and NumPy never
makes a float copy (measured: as fast as a float32 input at 224 px, ~1.2x faster at
128 px). The batch axis is dynamic; the image size is fixed per file.

Two rewrites make the graph fast in ORT:
  * TensorFlow "same" padding is asymmetric, so the PyTorch model pads explicitly before
    each strided conv, with sizes computed from the input shape. Traced as is, that is
    a chain of Shape/Gather/Concat ops plus a Pad that ORT leaves in place and wraps in
    NCHWc reorders. For a fixed image size the pads are constants: they are computed
    once and moved into each Conv's own (asymmetric) ``pads`` attribute, which ONNX
    allows and PyTorch's conv does not (1.4x faster at 224 px, 1.7x at 128 px).
  * The model is traced with the legacy TorchScript exporter (``dynamo=False``): the
    torch.export-based default needs ``onnxscript``, which is not a dependency.

Files live in ``$TSMAP_CACHE/onnx`` (default ``~/.cache/tsmap/onnx``), named by backbone,
frame size, input dtype, a hash of the weights and the torch/onnx versions. Each has a
JSON sidecar with the file's SHA-256 and the check result; both are written to a temp
file and moved into place with ``os.replace``, so a reader never sees half a file, and a
file whose hash does not match its sidecar is exported again.

On export, ORT's features are compared with PyTorch's on a random batch of a different
size than the one traced (which also exercises the dynamic batch axis); beyond the
tolerance the export is refused and nothing is cached.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import io
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tsmap.fileio import atomic_write_bytes
from tsmap.frames.efficientnet_lite import SameConv2d

OPSET = 17
# Bump when the exported graph changes for the same weights and versions.
EXPORT_FORMAT = 1
# Max |ORT - PyTorch| allowed, relative to the largest feature in the check batch. Measured
# errors are ~1e-6 of that scale (float32 sums reordered); an export bug (a misplaced pad,
# a wrong normalisation) is of order 1e-1 to 1. 1e-3 is also the size of one float16 step,
# the precision VideoMap stores keep, so features that pass are interchangeable there.
CHECK_RTOL = 1e-3
CHECK_BATCH = 3  # differs from the traced batch (2), so the dynamic axis is exercised
INPUT_DTYPES = ("uint8", "float32")


class OnnxEngineError(RuntimeError):
    """The ONNX Runtime engine cannot be used (missing packages, failed export or check)."""


class OnnxMismatchError(OnnxEngineError):
    """ORT's features differ from PyTorch's beyond the tolerance: the export is refused."""


def missing_packages() -> list[str]:
    """Packages the ONNX engine needs that are not installed (cheap: nothing is imported)."""
    return [name for name in ("onnxruntime", "onnx") if importlib.util.find_spec(name) is None]


def default_cache_dir() -> Path:
    root = os.environ.get("TSMAP_CACHE")
    if root:
        return Path(root).expanduser() / "onnx"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "tsmap" / "onnx"


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, which cgroup/taskset limits shrink)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# -- cores shared with other processes -------------------------------------------------
BUSY_SAMPLE_S = 0.1  # how long free_cores watches the CPUs
BUSY_CACHE_S = 5.0  # sessions made within this long of a sample reuse it


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, all) clock ticks since boot of the CPUs this process may run on, from /proc/stat.

    Busy counts user, nice, system, irq, softirq and steal (a hypervisor's other guests).
    """
    try:
        cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        with open("/proc/stat") as f:
            busy = total = 0
            for line in f:
                fields = line.split()
                if fields and fields[0] in cpus:
                    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
                    total += sum(ticks)
                    busy += sum(ticks) - ticks[3] - ticks[4]
    except (OSError, ValueError, AttributeError):
        return None
    return (busy, total) if total else None


_busy_sample: tuple[float, float] | None = None  # (time.monotonic() of the sample, cores busy)


def busy_cores_of_others(sample_s: float = BUSY_SAMPLE_S) -> float:
    """Cores of this process's CPUs that other processes keep busy (0.0 where unknown).

    Watches /proc/stat for ``sample_s`` and takes away this process's own CPU time over
    the same interval (all its threads), then keeps at most the 1-minute load average:
    a job has to be both busy now and busy for a while to count, so that a blip during
    the sample (a short command, our own children exiting) does not cost a thread for
    the whole run. A job started less than ~30 s ago is not counted yet.
    """
    global _busy_sample
    now = time.monotonic()
    if _busy_sample is not None and now - _busy_sample[0] < BUSY_CACHE_S:
        return _busy_sample[1]
    first, own = _cpu_ticks(), time.process_time()
    if first is None:
        return 0.0
    time.sleep(sample_s)
    second, own = _cpu_ticks(), time.process_time() - own
    if second is None or second[1] <= first[1]:
        return 0.0
    own_ticks = own * os.sysconf("SC_CLK_TCK")
    busy = max(0.0, (second[0] - first[0] - own_ticks) / (second[1] - first[1]) * usable_cores())
    try:
        busy = min(busy, os.getloadavg()[0])
    except (OSError, AttributeError):  # pragma: no cover - no load average
        pass
    _busy_sample = (now, busy)
    return busy


def free_cores() -> int:
    """Usable cores less those other processes keep busy, rounded, at least 1."""
    return max(1, math.floor(usable_cores() - busy_cores_of_others() + 0.5))


def weights_digest(model: nn.Module) -> str:
    """Short SHA-256 of the parameters and buffers, independent of memory format."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def model_filename(backbone: str, height: int, width: int, input_dtype: str, digest: str) -> str:
    import onnx

    versions = f"torch{torch.__version__}-onnx{onnx.__version__}-opset{OPSET}-v{EXPORT_FORMAT}"
    name = f"{backbone}-{height}x{width}-{input_dtype}-w{digest}-{versions}.onnx"
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


# -- export ----------------------------------------------------------------------------
class _PaddedConv(nn.Module):
    """A strided SameConv2d with its pads fixed for one input size (F.pad order l, r, t, b)."""

    def __init__(self, conv: SameConv2d, pads: list[int]):
        super().__init__()
        self.conv, self.pads = conv, pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        if any(self.pads):
            x = F.pad(x, self.pads)
        return F.conv2d(x, c.weight, c.bias, c.stride, 0, c.dilation, c.groups)


class _ExportFeatures(nn.Module):
    """NHWC frames (uint8 or float, 0-255) -> pooled features, normalisation included."""

    def __init__(self, model: nn.Module, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.model = model
        self.register_buffer("scale", scale.reshape(-1).float())
        self.register_buffer("shift", shift.reshape(-1).float())

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.float() * self.scale + self.shift
        return self.model.features(x.permute(0, 3, 1, 2))


def _fixed_pad_copy(
    model: nn.Module, height: int, width: int, channels: int = 3
) -> tuple[nn.Module, list[tuple[list[int], SameConv2d]]]:
    """A CPU copy of ``model`` whose strided convs pad by constants; returns the non-zero pads in run order."""
    model = copy.deepcopy(model).float().cpu().to(memory_format=torch.contiguous_format).eval()
    pads: dict[str, list[int]] = {}

    def record(name: str):
        def hook(module: SameConv2d, args: tuple) -> None:
            p: list[int] = []
            for size, k, s in zip(args[0].shape[-1:-3:-1], module.kernel_size[::-1], module.stride[::-1], strict=True):
                total = max((-(-size // s) - 1) * s + k - size, 0)
                p += [total // 2, total - total // 2]
            pads[name] = p

        return hook

    strided = {n: m for n, m in model.named_modules() if isinstance(m, SameConv2d) and m.stride != (1, 1)}
    handles = [m.register_forward_pre_hook(record(n)) for n, m in strided.items()]
    try:
        with torch.inference_mode():
            model.features(torch.zeros(1, channels, height, width))
    finally:
        for handle in handles:
            handle.remove()
    fused = []
    for name, p in pads.items():  # insertion order = execution order = graph order
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, _PaddedConv(strided[name], p))
        if any(p):
            fused.append((p, strided[name]))
    return model, fused


def _fuse_pads_into_convs(proto, fused: list[tuple[list[int], SameConv2d]]) -> bool:
    """Replace each Pad -> Conv pair by the Conv with asymmetric ``pads``, then drop dead nodes.

    Pad nodes are matched to the padded convs in run order, and every pair is checked
    (one consumer, a Conv of the same kernel, stride and groups, no pads of its own). If
    the graph is not the one expected, it is left as is (correct, only slower): False.
    """
    from onnx import helper

    nodes = list(proto.graph.node)
    pad_nodes = [n for n in nodes if n.op_type == "Pad"]
    if len(pad_nodes) != len(fused):
        return False
    consumers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    targets = []
    for pad, (_, conv) in zip(pad_nodes, fused, strict=True):
        users = consumers.get(pad.output[0], [])
        if len(users) != 1 or users[0].op_type != "Conv":
            return False
        attrs = {a.name: helper.get_attribute_value(a) for a in users[0].attribute}
        if (
            list(attrs.get("strides", [])) != list(conv.stride)
            or list(attrs.get("kernel_shape", [])) != list(conv.kernel_size)
            or attrs.get("group", 1) != conv.groups
            or any(attrs.get("pads", [0]))
        ):
            return False
        targets.append(users[0])
    for pad, target, (p, _) in zip(pad_nodes, targets, fused, strict=True):
        left, right, top, bottom = p
        for attr in list(target.attribute):
            if attr.name == "pads":
                target.attribute.remove(attr)
        target.attribute.append(helper.make_attribute("pads", [top, left, bottom, right]))
        target.input[0] = pad.input[0]
        proto.graph.node.remove(pad)
    needed = {o.name for o in proto.graph.output}
    keep = []
    for node in reversed(list(proto.graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    del proto.graph.node[:]
    proto.graph.node.extend(reversed(keep))
    used = {name for node in proto.graph.node for name in node.input}
    for init in [i for i in proto.graph.initializer if i.name not in used]:
        proto.graph.initializer.remove(init)
    return True


def export_features(
    model: nn.Module,
    scale: torch.Tensor,
    shift: torch.Tensor,
    height: int,
    width: int,
    input_dtype: str = "uint8",
    fold_pads: bool = True,
) -> bytes:
    """Serialized ONNX model of normalise + ``model.features`` for frames of one size.

    ``fold_pads=False`` keeps the explicit Pad nodes (for benchmarks only: it is slower).
    """
    import onnx

    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
    channels = scale.numel()  # 3 for RGB frames, 10 for flow stacks
    padded, fused = _fixed_pad_copy(model, height, width, channels)
    wrapper = _ExportFeatures(padded, scale.detach().cpu(), shift.detach().cpu()).eval()
    dummy = torch.zeros(2, height, width, channels, dtype=getattr(torch, input_dtype))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy exporter warns that it is legacy, and about Python ints in traced code
        # (the pads, constant on purpose).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (dummy,),
            buffer,
            dynamo=False,
            input_names=["frames"],
            output_names=["features"],
            dynamic_axes={"frames": {0: "batch"}, "features": {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    if fold_pads and fused:
        _fuse_pads_into_convs(proto, fused)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


# -- cache -----------------------------------------------------------------------------
def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def read_cached(path: Path) -> tuple[bytes | None, dict, str]:
    """The cached model's bytes and sidecar if the bytes match its hash, else None, {} and why not."""
    if not path.exists():
        return None, {}, "not cached"
    try:
        meta = json.loads(_sidecar(path).read_text())
        data = path.read_bytes()
    except (OSError, ValueError) as exc:
        return None, {}, f"its sidecar or the file is unreadable ({type(exc).__name__})"
    if not isinstance(meta, dict) or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        return None, {}, "its SHA-256 does not match its sidecar (corrupt or partly written)"
    return data, meta, "cached"


def note(message: str) -> None:
    print(f"tsmap: note: {message}", file=sys.stderr)


# -- runtime ---------------------------------------------------------------------------
def make_session(data: bytes, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Threads for the cores other processes leave free (all of them on an idle machine), and
    # no busy-waiting: ORT's threads otherwise spin between ops and between runs, on cycles
    # that this process's decode threads and other processes need, and a thread that waits
    # for a core holds up every parallel op. TSMAP_ORT_SPINNING=1 restores ORT's spinning.
    # Measured in benchmarks/extract.py --background-load (benchmarks/ALLOCATOR_THREADS.md).
    options.intra_op_num_threads = threads or free_cores()
    options.inter_op_num_threads = 1
    spin = "1" if os.environ.get("TSMAP_ORT_SPINNING") == "1" else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


class OnnxFeatureRunner:
    """An ORT session for one frame size: ``runner(uint8 N x H x W x C) -> N x L float32``.

    C is 3 for RGB frames, 10 for flow stacks (the length of ``scale``).

    ``reference`` is the PyTorch engine's encode, used to check a fresh export.
    """

    def __init__(
        self,
        model: nn.Module,
        backbone: str,
        scale: torch.Tensor,
        shift: torch.Tensor,
        height: int,
        width: int,
        reference: Callable[[np.ndarray], np.ndarray],
        cache_dir: Path | None = None,
        input_dtype: str = "uint8",
        threads: int | None = None,
        digest: str | None = None,
        rtol: float = CHECK_RTOL,
    ):
        if input_dtype not in INPUT_DTYPES:
            raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
        self.input_dtype = input_dtype
        self.height, self.width, self.channels = height, width, scale.numel()
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        digest = digest or weights_digest(model)
        self.path = directory / model_filename(backbone, height, width, input_dtype, digest)
        self.exported = False
        self.session = None
        data, self.check, why = read_cached(self.path)
        if data is not None:
            try:
                self.session = make_session(data, threads)
            except Exception as exc:  # a valid file ORT cannot load (e.g. another ORT): export again
                why = f"ONNX Runtime cannot load it ({str(exc).splitlines()[0][:200]})"
        if self.session is None:
            if self.path.exists():
                note(f"re-exporting {self.path.name}: {why}")
            directory.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            data = export_features(model, scale, shift, height, width, input_dtype)
            self.session = make_session(data, threads)
            self.check = self._check(reference, rtol)
            self.check |= {
                "sha256": hashlib.sha256(data).hexdigest(),
                "export_seconds": round(time.perf_counter() - start, 3),
                "torch": torch.__version__,
                "onnxruntime": _ort_version(),
            }
            atomic_write_bytes(self.path, data)
            atomic_write_bytes(_sidecar(self.path), json.dumps(self.check, indent=1).encode())
            self.exported = True

    def _check(self, reference: Callable[[np.ndarray], np.ndarray], rtol: float) -> dict:
        shape = (CHECK_BATCH, self.height, self.width, self.channels)
        frames = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        expected = np.asarray(reference(frames), dtype=np.float32)
        got = self(frames)
        if got.shape != expected.shape:
            raise OnnxMismatchError(f"ONNX export gives features of shape {got.shape}, PyTorch {expected.shape}")
        scale = float(np.abs(expected).max())
        diff = float(np.abs(got - expected).max())
        tolerance = rtol * max(scale, 1e-6)
        if not diff <= tolerance:  # also catches NaN
            raise OnnxMismatchError(
                f"ONNX Runtime features differ from PyTorch's by {diff:.3g} (tolerance {tolerance:.3g} = "
                f"{rtol:g} x feature scale {scale:.3g}) for {self.height}x{self.width} frames; export refused"
            )
        return {"max_abs_diff": diff, "feature_scale": scale, "tolerance": tolerance, "check_batch": CHECK_BATCH}

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(frames, dtype=np.dtype(self.input_dtype))
        return self.session.run(None, {"frames": x})[0]


def _ort_version() -> str:
    import onnxruntime as ort

    return ort.__version__
