"""Training checkpoints: written atomically, so a kill -9 at any moment leaves the last one whole.

A checkpoint at step S is two files in RUN_DIR/checkpoints/: `model_S.safetensors` (vitkit's own
format, loadable on its own) and `state_S.pt` (optimiser, scheduler, EMA, RNG states, progress),
then `RUN_DIR/latest.json` is replaced to point at them. `latest.json` is written last, so it only
ever names complete files; `vitkit.load_model(RUN_DIR)` follows it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from vitkit.checkpoints.native import atomic_write_bytes, save_model

POINTER = "latest.json"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, model: torch.nn.Module, training_state: dict[str, Any],
                    keep: int = 2, final: bool = False) -> Path:
    """Write model + training state for `step`, move the pointer, prune old checkpoints."""
    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    model_path = save_model(model, ckpt_dir / f"model_{step:08d}.safetensors")
    state_path = ckpt_dir / f"state_{step:08d}.pt"
    atomic_write_bytes(state_path, lambda tmp: torch.save(training_state, tmp))
    if final:
        save_model(model, run_dir / "model")  # RUN_DIR/model/{model.safetensors,config.json}
        target = "model/model.safetensors"
    else:
        target = str(model_path.relative_to(run_dir))
    pointer = {"step": step, "model": target, "state": str(state_path.relative_to(run_dir)), "final": final}
    atomic_write_bytes(run_dir / POINTER, lambda tmp: Path(tmp).write_text(json.dumps(pointer)))
    prune(ckpt_dir, keep)
    return model_path


def prune(ckpt_dir: Path, keep: int) -> None:
    steps = sorted({int(p.stem.split("_")[1]) for p in ckpt_dir.glob("state_*.pt")})
    for step in steps[:-keep] if keep > 0 else []:
        for p in (ckpt_dir / f"model_{step:08d}.safetensors", ckpt_dir / f"model_{step:08d}.json",
                  ckpt_dir / f"state_{step:08d}.pt"):
            if p.exists():
                os.unlink(p)


def latest_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The pointer of the newest complete checkpoint, or None for a fresh run directory."""
    pointer = run_dir / POINTER
    if not pointer.is_file():
        return None
    return json.loads(pointer.read_text())


def load_training_state(run_dir: Path, pointer: dict[str, Any]) -> dict[str, Any]:
    return torch.load(run_dir / pointer["state"], map_location="cpu", weights_only=True)
