"""Shipped training recipes. Each docstring says its command, expected time and expected result.

A preset is a set of TrainConfig field values; command-line flags and --config files override it.
"""

from __future__ import annotations

from typing import Any, Callable

PRESETS: dict[str, Callable[[], dict[str, Any]]] = {}


def preset(fn: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    PRESETS[fn.__name__.replace("_", "-")] = fn
    return fn


@preset
def digits() -> dict[str, Any]:
    """The default job: a 0.2M-parameter ViT on scikit-learn's digits (upsampled to 16x16, patch 4).

    `vitkit train` — about 35-40 s on 2 CPU cores; validation top-1 97.9 / 97.2 / 95.8 / 97.9% for
    seeds 0-3 (2026-11-21). Chosen on the validation split: lr 3e-3 beat 2e-3, 60 epochs beat 40,
    and no crop beat a 1-pixel pad-and-crop (a shift of 1/8 of a digit is too much).
    """
    return dict(model="vit_ti4", data="digits", img_size=16,
                model_overrides=dict(embed_dim=64, depth=4, num_heads=4),
                epochs=60, batch_size=64, lr=3e-3, weight_decay=0.05, warmup_fraction=0.1,
                augment=dict(crop="none", hflip=False, label_smoothing=0.1),
                checkpoint_every=200)


@preset
def paper_pretrain() -> dict[str, Any]:
    """The paper's pre-training recipe (section 4.1, Table 3): AdamW betas 0.9/0.999, weight decay 0.1,
    batch 4096, 10k warm-up steps then linear decay, gradient clipping at norm 1, dropout 0.1.

    `vitkit train --preset paper-pretrain --data imagefolder:PATH --model vit_b16` — days on ImageNet-21k.
    """
    return dict(optimizer="adamw", betas=(0.9, 0.999), weight_decay=0.1, lr=1e-3, batch_size=4096,
                warmup_steps=10_000, schedule="linear", grad_clip=1.0, epochs=90, img_size=224,
                model_overrides=dict(dropout=0.1),
                augment=dict(crop="rrc", hflip=True))


@preset
def paper_finetune() -> dict[str, Any]:
    """The paper's fine-tuning recipe (appendix B.1.1): SGD momentum 0.9, no weight decay, gradient
    clipping at norm 1, batch 512, cosine decay with 500 warm-up steps, lr from {0.001..0.03}.

    `vitkit finetune CKPT --data cifar10:PATH --img-size 384` — hours on one GPU for ViT-B/16.
    """
    return dict(optimizer="sgd", momentum=0.9, weight_decay=0.0, lr=0.01, batch_size=512,
                warmup_steps=500, schedule="cosine", grad_clip=1.0, steps=10_000,
                augment=dict(crop="rrc", rrc_scale=(0.5, 1.0), hflip=True))


@preset
def small_data() -> dict[str, Any]:
    """DeiT-style heavy augmentation for training from scratch on small datasets: RandAugment(2, 9),
    mixup 0.8, cutmix 1.0, random erasing 0.25, label smoothing 0.1, stochastic depth 0.1, AdamW
    lr 1e-3 (batch 512), weight decay 0.05, 5% warm-up then cosine.

    `vitkit train --preset small-data --data cifar10:PATH --model vit_s4 --img-size 32 --depth 7`
    — measured on one H200 (docs/speedrun.md): 59.3% validation top-1 after 30 epochs (52 s) and
    79.2% after 120 epochs (166 s); heavy augmentation pays only on long schedules (300+ epochs).
    """
    return dict(optimizer="adamw", lr=1e-3, weight_decay=0.05, batch_size=512, warmup_fraction=0.05,
                schedule="cosine", epochs=200, model_overrides=dict(drop_path=0.1),
                augment=dict(crop="pad", pad=4, hflip=True, auto="randaugment", randaugment_n=2,
                             randaugment_m=9, mixup=0.8, cutmix=1.0, erase=0.25, label_smoothing=0.1))


@preset
def cifar10_speedrun() -> dict[str, Any]:
    """The CIFAR-10 speedrun recipe (docs/speedrun.md): a 2.7M-parameter ViT (width 192, depth 9,
    12 heads, MLP 384) on overlapping 5x5 patches at stride 3 (10x10 = 100 tokens), AdamW lr 1.4e-3
    batch 256, 10% warm-up then cosine, pad-crop + flip + TrivialAugment computed a whole epoch
    ahead, cutmix on half the batches, label smoothing 0.1, stochastic depth 0.1, bf16 + vitkit's
    one-tile attention kernel + compile with CUDA graphs, all 50,000 images, for a 285 s time
    budget (the schedule is fitted to it after 130 steps).

    `vitkit train --preset cifar10-speedrun --data cifar10:PATH --seed N`, then
    `vitkit eval RUN_DIR --data cifar10:PATH`. Measured on one H200 (2026-11-21, cold compile
    caches), seeds 0/1/2: 95.28 / 95.22 / 95.06% test top-1 (mean 95.19%) in 278.3-278.4 s, about
    281 epochs. On a CPU the same preset runs (SDPA instead of the kernel), far slower.
    """
    return dict(model="vit_ti4", img_size=32, val_fraction=0.0,
                model_overrides=dict(embed_dim=192, depth=9, num_heads=12, mlp_dim=384, patch_size=5, stride=3,
                                     drop_path=0.1),
                epochs=1000, time_budget=285.0, batch_size=256, optimizer="adamw", lr=1.4e-3, weight_decay=0.05,
                warmup_fraction=0.1, schedule="cosine", compile=True, compile_mode="reduce-overhead",
                speed="bf16_residual,tile", augment_ahead=True, checkpoint_every=5000, eval_every=10**9,
                augment=dict(crop="pad", pad=4, hflip=True, auto="trivialaugment", cutmix=1.0, mix_prob=0.5,
                             label_smoothing=0.1))


def preset_values(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}")
    return {**PRESETS[name](), "preset": name}
