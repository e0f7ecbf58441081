"""Fine-tuning (paper section 3.2): a pre-trained checkpoint, a fresh head, maybe a new resolution.

`finetune(checkpoint, config)` trains with the ordinary engine; what differs from training from
scratch is only how the model is built (`pretrained_model`) and two defaults (`finetune_config`):
the checkpoint's resolution when none is asked for, and the checkpoint path as the run's model name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from vitkit.data import DataBundle
from vitkit.model import VisionTransformer
from vitkit.train.config import TrainConfig


def pretrained_model(checkpoint: str | Path, data: DataBundle, img_size: int | tuple[int, int],
                     overrides: dict[str, Any] | None = None, keep_head: bool = False) -> VisionTransformer:
    """Load `checkpoint` for fine-tuning on `data` at `img_size`.

    - The patch size stays; position embeddings are resampled in 2D to the new patch grid
      (`vitkit.load_model(img_size=...)`, float32, class token kept apart).
    - The head becomes a zero-initialised linear layer for the data's classes and a pre-logits
      layer is dropped, as in the paper, unless `keep_head` and the classes are the same number.
    - Normalisation stays the checkpoint's (the features were learnt on that input scaling); a
      checkpoint that records none gets the data's statistics.
    """
    from vitkit.checkpoints import load_model

    model = load_model(checkpoint, img_size=img_size, num_classes=data.num_classes, **(overrides or {}))
    c = model.config
    if c.in_chans != data.in_chans:
        raise ValueError(f"{checkpoint} takes {c.in_chans}-channel images but {data.source or data.name} has "
                         f"{data.in_chans}-channel ones; fine-tune on data with {c.in_chans} channel(s)")
    if not keep_head:
        model.reset_head(data.num_classes)  # zero head, no pre-logits (load_model kept them for equal counts)
    c.class_names = list(data.class_names)
    if c.mean is None or c.std is None:
        c.mean, c.std = tuple(data.mean), tuple(data.std)
    return model


def finetune_config(checkpoint: str | Path, config: TrainConfig) -> TrainConfig:
    """`config` made to fine-tune `checkpoint`: its absolute path as init_checkpoint (so `--resume`
    works from any folder) and as the model name, and its resolution unless `img_size` is set."""
    from vitkit.checkpoints.loader import read_checkpoint

    path = Path(checkpoint).expanduser().resolve()
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {checkpoint}")
    changes: dict[str, Any] = {"init_checkpoint": str(path), "model": str(path)}
    if config.img_size is None:
        h, w = read_checkpoint(path).config.img_size
        changes["img_size"] = h if h == w else [h, w]
    return config.with_overrides(changes)


def finetune(checkpoint: str | Path, config: TrainConfig, console: Console | None = None) -> dict[str, Any]:
    """Fine-tune `checkpoint` with `config` (e.g. the `paper-finetune` preset); returns the summary."""
    from vitkit.train.loop import train

    return train(finetune_config(checkpoint, config), console=console)
