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
- ``scoring="global"``: the paper's layout read literally: the blocks pool both axes and
  one FC maps all T/4 x 8 numbers to T scores, a separate weight per (input position,
  output position). Measured on the demo, its second block ends up almost all dead ReLUs
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

import torch
import torch.nn.functional as F
from torch import nn

from tsmap.data.video import uniform_indices
from tsmap.heads.standardize import FeatureStandardizer

ATTENTION_VARIANTS = ("none", "A0", "A1A2", "A0A1A2")
ATTENTION_SCORINGS = ("rows", "global")
HEAD_WIDTHS = (16, 32, 32)
ATTENTION_WIDTHS = (8, 8)


def pooled_size(n: int) -> int:
    """Size after a 3x3/stride-2/padding-1 max-pool."""
    return (n - 1) // 2 + 1


def conv_block(c_in: int, c_out: int, time_stride: int = 2) -> nn.Sequential:
    """5x5 conv, ReLU, 3x3 max-pool (stride 2 on features, ``time_stride`` on time), with the
    ReLU run after the pool: the same values (max and ReLU commute) on a quarter of the
    elements (training 1.4x faster at 256 x 1280)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=5, padding=2),
        nn.MaxPool2d(kernel_size=3, stride=(time_stride, 2), padding=1),
        nn.ReLU(inplace=True),
    )


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
    ):
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
        }
        self.num_frames = num_frames
        self.use = {"A0": "A0" in attention, "A1": "A1" in attention, "A2": "A2" in attention}
        self.standardize = FeatureStandardizer(feature_dim)
        c1, c2, c3 = HEAD_WIDTHS
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
