"""The zoo: exact parameter counts, every name parses, overrides apply."""

import pytest
import torch

import vitkit
from vitkit.model import VisionTransformer
from vitkit.variants import PATCH_SIZES, WIDTHS, model_config

# Paper Table 1 / the official release, 224x224 with 1000 classes.
PAPER_PARAMS = {"vit_b16": 86_567_656, "vit_l16": 304_326_632, "vit_h14": 632_045_800}


def meta_params(name: str, **overrides) -> int:
    with torch.device("meta"):
        return VisionTransformer(model_config(name, **overrides)).num_params()


def analytic_params(d: int, depth: int, p: int, grid: int, classes: int, chans: int = 3) -> int:
    per_block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * (4 * d * d) + 4 * d + d
    return chans * p * p * d + d + d + (grid * grid + 1) * d + depth * per_block + 2 * d + d * classes + classes


@pytest.mark.parametrize("name,expected", PAPER_PARAMS.items())
def test_paper_parameter_counts_are_exact(name, expected):
    assert meta_params(name) == expected


def test_real_b16_built_once_has_exact_count():
    assert vitkit.create_model("vit_b16").num_params() == PAPER_PARAMS["vit_b16"]


@pytest.mark.parametrize("name", vitkit.list_models("vit"))
def test_every_zoo_model_matches_the_analytic_count(name):
    c = model_config(name)
    grid = 224 // c.patch_size if 224 % c.patch_size == 0 else (224 - c.patch_size) // c.patch_size + 1
    assert meta_params(name) == analytic_params(c.embed_dim, c.depth, c.patch_size, grid, 1000)


def test_zoo_lists_every_width_and_patch():
    vits = vitkit.list_models("vit")
    assert set(vits) == {f"vit_{w}{p}" for w in WIDTHS for p in PATCH_SIZES}
    assert {"vit_b16", "vit_l16", "vit_h14", "vit_ti4"} <= set(vits)
    everything = vitkit.list_models()
    assert everything[:len(vits)] == vits  # ViTs first, then hybrids, then BiT
    assert everything == vits + vitkit.list_models("hybrid") + vitkit.list_models("bit")
    assert len(set(everything)) == len(everything)


@pytest.mark.parametrize("size", list(WIDTHS))
@pytest.mark.parametrize("patch", PATCH_SIZES)
def test_every_variant_runs_at_tiny_width(size, patch):
    # real patch sizes and heads, shrunk width/depth; image 2 patches a side (+1 for patch 14)
    w = WIDTHS[size]
    model = vitkit.create_model(f"vit_{size}{patch}", embed_dim=w.num_heads * 8, depth=1,
                                img_size=2 * patch, num_classes=7, in_chans=1)
    out = model(torch.randn(2, 1, 2 * patch, 2 * patch))
    assert out.shape == (2, 7)
    assert model.config.num_heads == w.num_heads and model.config.patch_size == patch


def test_names_accept_paper_spelling_and_reject_unknown():
    assert model_config("B/16").name == "vit_b16"
    with pytest.raises(ValueError, match="unknown model 'vit_x16'.*vit_b16"):
        model_config("vit_x16")
    with pytest.raises(TypeError, match="unknown ViT config field"):
        vitkit.create_model("vit_ti16", widht=3)


def test_overrides_apply_and_keep_mlp_ratio():
    c = model_config("vit_s16", embed_dim=64, num_heads=4, img_size=(32, 48), stride=8, num_classes=3)
    assert c.mlp_dim == 256 and c.img_size == (32, 48) and c.stride == 8 and c.num_classes == 3


def test_config_json_round_trip():
    c = model_config("vit_b16", img_size=(224, 160), pool="gap", pos_embed="sincos", drop_path=0.1)
    assert vitkit.ViTConfig.from_json(c.to_json()) == c
