"""Classification metrics over a split: top-1/top-5, loss, per-class accuracy, confusion matrix."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F


TTA_MODES = ("none", "flip")


@dataclass
class EvalResult:
    top1: float
    top5: float
    loss: float
    n: int
    per_class: list[float]
    confusion: list[list[int]]  # [true][predicted]
    images_per_s: float

    def summary(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "loss": self.loss, "n": self.n,
                "images_per_s": self.images_per_s}


def split_batches(split, batch_size: int, device: torch.device, num_workers: int = 4,
                  rank: int = 0, world: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 images, labels) batches of a split on `device`, this rank's shard only."""
    from vitkit.data import ArraySplit

    if isinstance(split, ArraySplit):
        n = split.labels.shape[0]
        idx = torch.arange(rank, n, world)
        for i in range(0, len(idx), batch_size):
            j = idx[i:i + batch_size]
            yield split.images[j].to(device, non_blocking=True), split.labels[j].to(device, non_blocking=True)
        return
    sub = torch.utils.data.Subset(split, list(range(rank, len(split), world)))
    loader = torch.utils.data.DataLoader(sub, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                         pin_memory=device.type == "cuda")
    for images, labels in loader:
        yield images.to(device, non_blocking=True), labels.to(device, non_blocking=True)


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             num_classes: int, preprocess, amp_dtype: torch.dtype | None = None,
             reduce=None, tta: str = "none") -> EvalResult:
    """Run the model over (uint8 images, labels) batches; `preprocess` maps uint8 -> model input.

    `reduce`, if given, sums a tensor over processes (distributed evaluation). `tta="flip"` averages
    the logits of each image and its mirror image (test-time augmentation; twice the compute).
    """
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, got {tta!r}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
    top5_hits = torch.zeros((), dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    start = time.perf_counter()
    for images, labels in batches:
        x = preprocess(images)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(x).float()
            if tta == "flip":
                logits = (logits + model(x.flip(-1)).float()) / 2
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        pred = logits.argmax(-1)
        confusion += torch.bincount(labels * num_classes + pred, minlength=num_classes**2).view(num_classes, num_classes)
        k = min(5, num_classes)
        top5_hits += (logits.topk(k, dim=-1).indices == labels[:, None]).any(-1).sum()
    if reduce is not None:
        confusion, top5_hits, loss_sum = reduce(confusion), reduce(top5_hits), reduce(loss_sum)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    model.train(was_training)
    n = int(confusion.sum())
    if n == 0:
        raise ValueError("evaluation split is empty")
    per_class_n = confusion.sum(1).clamp(min=1)
    return EvalResult(
        top1=float(confusion.diag().sum()) / n, top5=float(top5_hits) / n, loss=float(loss_sum) / n, n=n,
        per_class=(confusion.diag() / per_class_n).tolist(), confusion=confusion.tolist(),
        images_per_s=n / max(seconds, 1e-9))


def input_stats(model_config, fallback_mean=None, fallback_std=None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) a model was trained with: its config's, else the fallback, else 0.5 (the
    paper's [-1, 1] pixels), one value per input channel."""
    c = model_config.in_chans
    mean = model_config.mean or fallback_mean or (0.5,) * c
    std = model_config.std or fallback_std or (0.5,) * c
    if len(mean) != c or len(std) != c:
        raise ValueError(f"normalisation has {len(mean)} mean / {len(std)} std values for a {c}-channel model")
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def evaluate_split(model, split, num_classes: int, *, mean=None, std=None, batch_size: int = 256,
                   num_workers: int = 4, amp_dtype: torch.dtype | None = None, tta: str = "none") -> EvalResult:
    """Evaluate `model` (on its device) on a data split, preprocessed as the model was trained:
    resized to its `img_size`, normalised by its own mean/std (`mean`/`std` only fill in when the
    model records none)."""
    from vitkit.augment import preprocess_eval

    device = next(model.parameters()).device
    mean, std = input_stats(model.config, mean, std)
    size = model.config.img_size
    return evaluate(model, split_batches(split, batch_size, device, num_workers), num_classes,
                    lambda u8: preprocess_eval(u8, size, mean, std), amp_dtype, tta=tta)


def check_compatible(model_config, data, need_head: bool = True) -> list[str]:
    """Raise ValueError if the model cannot be run on `data` (channels, class count); return
    warnings for what merely looks odd (class names that differ)."""
    if model_config.in_chans != data.in_chans:
        raise ValueError(f"the model takes {model_config.in_chans}-channel images, {data.source or data.name} has "
                         f"{data.in_chans}-channel ones")
    if not need_head:
        return []
    if model_config.num_classes != data.num_classes:
        raise ValueError(f"the model has {model_config.num_classes} classes, {data.source or data.name} has "
                         f"{data.num_classes}; pick the classes it was trained on with --classes "
                         f"(e.g. --classes 5,6,7,8,9)")
    names = model_config.class_names
    if names and list(names) != list(data.class_names):
        return [(f"the model's class names {names[:5]}... differ from the data's {data.class_names[:5]}...; "
                 "accuracy assumes class i of the model is class i of the data")]
    return []
