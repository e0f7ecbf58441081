"""Speed options that are Inductor settings (speed option `pdl`): they reach this model's compilation
only, through `vitkit.speed.compile_model`, and change how kernels launch, not what they compute."""

from __future__ import annotations

import pytest
import torch
import torch._inductor.config as inductor_config
from conftest import compiled_bf16_twins, tiny

from vitkit.speed import SpeedOptions, compile_model, configure


def _compile_calls(monkeypatch, speed: str, mode: str | None) -> dict:
    calls = []
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: calls.append(kwargs) or model)
    model = configure(tiny(), SpeedOptions.parse(speed))
    compile_model(model, mode)
    return calls[0]


def test_pdl_goes_to_this_models_compilation_with_the_modes_own_settings(monkeypatch):
    assert _compile_calls(monkeypatch, "pdl", "reduce-overhead") == {
        "options": {"triton.cudagraphs": True, "triton.enable_pdl": True}, "dynamic": False}
    assert _compile_calls(monkeypatch, "pdl", None) == {"options": {"triton.enable_pdl": True}, "dynamic": False}
    # without Inductor settings: torch.compile's own mode argument, as before
    assert _compile_calls(monkeypatch, "patch_matmul", "reduce-overhead") == {"mode": "reduce-overhead",
                                                                             "dynamic": False}


def test_the_settings_exist_in_this_pytorchs_inductor():
    """A renamed setting would otherwise be refused only when a GPU run compiles."""
    model = configure(tiny(), SpeedOptions.parse("pdl"))
    for key in model.inductor_options:
        section, _, name = key.rpartition(".")
        assert hasattr(getattr(inductor_config, section) if section else inductor_config, name), key


def test_pdl_compiles_and_trains_off_hopper():
    """Inductor leaves PDL out where the device lacks it (here the CPU): the model still trains."""
    model = configure(tiny(), SpeedOptions.parse("pdl"))
    compile_model(model)(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] < 9,
                    reason="needs a Hopper or newer GPU")
def test_pdl_kernels_wait_for_their_inputs_and_compute_the_same():
    from torch._inductor.utils import run_and_get_code

    reference, other = compiled_bf16_twins("pdl", img_size=32, patch_size=4, embed_dim=192, depth=2, num_heads=3,
                                           num_classes=10)
    for a, b in zip(reference.parameters(), other.parameters()):
        assert torch.equal(a.grad, b.grad)  # the same kernels, launched earlier
    torch._dynamo.reset()
    x = torch.randn(8, 3, 32, 32, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, code = run_and_get_code(compile_model(other), x)
    assert "gdc_wait" in "".join(code)
