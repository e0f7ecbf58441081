"""Parity of vitkit's timm import with timm itself (run where timm is installed, e.g. the GPU box).

    PYTHONPATH=src python scripts/gpu_timm_parity.py [--out results.json]

For several timm ViTs with random weights: save the state dict (.pth and .safetensors), load it
with vitkit.load_model, and compare logits on the same input in fp32 (max abs difference).
"""

from __future__ import annotations

import torch
from parity_common import parse_args, report, saved_state_dicts, timm_references

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
    args, device = parse_args(__doc__)
    results = []
    for name, ref in timm_references(CASES):
        with torch.no_grad():
            for p in ref.parameters():
                p.normal_(0, 0.02)
        size = ref.default_cfg["input_size"][1:]
        x = torch.randn(4, 3, *size)
        for suffix, path in saved_state_dicts(ref, name):
            ours = vitkit.load_model(path).eval()
            with torch.no_grad():
                a = ref.to(device)(x.to(device)).float()
                b = ours.to(device)(x.to(device)).float()
            diff = (a - b).abs().max().item()
            rel = ((a - b).norm() / a.norm()).item()
            results.append({"model": name, "format": suffix, "max_abs_diff": diff, "rel_diff": rel,
                            "logit_scale": a.abs().max().item(),
                            "params_equal": ours.num_params() == sum(p.numel() for p in ref.parameters())})
            print(f"{name:28s} {suffix:12s} max|diff| {diff:.2e}  rel {rel:.2e}  params equal {results[-1]['params_equal']}")
            ref.cpu()
    report(results, device, args.out)


if __name__ == "__main__":
    main()
