"""Speed option `last_block_cls`: a pool="cls" model's last block computes the class token's output only.

The head reads one row of the last block's output, so the function (logits) and every gradient must
be the plain model's; only the work on the other rows goes. Everything else that reads tokens
(features, intermediates, attention maps) keeps all of them.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import (
    assert_compiled_gradients_equal,
    assert_gradients_close,
    compiled_bf16_twins,
    fp64_cpu_twins,
    randomize,
    tiny,
)

from vitkit.speed import SpeedOptions, configure


def _twins(speed: str = "", **overrides):
    plain = randomize(tiny(**overrides)).double()
    pruned = configure(copy.deepcopy(plain), SpeedOptions.parse(f"{speed},last_block_cls"))
    configure(plain, SpeedOptions.parse(speed))
    return plain, pruned


def _logits_and_gradients(model: torch.nn.Module, x: torch.Tensor):
    model.zero_grad(set_to_none=True)
    logits = model(x)
    logits.sin().sum().backward()  # every logit weighed differently
    return logits.detach(), {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize(("speed", "overrides"), [
    ("", {}),
    ("fused_gelu,bf16_residual,fold_norm,residual_epilogue,patch_matmul", {}),
    ("", {"depth": 3, "patch_size": 8, "stride": 4, "qkv_bias": False}),  # overlapping patches, no qkv bias
])
def test_logits_and_every_gradient_are_the_full_models(speed, overrides):
    plain, pruned = _twins(speed, **overrides)
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    want, want_grads = _logits_and_gradients(plain, x)
    got, got_grads = _logits_and_gradients(pruned, x)
    assert torch.allclose(got, want, atol=1e-12)
    for name, grad in want_grads.items():
        assert got_grads[name] is not None, name
        assert torch.allclose(got_grads[name], grad, atol=1e-12), name


def test_only_the_last_blocks_mlp_shrinks_to_one_row_per_image():
    _, pruned = _twins(depth=3)
    rows = []
    for block in pruned.blocks:
        block.mlp.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[:2]))
    pruned(torch.randn(2, 3, 32, 32, dtype=torch.float64))
    tokens = 1 + pruned.grid[0] * pruned.grid[1]
    assert rows == [(2, tokens), (2, tokens), (2, 1)]


def test_features_intermediates_and_attention_maps_keep_every_token():
    plain, pruned = _twins()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(pruned.forward_features(x), plain.forward_features(x))
        assert torch.equal(pruned.forward_intermediates(x)[1], plain.forward_intermediates(x)[1])
        (logits, maps), (want_logits, want_maps) = pruned.forward_with_attention(x), plain.forward_with_attention(x)
    assert torch.equal(maps[-1], want_maps[-1])
    assert torch.allclose(logits, want_logits, atol=1e-12)


def test_training_with_dropout_and_stochastic_depth_runs_and_evaluation_matches():
    plain, pruned = _twins(dropout=0.1, attn_dropout=0.1, drop_path=0.2)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    pruned.train()
    pruned(x).sum().backward()
    assert all(p.grad is not None for p in pruned.blocks[-1].parameters())
    plain.eval(), pruned.eval()
    with torch.no_grad():
        assert torch.allclose(pruned(x), plain(x), atol=1e-12)


def test_under_compilation_the_gradients_are_the_plain_models():
    plain, pruned, x = fp64_cpu_twins("last_block_cls")
    assert_compiled_gradients_equal(plain, pruned, x)


def test_a_model_that_pools_patches_refuses_the_switch():
    with pytest.raises(ValueError, match="last_block_cls.*'gap'"):
        configure(tiny(pool="gap"), SpeedOptions.parse("last_block_cls"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_last_block_cls_training_on_the_gpu_matches_the_same_switches_without_it():
    speed = "patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,qkv_bias_sums,residual_epilogue,dgelu_bias_sum"
    reference, pruned = compiled_bf16_twins(f"{speed},last_block_cls", reference_speed=speed, img_size=32,
                                            patch_size=4, embed_dim=192, depth=2, num_heads=3, num_classes=10)
    assert pruned.last_block_cls and not reference.last_block_cls
    assert_gradients_close(reference, pruned)


def test_bench_counts_the_work_that_runs():
    from vitkit.flops import count_forward_flops
    from vitkit.variants import model_config

    config = model_config("vit_ti16", img_size=32, patch_size=4, depth=2, num_classes=10)
    full, pruned = count_forward_flops(config), count_forward_flops(config, last_block_cls=True)
    tokens, width, mlp = 65, config.embed_dim, config.mlp_dim
    # left out: 64 rows of q, proj, fc1 and fc2; and the last block's attention, whose one query row is
    # element-wise maths that the counter does not see (2 x 2 x 65 x width FLOPs per image)
    saved = 2 * (tokens - 1) * (width * width * 2 + 2 * width * mlp) + 2 * 2 * tokens * tokens * width
    assert full - pruned == saved
