"""Optimisers and learning-rate schedules of the paper: AdamW or SGD, warm-up then cosine/linear decay."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay only matrices: biases, norms, the class token and position embeddings are not decayed."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(("cls_token", "pos_embed")):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.999), momentum: float = 0.9,
                    nesterov: bool = False, capturable: bool = False) -> torch.optim.Optimizer:
    """AdamW (paper pre-training) or SGD with momentum (paper fine-tuning); fused kernels on CUDA.
    `capturable`: AdamW keeps its step counts on the device, so its step can live in a CUDA graph."""
    groups = param_groups(model, weight_decay)
    on_cuda = next(model.parameters()).is_cuda
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=on_cuda or None, capturable=capturable)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, fused=on_cuda or None)
    raise ValueError(f"unknown optimizer {name!r}; use 'adamw' or 'sgd'")


def lr_factor(step: int, total: int, warmup: int, schedule: str, end_factor: float = 0.0) -> float:
    """Multiplier of the base learning rate at `step` (0-based): linear warm-up, then decay."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif schedule == "linear":
        shape = 1.0 - progress
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    return end_factor + (1.0 - end_factor) * shape


@dataclass
class Schedule:
    """The learning-rate multiplier as an object, so a run can re-fit its length (a time budget) and
    LambdaLR's state_dict carries the fitted length through a resume."""

    total: int
    warmup: int
    kind: str
    end_factor: float = 0.0

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.total, self.warmup, self.kind, self.end_factor)


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                    schedule: str, lr: float, lr_end: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over a `Schedule` (reach it as `scheduler.lr_lambdas[0]`)."""
    end = lr_end / lr if lr > 0 else 0.0
    return torch.optim.lr_scheduler.LambdaLR(optimizer, Schedule(total_steps, warmup_steps, schedule, end))
