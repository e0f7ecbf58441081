"""evaluate(): flip test-time augmentation is the mean of the logits of an image and its mirror."""

import pytest
import torch

from conftest import randomize
from vitkit import create_model
from vitkit.augment import preprocess_eval
from vitkit.evaluate import evaluate


class FlipAveraged(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model(x) + self.model(x.flip(-1))) / 2


def batches(images: torch.Tensor, labels: torch.Tensor):
    return [(images[i:i + 8], labels[i:i + 8]) for i in range(0, len(labels), 8)]


def test_flip_tta_averages_mirror_logits_and_leaves_symmetric_images_alone():
    torch.manual_seed(0)
    model = randomize(create_model("vit_ti4", img_size=8, num_classes=3, embed_dim=16, depth=1, num_heads=2)).eval()
    images = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(20) % 3

    def prep(u8: torch.Tensor) -> torch.Tensor:
        return preprocess_eval(u8, 8, (0.5,) * 3, (0.25,) * 3)

    plain = evaluate(model, batches(images, labels), 3, prep)
    tta = evaluate(model, batches(images, labels), 3, prep, tta="flip")
    reference = evaluate(FlipAveraged(model), batches(images, labels), 3, prep)
    assert tta.loss == pytest.approx(reference.loss, abs=1e-6) and tta.confusion == reference.confusion
    assert tta.loss != pytest.approx(plain.loss, abs=1e-6)  # random images: the mirror changes the logits

    symmetric = torch.cat([images[..., :4], images[..., :4].flip(-1)], dim=-1)
    a = evaluate(model, batches(symmetric, labels), 3, prep)
    b = evaluate(model, batches(symmetric, labels), 3, prep, tta="flip")
    assert a.loss == pytest.approx(b.loss, abs=1e-6) and a.confusion == b.confusion
    with pytest.raises(ValueError, match="tta"):
        evaluate(model, batches(images, labels), 3, prep, tta="rotate")
