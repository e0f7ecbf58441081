"""Parity of vitkit's hybrid ViT and BiT ResNet with timm (run where timm is installed, e.g. the GPU box).

    PYTHONPATH=src python scripts/gpu_hybrid_parity.py [--out hybrid_parity.json] [--device cuda]

For each timm model (random weights): every parameter redrawn (weights N(0, 0.02), GroupNorm and
LayerNorm scales N(1, 0.1)), the state dict saved as .pth and .safetensors, loaded with
`vitkit.load_model`, and logits compared with timm's on the same 4 random images in fp32 (TF32 off).
timm's weight-standardisation epsilon is read off its model and passed on (1e-8 in timm >= 0.5,
1e-6 before), since weights do not record it. Also reported: parameter counts, and for hybrids the
trunk's feature map against timm's (`patch_embed.backbone`).
"""

from __future__ import annotations

import torch
from parity_common import parse_args, report, saved_state_dicts, timm_references

import vitkit

CASES = [
    # (timm name, create_model kwargs): the paper's R50+ViT-B/16 (stage 4 folded into stage 3),
    # the stage-4-output variants, another trunk depth, another resolution, and BiT itself.
    ("vit_base_r50_s16_224", {}),
    ("vit_base_r50_s16_384", {}),
    ("vit_large_r50_s32_224", {}),
    ("vit_small_r26_s32_224", {"num_classes": 10}),
    ("vit_base_r26_s32_224", {}),
    ("resnetv2_50x1_bit", {}),
    ("resnetv2_101x3_bit", {"num_classes": 100}),
]


@torch.no_grad()
def randomize(model: torch.nn.Module) -> None:
    for name, p in model.named_parameters():
        if p.ndim == 1 and "norm" in name and name.endswith("weight"):
            p.normal_(1.0, 0.1)
        else:
            p.normal_(0.0, 0.02)


def ws_eps(model: torch.nn.Module) -> float | None:
    """timm's weight-standardisation epsilon (the first standardised convolution's)."""
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d) and hasattr(m, "eps"):
            return float(m.eps)
    return None


def main() -> None:
    args, device = parse_args(__doc__)
    results = []
    for name, ref in timm_references(CASES):
        randomize(ref)
        size = tuple(ref.pretrained_cfg["input_size"][1:])
        x = torch.randn(4, 3, *size)
        eps = ws_eps(ref)
        hybrid = hasattr(ref, "patch_embed") and hasattr(ref.patch_embed, "backbone")
        overrides = {"backbone": {"ws_eps": eps}} if hybrid else {"ws_eps": eps}
        with torch.no_grad():
            expected = ref.to(device)(x.to(device)).float()
            ref_features = ref.patch_embed.backbone(x.to(device)).float() if hybrid else None
        ref.cpu()
        for suffix, path in saved_state_dicts(ref, name):
            ours = vitkit.load_model(path, **overrides).eval().to(device)
            with torch.no_grad():
                got = ours(x.to(device)).float()
                features = ours.patch_embed.backbone(x.to(device)).float() if hybrid else None
            diff = (got - expected).abs().max().item()
            row = {
                "model": name, "format": suffix, "max_abs_diff": diff,
                "rel_diff": ((got - expected).norm() / expected.norm()).item(),
                "logit_scale": expected.abs().max().item(), "ws_eps": eps,
                "params_equal": ours.num_params() == sum(p.numel() for p in ref.parameters()),
                "vitkit_config": ours.config.to_dict(),
            }
            if hybrid:
                row["trunk_max_abs_diff"] = (features - ref_features).abs().max().item()
                row["tokens"] = ours.grid[0] * ours.grid[1]
            results.append(row)
            extra = f"  trunk max|diff| {row['trunk_max_abs_diff']:.2e}" if hybrid else ""
            print(f"{name:24s} {suffix:12s} max|diff| {diff:.2e}  rel {row['rel_diff']:.2e}  "
                  f"params equal {row['params_equal']}{extra}", flush=True)
            ours.cpu()
    report(results, device, args.out)


if __name__ == "__main__":
    main()
