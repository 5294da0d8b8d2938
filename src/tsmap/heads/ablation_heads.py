"""The other head designs of the paper's Table II, on the same VideoMaps.

- ``OneLayerHead``: one block of the paper's head ([5x5 conv, ReLU, 3x3 max-pool
  stride 2], width 16), dropout and the FC layer. The paper reports that it does not
  converge on HMDB51.
- ``AlexNetHead``: an AlexNet-style deeper head: five convs (11x11 stride 2, 5x5, then
  three 3x3), each with BatchNorm (in place of AlexNet's local response normalisation),
  max-pools after the 1st, 2nd and 5th, and three FC layers with dropout 0.5. The paper
  finds it below the 3-layer head ("a deeper network with more parameters is prone to
  over-fitting"). AlexNet's own widths (96 ... 4096) are scaled down to 24, 48, 64, 64,
  48 and FC 512, so that a 256 x 1280 map costs about as much as in the 3-layer head
  (the paper gives no widths for it either).
- ``LSTMHead``: a 3-layer LSTM over the frame features (rows of the map), hidden size
  256, dropout 0.5 between layers, classifying the mean over time of the top layer's
  outputs (the paper's "TSN+3-layer LSTM"; the averaging is LRCN's).

None has temporal attention: Table II compares designs without it (the paper's 3-layer
row, 55.0, is the "w/o Attn." row of Table III). Each head standardises the columns with
statistics of the training maps (``FeatureStandardizer``, fitted by ``train_head``) and,
like ``VideoMapHead``, resamples a map of another T to its trained T, so that every head
sees test maps laid out as its training maps were. ``config`` holds the constructor
arguments plus ``head``, which ``tsmap.heads.checkpoint.build_head`` reads back.
"""

from __future__ import annotations

import torch
from torch import nn

from tsmap.heads.standardize import FeatureStandardizer
from tsmap.heads.videomap_head import channels_last_1ch, conv_block, pooled_size, resample_time

ONE_LAYER_WIDTH = 16
ALEXNET_WIDTHS = (24, 48, 64, 64, 48)
ALEXNET_FC = 512
LSTM_HIDDEN = 256
LSTM_LAYERS = 3


class MapHead(nn.Module):
    """What the designs share: ``config``, T, and the column standardiser applied to maps
    resampled to T, as rows (``standardized``) or as a 1-channel image (``image``)."""

    def __init__(self, head: str, num_classes: int, num_frames: int, feature_dim: int, **options):
        super().__init__()
        self.config = {
            "head": head,
            "num_classes": num_classes,
            "num_frames": num_frames,
            "feature_dim": feature_dim,
            **options,
        }
        self.num_frames = num_frames
        self.standardize = FeatureStandardizer(feature_dim)

    def standardized(self, maps: torch.Tensor) -> torch.Tensor:
        return self.standardize(resample_time(maps, self.num_frames).float())

    def image(self, maps: torch.Tensor) -> torch.Tensor:
        """B x 1 x T x L in channels_last strides, so the convs run channels_last (see ``channels_last_1ch``)."""
        return channels_last_1ch(self.standardized(maps).unsqueeze(1).contiguous())


class OneLayerHead(MapHead):
    def __init__(self, num_classes: int, num_frames: int, feature_dim: int, dropout: float = 0.5):
        super().__init__("conv1", num_classes, num_frames, feature_dim, dropout=dropout)
        self.block1 = conv_block(1, ONE_LAYER_WIDTH)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(ONE_LAYER_WIDTH * pooled_size(num_frames) * pooled_size(feature_dim), num_classes)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.block1(self.image(maps)).flatten(1)))


class AlexNetHead(MapHead):
    def __init__(self, num_classes: int, num_frames: int, feature_dim: int, dropout: float = 0.5):
        super().__init__("alexnet", num_classes, num_frames, feature_dim, dropout=dropout)
        pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        def conv(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
            # BatchNorm after each conv (as in VGG-BN, not in the 2012 AlexNet): without it the
            # plain 8-layer stack did not leave chance level within the short report schedule
            # (PyTorch's default init shrinks the signal layer by layer; He init blew it up
            # through the max-pools).
            return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]

        c1, c2, c3, c4, c5 = ALEXNET_WIDTHS
        # 11x11 stride 2 with padding 5: the output has pooled_size() rows and columns.
        self.features = nn.Sequential(
            *conv(1, c1, 11, stride=2),
            pool,
            *conv(c1, c2, 5),
            pool,
            *conv(c2, c3, 3),
            *conv(c3, c4, 3),
            *conv(c4, c5, 3),
            pool,
        )
        t, ell = num_frames, feature_dim
        for _ in range(4):  # the strided conv and three pools
            t, ell = pooled_size(t), pooled_size(ell)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(c5 * t * ell, ALEXNET_FC),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(ALEXNET_FC, ALEXNET_FC),
            nn.ReLU(inplace=True),
            nn.Linear(ALEXNET_FC, num_classes),
        )

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.image(maps)).flatten(1))


class LSTMHead(MapHead):
    def __init__(
        self,
        num_classes: int,
        num_frames: int,
        feature_dim: int,
        hidden: int = LSTM_HIDDEN,
        layers: int = LSTM_LAYERS,
        dropout: float = 0.5,
    ):
        super().__init__("lstm", num_classes, num_frames, feature_dim, hidden=hidden, layers=layers, dropout=dropout)
        self.lstm = nn.LSTM(feature_dim, hidden, num_layers=layers, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.standardized(maps))
        # The mean of the top layer's outputs over time (LRCN's average of per-frame
        # predictions, before the FC): every step gets a direct gradient, where the last
        # hidden state alone left the LSTM near chance in short schedules.
        return self.fc(self.dropout(out.mean(dim=1)))
