"""`load_model(path, **overrides)`: detect the format, translate, adapt, load strictly.

A pipeline of pure steps: read (never executing code) -> translate to vitkit names and config ->
adapt to the overrides (resample position embeddings, replace the head) -> strict load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from vitkit.checkpoints import hf, jax_npz, native, timm
from vitkit.checkpoints.common import (CheckpointError, Imported, load_state_strict, read_npz,
                                       read_safetensors, read_torch)
from vitkit.config import ViTConfig, check_field_names
from vitkit.layers.patch_embed import grid_size
from vitkit.layers.pos_embed import resample_pos_embed
from vitkit.model import VisionTransformer

# Fields that fix tensor shapes or meaning: a checkpoint's weights cannot be loaded if they change.
FIXED_FIELDS = ("patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_dim", "pool",
                "pos_embed", "qkv_bias")


def resolve_checkpoint(path: Path) -> Path:
    """A run directory (see `vitkit.train`) points at its final or latest weights."""
    pointer = path / "latest.json"
    if path.is_dir() and pointer.is_file():
        return path / json.loads(pointer.read_text())["model"]
    return path


def read_checkpoint(path: str | Path, num_heads: int | None = None) -> Imported:
    """Read any supported checkpoint into vitkit names plus the config it implies."""
    path = resolve_checkpoint(Path(path))
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.is_dir():
        if native.is_native_dir(path):
            state, meta = read_safetensors(path / native.WEIGHTS_NAME)
            return native.import_native(state, meta, path)
        if hf.is_hf_dir(path):
            state, config = hf.read_hf_dir(path)
            return hf.import_hf(state, config)
        raise CheckpointError(
            f"{path}: folder is neither a vitkit model (config.json + model.safetensors), "
            "a vitkit run directory, nor a Hugging Face save_pretrained folder")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return jax_npz.import_npz(read_npz(path))
    meta: dict[str, str] = {}
    if suffix == ".safetensors":
        state, meta = read_safetensors(path)
        if "config" in meta:
            return native.import_native(state, meta, path)
    elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
        state = read_torch(path)
    else:
        raise CheckpointError(f"{path}: unknown checkpoint type {suffix!r}; expected a folder, "
                              ".safetensors, .pth/.pt/.bin or .npz")
    keys = list(state)
    if hf.looks_like_hf(keys):
        return hf.import_hf(state, None, num_heads)
    if timm.looks_like_timm(keys):
        return timm.import_timm(state, path.name, num_heads)
    raise CheckpointError(f"{path}: tensors match no known ViT layout (first keys: {keys[:5]})")


def adapt(imported: Imported, overrides: dict[str, Any]) -> tuple[ViTConfig, dict[str, torch.Tensor]]:
    """Apply overrides to an imported checkpoint: new resolution, new head, training options."""
    check_field_names(overrides)
    src = imported.config
    changed = [f for f in FIXED_FIELDS if f in overrides and overrides[f] != getattr(src, f)]
    if changed:
        raise CheckpointError(
            f"cannot override {changed} when loading weights: the checkpoint has "
            + ", ".join(f"{f}={getattr(src, f)!r}" for f in changed))
    if overrides.get("num_classes", src.num_classes) != src.num_classes and "class_names" not in overrides:
        overrides = {**overrides, "class_names": None}  # the checkpoint's names belong to its old head
    config = src.replace(**overrides)
    state = dict(imported.state)
    old_grid = grid_size(src.img_size, src.patch_size, src.stride)
    new_grid = grid_size(config.img_size, config.patch_size, config.stride)
    if "pos_embed" in state and old_grid != new_grid:
        state["pos_embed"] = resample_pos_embed(state["pos_embed"], old_grid, new_grid,
                                                src.num_prefix_tokens, config.pos_interp)
    if config.num_classes != src.num_classes:
        # New classes: a fresh zero head, and the pre-training pre-logits layer goes too
        # unless the caller asked to keep a representation layer.
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        if "representation_size" not in overrides:
            config.representation_size = None
            state = {k: v for k, v in state.items() if not k.startswith("pre_logits.")}
    return config, state


def load_model(path: str | Path, **overrides: Any) -> VisionTransformer:
    """Load any supported checkpoint: a vitkit model or run, Hugging Face, timm, or official .npz.

    `img_size=` resamples the position embeddings in 2D; `num_classes=` replaces the head with
    a zero-initialised one; training options (dropout, drop_path, ...) may be changed freely.
    """
    imported = read_checkpoint(path, overrides.get("num_heads"))
    config, state = adapt(imported, overrides)
    model = VisionTransformer(config)
    fresh = model.state_dict()
    for k in fresh:
        if k.startswith(("head.", "pre_logits.")) and k not in state and config.num_classes != imported.config.num_classes:
            state[k] = fresh[k]
    load_state_strict(model, state, imported.source)
    return model
