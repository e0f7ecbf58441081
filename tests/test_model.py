"""Model behaviour: patches, pooling, positions, attention paths, intermediates, sizes."""

import pytest
import torch

from conftest import randomize, tiny
from vitkit.layers import grid_size, resample_pos_embed, sincos_2d


def test_overlapping_patches_give_more_tokens():
    m = tiny("vit_ti8", img_size=32, stride=4)  # (32 - 8) / 4 + 1 = 7 per side
    assert m.grid == (7, 7)
    assert m.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 1 + 49, 32)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 5)


def test_bad_image_size_names_sizes_that_work():
    with pytest.raises(ValueError, match=r"height 30 is not tiled by patches of 16 .* \[16, 32, 48\]"):
        grid_size((30, 32), 16, 16)
    with pytest.raises(ValueError, match=r"width 35 .* near it: \[32, 36, 40\]"):
        tiny("vit_ti8", img_size=(36, 35), stride=4)
    m = tiny("vit_ti16")
    with pytest.raises(ValueError, match="not tiled"):
        m(torch.randn(1, 3, 40, 32))


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected images of shape \(batch, 1, height, width\)"):
        tiny(in_chans=1)(torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("pool", ["cls", "gap"])
@pytest.mark.parametrize("pos", ["learn", "sincos", "none"])
def test_pool_and_position_options(pool, pos):
    m = tiny(pool=pool, pos_embed=pos)
    tokens = m.forward_features(torch.randn(2, 3, 32, 32))
    assert tokens.shape == (2, 4 + (pool == "cls"), 32)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert (m.cls_token is not None) == (pool == "cls")
    names = dict(m.named_parameters())
    assert ("pos_embed" in names) == (pos == "learn")


def test_gap_pools_the_mean_of_normed_patch_tokens():
    m = randomize(tiny(pool="gap", num_classes=0))
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(m(x), m.forward_features(x).mean(1), atol=1e-6)


@pytest.mark.parametrize("pool", ["cls", "gap"])
def test_forward_gives_the_head_of_the_normed_features_and_their_gradients(pool):
    # forward norms only the class token (the head reads nothing else); it must match norming all
    m = randomize(tiny(pool=pool)).double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    m(x).sin().sum().backward()
    fast = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    logits = m.forward_head(m.forward_features(x))
    logits.sin().sum().backward()
    assert torch.allclose(m(x), logits, atol=1e-12)
    for name, p in m.named_parameters():
        assert torch.allclose(fast[name], p.grad, atol=1e-12), name


def test_positions_matter_only_when_present():
    x = torch.randn(1, 3, 32, 32)
    perm = x.reshape(1, 3, 2, 16, 2, 16)[:, :, [1, 0]].reshape(1, 3, 32, 32)  # swap patch rows
    none = randomize(tiny(pos_embed="none", pool="gap"))
    learn = randomize(tiny(pos_embed="learn", pool="gap"))
    assert torch.allclose(none(x), none(perm), atol=1e-5)  # permutation-invariant without positions
    assert not torch.allclose(learn(x), learn(perm), atol=1e-3)


def test_new_head_is_zero_initialised_and_pre_logits_uses_tanh():
    m = tiny(representation_size=16)
    assert torch.count_nonzero(m.head.weight) == 0 and torch.count_nonzero(m.head.bias) == 0
    assert m(torch.randn(2, 3, 32, 32)).abs().max() == 0
    feats = m.forward_head(m.forward_features(torch.randn(2, 3, 32, 32)), pre_logits=True)
    assert feats.shape == (2, 16) and feats.abs().max() <= 1
    m.reset_head(3)
    assert m.head.out_features == 3 and m.config.representation_size is None


def test_fused_and_explicit_attention_agree():
    m = randomize(tiny(depth=3))
    x = torch.randn(2, 3, 32, 32)
    logits, attn = m.forward_with_attention(x)
    assert torch.allclose(logits, m(x), atol=1e-5, rtol=1e-5)
    assert len(attn) == 3 and attn[0].shape == (2, 2, 5, 5)
    assert torch.allclose(attn[1].sum(-1), torch.ones(2, 2, 5), atol=1e-6)


def test_intermediates_match_features_and_stop_early():
    m = randomize(tiny(depth=3))
    x = torch.randn(2, 3, 32, 32)
    out = m.forward_intermediates(x, blocks=[0, -1], norm=True)
    assert sorted(out) == [0, 2]
    assert torch.allclose(out[2], m.forward_features(x), atol=1e-6)
    with pytest.raises(IndexError, match="out of range"):
        m.forward_intermediates(x, blocks=[3])


def test_non_square_images():
    m = tiny(img_size=(32, 64))
    assert m.grid == (2, 4)
    assert m(torch.randn(2, 3, 32, 64)).shape == (2, 5)


def test_dynamic_img_size_interpolates_positions_on_the_fly():
    x = torch.randn(2, 3, 48, 64)
    static = randomize(tiny())
    with pytest.raises(ValueError, match="dynamic_img_size=True"):
        static(x)
    dynamic = tiny(dynamic_img_size=True)
    dynamic.load_state_dict(static.state_dict())
    expected_pos = resample_pos_embed(static.pos_embed, (2, 2), (3, 4))
    resized = tiny(img_size=(48, 64))
    resized.load_state_dict({**static.state_dict(), "pos_embed": expected_pos})
    assert torch.allclose(dynamic(x), resized(x), atol=1e-5)


def test_stochastic_depth_and_dropout_only_in_training():
    m = randomize(tiny(drop_path=0.5, dropout=0.2, attn_dropout=0.2))
    x = torch.randn(4, 3, 32, 32)
    m.eval()
    assert torch.equal(m(x), m(x))
    m.train()
    assert not torch.equal(m(x), m(x))


def test_layernorm_eps_comes_from_config():
    m = tiny(norm_eps=1e-12)
    assert all(mod.eps == 1e-12 for mod in m.modules() if isinstance(mod, torch.nn.LayerNorm))


def test_resample_keeps_class_token_and_constant_fields():
    pos = torch.cat([torch.full((1, 1, 8), 7.0), torch.full((1, 4, 8), 3.0)], dim=1)
    out = resample_pos_embed(pos, (2, 2), (5, 3))
    assert out.shape == (1, 16, 8)
    assert torch.allclose(out[:, 0], pos[:, 0]) and torch.allclose(out[:, 1:], torch.tensor(3.0))
    assert resample_pos_embed(pos, (2, 2), (2, 2)) is pos
    with pytest.raises(ValueError, match="does not match"):
        resample_pos_embed(pos, (3, 3), (4, 4))


def test_sincos_embedding_is_distinct_per_position():
    emb = sincos_2d((4, 5), 32)
    assert emb.shape == (20, 32)
    sims = torch.nn.functional.normalize(emb, dim=1) @ torch.nn.functional.normalize(emb, dim=1).T
    off_diag = sims - torch.eye(20)
    assert off_diag.max() < 0.999


def test_gradient_checkpointing_gives_the_same_gradients():
    m = randomize(tiny(depth=3))
    x = torch.randn(2, 3, 32, 32)
    m(x).sum().backward()
    plain = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    m.grad_checkpointing = True
    m(x).sum().backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(plain, m.parameters()))


def test_speed_switches_compute_the_same_function():
    from vitkit.speed import SpeedOptions, configure

    m = randomize(tiny())
    x = torch.randn(2, 3, 32, 32)
    ref = m(x)
    configure(m, SpeedOptions.parse("math,patch_matmul"))
    assert torch.allclose(m(x), ref, atol=1e-5)
    configure(m, SpeedOptions.parse("bf16_residual"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = m(x).float()
        assert m.forward_features(x).dtype == torch.bfloat16
    assert torch.allclose(m(x), ref, atol=1e-5)  # outside autocast: plain fp32
    assert (low - ref).norm() / ref.norm() < 3e-2  # bf16 rounding, not a different function
    with pytest.raises(ValueError, match="unknown speed option"):
        SpeedOptions.parse("turbo")


def test_fp8_speed_option_parses_and_needs_torchao():
    from vitkit.variants import create_model
    from vitkit.speed import SpeedOptions, configure

    opts = SpeedOptions.parse("bf16_residual,fp8")
    assert opts.fp8 and opts.bf16_residual and not opts.patch_matmul
    with pytest.raises(ValueError, match="fp8"):
        SpeedOptions.parse("fp9")
    try:
        import torchao  # noqa: F401
    except ImportError:
        m = create_model("vit_ti16", img_size=32, depth=1, num_classes=3)
        with pytest.raises(ImportError, match="torchao"):
            configure(m, opts)
