"""Parity of vitkit's timm import with timm itself (run where timm is installed, e.g. the GPU box).

    PYTHONPATH=src python scripts/gpu_timm_parity.py [--out results.json]

For several timm ViTs with random weights: save the state dict (.pth and .safetensors), load it
with vitkit.load_model, and compare logits on the same input in fp32 (max abs difference).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

import vitkit

CASES = [
    ("vit_tiny_patch16_224", {}),
    ("vit_small_patch32_224", {}),
    ("vit_base_patch16_224", {}),
    ("vit_base_patch16_384", {}),
    ("vit_large_patch16_224", {}),
    ("vit_huge_patch14_224", {"num_classes": 10}),
    ("vit_base_patch8_224", {"num_classes": 100}),
]


def main() -> None:
    import timm
    from safetensors.torch import save_file

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    results = []
    for name, kwargs in CASES:
        torch.manual_seed(0)
        ref = timm.create_model(name, pretrained=False, **kwargs).eval()
        with torch.no_grad():
            for p in ref.parameters():
                p.normal_(0, 0.02)
        size = ref.default_cfg["input_size"][1:]
        x = torch.randn(4, 3, *size)
        with tempfile.TemporaryDirectory() as tmp:
            for suffix in (".pth", ".safetensors"):
                path = Path(tmp) / f"{name}{suffix}"
                sd = {k: v.contiguous() for k, v in ref.state_dict().items()}
                torch.save(sd, path) if suffix == ".pth" else save_file(sd, str(path))
                ours = vitkit.load_model(path).eval()
                with torch.no_grad():
                    a = ref.to(device)(x.to(device)).float()
                    b = ours.to(device)(x.to(device)).float()
                diff = (a - b).abs().max().item()
                rel = ((a - b).norm() / a.norm()).item()
                results.append({"model": name, "format": suffix, "max_abs_diff": diff, "rel_diff": rel,
                                "logit_scale": a.abs().max().item(), "params_equal": ours.num_params() == sum(p.numel() for p in ref.parameters())})
                print(f"{name:28s} {suffix:12s} max|diff| {diff:.2e}  rel {rel:.2e}  params equal {results[-1]['params_equal']}")
                ref.cpu()
    env = {"torch": torch.__version__, "timm": timm.__version__, "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor(),
           "python": platform.python_version()}
    print(json.dumps(env))
    if args.out:
        Path(args.out).write_text(json.dumps({"env": env, "results": results}, indent=2))


if __name__ == "__main__":
    main()
