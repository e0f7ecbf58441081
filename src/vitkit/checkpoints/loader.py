"""`load_model(path, **overrides)`: detect the format, translate, adapt, load strictly.

A pipeline of pure steps: read (never executing code) -> translate to vitkit names and config ->
adapt to the overrides (resample position embeddings, replace the head) -> strict load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitkit.checkpoints import hf, hf_bit, jax_npz, native, timm
from vitkit.checkpoints.common import (CheckpointError, Imported, load_state_strict, read_npz,
                                       read_safetensors, read_torch)
from vitkit.config import BackboneConfig, ModelConfig, ResNetConfig, check_field_names
from vitkit.layers.pos_embed import resample_pos_embed

# Fields that fix tensor shapes or meaning: a checkpoint's weights cannot be loaded if they change.
FIXED_FIELDS = ("patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_dim", "pool",
                "pos_embed", "qkv_bias")
# The same for a ResNet trunk. Its padding and weight-standardisation epsilon may be overridden:
# weights do not record them, and a source may have used other values than vitkit assumes.
FIXED_TRUNK_FIELDS = ("layers", "width", "stem_width", "stage_widths", "stem", "preact", "num_groups")


def resolve_checkpoint(path: Path) -> Path:
    """A run directory (see `vitkit.train`) points at its final or latest weights."""
    pointer = path / "latest.json"
    if path.is_dir() and pointer.is_file():
        return path / json.loads(pointer.read_text())["model"]
    return path


def read_checkpoint(path: str | Path, num_heads: int | None = None, num_groups: int | None = None) -> Imported:
    """Read any supported checkpoint into vitkit names plus the config it implies.

    num_heads, num_groups: for bare state dicts, which do not store them.
    """
    path = resolve_checkpoint(Path(path))
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.is_dir():
        if native.is_native_dir(path):
            state, meta = read_safetensors(path / native.WEIGHTS_NAME)
            return native.import_native(state, meta, path)
        if hf.is_hf_dir(path):
            state, config = hf.read_hf_dir(path)
            if config["model_type"] == "bit":
                return hf_bit.import_hf_bit(state, config)
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
    if hf_bit.looks_like_hf_bit(keys):
        return hf_bit.import_hf_bit(state, None, num_groups)
    if timm.looks_like_timm(keys):
        return timm.import_timm(state, path.name, num_heads, num_groups)
    if timm.looks_like_timm_resnet(keys):
        return timm.import_timm_resnet(state, num_groups)
    raise CheckpointError(f"{path}: tensors match no known ViT or ResNet layout (first keys: {keys[:5]})")


def _refuse_changes(fields: tuple[str, ...], overrides: dict[str, Any], src: Any, what: str = "") -> None:
    changed = [f for f in fields if f in overrides and _normal(overrides[f]) != _normal(getattr(src, f))]
    if changed:
        raise CheckpointError(
            f"cannot override {what}{changed} when loading weights: the checkpoint has "
            + ", ".join(f"{f}={getattr(src, f)!r}" for f in changed))


def _normal(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def adapt(imported: Imported, overrides: dict[str, Any]) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Apply overrides to an imported checkpoint: new resolution, new head, training options."""
    src = imported.config
    if isinstance(src, ResNetConfig):
        check_field_names(overrides, ResNetConfig)
        _refuse_changes(FIXED_TRUNK_FIELDS + ("in_chans",), overrides, src)
    else:
        check_field_names(overrides)
        _refuse_changes(FIXED_FIELDS, overrides, src)
        overrides = _merge_backbone(src.backbone, overrides)
    if overrides.get("num_classes", src.num_classes) != src.num_classes and "class_names" not in overrides:
        overrides = {**overrides, "class_names": None}  # the checkpoint's names belong to its old head
    config = src.replace(**overrides)
    state = dict(imported.state)
    if isinstance(src, ResNetConfig):  # fully convolutional: any resolution runs as it is
        if config.num_classes != src.num_classes:
            state = {k: v for k, v in state.items() if not k.startswith("head.")}
        return config, state
    old_grid, new_grid = src.token_grid(), config.token_grid()
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


def _merge_backbone(src: BackboneConfig | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """A hybrid's `backbone=` override is merged into the checkpoint's trunk (shape fields fixed)."""
    if "backbone" not in overrides:
        return overrides
    given = overrides["backbone"]
    if src is None:
        if given is None:
            return overrides
        raise CheckpointError("cannot add a backbone when loading a plain ViT's weights")
    if given is None:
        raise CheckpointError("cannot remove the backbone when loading a hybrid's weights")
    given = given.to_dict() if isinstance(given, BackboneConfig) else dict(given)
    _refuse_changes(FIXED_TRUNK_FIELDS, given, src, "backbone ")
    return {**overrides, "backbone": BackboneConfig.from_dict({**src.to_dict(), **given})}


def load_model(path: str | Path, **overrides: Any) -> nn.Module:
    """Load any supported checkpoint: a vitkit model or run, Hugging Face, timm, or official .npz.

    Returns a `VisionTransformer` (plain or hybrid) or a BiT `ResNetV2`, as the checkpoint holds.
    `img_size=` resamples the position embeddings in 2D; `num_classes=` replaces the head with
    a zero-initialised one; training options (dropout, drop_path, ...) may be changed freely.
    """
    from vitkit.variants import model_from_config

    backbone = overrides.get("backbone")
    num_groups = overrides.get("num_groups") or (backbone.get("num_groups") if isinstance(backbone, dict) else None)
    imported = read_checkpoint(path, overrides.get("num_heads"), num_groups)
    config, state = adapt(imported, overrides)
    model = model_from_config(config)
    if config.num_classes != imported.config.num_classes:  # the new head keeps its fresh (zero) init
        fresh = model.state_dict()
        state.update({k: v for k, v in fresh.items() if k.startswith(("head.", "pre_logits.")) and k not in state})
    load_state_strict(model, state, imported.source)
    return model
