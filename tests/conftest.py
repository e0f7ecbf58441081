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
    from vitkit.speed import SpeedOptions, compile_model, configure
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
            compile_model(model)(x).float().square().mean().backward()
    return reference, other


def assert_gradients_close(reference: torch.nn.Module, other: torch.nn.Module, tol: float = 2e-2) -> None:
    for (name, a), b in zip(reference.named_parameters(), other.parameters()):
        assert (a.grad - b.grad).norm() <= tol * a.grad.norm() + 1e-6, name


def fp64_cpu_twins(speed: str):
    """Two copies of one small random fp64 model on the CPU: `plain` with `fused_gelu` only, which has
    run one forward and backward, and `other` with `fused_gelu` plus `speed`. Returns (plain, other, x)."""
    from vitkit.speed import SpeedOptions, configure
    from vitkit.variants import create_model

    torch.manual_seed(0)
    plain = create_model("vit_ti16", img_size=16, patch_size=8, depth=1, num_classes=3).double()
    torch.nn.init.normal_(plain.head.weight, std=0.2)  # the zero-initialised head would hide everything
    other = create_model("vit_ti16", img_size=16, patch_size=8, depth=1, num_classes=3).double()
    other.load_state_dict(plain.state_dict())
    configure(plain, SpeedOptions.parse("fused_gelu"))
    configure(other, SpeedOptions.parse(f"fused_gelu,{speed}"))
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    plain(x).square().sum().backward()
    return plain, other, x


def assert_compiled_gradients_equal(plain: torch.nn.Module, other: torch.nn.Module, x: torch.Tensor) -> None:
    """`other` run once through torch.compile (AOT autograd, eager kernels) has plain's gradients (fp64)."""
    torch.compile(other, backend="aot_eager", fullgraph=True)(x).square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), other.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-10), name


def cuda_graph_training_steps(speed: str, steps: int, observe) -> list:
    """A random small model with speed options `speed` on the GPU, compiled with CUDA graphs
    (reduce-overhead) and trained `steps` bf16 steps on one batch without an optimizer step; returns
    observe(model, loss) after each step (replays of the same graph on the same input)."""
    from vitkit.speed import SpeedOptions, compile_model, configure
    from vitkit.variants import create_model

    model = create_model("vit_ti16", img_size=32, patch_size=4, embed_dim=192, depth=2, num_heads=3,
                         num_classes=10).cuda()
    torch.nn.init.normal_(model.head.weight, std=0.2)  # the zero-initialised head would zero every gradient
    configure(model, SpeedOptions.parse(speed))
    torch._dynamo.reset()
    compiled = compile_model(model, "reduce-overhead")
    x = torch.randn(16, 3, 32, 32, device="cuda")
    observed = []
    for _ in range(steps):
        model.zero_grad(set_to_none=True)  # as an optimizer would: grads are outputs of the replayed graph
        torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = compiled(x).float().square().mean()
        loss.backward()
        observed.append(observe(model, loss))
    return observed
