"""How a head is trained: ``TrainConfig`` and the named recipes, checked before anything runs.

Kept free of PyTorch so that the command line can show the recipes' defaults in ``--help``
without loading it. ``recipe("paper")`` is the paper's SGD (TSN's momentum, weight decay
and clipping); ``recipe("cosine")`` is the default of ``tsmap train``, chosen on validation
data (README, "Training recipe").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

SCHEDULES = ("step", "cosine")
# Settings added after heads and training states were first saved, with the value that means
# "off": ``to_dict`` leaves one out while it is off, so that records saved before it still
# match their settings. A new setting goes here with its off value.
ADDED_LATER = {"weight_average": 0.0}


class ConfigError(ValueError):
    """A training setting out of its range (names the setting and the allowed values)."""


@dataclass
class TrainConfig:
    """How a head is trained. The defaults are the paper's recipe (``recipe("paper")``)."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.01
    lr_step: int = 10_000  # "step" schedule: iterations between divisions of the lr by 10
    momentum: float = 0.9
    weight_decay: float = 5e-4
    clip_grad_norm: float = 20.0
    temporal_crop: float = 1.0  # min share of a map's rows kept by the random temporal crop (1 = off)
    micro_batch: int = 0  # maps per forward/backward pass inside a batch (0 = auto, see auto_micro_batch)
    seed: int = 0
    schedule: str = "step"  # "step" (the paper's) or "cosine" (linear warm-up, then cosine to 0)
    warmup_epochs: float = 0.0  # "cosine": epochs of linear warm-up from lr / 10
    label_smoothing: float = 0.0
    feature_dropout: float = 0.0  # augmentation: share of feature columns dropped from each training map
    mixup: float = 0.0  # augmentation: mixup's alpha (0 = off)
    patience: int = 0  # with validation maps: stop after this many epochs without a better one (0 = never)
    weight_average: float = 0.0  # epochs spanned by a moving average of the weights, which is what is kept (0 = off)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ConfigError naming the first setting out of its range."""
        rules = [
            ("epochs", self.epochs >= 1, "at least 1"),
            ("batch_size", self.batch_size >= 1, "at least 1"),
            ("lr", math.isfinite(self.lr) and self.lr > 0, "a number > 0"),
            ("lr_step", self.lr_step >= 1, "at least 1"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("weight_decay", math.isfinite(self.weight_decay) and self.weight_decay >= 0, "a number >= 0"),
            ("clip_grad_norm", self.clip_grad_norm > 0, "a number > 0"),
            ("temporal_crop", 0 < self.temporal_crop <= 1, "in (0, 1]"),
            ("micro_batch", self.micro_batch >= 0, "0 (auto) or more"),
            ("schedule", self.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}"),
            ("warmup_epochs", 0 <= self.warmup_epochs <= self.epochs, "in [0, epochs]"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("feature_dropout", 0 <= self.feature_dropout < 1, "in [0, 1)"),
            ("mixup", math.isfinite(self.mixup) and self.mixup >= 0, "a number >= 0"),
            ("patience", self.patience >= 0, "0 (never stop early) or more"),
            ("weight_average", math.isfinite(self.weight_average) and self.weight_average >= 0, "a number >= 0"),
        ]
        for name, ok, allowed in rules:
            if not ok:
                raise ConfigError(f"training setting {name} must be {allowed}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        """The settings, less those of ``ADDED_LATER`` that are off."""
        return {k: v for k, v in asdict(self).items() if k not in ADDED_LATER or v != ADDED_LATER[k]}

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# The recipes by name: "paper" is the paper's (and TSN's) SGD; "cosine" was chosen on
# validation data (README, "Training recipe"; mixup 0.2 on the real-footage benchmark's
# validation videos, BENCHMARKS.md (g)).
RECIPES: dict[str, TrainConfig] = {
    "paper": TrainConfig(),
    "cosine": TrainConfig(
        epochs=30, batch_size=32, lr=0.01, schedule="cosine", warmup_epochs=1.0, weight_decay=5e-4, mixup=0.2
    ),
}


def recipe(name: str, **overrides) -> TrainConfig:
    """The recipe ``name`` ("paper" or "cosine") with ``overrides`` (None values are ignored)."""
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    return replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})


__all__ = ["RECIPES", "SCHEDULES", "ConfigError", "TrainConfig", "recipe"]
