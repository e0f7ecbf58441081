"""Class probabilities for image files, preprocessed the way the checkpoint was trained.

Each file is decoded upright (EXIF), converted to the model's channels (16-bit, alpha, palette,
CMYK handled by `vitkit.data.images`), resized on its shorter side to the model's `img_size` and
centre-cropped, then normalised with the model's own mean/std (0.5 when it records none). A file
that cannot be read (missing, not an image, corrupt, a decompression bomb) gets an error message
and the others still run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vitkit.augment import preprocess_eval
from vitkit.data.images import load_image
from vitkit.evaluate import input_stats
from vitkit.images import ImageError, expand_image_paths, reading


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] = field(default_factory=list)  # (label, probability), best first
    error: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "top": [{"label": lab, "prob": p} for lab, p in self.top], "error": self.error}


def expand_inputs(inputs: Iterable[str | Path]) -> Iterator[tuple[Path, str | None]]:
    """(path, None) for every file to predict (folders give their image files, sorted), or
    (path, message) for an argument that gives nothing to read."""
    for item in inputs:
        try:
            for p in expand_image_paths([item]):
                yield p, None
        except ImageError as e:  # a folder without images
            yield Path(item), str(e)


def read_for_model(path: str | Path, config) -> torch.Tensor:
    """One file as the model's uint8 (C, H, W) input; ImageError (naming the file) if unreadable."""
    if config.in_chans not in (1, 3):
        raise ValueError(f"image files give 1 or 3 channels; this model takes {config.in_chans}")
    with reading(path):
        return load_image(str(path), config.img_size, config.in_chans)


@torch.no_grad()
def predict_files(model, inputs: Sequence[str | Path], topk: int = 5, batch_size: int = 32) -> list[Prediction]:
    """Top-k (label, probability) for every image file in `inputs` (files or folders), in order."""
    c = model.config
    if not c.num_classes:
        raise ValueError("this model has no classification head (num_classes=0); fine-tune it first")
    if topk < 1:
        raise ValueError(f"topk must be at least 1, got {topk}")
    names = list(c.class_names) if c.class_names else [str(i) for i in range(c.num_classes)]
    mean, std = input_stats(c)
    device = next(model.parameters()).device
    model.eval()
    out: list[Prediction] = []
    pending: list[tuple[Prediction, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        x = preprocess_eval(torch.stack([t for _, t in pending]).to(device), c.img_size, mean, std)
        probs = model(x).float().softmax(-1).cpu()  # (B, num_classes)
        p, i = probs.topk(min(topk, c.num_classes), dim=-1)
        for (pred, _), pv, iv in zip(pending, p.tolist(), i.tolist()):
            pred.top = [(names[k], v) for k, v in zip(iv, pv)]
        pending.clear()

    for path, problem in expand_inputs(inputs):
        pred = Prediction(str(path), error=problem)
        out.append(pred)
        if problem is None:
            try:
                pending.append((pred, read_for_model(path, c)))
            except ImageError as e:
                pred.error = str(e)
        if len(pending) >= batch_size:
            flush()
    flush()
    return out
