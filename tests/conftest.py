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
