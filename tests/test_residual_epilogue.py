"""Speed option `residual_epilogue`: the block's residual adds inside proj's and fc2's matmuls.

    x + proj(a)  ->  one matmul whose epilogue reads x (cuBLASLt, beta 1)

The block must compute the same output and gradients as the plain one on every path it can take,
and fall back to the plain adds wherever something comes between branch and add.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import assert_gradients_close, compiled_bf16_twins, randomize, tiny

from vitkit.layers import cublaslt, fused_mlp
from vitkit.layers.attention import Attention
from vitkit.layers.block import Block, Mlp
from vitkit.speed import SpeedOptions, configure


@pytest.fixture
def fused_adds(monkeypatch):
    """Counts the calls of linear_residual's maths (the path the GPU takes computes the same)."""
    calls = []
    reference = cublaslt._reference_linear_residual

    def counted(*args):
        calls.append(args[0].shape)
        return reference(*args)
    monkeypatch.setattr(cublaslt, "_reference_linear_residual", counted)
    return calls


def _output_and_gradients(module: torch.nn.Module, x: torch.Tensor):
    x = x.clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    out = module(x)
    out.sin().sum().backward()  # every output element weighed differently
    return out.detach(), x.grad, {name: p.grad for name, p in module.named_parameters()}


SETUPS = ["erf", "tanh_epilogues", "column_sums", "fold_norm", "tanh_epilogues_column_sums_fold_norm"]


@pytest.mark.parametrize("setup", SETUPS)
def test_the_block_with_the_adds_in_the_matmuls_has_the_plain_output_and_gradients(setup, fused_adds, monkeypatch):
    torch.manual_seed(0)
    plain = randomize(Block(16, 2, 32, gelu="tanh" if "tanh" in setup else "erf")).double().train()
    plain.mlp.epilogues = "epilogues" in setup
    plain.attn.column_sum_bias_grad = plain.mlp.column_sum_bias_grad = "column_sums" in setup
    plain.fold_norm = "fold_norm" in setup
    fused = copy.deepcopy(plain)
    fused.residual_epilogue = True
    mlp_calls = []
    if plain.mlp.epilogues:  # the fused MLP node, on the reference maths of vitkit.layers.cublaslt
        monkeypatch.setattr(fused_mlp, "applies", lambda x: mlp_calls.append(x.shape) or True)
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    expected = _output_and_gradients(plain, x)
    assert not fused_adds
    got = _output_and_gradients(fused, x)
    assert len(fused_adds) == 2  # proj's and fc2's
    assert bool(mlp_calls) == plain.mlp.epilogues
    for a, b in zip(expected[:2], got[:2]):
        assert torch.allclose(a, b, atol=1e-12, rtol=0)
    assert expected[2].keys() == got[2].keys()
    for name, grad in expected[2].items():
        assert torch.allclose(grad, got[2][name], atol=1e-12, rtol=0), name


def test_a_model_with_the_adds_in_the_matmuls_trains_like_the_plain_model_compiled(fused_adds):
    torch.manual_seed(0)
    plain = randomize(tiny()).double()
    fused = copy.deepcopy(plain)
    for block in fused.blocks:
        block.residual_epilogue = True  # configure wants bf16_residual, which the CPU's fp64 has no use for
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    plain(x).square().sum().backward()
    torch.compile(fused, backend="aot_eager", fullgraph=True)(x).square().sum().backward()
    assert len(fused_adds) == 2 * len(fused.blocks)
    for (name, a), b in zip(plain.named_parameters(), fused.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-10), name


@pytest.mark.parametrize("randomness", ["drop_path", "dropout"])
def test_dropout_or_stochastic_depth_keep_the_plain_adds_while_training(randomness, fused_adds):
    block = Block(16, 2, 32, drop_path=0.1 if randomness == "drop_path" else 0.0,
                  dropout=0.1 if randomness == "dropout" else 0.0).double()
    block.residual_epilogue = True
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    block.train()(x).sum().backward()
    assert not fused_adds
    with torch.enable_grad():
        block.eval()(x)  # nothing random at evaluation
    assert len(fused_adds) == 2


def test_the_adds_stay_plain_without_gradients_or_when_the_stream_is_not_in_the_matmul_dtype(fused_adds):
    block = Block(16, 2, 32)
    block.residual_epilogue = True
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        block(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # an fp32 stream would be rounded to bf16
        block(x)
    assert not fused_adds
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x.bfloat16())
    assert out.dtype == torch.bfloat16 and len(fused_adds) == 2


def test_a_branch_with_dropout_refuses_a_residual_to_add():
    x = torch.randn(2, 5, 16)
    with pytest.raises(ValueError, match="dropout"):
        Mlp(16, 32, dropout=0.1).train()(x, residual=x)
    with pytest.raises(ValueError, match="dropout"):
        Attention(16, 2, proj_dropout=0.1).train()(x, residual=x)


def test_configure_wants_bf16_residual_and_no_fp8():
    for speed in ("residual_epilogue", "bf16_residual,residual_epilogue,fp8"):
        with pytest.raises(ValueError, match="residual_epilogue"):
            configure(tiny(), SpeedOptions.parse(speed))
    model = configure(tiny(), SpeedOptions.parse("bf16_residual,residual_epilogue"))
    assert all(block.residual_epilogue for block in model.blocks)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("attention", ["", ",tile,qkv_bias_sums"])
def test_residual_epilogue_training_on_the_gpu_matches_the_same_switches_without_it(attention):
    speed = f"patch_matmul,fused_gelu,mlp_epilogues,bias_grad,fold_norm{attention}"
    reference, fused = compiled_bf16_twins(f"{speed},residual_epilogue", reference_speed=speed, img_size=32,
                                           patch_size=4, embed_dim=192, depth=2, num_heads=3, num_classes=10)
    assert_gradients_close(reference, fused)
