"""The one-tile Triton attention kernel (vitkit.layers.tile_attention) against PyTorch's SDPA.

On CPU the kernels run under Triton's interpreter (TRITON_INTERPRET=1, which must be set before
Triton is imported, hence a subprocess); on a GPU they run compiled, in bf16, inside a compiled model.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from conftest import assert_gradients_close, compiled_bf16_twins
from vitkit.speed import SpeedOptions, configure
from vitkit.variants import create_model

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs triton")

PARITY = textwrap.dedent("""
    import torch, torch.nn.functional as F
    from vitkit.layers.attention import Attention
    from vitkit.layers.tile_attention import tile_attention

    from vitkit.layers import tile_attention as ta

    def check(B, N, H, d, dtype):
        qkv = torch.randn(B, N, 3 * H * d, dtype=dtype, requires_grad=True)
        out = tile_attention(qkv, H)
        grad = torch.randn_like(out)
        out.backward(grad)
        ref_qkv = qkv.detach().double().requires_grad_()
        q, k, v = ref_qkv.reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4).unbind(0)
        ref = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, H * d)
        ref.backward(grad.double())
        tol = 2e-3 if dtype == torch.float16 else 1e-5
        assert out.shape == (B, N, H * d) and out.dtype == dtype
        err_out = (out.double() - ref).abs().max().item()
        err_grad = (qkv.grad.double() - ref_qkv.grad).abs().max().item()
        assert err_out < tol and err_grad < 2 * tol, (B, N, H, d, dtype, ta.launch(N, d), err_out, err_grad)

    def check_qkv_bias_sums(B, N, H, d):
        # the QKV projection + kernel node (its bias gradient from dq and dO sums) against F.linear + SDPA
        from vitkit.layers.qkv_attention import qkv_tile_attention
        D = H * d
        x, w, b = ((0.3 * torch.randn(*shape)).requires_grad_() for shape in [(B, N, 24), (3 * D, 24), (3 * D,)])
        out = qkv_tile_attention(x, w, b, H, d**-0.5, column_sums=N == 150)  # one shape through bias_grad's sum
        grad = torch.randn_like(out)
        out.backward(grad)
        refs = [t.detach().double().requires_grad_() for t in (x, w, b)]
        q, k, v = F.linear(*refs).reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4).unbind(0)
        ref = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, D)
        ref.backward(grad.double())
        assert (out.double() - ref).abs().max() < 1e-5
        for got, want in zip((x, w, b), refs):
            err = (got.grad.double() - want.grad).abs().max() / want.grad.abs().max()
            assert err < 1e-5, (B, N, H, d, ta.launch(N, d), err)

    torch.manual_seed(0)
    # through each backward kernel: class split, split, one tile
    for shape in [(2, 65, 2, 16), (2, 150, 2, 32), (3, 50, 2, 16)]:
        check_qkv_bias_sums(*shape)
    # (batch, tokens, heads, head_dim, dtype): odd token counts exercise the padded rows and columns;
    # 101 tokens x 16 dims is the speedrun's shape; above 128 tokens (ViT-B/16's 197) the streamed
    # forward and the split backward take whole blocks plus a narrow remainder: 5 of 16 rows at 197, 1 at
    # 129, none at 256
    for shape in [(2, 17, 2, 16, torch.float32), (2, 101, 3, 16, torch.float16),
                  (1, 65, 2, 64, torch.float32), (1, 197, 1, 32, torch.float32),
                  (1, 197, 2, 64, torch.float16), (1, 129, 1, 16, torch.float32), (1, 256, 1, 16, torch.float32)]:
        check(*shape)
    # other launch sizes of the long-sequence path: unequal blocks, other key blocks (remainders of 22 in
    # blocks of 32, 64, 128); the short path's forward in whole blocks + remainder
    default = ta.launch
    for override, shape in [({"backward_block": 32, "backward_step": 64}, (2, 150, 2, 32, torch.float32)),
                            ({"backward_block": 64, "backward_step": 32, "block_m": 32, "block_n": 128},
                             (2, 150, 2, 32, torch.float32)),
                            ({"tail": True}, (2, 101, 2, 16, torch.float32))]:
        ta.launch = lambda n, d, o=override: default(n, d)._replace(**o)
        check(*shape)
    # a class token plus a power of two of patches (17, 33, 65 tokens) takes the class-split kernels;
    # the same shapes on the padded one-tile kernels
    for override in [{}, {"class_split": False}]:
        ta.launch = lambda n, d, o=override: default(n, d)._replace(**o)
        for shape in [(2, 33, 2, 32, torch.float16), (1, 65, 3, 16, torch.float32)]:
            assert ta.launch(shape[1], shape[3]).class_split == (override == {})
            check(*shape)
    ta.launch = default

    # Inside the module: the kernel on the QKV output + the output projection == Attention's SDPA path
    attn = Attention(48, num_heads=3).eval()
    x = torch.randn(2, 50, 48)
    with torch.no_grad():
        ref, _ = attn(x)
        got = attn.proj(tile_attention(attn.qkv(x), 3, attn.scale))
    assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()
    print("parity ok")
""")


@needs_triton
def test_tile_attention_matches_sdpa_forward_and_backward_in_the_triton_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run([sys.executable, "-c", PARITY], check=False, env=env,
                             capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "parity ok" in result.stdout


def test_tile_option_refuses_sequences_the_kernel_cannot_hold():
    model = create_model("vit_ti16", img_size=272, depth=1, num_classes=3)  # 17 x 17 + 1 = 290 tokens
    with pytest.raises(ValueError, match="290 tokens"):
        configure(model, SpeedOptions.parse("tile"))
    wide = create_model("vit_ti16", img_size=32, depth=1, num_heads=4, num_classes=3)  # head_dim 48
    with pytest.raises(ValueError, match="head dimension 48"):
        configure(wide, SpeedOptions.parse("tile"))


def test_tile_option_falls_back_to_sdpa_off_the_gpu():
    """A run trained with the kernel can be evaluated on a CPU: the model computes the same function."""
    torch.manual_seed(0)
    model = create_model("vit_ti16", img_size=32, depth=2, num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        configure(model, SpeedOptions.parse("tile,bf16_residual"))
        assert all(b.attn.tile_kernel for b in model.blocks)
        assert torch.equal(model(x), ref)


def assert_logits_and_gradients_close(ref_model: torch.nn.Module, tile_model: torch.nn.Module) -> None:
    """Both models' bf16 logits on one 32 x 32 batch within 1% and their gradients close."""
    x = torch.randn(64, 3, 32, 32, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        got, ref = tile_model(x).float(), ref_model(x).float()
    assert (got - ref).norm() / ref.norm() < 1e-2
    assert_gradients_close(ref_model, tile_model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernel needs a GPU")
def test_tile_attention_in_a_compiled_bf16_model_matches_sdpa_on_the_gpu():
    # the speedrun's shape: 5x5 patches at stride 3 on 32x32 -> 100 tokens + class token, 12 heads of 16
    ref_model, tile_model = compiled_bf16_twins("tile", img_size=32, patch_size=5, stride=3, embed_dim=192,
                                                depth=3, num_heads=12, mlp_dim=384, num_classes=10)
    assert_logits_and_gradients_close(ref_model, tile_model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernels need a GPU")
def test_tile_attention_at_vit_b16s_197_tokens_matches_sdpa_on_the_gpu():
    # 197 tokens take the streamed forward and the split backward with its delta pass
    ref_model, tile_model = compiled_bf16_twins("tile", img_size=224, patch_size=16, embed_dim=128, depth=2,
                                                num_heads=2, mlp_dim=256, num_classes=10)
    assert_gradients_close(ref_model, tile_model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernels need a GPU")
@pytest.mark.parametrize(("n_tokens", "head_dim"), [(129, 16), (150, 32), (197, 128), (256, 64)])
def test_long_sequence_kernels_compile_for_every_head_dim_and_match_sdpa_on_the_gpu(n_tokens, head_dim):
    # whole blocks plus remainders of 1, 22, 5 and none; head_dim 128 is the largest tile the kernels hold
    import torch.nn.functional as F

    from vitkit.layers.tile_attention import tile_attention

    torch.manual_seed(0)
    heads = 2
    qkv = torch.randn(3, n_tokens, 3 * heads * head_dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn(3, n_tokens, heads * head_dim, device="cuda", dtype=torch.bfloat16)
    out = tile_attention(qkv, heads)
    out.backward(grad)
    ref_qkv = qkv.detach().float().requires_grad_()
    q, k, v = ref_qkv.reshape(3, n_tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    ref = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(out.shape)
    ref.backward(grad.float())
    assert (out.float() - ref).norm() / ref.norm() < 1e-2
    assert (qkv.grad.float() - ref_qkv.grad).norm() / ref_qkv.grad.norm() < 2e-2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernels need a GPU")
def test_tile_attention_at_65_tokens_takes_the_class_split_kernels_and_matches_sdpa_on_the_gpu():
    # the CIFAR-scale model's grid: 8 x 8 patches + the class token
    from vitkit.layers import tile_attention as ta

    assert ta.launch(65, 64).class_split
    ref_model, tile_model = compiled_bf16_twins("tile", img_size=32, patch_size=4, embed_dim=128, depth=2,
                                                num_heads=2, mlp_dim=256, num_classes=10)
    assert_logits_and_gradients_close(ref_model, tile_model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the compiled kernels need a GPU")
@pytest.mark.parametrize(("shape", "sums"), [
    ({"img_size": 32, "patch_size": 4}, ""),  # 65 tokens: the class-split backward, Inductor's sums
    ({"img_size": 224, "patch_size": 16}, ",bias_grad"),  # 197: the split backward, bias_grad's GEMVs
    ({"img_size": 32, "patch_size": 5, "stride": 3}, "")])  # 101: the one-tile backward
def test_qkv_bias_sums_match_the_plain_tile_path_through_every_backward_kernel_on_the_gpu(shape, sums, monkeypatch):
    from vitkit.layers import qkv_attention

    calls = []
    fused = qkv_attention.qkv_tile_attention
    monkeypatch.setattr(qkv_attention, "qkv_tile_attention", lambda *a: calls.append(1) or fused(*a))
    ref_model, model = compiled_bf16_twins(f"tile,qkv_bias_sums,fold_norm{sums}", reference_speed="tile", embed_dim=128,
                                           depth=2, num_heads=2, mlp_dim=256, num_classes=10, **shape)
    assert len(calls) == 2  # both blocks, traced once
    assert_gradients_close(ref_model, model, tol=1e-2)
    for ref_block, block in zip(ref_model.blocks, model.blocks):
        a, b = ref_block.attn.qkv.bias.grad, block.attn.qkv.bias.grad
        assert (a - b).norm() <= 1e-2 * a.norm()


def test_qkv_bias_sums_needs_the_tile_kernel():
    model = create_model("vit_ti16", img_size=32, depth=1, num_classes=3)
    with pytest.raises(ValueError, match="qkv_bias_sums .* add tile"):
        configure(model, SpeedOptions.parse("qkv_bias_sums"))
