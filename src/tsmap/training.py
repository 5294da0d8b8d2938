"""Training and scoring heads on stored VideoMaps.

The recipe is the paper's: SGD (momentum 0.9, weight decay 5e-4), base learning rate
0.01 divided by 10 every ``lr_step`` iterations (10,000 in the paper), mini-batches of
128 maps, cross-entropy; plus TSN's gradient clipping at norm 20. Note that at the
paper's sizes the step never fires on HMDB51 (100 epochs x 28 iterations = 2,800), so
the paper trains at a constant 0.01; short runs (the demo) set a smaller ``lr_step``.

Training survives being killed: after every epoch the whole training state (weights,
optimizer, scheduler, random generators, history) is written atomically to a state
file, and a rerun with the same settings continues from the last finished epoch,
reaching the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from tsmap import distributed
from tsmap.fileio import save_torch, seed_everything
from tsmap.videomap.augment import temporal_crop_batch


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.01
    lr_step: int = 10_000  # iterations between divisions of the lr by 10
    momentum: float = 0.9
    weight_decay: float = 5e-4
    clip_grad_norm: float = 20.0
    temporal_crop: float = 1.0  # min share of a map's rows kept by the random temporal crop (1 = off)
    micro_batch: int = 0  # maps per forward/backward pass inside a batch (0 = auto, see auto_micro_batch)
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


# On CPU the head trains fastest with ~16 maps of 256 x 1280 per pass: the activations of
# larger passes fall out of the caches (benchmarks/train_head.py: batch 16 ~1.6x the maps/s
# of batch 64 and more). Accumulated micro-batches give the whole batch's update (dropout masks aside).
CPU_PASS_CELLS = 16 * 256 * 1280


def auto_micro_batch(batch: int, num_frames: int, feature_dim: int, device: str) -> int:
    """Maps per forward/backward pass when none is given: the whole batch on GPU; on CPU
    as many maps as hold ``CPU_PASS_CELLS`` map cells (the whole batch for small maps)."""
    if torch.device(device).type != "cpu":
        return batch
    return max(1, min(batch, CPU_PASS_CELLS // max(1, num_frames * feature_dim)))


def fit_standardizer(model: nn.Module, data: Dataset, batch_size: int = 64) -> None:
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    model.standardize.fit(maps for maps, _ in loader)


def train_head(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig,
    device: str = "cpu",
    show_progress: bool = True,
    desc: str = "train",
    state_path: Path | None = None,
) -> list[dict]:
    """Train in place; returns one record (loss, accuracy, lr) per epoch.

    With ``state_path``, the training state is saved there after every epoch and a
    state left by a killed run with the same settings is resumed from. Under torchrun
    the model is wrapped in DistributedDataParallel and every rank takes
    ``batch_size / world size`` maps a step, so the global batch stays ``batch_size``;
    only rank 0 writes the state.
    """
    world = distributed.current()
    generator = seed_everything(config.seed)
    fit_standardizer(model, data)
    model.to(device).train()
    sampler = None
    if world.size > 1:
        sampler = DistributedSampler(data, num_replicas=world.size, rank=world.rank, shuffle=True, seed=config.seed)
        loader = DataLoader(data, batch_size=max(1, config.batch_size // world.size), sampler=sampler)
        forward: nn.Module = DistributedDataParallel(model)
    else:
        loader = DataLoader(data, batch_size=config.batch_size, shuffle=True, generator=generator)
        forward = model
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=0.1)
    loss_fn = nn.CrossEntropyLoss()
    history: list[dict] = []
    identity = {"config": config.to_dict(), "model": model.config, "num_maps": len(data), "world_size": world.size}
    if state_path is not None:
        history = resume_training_state(state_path, identity, model, optimizer, scheduler, generator, device)
    bar = tqdm(
        range(len(history), config.epochs),
        desc=desc,
        unit="epoch",
        initial=len(history),
        total=config.epochs,
        disable=not show_progress or not world.is_main,
        dynamic_ncols=True,
    )
    for epoch in bar:
        if sampler is not None:
            sampler.set_epoch(epoch)
        total_loss, correct, seen = 0.0, 0, 0
        for maps, labels in loader:
            maps = temporal_crop_batch(maps, config.temporal_crop)
            maps, labels = maps.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            # Micro-batches: the same gradient as the whole batch (the loss is the batch
            # mean), with the activations of one micro-batch alive at a time.
            chunk = config.micro_batch or auto_micro_batch(len(labels), maps.shape[1], maps.shape[2], device)
            starts = range(0, len(labels), chunk)
            batch_loss = 0.0
            for start in starts:
                x, y = maps[start : start + chunk], labels[start : start + chunk]
                last = start == starts[-1]
                with contextlib.nullcontext() if last or forward is model else forward.no_sync():
                    scores = forward(x)
                    loss = loss_fn(scores, y) * (len(y) / len(labels))
                    loss.backward()
                batch_loss += loss.item()
                correct += int((scores.argmax(1) == y).sum())
            if not math.isfinite(batch_loss):
                raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss {batch_loss})")
            nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            optimizer.step()
            scheduler.step()
            total_loss += batch_loss * len(labels)
            seen += len(labels)
        total_loss, correct, seen = distributed.sum_across([total_loss, correct, seen], device)
        record = {
            "epoch": epoch + 1,
            "loss": total_loss / seen,
            "train_top1": correct / seen,
            "lr": optimizer.param_groups[0]["lr"],
        }
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['train_top1']:.2f}")
        if state_path is not None and world.is_main:
            save_training_state(state_path, identity, model, optimizer, scheduler, generator, history)
    model.eval()
    return history


def save_training_state(
    path: Path, identity: dict, model, optimizer, scheduler, generator, history: list[dict]
) -> None:
    state = {
        "identity": identity,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "loader_rng": generator.get_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "history": history,
    }
    save_torch(state, path)  # the previous epoch's state stays whole until this instant


def resume_training_state(
    path: Path, identity: dict, model, optimizer, scheduler, generator, device: str
) -> list[dict]:
    """Load a killed run's state into the objects; returns its history ([] = start afresh)."""
    if not path.is_file():
        return []
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # an unreadable state file only costs the epochs it held
        print(f"note: ignoring unreadable training state {path} ({exc}); starting afresh")
        return []
    if state.get("identity") != identity:
        print(f"note: {path} was left by a run with other settings; starting afresh")
        return []
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"].cpu())
    generator.set_state(state["loader_rng"].cpu())
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    history = state["history"]
    if distributed.current().is_main:
        print(f"resuming {path.name} after epoch {len(history)} of {identity['config']['epochs']}")
    return history


@torch.inference_mode()
def score_maps(
    model: nn.Module, data: Dataset, batch_size: int = 64, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Class scores (N x C, pre-softmax) and labels for every map of ``data``."""
    model.to(device).eval()
    scores, labels = [], []
    for maps, y in DataLoader(data, batch_size=batch_size, shuffle=False):
        scores.append(model(maps.to(device)).float().cpu())
        labels.append(y)
    if not scores:
        raise ValueError("no VideoMaps to score")
    return torch.cat(scores).numpy(), torch.cat(labels).numpy()
