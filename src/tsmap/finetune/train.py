"""Stage 1 of the paper: fine-tune the frame ConvNet TSN-style on the user's classes.

The paper's frame features come from BN-Inception networks trained as TSN: K = 3
snippets per video through the shared ConvNet, a linear classifier with dropout on each
snippet's pooled features, and the K class scores averaged (the consensus) before the
cross-entropy. Partial BN: only the first BatchNorm layer keeps updating its running
statistics and affine parameters, every later one is frozen at its ImageNet values,
which the small action datasets could not estimate better (TSN, Sec. 3.2). Inputs are
multi-scale corner crops with flips (``tsmap.finetune.data``).

The checkpoint holds the fine-tuned backbone (not the classifier), names its backbone and
stream, and records its training set: the dataset (kind, root), the official split and
the training videos' keys (``tsmap.finetune.provenance``), so that extraction and
evaluation refuse it for test videos it saw. ``tsmap extract --weights`` then maps videos
with it. The runs of HMDB51/UCF101's splits live apart (``finetune_output``: one folder
per split). Training survives being killed as head training does: the state is saved
after each epoch and a rerun resumes, only a run on the same training list and split.
On CUDA the forward and backward run in mixed precision (float16 autocast, scaled loss).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from tsmap.data.video import VideoError
from tsmap.fileio import save_torch, seed_everything
from tsmap.finetune.data import SCALES, SnippetDataset, collate_snippets
from tsmap.finetune.provenance import TrainingSet, labels_digest
from tsmap.frames.backbones import FINETUNE_FORMAT, backbone_spec, normalisation
from tsmap.frames.onnx_runtime import weights_digest
from tsmap.progress import progress as tqdm
from tsmap.training import resume_training_state, save_training_state


@dataclass
class FinetuneConfig:
    segments: int = 3
    epochs: int = 80  # TSN's RGB schedule (flow: 340)
    batch_size: int = 32  # videos per step (TSN: 128 over 8 GPUs)
    lr: float = 0.001
    lr_steps: list[int] = field(default_factory=lambda: [30, 60])  # epochs at which the lr is divided by 10
    momentum: float = 0.9
    weight_decay: float = 5e-4
    clip_grad_norm: float = 40.0
    dropout: float = 0.8  # TSN: 0.8 for RGB, 0.7 for flow
    partial_bn: bool = True
    scales: list[float] = field(default_factory=lambda: list(SCALES))
    flip: bool = True
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class SnippetClassifier(nn.Module):
    """Backbone -> pooled features -> dropout -> linear, averaged over a video's K snippets."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, dropout: float, partial_bn: bool):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.fc.weight, 0, 0.001)  # TSN's initialisation of the new classifier
        nn.init.zeros_(self.fc.bias)
        self.partial_bn = partial_bn

    def train(self, mode: bool = True) -> SnippetClassifier:
        super().train(mode)
        if mode and self.partial_bn:
            for bn in batchnorms(self.backbone)[1:]:
                bn.eval()  # running statistics stay as they are
                for p in bn.parameters():
                    p.requires_grad_(False)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: B x K x C x H x W normalised snippets -> B x classes (the consensus of the K scores)."""
        b, k = x.shape[:2]
        scores = self.fc(self.dropout(self.backbone.features(x.flatten(0, 1))))
        return scores.view(b, k, -1).mean(dim=1)


class Normalise(nn.Module):
    """uint8 B x K x H x W x C -> float B x K x C x H x W, normalised as the backbone expects."""

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("scale", 1.0 / torch.tensor(std).view(1, 1, -1, 1, 1))
        self.register_buffer("shift", -torch.tensor(mean).view(1, 1, -1, 1, 1) / torch.tensor(std).view(1, 1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 1, 4, 2, 3).float() * self.scale + self.shift


def finetune(
    backbone: nn.Module,
    backbone_name: str,
    stream: str,
    data: SnippetDataset,
    num_classes: int,
    config: FinetuneConfig,
    device: str = "cpu",
    workers: int = 2,
    state_path: Path | None = None,
    show_progress: bool = True,
    source: dict | None = None,
) -> tuple[SnippetClassifier, list[dict], dict[str, str]]:
    """Train ``backbone`` in place as a TSN snippet classifier.

    ``source``: the spec of the dataset ``data``'s clips come from (``VideoDataset.spec``:
    its kind and, for HMDB51/UCF101, its split). ``state_path``: the training state, resumed
    only by a run with the same identity (training list, split, recipe, starting weights).
    Returns the classifier, one record per epoch, and the videos that could not be read
    (path -> reason; they are skipped, and named on the progress bar when first met).
    """
    spec = backbone_spec(backbone_name)
    generator = seed_everything(config.seed)
    model = SnippetClassifier(backbone, spec.feature_dim, num_classes, config.dropout, config.partial_bn)
    model.to(device).train()
    normalise = Normalise(*normalisation(spec, stream)).to(device)
    loader = DataLoader(
        data,
        batch_size=config.batch_size,
        shuffle=True,
        generator=generator,
        num_workers=workers,
        collate_fn=collate_snippets,
        persistent_workers=False,
        pin_memory=torch.device(device).type == "cuda",
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=config.lr_steps, gamma=0.1)
    amp = torch.device(device).type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    loss_fn = nn.CrossEntropyLoss()
    identity = _identity(data, source, config, backbone, backbone_name, stream, num_classes)
    history = (
        resume_training_state(state_path, identity, model, optimizer, scheduler, generator, device)
        if state_path
        else []
    )
    steps = len(loader)
    skipped: dict[str, str] = {}
    bar = tqdm(
        desc=f"finetune {stream}",
        unit="batch",
        initial=len(history) * steps,
        total=config.epochs * steps,
        disable=not show_progress,
        dynamic_ncols=True,
    )
    for epoch in range(len(history), config.epochs):
        data.set_epoch(epoch)
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for snippets, labels, unreadable in loader:
            for item in unreadable:
                if item.path not in skipped:
                    skipped[item.path] = item.reason
                    bar.write(f"skipped {item.path}: {item.reason}")
            if len(labels) == 0:
                bar.update(1)
                continue
            x, y = normalise(snippets.to(device, non_blocking=True)), labels.to(device, non_blocking=True)
            loss, right = _step(model, x, y, optimizer, scaler, loss_fn, params, config, amp)
            if not math.isfinite(loss):
                raise FloatingPointError(f"fine-tuning diverged at epoch {epoch + 1} (loss {loss})")
            total_loss += loss * len(y)
            correct += right
            seen += len(y)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.2f}")
        scheduler.step()
        if seen == 0:
            raise VideoError(data.root, f"none of the {len(data)} training videos could be read")
        record = {"epoch": epoch + 1, "loss": total_loss / seen, "train_top1": correct / seen}
        record["lr"] = scheduler.get_last_lr()[0]
        history.append(record)
        if state_path is not None:
            save_training_state(state_path, identity, model, optimizer, scheduler, generator, history)
    bar.close()
    model.eval()
    return model, history, skipped


def _identity(data, source, config, backbone, backbone_name: str, stream: str, num_classes: int) -> dict:
    """Everything a resumed run must share with the killed one: the starting weights (a rerun
    from other --weights starts afresh), the training videos, their labels and split (another
    split's run never continues this one), what the snippets are made of, the recipe."""
    return {
        "trained_on": TrainingSet.of(data.clips, data.root, source).trained_on(),
        "labels": labels_digest(data.clips),
        "config": config.to_dict(),
        "backbone": backbone_name,
        "base_weights": weights_digest(backbone),
        "stream": stream,
        "flow": None if data.flow is None else [data.flow.method, data.flow.preset],
        "num_clips": len(data),
        "num_classes": num_classes,
        "size": data.size,
        "resize": data.resize,
    }


def _step(model, x, y, optimizer, scaler, loss_fn, params, config, amp: bool) -> tuple[float, int]:
    """One SGD step (mixed precision on CUDA); returns the batch's loss and how many it got right.
    A non-finite loss takes no step."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.float16, enabled=amp):
        scores = model(x)
        loss = loss_fn(scores.float(), y)
    if not math.isfinite(loss.item()):
        return loss.item(), 0
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    nn.utils.clip_grad_norm_(params, config.clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    return loss.item(), int((scores.argmax(1) == y).sum())


def save_finetuned(
    path: Path,
    model: SnippetClassifier,
    backbone_name: str,
    stream: str,
    classes: list[str],
    base_weights: str,
    config: FinetuneConfig,
    history: list[dict],
    data: SnippetDataset,
    source: dict | None = None,
) -> None:
    """The checkpoint ``tsmap extract --weights`` reads (tensors and plain types only), written atomically.

    It records what the backbone was trained on: ``data``'s clips (their keys), where they
    were, and ``source``'s kind and split (``VideoDataset.spec``; see ``finetune``).
    """
    state = {
        "format": FINETUNE_FORMAT,
        "backbone": backbone_name,
        "stream": stream,
        "backbone_state": {k: v.detach().cpu() for k, v in model.backbone.state_dict().items()},
        "classes": list(classes),
        "base_weights": base_weights,
        "config": config.to_dict(),
        "history": history,
        "image_size": data.size,
        "resize": data.resize,
        **TrainingSet.of(data.clips, data.root, source).checkpoint_fields(),
    }
    save_torch(state, path)


def finetune_output(out_dir: Path, stream: str, backbone: str, split: int | None = None) -> Path:
    """Where ``tsmap finetune`` writes its checkpoint: ``OUT/<stream>-<backbone>.pt``, and for an
    official split ``OUT/split<N>/<stream>-<backbone>.pt`` (each split's ConvNet is its own)."""
    folder = Path(out_dir) if split is None else Path(out_dir) / f"split{split}"
    return folder / f"{stream}-{backbone}.pt"


def finetune_state_path(output: Path) -> Path:
    """The training state of the run that writes ``output``, beside it (hidden)."""
    return output.with_name(f".{output.stem}.training-state.pt")
