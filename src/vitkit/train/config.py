"""A training run as one dataclass: saved next to its outputs, loadable from YAML, overridable."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from vitkit.augment import AugmentConfig


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class TrainConfig:
    """Everything that defines a training run. Field names are the command-line override names."""

    # model
    model: str = "vit_ti4"  # a zoo name: ViT, hybrid (vit_r50_b16) or BiT ResNet (bit_r50x1)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # model config fields, e.g. depth
    init_checkpoint: str | None = None  # start from these weights (fine-tuning); see vitkit.train.finetune
    keep_head: bool = False  # with init_checkpoint and the same classes: keep its head (else a fresh zero one)
    # data
    data: str = "digits"
    classes: list[int] | None = None  # train on a subset of class ids, relabelled 0..k-1
    img_size: int | None = None  # None: the dataset's native size
    val_fraction: float = 0.1  # carved from the training split; 0 trains on all of it
    train_fraction: float = 1.0  # train on a nested, class-balanced subset (chosen by seed); see data.splits
    num_workers: int = 4  # for datasets streamed from disk
    # length
    epochs: float | None = 30
    steps: int | None = None  # optimiser steps; overrides epochs when set
    # seconds of training wall-clock: after a short calibration the schedule is re-fitted to end on
    # time (epochs/steps then only cap the length); the run's step count depends on the machine
    time_budget: float | None = None
    batch_size: int = 64  # global: summed over processes and accumulation micro-batches
    accum_steps: int = 1
    # optimisation
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    lr_end: float = 0.0  # learning rate at the end of the decay
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    nesterov: bool = False
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int | None = None  # None: warmup_fraction of the run
    warmup_fraction: float = 0.05
    grad_clip: float | None = 1.0  # global norm; None disables
    ema_decay: float = 0.0  # 0 disables the weight EMA
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # speed
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    compile: bool = False
    compile_augment: bool = False  # with compile: fuse the per-image augmentation ops too (vitkit.augment)
    # in-memory data: augment each epoch's images in large chunks when it starts (vitkit.train.ahead),
    # instead of ~hundreds of small kernels per step; mixing and label smoothing stay per step
    augment_ahead: bool = False
    # CUDA: the whole optimiser step (forward, loss, backward, clipping, AdamW) as one CUDA graph
    # (vitkit.train.graphed); one process, no accumulation, no mixup/cutmix
    graph_step: bool = False
    compile_mode: str = "default"  # torch.compile mode: default | reduce-overhead (CUDA graphs) | max-autotune...
    speed: str = ""  # vitkit.speed options, e.g. "cudnn,bf16_residual" (CUDA)
    grad_checkpointing: bool = False
    eval_batch_size: int = 512
    # bookkeeping
    seed: int = 0
    device: str = "auto"
    out: str | None = None  # run directory; default runs/<time>
    checkpoint_every: int = 500  # optimiser steps; a checkpoint is always written at the end
    keep_checkpoints: int = 2
    eval_every: int = 0  # optimiser steps; 0 = at the end of every epoch
    log_every: int = 10
    tensorboard: bool = False
    progress: bool = True
    preset: str | None = None  # informational: the preset this config came from

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig(**self.augment)
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if self.epochs is None and self.steps is None:
            raise ValueError("set epochs or steps")
        if self.batch_size < 1 or self.accum_steps < 1 or self.batch_size % self.accum_steps:
            raise ValueError(f"batch_size {self.batch_size} must be a positive multiple of accum_steps {self.accum_steps}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.time_budget is not None and self.time_budget <= 0:
            raise ValueError(f"time_budget must be a positive number of seconds, got {self.time_budget}")
        if self.compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile_mode must be one of {COMPILE_MODES}, got {self.compile_mode!r}")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"schedule must be cosine, linear or constant, got {self.schedule!r}")

    # ---- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return json.loads(json.dumps(d))  # tuples -> lists, plain types only

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown training config field(s) {unknown}")
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(yaml.safe_load(Path(path).read_text()) or {})

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """Apply {field: value}; `augment.mixup` or a bare augment field name reaches the
        augmentation config, a bare model config field name (e.g. depth) reaches model_overrides."""
        from vitkit.config import model_field_names

        d = self.to_dict()
        own = {f.name for f in dataclasses.fields(self)}
        aug = {f.name for f in dataclasses.fields(AugmentConfig)}
        for key, value in overrides.items():
            key = key.replace("-", "_")
            if key.startswith("augment."):
                key = key.split(".", 1)[1]
                if key not in aug:
                    raise ValueError(f"unknown augmentation field {key!r}; valid: {sorted(aug)}")
                d["augment"][key] = value
            elif key in own:
                d[key] = value
            elif key in aug:
                d["augment"][key] = value
            elif key in model_field_names():
                d["model_overrides"][key] = value
            else:
                raise ValueError(f"unknown config field {key!r}; valid: {sorted(own | aug | model_field_names())}")
        return TrainConfig.from_dict(d)
