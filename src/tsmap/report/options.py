"""What ``tsmap report`` runs: seeds, the training schedule of every design, Fig. 5's densities."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tsmap.train_config import TrainConfig


@dataclass
class ReportOptions:
    """What the report runs; the defaults keep the demo's report under 15 minutes on 2 CPU
    cores (README, "The paper's experiments", has what they give)."""

    seeds: int = 3
    seed: int = 0  # the first seed; rows use seed, seed + 1, ...
    epochs: int = 6
    batch_size: int = 16
    lr: float = 0.005
    weight_decay: float = 2e-3
    design_lr: dict[str, float] = field(default_factory=lambda: {"lstm": 0.2})
    train_per_class: int = 32  # 0 = every training map
    val_fraction: float = 0.1  # of each class's training clips, held out to pick each head's epoch
    tsn_epochs: int = 60
    densities: tuple[int, ...] = (25, 32, 64, 128, 256)
    density_store: Path | None = None  # default: <store>-T<max density> beside the store
    confusion_groups: list[list[str]] = field(default_factory=list)  # empty: the most confused classes
    explain_videos: list[str] = field(default_factory=list)  # clip keys; empty: a few test videos
    num_explain: int = 4
    num_failures: int = 4
    top_classes: int = 25
    official_split: int = 1
    device: str = "auto"
    engine: str = "auto"
    show_progress: bool = True
    force: bool = False

    def train_config(self, key: str, seed: int, num_maps: int) -> TrainConfig:
        """The schedule of design ``key``: TSN its own; the others ``epochs`` at ``lr`` (or
        ``design_lr[key]``), divided by 10 after 70 % of the steps."""
        if key == "tsn":
            return TrainConfig(epochs=self.tsn_epochs, batch_size=32, lr=0.01, lr_step=10_000, seed=seed)
        steps = -(-num_maps // self.batch_size)
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.design_lr.get(key, self.lr),
            weight_decay=self.weight_decay,
            lr_step=max(1, int(0.7 * self.epochs * steps)),
            seed=seed,
        )
