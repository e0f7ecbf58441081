"""Speed option `norm_bias`: proj's and fc2's biases added inside the next LayerNorm, their gradients
summed by its backward kernel (vitkit.layers.residual_norm).

The model must compute the same logits and the same gradient for every parameter as with `fold_norm`
alone; the Triton backward kernel must match the LayerNorm backward it replaces.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_gradients_close, compiled_bf16_twins, randomize, tiny

from vitkit.layers import fused_mlp
from vitkit.layers.block import Block
from vitkit.layers.norm import LayerNorm
from vitkit.layers.residual_norm import add_bias_normalize, norm_backward
from vitkit.speed import SpeedOptions, configure

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")


def _output_and_gradients(module: torch.nn.Module, x: torch.Tensor):
    x = x.clone().requires_grad_()
    module.zero_grad(set_to_none=True)
    out = module(x)
    out.float().sin().sum().backward()  # weighs every output element differently
    return out.detach(), x.grad, {name: p.grad for name, p in module.named_parameters()}


@pytest.mark.parametrize("speed", ["", "fused_gelu,mlp_epilogues", "fused_gelu,mlp_epilogues,bias_grad"])
def test_a_model_with_norm_bias_has_the_same_logits_and_gradients_as_with_fold_norm(speed, monkeypatch):
    torch.manual_seed(0)
    reference = randomize(tiny(depth=3)).double()
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, LayerNorm):
                module.weight.add_(1)  # gamma around 1 as in trained norms; randomize spread beta
    model = copy.deepcopy(reference)
    configure(reference, SpeedOptions.parse(f"{speed},fold_norm"))
    configure(model, SpeedOptions.parse(f"{speed},fold_norm,norm_bias"))
    if "mlp_epilogues" in speed:  # the GPU's path, here on the reference maths of vitkit.layers.cublaslt
        monkeypatch.setattr(fused_mlp, "applies", lambda x: True)
    pending = []
    forward_pending = Block.forward_pending
    monkeypatch.setattr(Block, "forward_pending", lambda self, x, p: pending.append(p) or forward_pending(self, x, p))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    (out_a, dx_a, grads_a), (out_b, dx_b, grads_b) = (_output_and_gradients(m, x) for m in (reference, model))
    assert len(pending) == len(model.blocks) and pending[0] is None  # the model took the deferred path
    assert torch.allclose(out_a, out_b, atol=1e-10, rtol=0) and torch.allclose(dx_a, dx_b, atol=1e-10, rtol=0)
    for name, grad in grads_a.items():
        assert torch.allclose(grad, grads_b[name], atol=1e-10, rtol=0), name
    assert model.state_dict().keys() == reference.state_dict().keys()


def test_add_bias_normalize_and_its_gradients_match_plain_ops():
    torch.manual_seed(0)
    x, y = torch.randn(2, 2, 5, 24, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(24, dtype=torch.float64, requires_grad=True)
    m, xhat = add_bias_normalize(x, y, bias, eps=1e-6)
    ref_m = x + y + bias
    ref_xhat = F.layer_norm(ref_m, (24,), eps=1e-6)
    assert torch.allclose(m, ref_m) and torch.allclose(xhat, ref_xhat, atol=1e-12)
    grads = [torch.randn_like(m), torch.randn_like(m)]
    got = torch.autograd.grad((m, xhat), (x, y, bias), grads)
    want = torch.autograd.grad((ref_m, ref_xhat), (x, y, bias), grads)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-10)


def test_add_bias_normalize_keeps_a_bf16_stream_bf16_and_the_bias_gradient_in_its_dtype():
    x, y = torch.randn(2, 6, 16).bfloat16(), torch.randn(6, 16).bfloat16()
    bias = torch.randn(16, requires_grad=True)
    y = y.expand(2, 6, 16).contiguous().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        m, xhat = add_bias_normalize(x, y, bias, eps=1e-6)
    assert m.dtype == xhat.dtype == torch.bfloat16
    (m.float().sum() + xhat.float().square().sum()).backward()
    assert bias.grad.dtype == torch.float32 and y.grad.dtype == torch.bfloat16


def test_add_bias_normalize_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one shape and dtype"):
        add_bias_normalize(torch.randn(2, 8), torch.randn(2, 8).bfloat16(), torch.randn(8), eps=1e-6)
    with pytest.raises(ValueError, match="bias of their width"):
        add_bias_normalize(torch.randn(2, 8), torch.randn(2, 8), torch.randn(4), eps=1e-6)


def test_norm_bias_needs_fold_norm_and_leaves_inference_and_dropout_alone():
    with pytest.raises(ValueError, match="add fold_norm"):
        configure(tiny(), SpeedOptions.parse("norm_bias"))
    model = configure(randomize(tiny()), SpeedOptions.parse("fold_norm,norm_bias"))
    assert all(b.defers_bias() for b in model.blocks)
    with torch.no_grad():
        assert not any(b.defers_bias() for b in model.blocks)
    dropped = configure(tiny(dropout=0.1), SpeedOptions.parse("fold_norm,norm_bias")).train()
    assert not any(b.defers_bias() for b in dropped.blocks)  # dropout acts on branch + bias: plain path


KERNEL = textwrap.dedent("""
    import torch
    from vitkit.layers import residual_norm as rn

    torch.manual_seed(0)
    rn.ROWS_PER_PROGRAM = 8  # several programs and a ragged last one at these sizes
    for rows, width, with_grad_m, dtype in [(37, 24, True, torch.float32), (20, 48, False, torch.float16),
                                           (64, 16, True, torch.float32)]:
        m = torch.randn(rows, width, dtype=dtype)
        var, mean = torch.var_mean(m.double(), dim=-1, correction=0)
        rstd = torch.rsqrt(var + 1e-6)
        grad_xhat = torch.randn(rows, width, dtype=dtype)
        grad_m = torch.randn(rows, width, dtype=dtype) if with_grad_m else None
        grad, partials = rn.norm_backward(grad_xhat, grad_m, m, mean.float(), rstd.float())
        ref_m = m.double().requires_grad_()
        xhat = torch.nn.functional.layer_norm(ref_m, (width,), eps=1e-6)
        want = torch.autograd.grad(xhat, ref_m, grad_xhat.double())[0]
        if with_grad_m:
            want = want + grad_m.double()
        tol = 2e-3 if dtype == torch.float16 else 1e-5
        assert grad.dtype == dtype and partials.shape == (-(-rows // 8), width), partials.shape
        assert (grad.double() - want).abs().max() < tol * want.abs().max(), (rows, width)
        assert (partials.sum(0).double() - want.sum(0)).abs().max() < tol * rows, (rows, width)
    print("ok")
""")


@needs_triton
def test_the_triton_norm_backward_kernel_matches_layer_norms_backward_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "-c", KERNEL], env=env, capture_output=True, text=True, timeout=600,
                            check=False)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_the_pytorch_norm_backward_returns_one_row_of_sums_off_the_gpu():
    m = torch.randn(10, 8)
    var, mean = torch.var_mean(m, dim=-1, correction=0)
    grad, partials = norm_backward(torch.randn(10, 8), None, m, mean, torch.rsqrt(var + 1e-6))
    assert partials.shape == (1, 8) and torch.allclose(partials[0], grad.sum(0), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_norm_bias_training_on_the_gpu_matches_fold_norm_alone():
    def random_norms(model):
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, LayerNorm):
                    module.weight.normal_(1, 0.2)
                    module.bias.normal_(0, 0.2)
                elif isinstance(module, torch.nn.Linear):
                    module.bias.normal_(0, 0.2)  # zero-initialised biases would hide a lost bias gradient

    speed = "patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm"
    reference, model = compiled_bf16_twins(f"{speed},norm_bias", random_norms, reference_speed=speed,
                                           img_size=32, patch_size=4, embed_dim=192, depth=2, num_heads=3,
                                           num_classes=10)
    assert all(block.norm_bias for block in model.blocks)
    assert_gradients_close(reference, model)
