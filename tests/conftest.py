import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def tiny(name: str = "vit_ti16", **overrides):
    """A zoo model shrunk to test size (width 32, depth 2) unless told otherwise."""
    import vitkit

    fields = dict(embed_dim=32, depth=2, num_heads=2, img_size=32, num_classes=5)
    fields.update(overrides)
    return vitkit.create_model(name, **fields)


def randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Give every tensor (zero heads, unit norms included) random values, so parity tests see all of them."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model


def compiled_bf16_twins(speed: str, adjust_reference=None, reference_speed: str = "", **shape):
    """Two copies of one random model on the GPU, the reference with `bf16_residual` (and `reference_speed`)
    and the other with `speed` too, each run once through a compiled bf16 forward and backward. Returns
    (reference, other), their gradients filled, for GPU tests of speed switches."""
    from vitkit.speed import SpeedOptions, configure
    from vitkit.variants import create_model

    reference = create_model("vit_ti16", **shape).cuda()
    torch.nn.init.normal_(reference.head.weight, std=0.2)  # the zero-initialised head would hide everything
    if adjust_reference is not None:
        adjust_reference(reference)
    other = create_model("vit_ti16", **shape).cuda()
    other.load_state_dict(reference.state_dict())
    configure(other, SpeedOptions.parse(f"{speed},bf16_residual"))
    configure(reference, SpeedOptions.parse(f"{reference_speed},bf16_residual"))
    x = torch.randn(64, 3, *reference.config.img_size, device="cuda")
    torch._dynamo.reset()  # static shapes: earlier tests' shapes would make this compile dynamic
    for model in (reference, other):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            torch.compile(model)(x).float().square().mean().backward()
    return reference, other


def assert_gradients_close(reference: torch.nn.Module, other: torch.nn.Module, tol: float = 2e-2) -> None:
    for (name, a), b in zip(reference.named_parameters(), other.parameters()):
        assert (a.grad - b.grad).norm() <= tol * a.grad.norm() + 1e-6, name
