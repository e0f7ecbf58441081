"""Speed option `fused_gelu`: the tanh GELU, fused into fc1's matmul for inference on CUDA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import vitkit
from conftest import assert_gradients_close, compiled_bf16_twins
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
    config = model.config
    configure(model, SpeedOptions.parse("fused_gelu"))
    assert all(block.mlp.tanh_gelu for block in model.blocks)
    assert model.config.gelu == "tanh" and config.gelu == "erf"  # recorded on a copy, not a shared config
    got = model(x)
    assert not torch.equal(got, ref)  # the switch is on: tanh, not erf
    assert (got - ref).norm() / ref.norm() < 1e-3
    got.sum().backward()
    assert model.blocks[0].mlp.fc1.weight.grad.abs().sum() > 0


def test_a_checkpoint_trained_with_fused_gelu_evaluates_with_the_tanh_gelu(tmp_path):
    torch.manual_seed(0)
    model = create_model("vit_ti16", img_size=32, depth=2, num_classes=3)
    torch.nn.init.normal_(model.head.weight, std=0.2)
    configure(model, SpeedOptions.parse("fused_gelu"))
    model.save(tmp_path / "model")
    back = vitkit.load_model(tmp_path / "model").eval()
    assert back.config.gelu == "tanh" and all(block.mlp.tanh_gelu for block in back.blocks)
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(back(x), model.eval()(x))
    built = create_model("vit_ti16", img_size=32, depth=2, num_classes=3, gelu="tanh")
    assert all(block.mlp.tanh_gelu for block in built.blocks)


def test_unknown_gelu_form_is_a_clear_error():
    with pytest.raises(ValueError, match="gelu must be 'erf' or 'tanh'"):
        create_model("vit_ti16", img_size=32, depth=1, num_classes=3, gelu="relu")


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
            block.mlp.tanh_gelu = False  # act is nn.GELU(approximate="tanh") now
        assert torch.allclose(model(images), ref, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_fused_gelu_training_on_the_gpu_matches_pytorchs_tanh_gelu():
    def pytorch_tanh_gelu(model):
        for block in model.blocks:
            block.mlp.act = torch.nn.GELU(approximate="tanh")

    ref_model, fused_model = compiled_bf16_twins("fused_gelu", pytorch_tanh_gelu, img_size=32, patch_size=4,
                                                 embed_dim=192, depth=2, num_heads=3, num_classes=10)
    assert_gradients_close(ref_model, fused_model)
