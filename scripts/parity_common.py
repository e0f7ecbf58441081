"""What the timm parity scripts share: arguments, fp32 matmuls, the reference models, the two
state-dict formats, the record. timm is imported only when used (it is on the GPU image, not in CI)."""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file


def parse_args(description: str) -> tuple[argparse.Namespace, torch.device]:
    """--out / --device, and TF32 off so both sides compute in true fp32."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=None, help="Write the results as JSON here.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return args, torch.device(args.device)


def timm_references(cases: list[tuple[str, dict]]) -> Iterator[tuple[str, torch.nn.Module]]:
    """(name, timm model in eval mode) per case, each built from seed 0 (randomise it yourself)."""
    import timm

    for name, kwargs in cases:
        torch.manual_seed(0)
        yield name, timm.create_model(name, pretrained=False, **kwargs).eval()


def saved_state_dicts(model: torch.nn.Module, name: str) -> Iterator[tuple[str, Path]]:
    """The model's state dict written as .pth and as .safetensors, one at a time (suffix, path)."""
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory() as tmp:
        for suffix in (".pth", ".safetensors"):
            path = Path(tmp) / f"{name}{suffix}"
            if suffix == ".pth":
                torch.save(state, path)
            else:
                save_file(state, str(path))
            yield suffix, path


def report(results: list[dict], device: torch.device, out: str | None) -> None:
    """Print the environment and write {env, results} to `out` if given."""
    import timm

    env = {"torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version(),
           "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()}
    print(json.dumps(env))
    if out:
        Path(out).write_text(json.dumps({"env": env, "results": results}, indent=2))
