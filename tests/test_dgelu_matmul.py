"""Speed option `dgelu_bias_sum`: GELU's gradient and fc1's bias gradient from one Triton matmul.

On CPU the kernel runs under Triton's interpreter (in a subprocess: TRITON_INTERPRET must be set
before Triton is imported), and the model tests run the op's reference maths through the fused MLP
node; the GPU tests check the compiled kernel against fp32 maths and the switch against the model
without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import (
    assert_compiled_gradients_equal,
    assert_gradients_close,
    compiled_bf16_twins,
    cuda_graph_training_steps,
    fp64_cpu_twins,
    tiny,
)

from vitkit.layers import dgelu_matmul, dgelu_pingpong, fused_mlp
from vitkit.speed import SpeedOptions, configure

needs_triton = pytest.mark.skipif(dgelu_matmul.triton is None, reason="needs Triton")

# fp32 (the interpreter's tensor descriptors do not take bfloat16); token counts that leave a partial
# block, output widths that leave a partial column block, both loop forms
INTERPRETED = textwrap.dedent("""
    import torch
    from vitkit.layers import dgelu_matmul
    torch.manual_seed(0)
    for tokens, width, hidden, block_n in [(300, 64, 256, 64), (130, 48, 192, 128)]:
        grad, pre = torch.randn(tokens, width), torch.randn(tokens, hidden)
        weight = torch.randn(width, hidden) / width**0.5
        want = (grad.double() @ weight.double()) * dgelu_matmul.gelu_tanh_grad(pre.double())
        for ws in (False, True):
            grad_pre, sums = dgelu_matmul.launch(grad, weight, pre, block_m=64, block_n=block_n, block_k=32,
                                                 stages=2, warps=4, warp_specialize=ws, fast_tanh=False)
            assert sums.shape == (-(-tokens // 64), hidden) and sums.dtype == torch.float32
            assert torch.allclose(grad_pre.double(), want, atol=1e-5), (grad_pre.double() - want).abs().max()
            for block, row in enumerate(sums):  # each row: one block of 64 tokens
                assert torch.allclose(row.double(), want[64 * block:64 * (block + 1)].sum(0), atol=1e-4), block
    # the op's first call times its launches (here on the CPU clock; the interpreter has no fast tanh)
    # and keeps one for the shape
    dgelu_matmul.LAUNCHES = tuple({**config, "fast_tanh": False} for config in dgelu_matmul.LAUNCHES)
    chosen = dgelu_matmul._best_launch(grad, weight, pre)
    assert chosen in dgelu_matmul.LAUNCHES and dgelu_matmul._chosen
    print("kernel ok")
""")


@needs_triton
def test_the_kernel_matches_fp64_maths_in_the_triton_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "-c", INTERPRETED], check=False, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "kernel ok" in result.stdout


def test_the_op_off_the_gpu_is_the_reference_maths_and_passes_pytorchs_op_checks():
    torch.manual_seed(0)
    grad, weight, pre = torch.randn(6, 3), torch.randn(3, 5), torch.randn(6, 5)
    grad_pre, bias = dgelu_matmul.linear_dgelu_bias_grad(grad, weight, pre)
    want = (grad @ weight) * dgelu_matmul.gelu_tanh_grad(pre)
    assert torch.allclose(grad_pre, want, atol=1e-6) and torch.allclose(bias, want.sum(0), atol=1e-6)
    torch.library.opcheck(dgelu_matmul._op, (grad, weight, pre))


def test_a_model_with_the_switch_has_the_plain_models_gradients_through_torch_compile(monkeypatch):
    """The fused MLP node forced on the CPU (its ops on their reference maths), in fp64."""
    plain, fused, x = fp64_cpu_twins("mlp_epilogues,dgelu_bias_sum")
    calls = []
    reference = dgelu_matmul._reference
    monkeypatch.setattr(fused_mlp, "applies", lambda x: True)
    monkeypatch.setattr(dgelu_matmul, "_reference", lambda *args: calls.append(1) or reference(*args))
    assert_compiled_gradients_equal(plain, fused, x)
    assert calls  # the backward took the op


def test_the_switch_needs_mlp_epilogues():
    with pytest.raises(ValueError, match="add mlp_epilogues"):
        configure(tiny(), SpeedOptions.parse("fused_gelu,dgelu_bias_sum"))
    model = configure(tiny(), SpeedOptions.parse("fused_gelu,mlp_epilogues,dgelu_bias_sum"))
    assert all(block.mlp.dgelu_bias_sum for block in model.blocks)


def gpu_problem(tokens: int, width: int, hidden: int) -> tuple[torch.Tensor, ...]:
    """grad, weight, pre (bf16, seeded) and grad_pre in fp32 maths."""
    torch.manual_seed(0)
    bf = {"device": "cuda", "dtype": torch.bfloat16}
    grad, pre = torch.randn(tokens, width, **bf), torch.randn(tokens, hidden, **bf)
    weight = torch.randn(width, hidden, **bf) / width**0.5
    return grad, weight, pre, (grad.float() @ weight.float()) * dgelu_matmul.gelu_tanh_grad(pre)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("tokens,width,hidden", [(33_280, 384, 1536), (394, 192, 768), (1000, 64, 200)])
def test_the_kernel_on_the_gpu_matches_fp32_maths(tokens, width, hidden):
    grad, weight, pre, want = gpu_problem(tokens, width, hidden)
    assert dgelu_matmul.applies(grad, weight)
    results = [dgelu_matmul.linear_dgelu_bias_grad(grad, weight, pre)]  # the op, on the launch it picked
    results += [(g, sums.sum(0)) for g, sums in (dgelu_matmul.launch_config(grad, weight, pre, config)
                                                 for config in dgelu_matmul.candidates(grad, weight))]
    for grad_pre, bias in results:
        assert grad_pre.dtype == torch.bfloat16 and bias.dtype == torch.float32
        assert ((grad_pre.float() - want).abs() <= want.abs() * 2**-7 + 1e-2).all()  # a rounding + the fast tanh
        assert (bias - want.sum(0)).norm() <= 1e-3 * want.sum(0).norm()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("tokens,width,hidden", [(33_280, 384, 1536), (394, 192, 768), (1000, 64, 200)])
def test_the_ping_pong_kernel_on_the_gpu_matches_fp32_maths(tokens, width, hidden):
    grad, weight, pre, want = gpu_problem(tokens, width, hidden)
    assert dgelu_pingpong.usable(grad, weight) == (torch.cuda.get_device_capability() == (9, 0))
    if not dgelu_pingpong.usable(grad, weight):
        pytest.skip("needs a Hopper GPU")
    for programs in (None, 3, 1):  # one program per SM; few programs with many tiles each (odd, even counts)
        grad_pre, sums = dgelu_pingpong.launch(grad, weight, pre, programs=programs)
        assert sums.shape == (-(-tokens // 128), hidden)
        assert ((grad_pre.float() - want).abs() <= want.abs() * 2**-7 + 1e-2).all()
        for block, row in enumerate(sums):
            want_row = want[128 * block:128 * (block + 1)].sum(0)
            assert (row - want_row).norm() <= 1e-3 * want_row.norm() + 1e-3, block


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_training_with_the_switch_on_the_gpu_matches_the_model_without_it():
    speed = "patch_matmul,fused_gelu,mlp_epilogues,fold_norm,tile,qkv_bias_sums,residual_epilogue"
    reference, fused = compiled_bf16_twins(f"{speed},dgelu_bias_sum", reference_speed=speed, img_size=32,
                                           patch_size=4, embed_dim=192, depth=2, num_heads=3, num_classes=10)
    assert_gradients_close(reference, fused)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_switch_runs_in_cuda_graphs():
    grads = cuda_graph_training_steps("bf16_residual,fused_gelu,mlp_epilogues,dgelu_bias_sum,tile", 3,
                                      lambda model, loss: model.blocks[0].mlp.fc1.bias.grad.clone())
    assert torch.equal(grads[1], grads[2]) and grads[2].abs().sum() > 0  # replays are deterministic
