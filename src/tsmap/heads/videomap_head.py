"""The paper's head ConvNet with hierarchical temporal attention (Sec. IV, Eq. 2).

The VideoMap M (T x L) is read as a one-channel image, rows = time.

Head: 3 blocks of [5x5 conv (padding 2), ReLU, 3x3 max-pool stride 2 (padding 1)],
then dropout and one fully connected layer to the classes. Each block halves both
axes (rounding up): T -> ceil(T/2) -> ceil(T/4) -> ceil(T/8).

Channel widths (the paper gives none): 16, 32, 32. The second and third convs carry
nearly all the FLOPs (25 * C_in * C_out per output pixel); 16/32/32 keeps a 256 x 1280
map at ~1.6 GFLOP-MAC forward, and the FC input (32 * T/8 * L/8) small enough that the
head has ~8 M parameters for 51 classes.

Attention branch (the paper: "two such convolution blocks followed by a fully connected
layer which outputs a T dimensional vector"), in two forms:

- ``scoring="rows"`` (the default): the two blocks pool only the feature axis (stride 1 in
  time), so row t of their output still describes frame t; the mean over the feature axis
  gives each frame 8 numbers, and one FC shared by all rows turns them into frame t's
  score. A frame's weight then depends on what the frame shows, wherever it is.
- ``scoring="global"``: the paper's global FC, with the feature axis averaged first: the
  blocks pool both axes, the mean over the feature axis leaves 8 x T/4 numbers, and one FC
  maps them to T scores, a separate weight per (input position, output position). (The
  paper's FC would read every position of the feature axis too; the mean keeps its input
  small and is ours.) Measured on the demo, its second block ends up almost all dead ReLUs
  and a0 is the FC's bias: one profile over positions for every video, blind to content
  (README, "Temporal attention"). Kept to reproduce that, and to load heads trained before.

Either way the T scores are normalised with a softmax over time and multiplied by T, so
that a0 averages 1: at initialisation (near-uniform softmax) the attention leaves the map's
scale alone, and what it learns is a redistribution of weight between frames. a1 and a2
are max pools of a0 with the head's own pool geometry (kernel 3, stride 2, padding 1), so
their lengths equal the temporal size of the feature maps they scale for any T.

Eq. 2: F~_i = (a_i (x) 1) o F_i: a_i scales every row (time step) of every channel of
the map entering head block i+1. Variants (Table III): "none", "A0", "A1A2", "A0A1A2".

Another T at test time: the FC layers fix the temporal size, so a map with T' != T rows
is resampled to T rows with the same nearest-index uniform sampling used on videos
(``uniform_indices``): fewer frames are repeated, more are subsampled. Testing at
density T' therefore means "T' distinct frames, laid out on the trained grid".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from tsmap.data.video import uniform_indices
from tsmap.heads.standardize import FeatureStandardizer

ATTENTION_VARIANTS = ("none", "A0", "A1A2", "A0A1A2")
ATTENTION_SCORINGS = ("rows", "global")
HEAD_WIDTHS = (16, 32, 32)
ATTENTION_WIDTHS = (8, 8)


def pooled_size(n: int) -> int:
    """Size after a 3x3/stride-2/padding-1 max-pool."""
    return (n - 1) // 2 + 1


def conv_block(c_in: int, c_out: int, time_stride: int = 2) -> ConvBlock:
    """5x5 conv, ReLU, 3x3 max-pool (stride 2 on features, ``time_stride`` on time), with the
    ReLU run after the pool: the same values (max and ReLU commute) on a quarter of the
    elements (training 1.4x faster at 256 x 1280)."""
    return ConvBlock(c_in, c_out, time_stride)


# The block's fixed geometry (Sec. IV): 5x5 conv with padding 2, 3x3 max-pool with padding 1.
CONV_KERNEL, CONV_PADDING = (5, 5), (2, 2)
POOL_KERNEL, POOL_PADDING = (3, 3), (1, 1)
# Input-gradient of a conv with one input channel as a stride-PHASES conv (``_one_channel_input_grad``).
PHASES = 8
# From this many input channels up, the weight gradient runs on NCHW copies (``_conv_weight_grad``).
NCHW_WEIGHT_GRAD_MIN_CHANNELS = 16


class ConvBlock(nn.Sequential):
    """[5x5 conv (padding 2), 3x3 max-pool (padding 1), ReLU]: the reference layers, run fused.

    The children are the plain ``nn.Conv2d``, ``nn.MaxPool2d`` and ``nn.ReLU``, so parameter
    names (``0.weight``, ``0.bias``) and checkpoints are those of an ``nn.Sequential``. On CPU
    in float32, ``forward`` computes the same values through ``ConvPoolReLU`` (one autograd
    node, see there); it runs the children one by one instead on other devices and dtypes,
    under autocast, TorchScript or tracing, with ``fused`` set to False, and whenever a
    child carries a hook (Grad-CAM hooks the conv: its output must then exist as a tensor).
    """

    fused = True  # set False on an instance (or the class) to run the reference layers

    def __init__(self, c_in: int, c_out: int, time_stride: int = 2):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel_size=CONV_KERNEL, padding=CONV_PADDING),
            nn.MaxPool2d(kernel_size=POOL_KERNEL, stride=(time_stride, 2), padding=POOL_PADDING),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fused_applies(x):
            return super().forward(x)
        conv, pool = self[0], self[1]
        return ConvPoolReLU.apply(x, conv.weight, conv.bias, _pair(pool.stride))

    def _fused_applies(self, x: torch.Tensor) -> bool:
        conv, pool = self[0], self[1]
        return (
            self.fused
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and conv.weight.dtype == torch.float32
            and x.dim() == 4
            and not _autocast_on()
            and not torch.jit.is_scripting()
            and not torch.jit.is_tracing()
            and not any(_has_hooks(m) for m in self)
            and not _global_module_hooks()
            and conv.kernel_size == CONV_KERNEL
            and conv.padding == CONV_PADDING
            and conv.stride == (1, 1)
            and conv.dilation == (1, 1)
            and conv.groups == 1
            and conv.padding_mode == "zeros"
            and _pair(pool.kernel_size) == POOL_KERNEL
            and _pair(pool.padding) == POOL_PADDING
            and _pair(pool.dilation) == (1, 1)
            and not pool.ceil_mode
            and not pool.return_indices
        )


@contextlib.contextmanager
def reference_layers() -> Iterator[None]:
    """Inside the block, every ``ConvBlock`` runs its children (``nn.Conv2d``, ``nn.MaxPool2d``,
    ``nn.ReLU``) one by one: for comparisons, and to count the architecture's FLOPs."""
    before = ConvBlock.fused
    ConvBlock.fused = False
    try:
        yield
    finally:
        ConvBlock.fused = before


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _has_hooks(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)


def _global_module_hooks() -> bool:
    from torch.nn.modules import module

    return bool(
        module._global_forward_hooks
        or module._global_forward_pre_hooks
        or module._global_backward_hooks
        or module._global_backward_pre_hooks
    )


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


class ConvPoolReLU(torch.autograd.Function):
    """relu(max_pool(conv(x))) with the reference layers' values and gradients, faster on CPU.

    Forward runs the same oneDNN conv and ATen max-pool; what differs is what is kept and
    how the backward runs (measured in benchmarks/HEAD_KERNELS.md):

    - The conv's output (full resolution, the largest tensor of the block) is not kept:
      the pool's backward needs only its argmax indices and the output's shape.
    - A conv with one input channel (the head's first) gets its input gradient as a
      stride-8 conv with 8 output channels, one per phase of the feature axis
      (``_one_channel_input_grad``), instead of oneDNN's 1-output-channel kernel.
    - Convs with 16+ input channels get their weight gradient from NCHW copies of the
      input and of the output gradient (``_conv_weight_grad``).

    ReLU's backward reads the saved output (as ``nn.ReLU(inplace=True)``'s does), the
    pool's scatters to the first maximum of each window (the same indices). Not twice
    differentiable.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int]):
        y = F.conv2d(x, weight, bias, padding=CONV_PADDING)
        out, indices = torch.ops.aten.max_pool2d_with_indices(y, POOL_KERNEL, stride, POOL_PADDING)
        out.relu_()
        ctx.save_for_backward(x, weight, out, indices)
        ctx.conv_out = (y.shape, y.stride())
        ctx.stride = stride
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight, out, indices = ctx.saved_tensors
        if grad.stride() != out.stride():
            grad = grad.contiguous(memory_format=_memory_format(out))
        grad = torch.ops.aten.threshold_backward(grad, out, 0)
        # The pool's backward reads only the size and layout of its input.
        layout = torch.empty_strided(*ctx.conv_out, dtype=grad.dtype)
        grad_y = torch.ops.aten.max_pool2d_with_indices_backward(
            grad, layout, POOL_KERNEL, ctx.stride, POOL_PADDING, (1, 1), False, indices
        )
        del layout, grad
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _conv_input_grad(grad_y, x, weight)
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            grad_w, grad_b = _conv_weight_grad(grad_y, x, weight, ctx.has_bias and ctx.needs_input_grad[2])
        return grad_x, grad_w, grad_b, None


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if t.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def _conv_backward(grad_y, x, weight, mask: tuple[bool, bool, bool]):
    bias_sizes = [weight.shape[0]] if mask[2] else None
    return torch.ops.aten.convolution_backward(
        grad_y, x, weight, bias_sizes, (1, 1), CONV_PADDING, (1, 1), False, (0, 0), 1, list(mask)
    )


def _conv_input_grad(grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    if weight.shape[1] == 1 and x.shape[3] % PHASES == 0:
        return _one_channel_input_grad(grad_y, weight)
    return _conv_backward(grad_y, x, weight, (True, False, False))[0]


def _one_channel_input_grad(grad_y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Input gradient of the 5x5 conv (padding 2) of a 1-channel B x 1 x H x W image.

    It is the correlation of grad_y (B x C x H x W) with the flipped kernel, one output
    channel: a shape oneDNN runs at ~10 % of the GEMM peak. Computed instead as a conv of
    stride 8 along W with 8 output channels: channel r at column j is the gradient at
    column 8j + r, from grad_y's columns 8j - 2 ... 8j + 9 (kernel 5 x 12, the flipped
    5 x 5 kernel at offset r, zeros elsewhere). 2.4x the multiply-adds, ~2x faster, and in
    memory B x H x W/8 x 8 is B x H x W: the result needs no copy.
    """
    b, c, h, w = grad_y.shape
    flipped = weight[:, 0].flip(1, 2)  # C x 5 x 5
    kernel = weight.new_zeros(PHASES, c, CONV_KERNEL[0], PHASES + CONV_KERNEL[1] - 1)
    for r in range(PHASES):
        kernel[r, :, :, r : r + CONV_KERNEL[1]] = flipped
    kernel = kernel.contiguous(memory_format=torch.channels_last)
    phases = F.conv2d(grad_y, kernel, stride=(1, PHASES), padding=CONV_PADDING)  # B x 8 x H x W/8
    return channels_last_1ch(phases.permute(0, 2, 3, 1).reshape(b, 1, h, w))


def _conv_weight_grad(
    grad_y: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight (and bias) gradient. oneDNN's channels_last weight-gradient kernel runs the
    16 -> 32 and 32 -> 32 convs at ~40 % of the GEMM peak, its NCHW one at ~70 %: with 16+
    input channels, the transposes to NCHW (2-D blocked copies, one per map) pay for
    themselves several times over. Below, the channels_last kernel is as fast or faster."""
    if weight.shape[1] >= NCHW_WEIGHT_GRAD_MIN_CHANNELS and grad_y.is_contiguous(memory_format=torch.channels_last):
        grad_y, x, weight = _nchw(grad_y), _nchw(x), weight.contiguous()
    _, grad_w, grad_b = _conv_backward(grad_y, x, weight, (False, True, bias))
    return grad_w, grad_b


def _nchw(t: torch.Tensor) -> torch.Tensor:
    """A channels_last B x C x H x W tensor copied to NCHW, one 2-D transpose per map
    (PyTorch copies a transposed matrix in cache blocks: ~2x ``.contiguous()`` here)."""
    if t.is_contiguous() or not t.is_contiguous(memory_format=torch.channels_last):
        return t.contiguous()
    b, c, h, w = t.shape
    out = t.new_empty(b, c, h, w)
    rows = t.permute(0, 2, 3, 1).reshape(b, h * w, c)
    for i in range(b):
        out[i].view(c, h * w).copy_(rows[i].t())
    return out


def channels_last_1ch(x: torch.Tensor) -> torch.Tensor:
    """A contiguous B x 1 x H x W tensor viewed with channels_last strides (no copy).

    With one channel both layouts address the same memory, and PyTorch then treats the
    input as NCHW: every later feature map of the block would be NCHW too, which oneDNN
    runs 2-3x slower than channels_last. The explicit strides make it pick channels_last.
    """
    b, c, h, w = x.shape
    if c != 1 or not x.is_contiguous():
        return x.contiguous(memory_format=torch.channels_last)
    return x.as_strided((b, c, h, w), (h * w, 1, w, 1))


def pool_attention(a: torch.Tensor) -> torch.Tensor:
    """a_i = max-pool of a_(i-1) with stride 2 (B x T -> B x ceil(T/2))."""
    return F.max_pool1d(a.unsqueeze(1), kernel_size=3, stride=2, padding=1).squeeze(1)


def scale_rows(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Eq. 2 on B x C x T x L feature maps: row t of every channel times a[:, t]."""
    return x * a[:, None, :, None]


def resample_time(maps: torch.Tensor, num_frames: int) -> torch.Tensor:
    """B x T' x L -> B x T x L by nearest-index uniform sampling of rows."""
    if maps.shape[1] == num_frames:
        return maps
    idx = torch.from_numpy(uniform_indices(maps.shape[1], num_frames)).to(maps.device)
    return maps.index_select(1, idx)


class TemporalAttention(nn.Module):
    """a0(M) in R^T: 2 conv blocks, mean over features, FC, softmax over time x T.

    ``scoring`` is "rows" or "global" (checked by ``VideoMapHead``, which builds this branch)."""

    def __init__(self, num_frames: int, scoring: str = "rows"):
        super().__init__()
        c1, c2 = ATTENTION_WIDTHS
        stride = 1 if scoring == "rows" else 2
        self.blocks = nn.Sequential(conv_block(1, c1, stride), conv_block(c1, c2, stride))
        if scoring == "rows":
            self.fc = nn.Linear(c2, 1)
        else:
            self.fc = nn.Linear(c2 * pooled_size(pooled_size(num_frames)), num_frames)
        self.scoring = scoring
        self.num_frames = num_frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x).mean(dim=3)  # B x C x T ("rows") or B x C x T/4 ("global")
        if self.scoring == "rows":
            scores = self.fc(h.transpose(1, 2)).squeeze(2)
        else:
            scores = self.fc(h.flatten(1))
        return torch.softmax(scores, dim=1) * self.num_frames


class VideoMapHead(nn.Module):
    def __init__(
        self,
        num_classes: int,
        num_frames: int,
        feature_dim: int,
        attention: str = "A0A1A2",
        dropout: float = 0.5,
        attention_scoring: str = "rows",
        scale: str = "shared",
        widths: tuple[int, int, int] = HEAD_WIDTHS,
    ):
        """``widths``: the three blocks' channels; the paper's head is (16, 32, 32), narrower
        ones are for small datasets (fewer weights, mostly in the FC)."""
        super().__init__()
        if attention not in ATTENTION_VARIANTS:
            raise ValueError(f"attention must be one of {ATTENTION_VARIANTS}, got {attention!r}")
        if attention_scoring not in ATTENTION_SCORINGS:
            raise ValueError(f"attention scoring must be one of {ATTENTION_SCORINGS}, got {attention_scoring!r}")
        self.config = {
            "head": "videomap",
            "num_classes": num_classes,
            "num_frames": num_frames,
            "feature_dim": feature_dim,
            "attention": attention,
            "dropout": dropout,
            "attention_scoring": attention_scoring,
            "scale": scale,
        }
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be 3 positive channel counts, got {widths!r}")
        if widths != HEAD_WIDTHS:  # checkpoints of the paper's head keep their config
            self.config["widths"] = list(widths)
        self.num_frames = num_frames
        self.use = {"A0": "A0" in attention, "A1": "A1" in attention, "A2": "A2" in attention}
        self.standardize = FeatureStandardizer(feature_dim, scale)
        c1, c2, c3 = widths
        self.block1, self.block2, self.block3 = conv_block(1, c1), conv_block(c1, c2), conv_block(c2, c3)
        self.attention = TemporalAttention(num_frames, attention_scoring) if attention != "none" else None
        t3, l3 = num_frames, feature_dim
        for _ in range(3):
            t3, l3 = pooled_size(t3), pooled_size(l3)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(c3 * t3 * l3, num_classes)
        self.last_attention: torch.Tensor | None = None
        # Conv weights in the layout of the activations, so their gradients come out in the
        # layout DistributedDataParallel's buckets expect (else it warns and copies).
        self.to(memory_format=torch.channels_last)

    def attention_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        if self.attention is None:
            return None
        a0 = self.attention(x)
        a1 = pool_attention(a0)
        return a0, a1, pool_attention(a1)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """maps: B x T x L (any T; resampled to the trained T). Returns class scores."""
        x = self.standardize(resample_time(maps, self.num_frames).float()).unsqueeze(1)
        x = channels_last_1ch(x.contiguous())
        att = self.attention_weights(x)
        self.last_attention = None if att is None else att[0].detach()
        if att is not None and self.use["A0"]:
            x = channels_last_1ch(scale_rows(x, att[0]).contiguous())
        h = self.block1(x)
        if att is not None and self.use["A1"]:
            h = scale_rows(h, att[1])
        h = self.block2(h)
        if att is not None and self.use["A2"]:
            h = scale_rows(h, att[2])
        h = self.block3(h)
        return self.fc(self.dropout(h.flatten(1)))
