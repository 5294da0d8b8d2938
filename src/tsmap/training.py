"""Training and scoring heads on stored VideoMaps.

Two recipes (``recipe(name)``):

- ``"paper"``: the paper's SGD, base learning rate 0.01 divided by 10 every ``lr_step``
  iterations (10,000), mini-batches of 128 maps, 100 epochs, cross-entropy. Momentum 0.9,
  weight decay 5e-4 and gradient clipping at norm 20 are TSN's (the paper states none
  of them). At HMDB51's size the step never fires (100 x 28 = 2,800 iterations), so the
  paper trains at a constant 0.01.
- ``"cosine"`` (the CLI's default): a linear warm-up, then a cosine decay to zero over
  fewer epochs and smaller batches (chosen on validation data: README, "Training recipe").

Either way, with validation maps (carved from the training videos, never the test
ones), every epoch reports validation accuracy and the weights of the best epoch on
validation are the ones kept; ``patience`` stops a run that has not improved for that
many epochs.

With ``weight_average`` (epochs), a moving average of the weights over about that many
epochs is kept beside them (``WeightAverage``, updated after every step): it is what is
validated, kept and saved, and it does not change the steps themselves.

A head can collapse: a few large steps early on kill every ReLU of one of its blocks, and
from then on it gives every map the same scores (training loss ln C, top-1 at chance) and
no gradient reaches below the dead block, so it never recovers (seen once on 324 real-footage
maps at lr 0.01, BENCHMARKS.md (g)). After ``COLLAPSE_EPOCHS`` such epochs in a row training
starts again from the head's initial weights at half the learning rate, up to
``COLLAPSE_RESTARTS`` times (the records of a restarted run carry ``lr_scale``). If the last
try collapses too, the best epoch before its collapse is kept (``collapse_epoch`` finds it in
the history); with no such epoch there is nothing worth keeping and ``TrainingCollapsed`` is
raised, with a message that says to lower the learning rate.

Training survives being killed: after every epoch the whole training state (weights,
optimizer, scheduler, random generators, history, best weights so far) is written
atomically to a state file, and a rerun with the same settings continues from the last
finished epoch, reaching the same weights as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from tsmap import distributed
from tsmap.fileio import save_torch, seed_everything
from tsmap.progress import progress as tqdm
from tsmap.train_config import TrainConfig
from tsmap.videomap.augment import feature_dropout_batch, mixup_batch, temporal_crop_batch

# On CPU the head trains fastest with ~16 maps of 256 x 1280 per pass: the activations of
# larger passes fall out of the caches (benchmarks/train_head.py: batch 16 ~1.6x the maps/s
# of batch 64 and more). Accumulated micro-batches give the whole batch's update (dropout masks aside).
CPU_PASS_CELLS = 16 * 256 * 1280


# Epochs in a row in which every batch's scores were the same for all its maps before a
# run is called collapsed (one could be chance; a dead block stays dead).
COLLAPSE_EPOCHS = 3
# Fresh starts at half the learning rate each after a collapse (seeded: the same every run).
COLLAPSE_RESTARTS = 2


class TrainingCollapsed(FloatingPointError):
    """The head's scores stopped depending on its input and no earlier epoch can be kept."""


def constant_scores(scores: torch.Tensor) -> bool:
    """True when every row of ``scores`` (B x C, B >= 2) is the same, up to float rounding:
    what a head whose ReLUs all died gives (its last layer sees zeros)."""
    spread = (scores.amax(0) - scores.amin(0)).max()
    return bool(spread <= 1e-6 * scores.abs().max().clamp_min(1.0))  # one device sync per pass


def collapse_epoch(history: list[dict]) -> int | None:
    """The first of the collapsed epochs that end ``history`` (its last weights give every map
    the same scores), else None."""
    start = len(history)
    while start and history[start - 1].get("collapsed"):
        start -= 1
    return history[start]["epoch"] if start < len(history) else None


def _collapsed_for_good(history: list[dict]) -> bool:
    """The last ``COLLAPSE_EPOCHS`` epochs all collapsed: time to stop."""
    return len(history) >= COLLAPSE_EPOCHS and all(r.get("collapsed") for r in history[-COLLAPSE_EPOCHS:])


def auto_micro_batch(batch: int, num_frames: int, feature_dim: int, device: str) -> int:
    """Maps per forward/backward pass when none is given: the whole batch on GPU; on CPU
    as many maps as hold ``CPU_PASS_CELLS`` map cells (the whole batch for small maps)."""
    if torch.device(device).type != "cpu":
        return batch
    return max(1, min(batch, CPU_PASS_CELLS // max(1, num_frames * feature_dim)))


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def fit_standardizer(model: nn.Module, data: Dataset, batch_size: int = 64) -> None:
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    model.standardize.fit(maps for maps, _ in loader)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """The learning-rate schedule, stepped once per iteration."""
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_step, gamma=0.1)
    total = max(1, config.epochs * steps_per_epoch)
    warmup = min(total - 1, round(config.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return 0.1 + 0.9 * step / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class WeightAverage:
    """An exponential moving average of a model's weights (Polyak averaging), updated after
    every optimizer step, whose time constant is ``steps`` steps. The first updates weigh more
    (decay ``min(1 - 1/steps, (1 + n) / (10 + n))`` at update n, as TensorFlow's
    ExponentialMovingAverage does), so that the average is not dragged towards the initial
    weights. Every floating-point entry of the state dict is averaged, buffers too (as timm's
    ModelEma); integer ones (BatchNorm's batch count) are copied."""

    def __init__(self, model: nn.Module, steps: float):
        self.decay = 1.0 - 1.0 / max(1.0, steps)
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for name, value in model.state_dict().items():
            average = self.state[name]
            if average.is_floating_point():
                average.lerp_(value.detach(), 1.0 - decay)
            else:
                average.copy_(value)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Inside the block ``model`` holds the averaged weights; its own come back after."""
        own = copy.deepcopy(model.state_dict())
        model.load_state_dict(self.state)
        try:
            yield
        finally:
            model.load_state_dict(own)

    def state_dict(self) -> dict:
        return {"state": self.state, "updates": self.updates}

    def load_state_dict(self, saved: dict) -> None:
        self.state = {k: v.clone() for k, v in saved["state"].items()}
        self.updates = int(saved["updates"])


def _better(record: dict, best: dict | None) -> bool:
    """Higher validation top-1 wins; a tie goes to the lower validation loss."""
    if best is None:
        return True
    return (record["val_top1"], -record["val_loss"]) > (best["val_top1"], -best["val_loss"])


def train_head(
    model: nn.Module,
    data: Dataset,
    config: TrainConfig,
    device: str = "cpu",
    show_progress: bool = True,
    desc: str = "train",
    state_path: Path | None = None,
    val_data: Dataset | None = None,
) -> list[dict]:
    """Train in place; returns one record per epoch (loss, train top-1, lr, ``seconds``: wall
    time since training began, validation included and summed over resumed runs; with
    ``val_data`` val_loss / val_top1; the kept epoch's record has ``"kept": True``).

    With ``val_data`` the weights of the best epoch on it are the ones left in ``model``,
    and ``config.patience`` can stop early. With ``state_path``, the training state is
    saved there after every epoch and a state left by a killed run with the same
    settings is resumed from. Under torchrun the model is wrapped in
    DistributedDataParallel and every rank takes ``batch_size / world size`` maps a
    step, so the global batch stays ``batch_size``; only rank 0 writes the state.
    Heads with BatchNorm run each batch in one pass (micro-batches would give them other
    batch statistics, so another update). A head that collapses is trained again from its
    initial weights at half the learning rate (see the module's docstring).
    """
    world = distributed.current()
    initial = copy.deepcopy(model.state_dict())
    first = _restart_in_state(state_path, model, data, config, val_data)  # a run killed after a restart
    config = replace(config, lr=config.lr * 0.5**first)
    for restart in range(first, COLLAPSE_RESTARTS + 1):
        history, best = _train_once(model, data, config, device, show_progress, desc, state_path, val_data)
        collapsed = collapse_epoch(history)
        if not collapsed or restart == COLLAPSE_RESTARTS:
            break
        if world.is_main:
            print(
                f"note: {desc}: the head collapsed at epoch {collapsed} (the same scores for every map); "
                f"training it again from its initial weights at half the learning rate ({config.lr / 2:g})"
            )
            if state_path is not None:
                state_path.unlink(missing_ok=True)
        model.load_state_dict(initial)
        config = replace(config, lr=config.lr / 2)
    for record in history if restart else []:
        record["lr_scale"] = 0.5**restart
    if collapsed and best["weights"] is None:
        raise TrainingCollapsed(
            f"training collapsed at epoch {collapsed} (at --lr {config.lr:g}): the head gave every map the same "
            "scores (its ReLUs died) and no epoch before it was scored on validation maps; retrain with a smaller "
            "--lr (half or less)"
        )
    _keep_best(model, history, best)
    return history


def _identity(model: nn.Module, data: Dataset, config: TrainConfig, val_data: Dataset | None) -> dict:
    """What a saved training state must match to be resumed."""
    identity = {
        "config": config.to_dict(),
        "model": model.config,
        "num_maps": len(data),
        "num_val_maps": len(val_data) if val_data is not None else 0,
        "world_size": distributed.current().size,
    }
    if getattr(data, "views", 1) > 1:  # a view drawn per map and epoch: other batches
        identity["views"] = data.views
    return identity


def _restart_in_state(state_path: Path | None, model, data, config: TrainConfig, val_data) -> int:
    """Which restart after a collapse the state at ``state_path`` was saved in (0: none, or no
    state), so that a run killed while training again at a smaller lr resumes there."""
    if state_path is None or not state_path.is_file():
        return 0
    try:
        # Memory-mapped: only the identity is read here; resuming loads the rest.
        saved = torch.load(state_path, map_location="cpu", weights_only=True, mmap=True).get("identity")
    except Exception:  # noqa: BLE001 - an unreadable state is reported when it is resumed
        return 0
    for restart in range(1, COLLAPSE_RESTARTS + 1):
        if saved == _identity(model, data, replace(config, lr=config.lr * 0.5**restart), val_data):
            return restart
    return 0


def _train_once(model, data, config: TrainConfig, device, show_progress, desc, state_path, val_data):
    """One training run as ``train_head`` describes; returns (history, best epoch's record and weights)."""
    world = distributed.current()
    generator = seed_everything(config.seed)
    fit_standardizer(model, data)
    model.to(device).train()
    loader, sampler, forward = _batches(model, data, config, world, generator)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = make_scheduler(optimizer, config, len(loader))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    average = WeightAverage(model, config.weight_average * len(loader)) if config.weight_average else None
    history: list[dict] = []
    best: dict = {"record": None, "weights": None}
    identity = _identity(model, data, config, val_data)
    if state_path is not None:
        history = resume_training_state(
            state_path, identity, model, optimizer, scheduler, generator, device, best, average
        )
    bar = tqdm(
        range(len(history), config.epochs),
        desc=desc,
        unit="epoch",
        initial=len(history),
        total=config.epochs,
        disable=not show_progress or not world.is_main,
        dynamic_ncols=True,
    )
    start = time.perf_counter() - (history[-1].get("seconds", 0.0) if history else 0.0)
    for epoch in bar:
        if _stalled(history, best["record"], config.patience) or _collapsed_for_good(history):
            break
        if sampler is not None:
            sampler.set_epoch(epoch)
        if hasattr(data, "set_epoch"):  # a multi-view MapDataset draws each map's view
            data.set_epoch(epoch, config.seed)
        model.train()
        total_loss, correct, seen, checked, varied = 0.0, 0, 0, 0, 0
        for maps, labels in loader:
            batch_loss, batch_correct, (batch_checked, batch_varied) = _train_step(
                forward, model, maps, labels, optimizer, loss_fn, config, device
            )
            if not math.isfinite(batch_loss):
                raise FloatingPointError(
                    f"training diverged at epoch {epoch + 1} (loss {batch_loss}); try a smaller learning rate (--lr)"
                )
            scheduler.step()
            if average is not None:
                average.update(model)
            total_loss += batch_loss * len(labels)
            correct += batch_correct
            seen += len(labels)
            checked, varied = checked + batch_checked, varied + batch_varied
        sums = distributed.sum_across([total_loss, correct, seen, checked, varied], device)
        total_loss, correct, seen, checked, varied = sums
        record = {
            "epoch": epoch + 1,
            "loss": total_loss / seen,
            "train_top1": correct / seen,
            "lr": optimizer.param_groups[0]["lr"],
        }
        if checked and not varied:
            record["collapsed"] = True
        if val_data is not None and len(val_data):
            with average.applied(model) if average is not None else contextlib.nullcontext():
                record |= validate(model, val_data, device)
                if not record.get("collapsed") and _better(record, best["record"]):
                    best = {"record": record, "weights": copy.deepcopy(model.state_dict())}
        record["seconds"] = time.perf_counter() - start
        history.append(record)
        postfix = {"loss": f"{record['loss']:.3f}", "train": f"{record['train_top1']:.2f}"}
        if "val_top1" in record:
            postfix["val"] = f"{record['val_top1']:.2f}"
        bar.set_postfix(postfix)
        if state_path is not None and world.is_main:
            save_training_state(state_path, identity, model, optimizer, scheduler, generator, history, best, average)
    bar.close()
    if average is not None:  # without validation maps, the average is what is kept
        model.load_state_dict(average.state)
    return history, best


def _batches(model: nn.Module, data: Dataset, config: TrainConfig, world, generator: torch.Generator):
    """(loader, sampler, forward): under torchrun each rank takes its share of every batch
    through a DistributedSampler and the model is wrapped in DistributedDataParallel."""
    if world.size == 1:
        return DataLoader(data, batch_size=config.batch_size, shuffle=True, generator=generator), None, model
    sampler = DistributedSampler(data, num_replicas=world.size, rank=world.rank, shuffle=True, seed=config.seed)
    loader = DataLoader(data, batch_size=max(1, config.batch_size // world.size), sampler=sampler)
    return loader, sampler, DistributedDataParallel(model)


def _train_step(
    forward, model, maps, labels, optimizer, loss_fn, config: TrainConfig, device: str
) -> tuple[float, int, tuple[int, int]]:
    """One SGD step on one batch (augmented here); returns its mean loss, how many it got
    right, and (passes of 2+ maps, those whose scores differed between maps: ``constant_scores``).

    Micro-batches give the same gradient as the whole batch (the loss is the batch mean),
    with the activations of one micro-batch alive at a time; heads with BatchNorm take the
    whole batch in one pass (micro-batches would change their batch statistics).
    """
    maps = feature_dropout_batch(temporal_crop_batch(maps, config.temporal_crop), config.feature_dropout)
    maps, labels, mixed, lam = mixup_batch(maps, labels, config.mixup)
    maps, labels, mixed = (t.to(device, non_blocking=True) for t in (maps, labels, mixed))
    optimizer.zero_grad(set_to_none=True)
    chunk = config.micro_batch or auto_micro_batch(len(labels), maps.shape[1], maps.shape[2], device)
    chunk = len(labels) if has_batchnorm(model) else chunk
    starts = range(0, len(labels), chunk)
    batch_loss, correct, checked, varied = 0.0, 0, 0, 0
    for start in starts:
        x, y, y2 = maps[start : start + chunk], labels[start : start + chunk], mixed[start : start + chunk]
        last = start == starts[-1]
        with contextlib.nullcontext() if last or forward is model else forward.no_sync():
            scores = forward(x)
            loss = mixed_loss(loss_fn, scores, y, y2, lam) * (len(y) / len(labels))
            loss.backward()
        batch_loss += loss.item()
        correct += int((scores.argmax(1) == y).sum())
        if len(y) > 1:
            checked, varied = checked + 1, varied + (not constant_scores(scores.detach()))
    if math.isfinite(batch_loss):
        nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
        optimizer.step()
    return batch_loss, correct, (checked, varied)


def _keep_best(model: nn.Module, history: list[dict], best: dict) -> None:
    """Load the best epoch's weights on validation (else keep the last) and mark its record."""
    if best["weights"] is not None:
        model.load_state_dict(best["weights"])
        for record in history:
            record["kept"] = record["epoch"] == best["record"]["epoch"]
    elif history:
        history[-1]["kept"] = True
    model.eval()


def mixed_loss(loss_fn: nn.Module, scores: torch.Tensor, y: torch.Tensor, y2: torch.Tensor, lam: float) -> torch.Tensor:
    """The loss of a (possibly mixed-up) batch: lam of the first labels' loss, 1 - lam of the second's."""
    return loss_fn(scores, y) if lam == 1.0 else lam * loss_fn(scores, y) + (1 - lam) * loss_fn(scores, y2)


def _stalled(history: list[dict], best: dict | None, patience: int) -> bool:
    return bool(patience and best is not None and history and history[-1]["epoch"] - best["epoch"] >= patience)


@torch.inference_mode()
def validate(model: nn.Module, data: Dataset, device: str = "cpu", batch_size: int = 64) -> dict:
    """Validation loss and top-1 of ``model`` on ``data`` (eval mode; the mode is restored)."""
    was_training = model.training
    scores, labels = score_maps(model, data, batch_size=batch_size, device=device)
    model.train(was_training)
    logits, target = torch.from_numpy(scores), torch.from_numpy(labels)
    return {
        "val_loss": float(nn.functional.cross_entropy(logits, target)),
        "val_top1": float((logits.argmax(1) == target).float().mean()),
    }


def save_training_state(
    path: Path,
    identity: dict,
    model,
    optimizer,
    scheduler,
    generator,
    history: list[dict],
    best: dict | None = None,
    average: WeightAverage | None = None,
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
        "best": best or {"record": None, "weights": None},
        "average": average.state_dict() if average is not None else None,
    }
    save_torch(state, path)  # the previous epoch's state stays whole until this instant


def resume_training_state(
    path: Path,
    identity: dict,
    model,
    optimizer,
    scheduler,
    generator,
    device: str,
    best: dict | None = None,
    average: WeightAverage | None = None,
) -> list[dict]:
    """Load a killed run's state into the objects; returns its history ([] = start afresh).
    ``best`` is updated with the best epoch on validation so far (record and weights),
    ``average`` with the weight average's state."""
    fresh: list[dict] = []
    if not path.is_file():
        return fresh
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # an unreadable state file only costs the epochs it held
        print(f"note: ignoring unreadable training state {path} ({type(exc).__name__}); starting afresh")
        return fresh
    if not isinstance(state, dict) or state.get("identity") != identity:
        print(f"note: {path} was left by a run with other settings; starting afresh")
        return fresh
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
    if best is not None and state.get("best"):
        best.update(state["best"])
    if average is not None and state.get("average"):
        average.load_state_dict(state["average"])
    return history


@torch.inference_mode()
def score_maps(
    model: nn.Module, data: Dataset, batch_size: int = 64, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Class scores (N x C, pre-softmax) and labels for every map of ``data``; with several
    views a video (a multi-view ``MapDataset``), the scores of its views averaged, as TSN
    averages its crops."""
    if getattr(data, "views", 1) > 1:
        scored = [score_maps(model, data.view(v), batch_size, device) for v in range(data.views)]
        return np.mean([s for s, _ in scored], axis=0), scored[0][1]
    model.to(device).eval()
    scores, labels = [], []
    for maps, y in DataLoader(data, batch_size=batch_size, shuffle=False):
        scores.append(model(maps.to(device)).float().cpu())
        labels.append(y)
    if not scores:
        raise ValueError("no VideoMaps to score")
    return torch.cat(scores).numpy(), torch.cat(labels).numpy()
