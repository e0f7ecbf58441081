"""Speed option `fused_gelu`: the tanh GELU, fused into fc1's matmul for inference on CUDA and into
one Triton kernel (with the bias and its gradient) for training."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from vitkit.layers.linear_gelu import gelu_tanh, linear_gelu
from vitkit.speed import SpeedOptions, configure
from vitkit.variants import create_model


def test_tanh_gelu_is_within_bf16_rounding_of_the_erf_gelu():
    x = torch.linspace(-8, 8, 100_001, dtype=torch.float64)
    gap = (F.gelu(x, approximate="tanh") - F.gelu(x)).abs().max().item()
    assert 1e-4 < gap < 5e-4  # a different function, but by less than bf16 rounds values near 1 (3.9e-3)


def test_gelu_tanh_is_pytorchs_tanh_gelu_in_every_dtype():
    x = torch.linspace(-10, 10, 10_001)
    assert torch.allclose(gelu_tanh(x), F.gelu(x, approximate="tanh"), atol=2e-6)
    low = x.bfloat16()
    assert gelu_tanh(low).dtype == torch.bfloat16
    ref = F.gelu(low.float(), approximate="tanh").bfloat16()
    # within one bf16 step (and 1e-6 far left, where 1 + tanh(u) rounds to 0 but the sigmoid does not)
    assert torch.allclose(gelu_tanh(low).float(), ref.float(), rtol=2**-8, atol=1e-6)


def test_linear_gelu_off_the_gpu_is_linear_then_tanh_gelu():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 5, 8), torch.randn(12, 8), torch.randn(12)
    assert torch.allclose(linear_gelu(x, w, b), F.gelu(F.linear(x, w, b), approximate="tanh"), atol=2e-6)
    w.requires_grad_()
    linear_gelu(x, w, b).sum().backward()  # trainable: the unfused path keeps autograd
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_fused_gelu_option_changes_the_model_by_less_than_bf16_rounding_and_trains():
    torch.manual_seed(0)
    model = create_model("vit_ti16", img_size=32, depth=2, num_classes=3)
    torch.nn.init.normal_(model.head.weight, std=0.2)
    x = torch.randn(4, 3, 32, 32)
    ref = model(x)
    configure(model, SpeedOptions.parse("fused_gelu"))
    assert all(block.mlp.fused_gelu for block in model.blocks)
    got = model(x)
    assert not torch.equal(got, ref)  # the switch is on: tanh, not erf
    assert (got - ref).norm() / ref.norm() < 1e-3
    got.sum().backward()
    assert model.blocks[0].mlp.fc1.weight.grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the cuBLASLt epilogue needs a GPU")
def test_fused_epilogue_on_the_gpu_computes_the_tanh_gelu():
    torch.manual_seed(0)
    x = torch.randn(300, 64, device="cuda")
    w, b = torch.randn(256, 64, device="cuda") / 8, torch.randn(256, device="cuda")
    h = F.linear(x, w, b)
    with torch.no_grad():
        fused = linear_gelu(x, w, b)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = linear_gelu(x, w, b)
    assert (fused - F.gelu(h, approximate="tanh")).abs().max() < 1e-4  # fp32: tanh to rounding...
    assert (fused - F.gelu(h)).abs().max() > 1e-4  # ...and measurably not erf
    assert low.dtype == torch.bfloat16 and (low.float() - fused).abs().max() < 0.05

    model = create_model("vit_ti16", img_size=32, depth=2, num_classes=3).cuda().eval()
    torch.nn.init.normal_(model.head.weight, std=0.2)
    images = torch.randn(8, 3, 32, 32, device="cuda")
    with torch.no_grad():
        configure(model, SpeedOptions.parse("fused_gelu"))
        ref = model(images)  # fp32: still fused (no gradients), so compare with the eager unfused path
        for block in model.blocks:
            block.mlp.fused_gelu = False
            block.mlp.act = torch.nn.GELU(approximate="tanh")
        assert torch.allclose(model(images), ref, atol=1e-4)


BIAS_GELU_PARITY = textwrap.dedent("""
    import torch
    from vitkit.layers.bias_gelu import bias_gelu
    from vitkit.layers.linear_gelu import gelu_tanh

    from vitkit.layers import bias_gelu as bg

    torch.manual_seed(0)
    # rows and features that are not multiples of the program's block exercise the masks; the small
    # launch sizes make several row chunks, whose partial bias sums must add up
    default = bg.launch
    small = lambda n_rows, n_cols: bg.Launch(block=128, warps=4, rows=16, cols=64, row_steps=3, backward_warps=4)
    for rows, cols, dtype, tol, launch in [(150, 200, torch.float32, 1e-5, default),
                                           (70, 130, torch.float16, 2e-3, default),
                                           (150, 200, torch.float32, 1e-5, small)]:
        bg.launch = launch
        h = (3 * torch.randn(rows, cols)).to(dtype).requires_grad_()
        bias = torch.randn(cols, requires_grad=True)
        out = bias_gelu(h, bias)
        grad = torch.randn_like(out)
        out.backward(grad)
        ref_h, ref_bias = h.detach().double().requires_grad_(), bias.detach().double().requires_grad_()
        ref = gelu_tanh(ref_h + ref_bias)
        ref.backward(grad.double())
        assert out.dtype == dtype and bias.grad.dtype == torch.float32
        for name, got, want, scale in [("out", out, ref, 1), ("grad_h", h.grad, ref_h.grad, 1),
                                       ("grad_bias", bias.grad, ref_bias.grad, rows)]:
            err = ((got.double() - want).abs() / (1 + want.abs())).max().item()  # fp16 rounds relatively
            assert err < tol * scale, (name, rows, cols, dtype, err)
    print("bias_gelu ok")
""")


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")
def test_bias_gelu_kernels_match_autograd_in_the_triton_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "-c", BIAS_GELU_PARITY], check=False, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bias_gelu ok" in result.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernels need a GPU")
def test_fused_gelu_training_on_the_gpu_matches_the_unfused_tanh_model():
    torch.manual_seed(0)
    kw = {"img_size": 32, "patch_size": 4, "embed_dim": 192, "depth": 2, "num_heads": 3, "num_classes": 10}
    ref_model = create_model("vit_ti16", **kw).cuda()
    torch.nn.init.normal_(ref_model.head.weight, std=0.2)
    for block in ref_model.blocks:
        block.mlp.act = torch.nn.GELU(approximate="tanh")
    fused_model = create_model("vit_ti16", **kw).cuda()
    fused_model.load_state_dict(ref_model.state_dict())
    configure(fused_model, SpeedOptions.parse("fused_gelu,bf16_residual"))
    configure(ref_model, SpeedOptions.parse("bf16_residual"))
    x = torch.randn(64, 3, 32, 32, device="cuda")
    for model in (ref_model, fused_model):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            torch.compile(model)(x).float().square().mean().backward()
    for (name, a), b in zip(ref_model.named_parameters(), fused_model.parameters()):
        assert (a.grad - b.grad).norm() <= 2e-2 * a.grad.norm() + 1e-6, name
