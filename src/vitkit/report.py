"""`analyze(model, images, out_dir)`: the paper's section 4.5 figures plus `summary.json`.

Glue only: images from `vitkit.images`, numbers from `vitkit.analysis`, pictures from
`vitkit.plots`. `vitkit analyze` is a thin wrapper around this function.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from vitkit import analysis, plots
from vitkit.images import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    ImageError,
    Stats,
    denormalize,
    expand_image_paths,
    load_images,
)
from vitkit.model import VisionTransformer

SUMMARY_NAME = "summary.json"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto' or None: CUDA when available, else CPU; asking for CUDA without it is an error."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but this PyTorch sees no CUDA GPU; use --device cpu")
    return device


def figure_names(paths: Sequence[Path]) -> list[str]:
    """'attention_<stem>.png' per image, made unique when two files share a stem."""
    names: list[str] = []
    for p in paths:
        base = f"attention_{p.stem}"
        name, n = base, 2
        while f"{name}.png" in names:
            name, n = f"{base}_{n}", n + 1
        names.append(f"{name}.png")
    return names


def _rounded(x: torch.Tensor, digits: int = 6) -> Any:
    return torch.round(x.double(), decimals=digits).tolist()


@torch.no_grad()
def run_attention(model: VisionTransformer, pixels: torch.Tensor, batch_size: int = 32
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, H, W) images -> (B, depth, heads) attention distances and (B, gh, gw) rollout maps.

    Runs `batch_size` images at a time on the model's device, keeping only the reduced results
    so memory stays bounded by one batch's attention maps.
    """
    param = next(model.parameters())
    centers = analysis.model_patch_centers(model)
    prefix = model.config.num_prefix_tokens
    distances, maps = [], []
    for chunk in pixels.split(batch_size):
        _, attn = model.forward_with_attention(chunk.to(param.device, param.dtype))
        distances.append(analysis.attention_distance_per_image(attn, centers, prefix).cpu())
        rollout = analysis.attention_rollout(attn)
        maps.append(analysis.rollout_map(rollout, model.grid, model.config.pool).cpu())
    return torch.cat(distances), torch.cat(maps)


def analyze(model: VisionTransformer, images: Sequence[str | Path], out_dir: str | Path, *,
            device: str | torch.device | None = None, mean: Stats = DEFAULT_MEAN,
            std: Stats = DEFAULT_STD, batch_size: int = 32, num_filters: int = 28,
            log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write the four analyses of paper section 4.5 for `model` on `images` into `out_dir`.

    images: files or folders (their image files). Unreadable files are reported in the result's
    "errors" and skipped; if none can be read, ImageError. Images are resized to the model's
    img_size and normalised with `mean`/`std`. The model is put back on its device and in its
    train/eval mode afterwards. Returns the summary also written to `out_dir/summary.json`.
    """
    say = log or (lambda _msg: None)
    if not isinstance(model, VisionTransformer) or model.config.backbone is not None:
        raise ValueError(f"the section 4.5 analysis needs a plain ViT (patches of the image); "
                         f"{model.config.name} is a {'hybrid ViT' if isinstance(model, VisionTransformer) else 'ResNet'}")
    c = model.config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = expand_image_paths(images)
    batch = load_images(paths, c.img_size, c.in_chans, mean, std)
    for msg in batch.errors:
        say(f"skipped {msg}")
    if not batch.paths:
        raise ImageError(f"none of the {len(paths)} file(s) could be read as images:\n" + "\n".join(batch.errors))

    param = next(model.parameters())
    home, was_training = param.device, model.training
    target = resolve_device(device)
    say(f"running {len(batch.paths)} image(s) through {c.name} on {target}")
    model.eval().to(target)
    try:
        distances, patch_maps = run_attention(model, batch.pixels, batch_size)
    finally:
        model.train(was_training).to(home)

    centers = analysis.model_patch_centers(model)
    mean_distance = distances.mean(dim=0)  # (depth, heads)
    uniform = analysis.uniform_attention_distance(centers)
    components, explained = analysis.filter_pca(model.patch_embed.proj.weight.detach().cpu(), num_filters)
    try:
        similarity: torch.Tensor | None = analysis.position_similarity(model).cpu()
        similarity_note = None
    except ValueError as e:
        similarity, similarity_note = None, str(e)

    say("drawing figures")
    figures: dict[str, Any] = {}
    figures["embedding_filters"] = plots.save_figure(
        plots.embedding_filters_figure(components, explained), out / "embedding_filters.png")
    if similarity is not None:
        figures["position_similarity"] = plots.save_figure(
            plots.position_similarity_figure(similarity, model.grid), out / "position_similarity.png")
    figures["attention_distance"] = plots.save_figure(
        plots.attention_distance_figure(mean_distance, uniform, c.patch_size), out / "attention_distance.png")
    heat = analysis.upsample_map(patch_maps, c.img_size, c.patch_size, c.stride)  # (B, H, W)
    source = "class token" if c.pool == "cls" else "mean of the patch tokens"
    attention_figs = []
    for i, (path, name) in enumerate(zip(batch.paths, figure_names(batch.paths))):
        fig = plots.attention_overlay_figure(denormalize(batch.pixels[i], mean, std), heat[i], path.name, source)
        attention_figs.append(plots.save_figure(fig, out / name))

    summary: dict[str, Any] = {
        "model": {"name": c.name, "img_size": list(c.img_size), "patch_size": c.patch_size,
                  "stride": c.stride, "in_chans": c.in_chans, "pool": c.pool, "pos_embed": c.pos_embed,
                  "depth": c.depth, "num_heads": c.num_heads, "grid": list(model.grid)},
        "images": [{"path": str(p), "figure": str(f)} for p, f in zip(batch.paths, attention_figs)],
        "errors": batch.errors,
        "figures": {k: str(v) for k, v in figures.items()} | {"attention": [str(f) for f in attention_figs]},
        "mean_attention_distance": _rounded(mean_distance),  # [depth][heads], pixels
        "uniform_attention_distance": round(uniform, 6),
        "embedding_filters_explained_variance": _rounded(explained),
        "rollout_maps": _rounded(patch_maps),  # [image][patch row][patch column]
        "position_similarity": None if similarity is None else _rounded(similarity, 5),  # [N][N]
    }
    if similarity_note:
        summary["position_similarity_note"] = similarity_note
    summary["summary"] = str(out / SUMMARY_NAME)
    (out / SUMMARY_NAME).write_text(json.dumps(summary) + "\n")
    return summary
