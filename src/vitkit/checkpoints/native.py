"""vitkit's own format: safetensors weights with the JSON config inside and beside them.

`model.save("dir")` writes dir/model.safetensors and dir/config.json; `model.save("m.safetensors")`
writes that file (config in its metadata) and m.json. Either rebuilds the model with no other input.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from vitkit.checkpoints.common import CheckpointError, Imported
from vitkit.config import CONFIG_TYPES, ModelConfig, config_from_json

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def atomic_write_bytes(path: Path, write) -> None:
    """Write via a temporary file in the same folder, then rename: a crash leaves the old file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_model(model: torch.nn.Module, path: str | Path) -> Path:
    """Save weights + config atomically; returns the weights file's path."""
    path = Path(path)
    config: ModelConfig = model.config  # type: ignore[assignment]
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"format": config.to_dict()["format"], "config": config.to_json()}
    if path.suffix == ".safetensors":
        weights, config_path = path, path.with_suffix(".json")
    else:
        weights, config_path = path / WEIGHTS_NAME, path / CONFIG_NAME
    atomic_write_bytes(weights, lambda tmp: save_file(state, tmp, metadata=meta))
    atomic_write_bytes(config_path, lambda tmp: Path(tmp).write_text(config.to_json()))
    return weights


def is_native_dir(path: Path) -> bool:
    cfg = path / CONFIG_NAME
    if not (path.is_dir() and cfg.is_file() and (path / WEIGHTS_NAME).is_file()):
        return False
    try:
        return json.loads(cfg.read_text()).get("format") in CONFIG_TYPES
    except (json.JSONDecodeError, OSError):
        return False


def import_native(state: dict[str, torch.Tensor], meta: dict[str, str], path: Path) -> Imported:
    """From a safetensors file's tensors and metadata (the config travels in the metadata)."""
    if meta.get("format") not in CONFIG_TYPES or "config" not in meta:
        raise CheckpointError(f"{path}: safetensors file carries no vitkit config")
    return Imported(config_from_json(meta["config"]), state, "vitkit")
