"""Pictures: the paper's Fig. 6 and Fig. 7 for any ViT (from `vitkit.analysis`), and its
Figs. 3-5 for a scaling study (from `vitkit.study`).

Each function takes CPU-able tensors and returns a matplotlib `Figure` with a title and axis
labels. Figures are built with the object-oriented API (no pyplot), so nothing here touches the
global backend or leaks open windows; `save_figure` writes PNGs through the Agg canvas.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Write a figure as PNG with the Agg renderer, whatever backend the session uses."""
    path = Path(path)
    FigureCanvasAgg(fig)  # attaches an Agg canvas to the figure
    fig.savefig(path, dpi=dpi, format="png")
    return path


def tile(images: np.ndarray, rows: int, cols: int, pad: int = 1, fill: float = np.nan) -> np.ndarray:
    """(n, h, w[, c]) -> one (rows*(h+pad)-pad, cols*(w+pad)-pad[, c]) mosaic, row-major."""
    n, h, w = images.shape[:3]
    extra = images.shape[3:]
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, *extra), fill, dtype=np.float64)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = images[i]
    return out


def _tile_ticks(count: int, size: int, pad: int, max_ticks: int = 16) -> tuple[list[float], list[int]]:
    """Tick positions at tile centres and their indices, thinned to at most max_ticks."""
    step = max(1, math.ceil(count / max_ticks))
    idx = list(range(0, count, step))
    return [i * (size + pad) + (size - 1) / 2 for i in idx], idx


# ---- Fig. 7 left -------------------------------------------------------------------------
def embedding_filters_figure(filters: torch.Tensor, explained: torch.Tensor | None = None) -> Figure:
    """(k, C, p, p) principal components as a mosaic: RGB for 3 channels, gray otherwise.

    Each component is min-max scaled on its own (the sign and scale of a component carry no
    meaning). Models with other than 1 or 3 channels are shown as the mean over channels.
    """
    f = filters.detach().cpu().double().numpy()
    k, C, p, _ = f.shape
    lo = f.reshape(k, -1).min(axis=1)[:, None, None, None]
    hi = f.reshape(k, -1).max(axis=1)[:, None, None, None]
    f = (f - lo) / np.maximum(hi - lo, 1e-12)
    if C == 3:
        imgs, cmap, kind = f.transpose(0, 2, 3, 1), None, "RGB"
    else:
        imgs, cmap = f.mean(axis=1), "gray"
        kind = "grayscale" if C == 1 else f"mean of {C} channels"
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)
    mosaic = tile(imgs, rows, cols, fill=1.0)  # white gaps
    fig = Figure(figsize=(1.0 + 0.9 * cols, 1.2 + 0.9 * rows), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(mosaic, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    title = f"Embedding filters: first {k} principal components ({kind})"
    if explained is not None:
        title += f"\ntogether {100 * float(explained.sum()):.1f}% of the filters' variance"
    ax.set_title(title)
    xt, xi = _tile_ticks(cols, p, 1)
    yt, yi = _tile_ticks(rows, p, 1)
    ax.set_xticks(xt, [str(i) for i in xi])
    ax.set_yticks(yt, [str(i * cols) for i in yi])
    ax.set_xlabel("component index within row (add to row label)")
    ax.set_ylabel("first component index of row")
    return fig


# ---- Fig. 7 centre -----------------------------------------------------------------------
def position_similarity_figure(similarity: torch.Tensor, grid: tuple[int, int]) -> Figure:
    """(N, N) similarity as a (gh, gw) grid of (gh, gw) maps: tile (r, c) is patch (r, c)'s row."""
    gh, gw = grid
    sim = similarity.detach().cpu().double().numpy().reshape(gh * gw, gh, gw)
    mosaic = tile(sim, gh, gw, pad=1)  # NaN gaps drawn in the background colour
    fig = Figure(figsize=(7.5, 7.5 * gh / gw + 0.6), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad="white")
    im = ax.imshow(mosaic, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="cosine similarity")
    ax.set_title("Position embedding similarity")
    xt, xi = _tile_ticks(gw, gw, 1)
    yt, yi = _tile_ticks(gh, gh, 1)
    ax.set_xticks(xt, [str(i + 1) for i in xi])
    ax.set_yticks(yt, [str(i + 1) for i in yi])
    ax.set_xlabel("input patch column")
    ax.set_ylabel("input patch row")
    return fig


# ---- Fig. 7 right ------------------------------------------------------------------------
def attention_distance_figure(distance: torch.Tensor, uniform: float | None = None,
                              patch_size: int | None = None) -> Figure:
    """(depth, heads) mean attention distance in pixels: one dot per head against its layer.

    `uniform` draws the distance uniform attention would give, for scale.
    """
    d = distance.detach().cpu().double().numpy()
    depth, heads = d.shape
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["tab20" if heads > 10 else "tab10"]
    layers = np.arange(1, depth + 1)
    for h in range(heads):
        ax.scatter(layers, d[:, h], s=18, color=cmap(h % cmap.N), label=f"head {h + 1}")
    if uniform is not None:
        ax.axhline(uniform, color="gray", linestyle="--", linewidth=1, label="uniform attention")
    if heads <= 16:
        ax.legend(fontsize="small", ncols=2 if heads > 6 else 1, loc="lower right")
    ax.set_xticks(layers if depth <= 24 else np.arange(1, depth + 1, math.ceil(depth / 24)))
    ax.set_xlim(0.5, depth + 0.5)
    ax.set_ylim(bottom=0, top=max(float(np.nanmax(d)), uniform or 0.0, 1e-6) * 1.08)
    ax.set_title("Mean attention distance" + (f" (patch size {patch_size})" if patch_size else ""))
    ax.set_xlabel("network depth (layer)")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.grid(alpha=0.3)
    return fig


# ---- Fig. 6 ------------------------------------------------------------------------------
def attention_overlay_figure(image: torch.Tensor, heat: torch.Tensor, name: str,
                             source: str = "class token") -> Figure:
    """An input image beside it with its (H, W) attention-rollout map laid over it.

    image: (C, H, W) with pixels in [0, 1] (see `vitkit.images.denormalize`). The map is
    min-max scaled and drawn over a gray copy of the image, so its colours are the map's alone.
    """
    img = image.detach().cpu().float()
    picture = img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()
    luma = img.mean(dim=0).numpy() if img.shape[0] != 3 else (
        0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]).numpy()
    h = heat.detach().cpu().double().numpy()
    h = (h - h.min()) / max(float(h.max() - h.min()), 1e-12)
    fig = Figure(figsize=(9.6, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.imshow(picture, cmap="gray" if img.shape[0] == 1 else None, vmin=0, vmax=1)
    left.set_title("input")
    right.imshow(luma, cmap="gray", vmin=0, vmax=1)
    im = right.imshow(h, cmap="inferno", alpha=0.6, vmin=0, vmax=1, interpolation="bilinear")
    right.set_title(f"attention rollout from the {source}")
    fig.colorbar(im, ax=right, shrink=0.85, label="rollout weight (min-max scaled)")
    for ax in (left, right):
        ax.set_xlabel("x (pixels)")
        ax.set_ylabel("y (pixels)")
    fig.suptitle(f"Attention map: {name}")
    return fig


# ---- evaluation --------------------------------------------------------------------------
def confusion_figure(confusion, class_names: list[str] | None = None, title: str = "Confusion matrix") -> Figure:
    """(K, K) counts [true][predicted] as a heat map of row-normalised rates (each true class sums
    to 1), with the counts written in the cells when K <= 20."""
    counts = np.asarray(confusion, dtype=np.float64)
    k = counts.shape[0]
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = min(4.0 + 0.45 * k, 16.0)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true class")
    names = class_names if class_names and len(class_names) == k else [str(i) for i in range(k)]
    step = max(1, math.ceil(k / 30))  # at most ~30 labelled ticks
    ticks = list(range(0, k, step))
    ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90 if k > 10 else 0)
    ax.set_yticks(ticks, [names[i] for i in ticks])
    if k <= 20:
        for t in range(k):
            for p in range(k):
                if counts[t, p]:
                    ax.text(p, t, f"{int(counts[t, p])}", ha="center", va="center", fontsize="small",
                            color="white" if rates[t, p] > 0.5 else "black")
    ax.set_title(title)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    return fig


# ---- Figs. 3-5: the scaling study ----------------------------------------------------------
FAMILY_MARKERS = {"vit": "o", "hybrid": "^", "bit": "s"}
FAMILY_NAMES = {"vit": "ViT", "hybrid": "hybrid", "bit": "BiT ResNet"}


def _by_model(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows grouped by model in first-seen order, each group sorted by training-set size."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["model"], []).append(r)
    return {m: sorted(g, key=lambda r: r["n_train"]) for m, g in groups.items()}


def _label(model: str, family: str, limit: int = 48) -> str:
    short = model if len(model) <= limit else model[:limit - 1] + "\u2026"
    return f"{short} ({FAMILY_NAMES.get(family, family)})"


def _scaling_axes(title: str, xlabel: str, tick_format: str) -> tuple[Figure, Any]:
    fig = Figure(figsize=(7.0, 5.2), layout="constrained")
    ax = fig.subplots()
    ax.set_xscale("log")
    # Labels at 1, 2 and 5 x 10^k, so a range narrower than a decade still has readable ticks.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format(v, tick_format)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    return fig, ax


def _legend(fig: Figure, ax: Any) -> None:
    """The legend under the plot, where long model specs do not squeeze the axes."""
    if ax.get_legend_handles_labels()[0]:
        fig.legend(loc="outside lower center", ncols=1, fontsize="small", frameon=False)


def data_scaling_figure(rows: list[dict]) -> Figure:
    """Paper Fig. 3/4 style: test top-1 against the number of training images, one line per model.

    rows: dicts with model, family, n_train, test_top1 (as in `vitkit.study` results).
    """
    fig, ax = _scaling_axes("Accuracy against training-set size", "training images (log scale)", ",.0f")
    colors = colormaps["tab10"]
    for i, (model, group) in enumerate(_by_model(rows).items()):
        ax.plot([r["n_train"] for r in group], [100 * r["test_top1"] for r in group],
                marker=FAMILY_MARKERS.get(group[0]["family"], "o"), color=colors(i % 10),
                label=_label(model, group[0]["family"]))
    _legend(fig, ax)
    return fig


def compute_scaling_figure(rows: list[dict]) -> Figure:
    """Paper Fig. 5 style: test top-1 against training compute, one dot per run; the marker
    is the family (ViT circle, hybrid triangle, BiT square), the colour the model.

    rows: dicts with model, family, train_flops, test_top1.
    """
    fig, ax = _scaling_axes("Accuracy against training compute",
                            "training compute (FLOPs: 3 x forward x images seen; log scale)", ".0e")
    colors = colormaps["tab10"]
    for i, (model, group) in enumerate(_by_model(rows).items()):
        ax.scatter([r["train_flops"] for r in group], [100 * r["test_top1"] for r in group],
                   marker=FAMILY_MARKERS.get(group[0]["family"], "o"), color=colors(i % 10), s=40,
                   label=_label(model, group[0]["family"]))
    _legend(fig, ax)
    return fig
