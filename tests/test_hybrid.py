"""Hybrid ViT (paper section 3.1): ResNet feature maps as the token sequence, both of the paper's
variants, the rest of the ViT unchanged, checkpoints, and its trunk against transformers' BiT."""

import pytest
import torch

import vitkit
from conftest import randomize
from test_variants import analytic_params
from vitkit.config import ViTConfig
from vitkit.layers.hybrid_embed import HybridEmbed
from vitkit.variants import list_models, model_config

# A trunk small enough for CPU tests: three stages (the /16 layout) or four (/32), few groups.
TRUNK16 = dict(layers=(1, 1, 2), stem_width=16, stage_widths=(32, 64, 128), num_groups=4)
TRUNK32 = dict(layers=(1, 1, 1, 1), stem_width=16, stage_widths=(32, 64, 128, 256), num_groups=4)
TINY_VIT = dict(embed_dim=32, depth=2, num_heads=2)


def meta_model(name: str, **overrides):
    with torch.device("meta"):
        return vitkit.create_model(name, **overrides)


@pytest.mark.parametrize("img,stride16,stride32", [(224, 196, 49), (384, 576, 144)])
def test_both_paper_variants_have_their_sequence_lengths(img, stride16, stride32):
    # (i) the output of stage 4 (/32); (ii) stage 4 removed, its 3 blocks moved to stage 3 (/16)
    b16, b32 = meta_model("vit_r50_b16", img_size=img), meta_model("vit_r50_b32", img_size=img)
    assert b16.config.backbone.layers == (3, 4, 9) and b32.config.backbone.layers == (3, 4, 6, 3)
    assert sum(b16.config.backbone.layers) == sum(b32.config.backbone.layers) == 16  # same ResNet-50 blocks
    assert b16.config.patch_size == b32.config.patch_size == 1
    assert b16.grid[0] * b16.grid[1] == stride16 == 4 * stride32  # (ii) is 4x longer
    assert b32.grid[0] * b32.grid[1] == stride32
    assert b16.pos_embed.shape == (1, stride16 + 1, 768) and b32.pos_embed.shape == (1, stride32 + 1, 768)
    x = torch.empty(2, 3, img, img, device="meta")
    assert b16.forward_features(x).shape == (2, stride16 + 1, 768)
    assert b16.patch_embed.backbone(x).shape == (2, 1024, img // 16, img // 16)  # R50 stage 3 width
    assert b32.patch_embed.backbone(x).shape == (2, 2048, img // 32, img // 32)
    assert b16(x).shape == (2, 1000)


def test_hybrid_family_in_the_zoo_with_exact_counts():
    transformers = pytest.importorskip("transformers")
    names = list_models("hybrid")
    assert {"vit_r50_b16", "vit_r50_b32", "vit_r26_s32", "vit_r50_l32"} <= set(names)
    assert model_config("R50+ViT-B/16").name == "vit_r50_b16"
    assert meta_model("vit_r26_s32").config.backbone.layers == (2, 2, 2, 2)
    model = meta_model("vit_r50_b16")
    # trunk: transformers' BiT with the hybrid's layout; the rest: ViT-B over 14x14 positions of 1024 channels
    with torch.device("meta"):
        hf = transformers.BitModel(transformers.BitConfig(
            layer_type="bottleneck", global_padding="SAME", embedding_dynamic_padding=True, depths=[3, 4, 9],
            hidden_sizes=[256, 512, 1024]))
    trunk = sum(p.numel() for p in hf.parameters())
    assert sum(p.numel() for p in model.patch_embed.backbone.parameters()) == trunk == 11_894_848
    assert model.num_params() == trunk + analytic_params(768, 12, 1, 14, 1000, chans=1024) == 98_659_112


def test_cifar_size_images_keep_a_useful_sequence():
    small = model_config("vit_r50_s16", img_size=32)
    assert small.backbone.stem == "small" and small.token_grid() == (8, 8)
    assert model_config("vit_r50_s32", img_size=32).token_grid() == (4, 4)
    model = vitkit.create_model("vit_r50_ti16", img_size=32, num_classes=10, in_chans=1, backbone=TRUNK16, **TINY_VIT)
    assert model.grid == (8, 8) and model(torch.randn(3, 1, 32, 32)).shape == (3, 10)


def test_hybrid_is_a_vit_over_the_feature_map():
    # Everything after the trunk is the plain ViT: fed the trunk's feature map as a 1-pixel-patch
    # "image", a plain ViT with the hybrid's weights gives the same logits.
    hybrid = randomize(vitkit.create_model("vit_r50_b16", img_size=32, num_classes=5, backbone=TRUNK16,
                                           **TINY_VIT)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = hybrid.patch_embed.backbone(x)  # (2, 128, 8, 8)
    plain = vitkit.VisionTransformer(ViTConfig(img_size=features.shape[-2:], patch_size=1, in_chans=128,
                                               num_classes=5, mlp_dim=128, **TINY_VIT)).eval()
    state = {k: v for k, v in hybrid.state_dict().items() if not k.startswith("patch_embed.backbone.")}
    plain.load_state_dict(state)
    with torch.no_grad():
        assert torch.allclose(plain(features), hybrid(x), atol=1e-6)


def test_trunk_matches_transformers_bit_backbone():
    # The hybrid's trunk is transformers' BiT with layer_type="bottleneck" and TF 'SAME' padding
    # (the layout of the ViT-hybrid and DPT-hybrid checkpoints).
    transformers = pytest.importorskip("transformers")
    hf = randomize(transformers.BitModel(transformers.BitConfig(
        layer_type="bottleneck", global_padding="SAME", embedding_dynamic_padding=True, embedding_size=16,
        hidden_sizes=[32, 64, 128], depths=[1, 1, 2], num_groups=4))).eval()
    embed = HybridEmbed(vitkit.BackboneConfig(**TRUNK16), in_chans=3, embed_dim=32)
    from vitkit.checkpoints.hf_bit import convert_hf_bit_state

    embed.backbone.load_state_dict(convert_hf_bit_state(hf.state_dict()))
    x = torch.randn(2, 3, 45, 38)  # odd sizes: the asymmetric 'SAME' padding matters
    with torch.no_grad():
        expected = hf(pixel_values=x).last_hidden_state
        got = embed.backbone.eval()(x)
    assert got.shape == expected.shape == (2, 128, 3, 3)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5), (got - expected).abs().max()


def test_save_load_and_resample_positions(tmp_path):
    model = randomize(vitkit.create_model("vit_r50_b16", img_size=64, num_classes=4, backbone=TRUNK16,
                                          **TINY_VIT)).eval()
    assert model.config.backbone.stem == "small" and model.grid == (16, 16)
    model.save(tmp_path / "h")
    loaded = vitkit.load_model(tmp_path / "h").eval()
    assert loaded.config == model.config and loaded.config.backbone == model.config.backbone
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    bigger = vitkit.load_model(tmp_path / "h", img_size=128)
    assert bigger.grid == (32, 32) and bigger.pos_embed.shape == (1, 1 + 32 * 32, 32)
    with pytest.raises(vitkit.CheckpointError, match="cannot override backbone.*layers"):
        vitkit.load_model(tmp_path / "h", backbone={"layers": [1, 1, 1]})
    eps = vitkit.load_model(tmp_path / "h", backbone={"ws_eps": 1e-6})  # not in the weights: may change
    assert eps.config.backbone.ws_eps == 1e-6 and eps.patch_embed.backbone.stem.conv.eps == 1e-6


def test_timm_hybrid_layout_is_inferred_from_the_tensors(tmp_path):
    # timm's hybrid names are vitkit's; its config must be read back from shapes alone
    model = randomize(vitkit.create_model("vit_r50_s32", img_size=64, num_classes=3, backbone=dict(
        TRUNK32, stem="standard"), **TINY_VIT)).eval()
    torch.save(model.state_dict(), tmp_path / "vit_small_r26_s32_224.pth")
    loaded = vitkit.load_model(tmp_path / "vit_small_r26_s32_224.pth", num_heads=2,
                               backbone={"num_groups": 4}).eval()  # GroupNorm groups are not in the weights
    c = loaded.config
    assert c.img_size == (64, 64) and c.backbone.layers == (1, 1, 1, 1) and c.backbone.stem == "standard"
    assert c.backbone.padding == "same" and not c.backbone.preact and c.in_chans == 3 and loaded.grid == (2, 2)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_hybrid_trains_through_the_engine(tmp_path):
    from vitkit.train import TrainConfig, train

    config = TrainConfig().with_overrides(dict(
        model="vit_r26_ti16", data="digits", img_size=8, steps=4, batch_size=32, progress=False,
        model_overrides=dict(TINY_VIT, backbone=TRUNK16), out=str(tmp_path / "run")))
    summary = train(config)
    model = vitkit.load_model(summary["run_dir"])
    assert model.config.backbone.stem == "small" and model.grid == (2, 2)
    assert summary["params"] == model.num_params()
