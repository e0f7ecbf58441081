"""Pieces every checkpoint loader shares: safe reading, and loading with a loud report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vitkit.config import ModelConfig


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message says why."""


@dataclass
class Imported:
    """A checkpoint translated to vitkit's names: the config it implies and its tensors."""

    config: ModelConfig
    state: dict[str, torch.Tensor]
    source: str  # format name for messages: "vitkit", "hf", "hf-bit", "timm", "jax-npz"
    dropped: list[str] = field(default_factory=list)  # source tensors deliberately not used


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a .safetensors file; a damaged file is a CheckpointError."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from e


def read_torch(path: Path) -> dict[str, torch.Tensor]:
    """A PyTorch state dict, loaded with weights_only=True so no code in the file can run."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for damaged or unsafe pickles
        raise CheckpointError(f"{path}: could not be read as a weights-only PyTorch file: {e}") from e
    for wrapper in ("state_dict", "model", "module", "model_ema"):  # common training wrappers
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors (a state dict), got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Arrays of an .npz file, with pickles refused."""
    try:
        with np.load(str(path), allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as e:
        raise CheckpointError(f"{path}: could not be read as an .npz archive: {e}") from e


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor or raise one error naming each missing, unexpected and mis-shaped one."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected) if state[k].shape != expected[k].shape
    )
    if missing or unexpected or wrong:
        parts = [f"{source} checkpoint does not fit the model"]
        if missing:
            parts.append(f"missing tensors ({len(missing)}): {', '.join(missing[:20])}")
        if unexpected:
            parts.append(f"unexpected tensors ({len(unexpected)}): {', '.join(unexpected[:20])}")
        if wrong:
            parts.append(f"wrong shapes ({len(wrong)}): {'; '.join(wrong[:20])}")
        raise CheckpointError("\n  ".join(parts))
    model.load_state_dict(state, strict=True)
