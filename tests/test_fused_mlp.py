"""Training the MLP through cuBLASLt's GELU epilogues (speed option `mlp_epilogues`), and bias
gradients from vitkit's column-sum kernel (speed option `bias_grad`).

On CPU the autograd node runs on the reference maths of vitkit.layers.cublaslt, so these tests check
the backward formulas and the wiring; the GPU tests check the cuBLASLt calls against that maths.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    assert_compiled_gradients_equal,
    assert_gradients_close,
    compiled_bf16_twins,
    cuda_graph_training_steps,
    fp64_cpu_twins,
)
from torch import nn

from vitkit.layers import bias_grad, cublaslt, fused_mlp
from vitkit.layers.bias_grad import column_sum
from vitkit.layers.linear_gelu import gelu_tanh, gelu_tanh_grad
from vitkit.speed import SpeedOptions, configure
from vitkit.variants import create_model


def _grads(*tensors):
    return [t.grad.clone() for t in tensors]


def test_gelu_tanh_grad_is_the_derivative_of_gelu_tanh():
    x = torch.linspace(-6, 6, 2001, dtype=torch.float64, requires_grad=True)
    gelu_tanh(x).sum().backward()
    assert torch.allclose(gelu_tanh_grad(x.detach()), x.grad, atol=1e-12)


def test_fused_mlp_computes_the_mlp_and_its_gradients():
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(8, 24).double(), nn.Linear(24, 8).double()
    x = torch.randn(3, 5, 8, dtype=torch.float64, requires_grad=True)
    params = (x, fc1.weight, fc1.bias, fc2.weight, fc2.bias)
    ref = fc2(F.gelu(fc1(x), approximate="tanh"))
    ref.square().sum().backward()
    expected = _grads(*params)
    for t in params:
        t.grad = None
    out = fused_mlp.mlp_tanh_gelu(x, fc1.weight, fc1.bias, fc2.weight, fc2.bias)
    assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-12)
    out.square().sum().backward()
    for got, want in zip(_grads(*params), expected):
        assert torch.allclose(got, want, atol=1e-10)


def test_fused_mlp_under_autocast_casts_like_f_linear_and_returns_fp32_parameter_gradients():
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(8, 24), nn.Linear(24, 8)
    x = torch.randn(16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = fc2(F.gelu(fc1(x), approximate="tanh"))
        out = fused_mlp.mlp_tanh_gelu(x, fc1.weight, fc1.bias, fc2.weight, fc2.bias)
    assert out.dtype == ref.dtype == torch.bfloat16
    assert (out.float() - ref.float()).abs().max() < 0.05
    out.float().sum().backward()
    assert fc1.weight.grad.dtype == torch.float32 and fc2.bias.grad.dtype == torch.float32


def test_the_custom_ops_pass_pytorchs_op_checks():
    torch.manual_seed(0)
    torch.library.opcheck(cublaslt.linear_gelu_aux, (torch.randn(6, 4), torch.randn(5, 4), torch.randn(5)))
    torch.library.opcheck(cublaslt.linear_dgelu, (torch.randn(6, 3), torch.randn(3, 5), torch.randn(6, 5)))
    torch.library.opcheck(cublaslt.linear_residual,
                          (torch.randn(6, 4), torch.randn(5, 4), torch.randn(5), torch.randn(6, 5)))


def test_a_model_on_the_fused_path_matches_the_plain_model_compiled(monkeypatch):
    """The path the GPU takes, forced on the CPU: same gradients, through torch.compile."""
    plain, fused, x = fp64_cpu_twins("mlp_epilogues,bias_grad")
    assert fused.blocks[0].attn.column_sum_bias_grad and fused.blocks[0].mlp.column_sum_bias_grad
    calls = []

    def applies(x):
        calls.append(x.shape)
        return True
    monkeypatch.setattr(fused_mlp, "applies", applies)
    assert_compiled_gradients_equal(plain, fused, x)
    assert calls  # the fused MLP ran


def test_mlp_epilogues_needs_fused_gelu_and_excludes_fp8():
    model = create_model("vit_ti16", img_size=16, patch_size=8, depth=1, num_classes=3)
    with pytest.raises(ValueError, match="add fused_gelu"):
        configure(model, SpeedOptions.parse("mlp_epilogues"))
    for speed in ("fused_gelu,fp8", "bias_grad,fp8"):
        with pytest.raises(ValueError, match="fp8"):
            configure(model, SpeedOptions.parse(speed))


def test_linear_with_column_sum_bias_grad_matches_nn_linear():
    torch.manual_seed(0)
    layer = nn.Linear(6, 10).double()
    x = torch.randn(4, 7, 6, dtype=torch.float64, requires_grad=True)
    layer(x).sin().sum().backward()
    expected = _grads(x, layer.weight, layer.bias)
    x.grad = layer.weight.grad = layer.bias.grad = None
    bias_grad.linear(x, layer.weight, layer.bias).sin().sum().backward()
    for got, want in zip(_grads(x, layer.weight, layer.bias), expected):
        assert torch.allclose(got, want, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="cuBLASLt needs a GPU")
def test_cublaslt_ops_on_the_gpu_match_the_reference_maths():
    assert cublaslt.available()
    torch.manual_seed(0)
    tokens, dim, hidden = 394, 192, 768
    bf = {"device": "cuda", "dtype": torch.bfloat16}
    x, w1, b1 = torch.randn(tokens, dim, **bf), torch.randn(hidden, dim, **bf) / 14, torch.randn(hidden, **bf)
    w2, grad = torch.randn(dim, hidden, **bf) / 28, torch.randn(tokens, dim, **bf)

    def close(got, want, tol=1e-2):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert (got.float() - want.float()).norm() <= tol * want.float().norm()

    out, pre = cublaslt.linear_gelu_aux(x, w1, b1)
    ref_out, ref_pre = cublaslt._reference_linear_gelu_aux(x, w1, b1)
    close(pre, ref_pre)
    close(out, ref_out)
    close(cublaslt.linear_dgelu(grad, w2, pre), cublaslt._reference_linear_dgelu(grad, w2, pre))
    residual = torch.randn(tokens, dim, **bf)
    fused = cublaslt.linear_residual(out, w2, b1[:dim], residual)
    close(fused, cublaslt._reference_linear_residual(out, w2, b1[:dim], residual))
    # one rounding: nearer the fp32 result than the reference's two
    exact = cublaslt._reference_linear_residual(out.float(), w2.float(), b1[:dim].float(), residual.float())
    assert ((fused.float() - exact).abs() <= exact.abs() * 2**-8 + 1e-3).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_mlp_epilogues_training_on_the_gpu_matches_pytorchs_tanh_gelu():
    def pytorch_tanh_gelu(model):
        for block in model.blocks:
            block.mlp.act = nn.GELU(approximate="tanh")

    reference, fused = compiled_bf16_twins("fused_gelu,mlp_epilogues,bias_grad", pytorch_tanh_gelu, img_size=32,
                                           patch_size=4, embed_dim=192, depth=2, num_heads=3, num_classes=10)
    assert_gradients_close(reference, fused)


def test_column_sum_op_off_the_gpu_is_an_fp32_sum():
    x = torch.randn(100, 9).bfloat16()
    assert torch.equal(column_sum(x), x.float().sum(0).bfloat16())
    torch.library.opcheck(column_sum, (x,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_column_sum_on_the_gpu_is_an_fp32_accumulated_sum():
    torch.manual_seed(0)
    for rows, cols in [(50_432, 768), (1000, 300), (7, 5)]:
        x = torch.randn(rows, cols, device="cuda").bfloat16()
        got, want = column_sum(x), x.float().sum(0)
        assert got.dtype == torch.bfloat16 and got.shape == (cols,)
        assert torch.allclose(got.float(), want, rtol=8e-3, atol=1e-2)  # one bf16 rounding of an fp32 sum


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_fused_training_path_runs_in_cuda_graphs():
    """reduce-overhead captures the step: the ops must keep nothing allocated between calls."""
    losses = cuda_graph_training_steps("bf16_residual,fused_gelu,mlp_epilogues,bias_grad,tile", 4,
                                       lambda model, loss: loss.item())
    assert max(losses) - min(losses) <= 1e-3 * abs(losses[0])  # same weights and input, replayed
