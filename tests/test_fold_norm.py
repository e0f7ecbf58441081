"""Speed option `fold_norm`: the pre-norms' affines folded into qkv and fc1 while training.

    LN(x) W^T + b = xhat (W * gamma)^T + (b + W beta)

The folded block must compute the same output and the same gradients for every parameter (the
norms' gamma and beta included) as the plain one, on each linear path it can take.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_gradients_close, compiled_bf16_twins, randomize, tiny

import vitkit
from vitkit.layers import fused_mlp
from vitkit.layers.block import Block
from vitkit.layers.norm import LayerNorm, fold_affine
from vitkit.speed import SpeedOptions, configure


def _output_and_gradients(module: torch.nn.Module, x: torch.Tensor):
    """module(x), and the gradients of a loss that weighs every output element differently."""
    x = x.clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    out = module(x)
    out.float().sin().sum().backward()
    return out.detach(), x.grad, {name: p.grad for name, p in module.named_parameters()}


def _assert_same(plain, folded, tol: float) -> None:
    (out_a, dx_a, grads_a), (out_b, dx_b, grads_b) = plain, folded
    assert torch.allclose(out_a, out_b, atol=tol, rtol=0)
    assert torch.allclose(dx_a, dx_b, atol=tol, rtol=0)
    assert grads_a.keys() == grads_b.keys()
    for name, grad in grads_a.items():
        assert torch.allclose(grad, grads_b[name], atol=tol, rtol=0), name


SETUPS = ["erf", "no_qkv_bias", "tanh_epilogues", "column_sums", "tanh_epilogues_column_sums"]


@pytest.mark.parametrize("setup", SETUPS)
def test_a_folded_block_has_the_plain_blocks_output_and_gradients(setup, monkeypatch):
    torch.manual_seed(0)
    plain = randomize(Block(16, 2, 32, qkv_bias=setup != "no_qkv_bias",
                            gelu="tanh" if "tanh" in setup else "erf")).double().train()
    plain.norm1.weight.data += 1  # gamma around 1, as trained norms are; randomize gave beta its spread
    plain.norm2.weight.data += 1
    plain.mlp.epilogues = "epilogues" in setup
    plain.attn.column_sum_bias_grad = plain.mlp.column_sum_bias_grad = "column_sums" in setup
    folded = copy.deepcopy(plain)
    folded.fold_norm = True
    calls = []
    if plain.mlp.epilogues:  # the path the GPU takes, here on the reference maths of vitkit.layers.cublaslt
        monkeypatch.setattr(fused_mlp, "applies", lambda x: calls.append(x.shape) or True)
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    _assert_same(_output_and_gradients(plain, x), _output_and_gradients(folded, x), tol=1e-10)
    assert bool(calls) == plain.mlp.epilogues


def test_normalize_is_the_norm_without_its_affine_in_the_inputs_dtype():
    norm = randomize(LayerNorm(8, eps=1e-6))
    x = torch.randn(4, 8)
    assert torch.equal(norm.normalize(x), F.layer_norm(x, (8,), eps=1e-6))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert norm.normalize(x.bfloat16()).dtype == torch.bfloat16  # not widened to fp32 as F.layer_norm is
        assert norm.normalize(x).dtype == torch.float32


def test_fold_affine_stays_fp32_under_autocast():
    norm, layer = randomize(LayerNorm(8)), torch.nn.Linear(8, 6)
    exact = fold_affine(norm.double(), layer.weight.double(), layer.bias.double())
    norm.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # would round the GEMV W beta to bf16
        weight, bias = fold_affine(norm, layer.weight, layer.bias)
    assert weight.dtype == bias.dtype == torch.float32
    assert torch.allclose(weight.double(), exact[0], atol=1e-7)
    assert torch.allclose(bias.double(), exact[1], atol=1e-6)
    no_bias_weight, no_bias = fold_affine(norm, layer.weight, None)
    assert torch.equal(no_bias_weight, weight) and torch.allclose(no_bias, layer.weight @ norm.bias)


@pytest.mark.parametrize("speed", ["", "fused_gelu,bias_grad"])
def test_a_model_with_fold_norm_has_the_same_logits_gradients_and_state_dict(speed):
    plain = randomize(tiny()).double()
    folded = copy.deepcopy(plain)
    configure(plain, SpeedOptions.parse(speed))
    configure(folded, SpeedOptions.parse(f"{speed},fold_norm"))
    assert all(b.fold_norm for b in folded.blocks) and not any(b.fold_norm for b in plain.blocks)
    assert folded.state_dict().keys() == plain.state_dict().keys()  # same parameters, same checkpoints
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    _assert_same(_output_and_gradients(plain, x), _output_and_gradients(folded, x), tol=1e-10)


def test_fold_norm_under_bf16_autocast_is_bf16_rounding_with_fp32_gradients():
    plain = randomize(tiny())
    folded = copy.deepcopy(plain)
    configure(plain, SpeedOptions.parse("bf16_residual"))
    configure(folded, SpeedOptions.parse("bf16_residual,fold_norm"))
    x = torch.randn(4, 3, 32, 32)
    outs = []
    for model in (plain, folded):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outs.append(model(x))
        outs[-1].float().sin().sum().backward()
    assert outs[0].dtype == outs[1].dtype == torch.bfloat16
    assert (outs[0].float() - outs[1].float()).norm() <= 1e-2 * outs[0].float().norm()
    assert all(p.grad.dtype == torch.float32 for p in folded.parameters())
    assert_gradients_close(plain, folded)  # bf16 alone moves these by about 1% from fp32


def test_without_gradients_a_folded_model_takes_the_plain_path(monkeypatch):
    plain = randomize(tiny())
    folded = configure(copy.deepcopy(plain), SpeedOptions.parse("fold_norm"))
    calls = []
    normalize = LayerNorm.normalize
    monkeypatch.setattr(LayerNorm, "normalize", lambda self, x: calls.append(x.shape) or normalize(self, x))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(folded(x), plain(x))
    assert not calls
    folded(x)
    assert len(calls) == 2 * len(folded.blocks)  # with gradients: both norms of every block folded


def test_fold_norm_excludes_fp8_and_resnets():
    model = tiny()
    with pytest.raises(ValueError, match="fold_norm"):
        configure(model, SpeedOptions.parse("fold_norm,fp8"))
    resnet = vitkit.create_model("bit_r26x1", img_size=16, num_classes=3, layers=(1, 1, 1), stem_width=16,
                                 stage_widths=(32, 64, 128), num_groups=4)
    with pytest.raises(ValueError, match="ViTs only"):
        configure(resnet, SpeedOptions.parse("fold_norm"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_fold_norm_training_on_the_gpu_matches_the_same_switches_without_it():
    def random_norms(model):  # init's gamma = 1, beta = 0 would fold to the weights themselves
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, LayerNorm):
                    module.weight.normal_(1, 0.2)
                    module.bias.normal_(0, 0.2)

    speed = "patch_matmul,fused_gelu,mlp_epilogues,bias_grad"
    reference, folded = compiled_bf16_twins(f"{speed},fold_norm", random_norms, reference_speed=speed,
                                            img_size=32, patch_size=4, embed_dim=192, depth=2, num_heads=3,
                                            num_classes=10)
    assert all(block.fold_norm for block in folded.blocks)
    assert_gradients_close(reference, folded)
