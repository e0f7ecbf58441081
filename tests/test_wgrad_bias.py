"""Speed option `wgrad_bias`: qkv's and fc1's bias gradients out of their weight-gradient matmuls,
through a block of ones after the normalised input (vitkit.layers.ones_column).

The model must compute the same logits and the same gradient for every parameter as with `fold_norm`
alone, on every MLP path it can take.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_gradients_close, compiled_bf16_twins, randomize, tiny

from vitkit.layers import fused_mlp, ones_column
from vitkit.layers.norm import LayerNorm
from vitkit.speed import SpeedOptions, configure


def _output_and_gradients(model: torch.nn.Module, x: torch.Tensor):
    x = x.clone().requires_grad_()
    model.zero_grad(set_to_none=True)
    out = model(x)
    out.float().sin().sum().backward()  # weighs every output element differently
    return out.detach(), x.grad, {name: p.grad for name, p in model.named_parameters()}


def _norms_and_biases_spread(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LayerNorm):
                module.weight.add_(1)  # gamma around 1, as trained norms are; randomize spread beta
    return model


@pytest.mark.parametrize("speed", ["", "fused_gelu", "fused_gelu,mlp_epilogues", "fused_gelu,mlp_epilogues,bias_grad"])
@pytest.mark.parametrize("qkv_bias", [True, False])
def test_a_model_with_wgrad_bias_has_the_same_logits_and_gradients_as_with_fold_norm(speed, qkv_bias, monkeypatch):
    torch.manual_seed(0)
    reference = _norms_and_biases_spread(randomize(tiny(depth=2, qkv_bias=qkv_bias))).double()
    model = copy.deepcopy(reference)
    configure(reference, SpeedOptions.parse(f"{speed},fold_norm"))
    configure(model, SpeedOptions.parse(f"{speed},fold_norm,wgrad_bias"))
    if "mlp_epilogues" in speed:  # the GPU's path, here on the reference maths of vitkit.layers.cublaslt
        monkeypatch.setattr(fused_mlp, "applies", lambda x: True)
    calls = []
    linear = ones_column.linear
    monkeypatch.setattr(ones_column, "linear", lambda *a: calls.append(a[0].shape) or linear(*a))
    weight_and_bias = ones_column.weight_and_bias_grads
    monkeypatch.setattr(ones_column, "weight_and_bias_grads",
                        lambda *a, **k: calls.append("wgrad") or weight_and_bias(*a, **k))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    (out_a, dx_a, grads_a), (out_b, dx_b, grads_b) = (_output_and_gradients(m, x) for m in (reference, model))
    # every block's qkv (and fc1, unless the fused MLP took it) went through the ones
    assert calls.count("wgrad") == 2 * len(model.blocks), calls
    assert torch.allclose(out_a, out_b, atol=1e-10, rtol=0) and torch.allclose(dx_a, dx_b, atol=1e-10, rtol=0)
    for name, grad in grads_a.items():
        assert torch.allclose(grad, grads_b[name], atol=1e-10, rtol=0), name
    assert model.state_dict().keys() == reference.state_dict().keys()


def test_ones_column_linear_matches_f_linear_and_its_bias_gradient_is_the_column_sum():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 12, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(7, 12, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(7, dtype=torch.float64, requires_grad=True)
    x_ones = ones_column.append_ones(x)
    assert x_ones.shape == (2, 5, 12 + ones_column.PAD) and torch.equal(x_ones[..., 12:], torch.ones(2, 5, 8).double())
    out = ones_column.linear(x_ones, weight, bias)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, weight, bias), grad)
    ref = F.linear(x, weight, bias)
    want = torch.autograd.grad(ref, (x, weight, bias), grad)
    assert torch.allclose(out, ref)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-12)
    assert torch.allclose(got[2], grad.sum((0, 1)))


def test_the_padded_weight_reads_the_ones_as_zeros():
    weight = torch.randn(4, 6)
    x = torch.randn(3, 6)
    assert torch.allclose(ones_column.append_ones(x) @ ones_column.padded(weight).t(), x @ weight.t(), atol=1e-6)


def test_ones_column_linear_rejects_an_input_without_its_ones():
    with pytest.raises(ValueError, match="12 \\+ 8 columns"):
        ones_column.linear(torch.randn(3, 12), torch.randn(4, 12), torch.randn(4))


def test_wgrad_bias_needs_fold_norm_and_leaves_inference_alone():
    with pytest.raises(ValueError, match="add fold_norm"):
        configure(tiny(), SpeedOptions.parse("wgrad_bias"))
    plain = randomize(tiny())
    model = configure(copy.deepcopy(plain), SpeedOptions.parse("fold_norm,wgrad_bias"))
    assert all(block.wgrad_bias for block in model.blocks)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))


def test_wgrad_bias_under_bf16_autocast_keeps_fp32_gradients():
    reference = randomize(tiny())
    model = copy.deepcopy(reference)
    configure(reference, SpeedOptions.parse("bf16_residual,fold_norm"))
    configure(model, SpeedOptions.parse("bf16_residual,fold_norm,wgrad_bias"))
    x = torch.randn(4, 3, 32, 32)
    for m in (reference, model):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            m(x).float().sin().sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())
    assert_gradients_close(reference, model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_wgrad_bias_training_on_the_gpu_matches_fold_norm_alone():
    def spread(model):
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, LayerNorm):
                    module.weight.normal_(1, 0.2)
                    module.bias.normal_(0, 0.2)

    speed = "patch_matmul,fused_gelu,mlp_epilogues,bias_grad,tile,fold_norm"
    reference, model = compiled_bf16_twins(f"{speed},wgrad_bias", spread, reference_speed=speed,
                                           img_size=32, patch_size=4, embed_dim=192, depth=2, num_heads=3,
                                           num_classes=10)
    assert all(block.wgrad_bias for block in model.blocks)
    assert_gradients_close(reference, model)
