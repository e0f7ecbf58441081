"""Image files in, model-ready tensors out, for `analyze`: open, orient, convert, resize, normalise.

Decoding (EXIF orientation, 16-bit, alpha, palettes, CMYK) is `vitkit.data.images`'s; this module
adds per-file error messages (`reading`), the whole image resized without cropping, and
normalisation. The default is mean 0.5 / std 0.5 per channel (pixels in [-1, 1], as the paper's
models were trained); callers pass a checkpoint's own `config.mean`/`config.std` when it has them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vitkit.data.images import open_upright

DEFAULT_MEAN = 0.5
DEFAULT_STD = 0.5

Stats = float | Sequence[float]


class ImageError(ValueError):
    """A file that could not be read as an image; the message names the file."""


def image_extensions() -> set[str]:
    """Lower-case suffixes ('.png', '.jpg', ...) that Pillow can open."""
    return {ext.lower() for ext in Image.registered_extensions()}


def expand_image_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders replaced by their image files (by suffix, sorted, not recursive)."""
    out: list[Path] = []
    suffixes = image_extensions()
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
            if not found:
                raise ImageError(f"{p}: folder holds no image files (looked for {', '.join(sorted(suffixes)[:8])}, ...)")
            out.extend(found)
        else:
            out.append(p)
    return out


def _channel_stats(value: Stats, in_chans: int, name: str) -> torch.Tensor:
    """(C, 1, 1) tensor from a scalar or a per-channel sequence."""
    values = [float(value)] * in_chans if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) == 1:
        values = values * in_chans
    if len(values) != in_chans:
        raise ValueError(f"{name} has {len(values)} values but the model takes {in_chans} channel(s); "
                         f"give one value or {in_chans}")
    if name == "std" and any(v <= 0 for v in values):
        raise ValueError(f"std must be positive, got {values}")
    return torch.tensor(values, dtype=torch.float32)[:, None, None]


@contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Turn whatever Pillow raises while reading `path` into one ImageError naming the file.

    An image over Pillow's `Image.MAX_IMAGE_PIXELS` counts as an error (Pillow itself only warns
    below twice that): a decompression bomb is refused before its pixels are decoded.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path}: refused as a possible decompression bomb ({e}); raise "
                         "PIL.Image.MAX_IMAGE_PIXELS if you trust this file") from None
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder with no image files") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # e.g. a truncated or corrupt image
        raise ImageError(f"{path}: not an image Pillow can read ({type(e).__name__}: {e})") from None


def read_image(path: str | Path, in_chans: int) -> Image.Image:
    """Open any Pillow-readable file upright (EXIF orientation), as 'RGB' (3 channels) or 'L' (1).

    16-bit and float images are scaled to 8 bits and transparent pixels put on white (see
    `vitkit.data.images.to_8bit`). Raises ImageError with the file's name otherwise.
    """
    if in_chans not in (1, 3):
        raise ValueError(f"image files give 1 (gray) or 3 (RGB) channels; this model takes {in_chans}")
    with reading(path):
        img = open_upright(str(path))
    return img.convert("RGB" if in_chans == 3 else "L")


def to_tensor(img: Image.Image, img_size: tuple[int, int], mean: Stats = DEFAULT_MEAN,
              std: Stats = DEFAULT_STD) -> torch.Tensor:
    """PIL image -> (C, H, W) float tensor resized to img_size (bicubic, aspect not kept), normalised."""
    H, W = img_size
    img = img.resize((W, H), Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 255.0  # (H, W) or (H, W, C)
    x = torch.from_numpy(arr.copy())
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)  # (C, H, W)
    return (x - _channel_stats(mean, x.shape[0], "mean")) / _channel_stats(std, x.shape[0], "std")


def load_image(path: str | Path, img_size: tuple[int, int], in_chans: int = 3,
               mean: Stats = DEFAULT_MEAN, std: Stats = DEFAULT_STD) -> torch.Tensor:
    """A file as a (C, H, W) normalised tensor ready for a model of this size and channels."""
    return to_tensor(read_image(path, in_chans), img_size, mean, std)


def denormalize(x: torch.Tensor, mean: Stats = DEFAULT_MEAN, std: Stats = DEFAULT_STD) -> torch.Tensor:
    """(C, H, W) normalised tensor -> the same image with pixels in [0, 1], for display."""
    c = x.shape[0]
    return (x.cpu().float() * _channel_stats(std, c, "std") + _channel_stats(mean, c, "mean")).clamp(0, 1)


@dataclass
class ImageBatch:
    """Images that loaded, stacked, plus one message per file that did not."""

    pixels: torch.Tensor  # (B, C, H, W), normalised
    paths: list[Path]
    errors: list[str] = field(default_factory=list)


def load_images(paths: Iterable[str | Path], img_size: tuple[int, int], in_chans: int = 3,
                mean: Stats = DEFAULT_MEAN, std: Stats = DEFAULT_STD) -> ImageBatch:
    """Load every readable file; unreadable ones become messages, not exceptions."""
    tensors, ok, errors = [], [], []
    for p in paths:
        try:
            tensors.append(load_image(p, img_size, in_chans, mean, std))
            ok.append(Path(p))
        except ImageError as e:
            errors.append(str(e))
    H, W = img_size
    pixels = torch.stack(tensors) if tensors else torch.empty(0, in_chans, H, W)
    return ImageBatch(pixels, ok, errors)
