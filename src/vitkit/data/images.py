"""One image file -> uint8 (C, H, W) at a fixed size, whatever Pillow opened.

Handles EXIF orientation, 16-bit and float grayscale (scaled, not clipped, to 8 bits), alpha
(composited over white), palettes, CMYK and the rest; resizes the shorter side to the target and
centre-crops, keeping the aspect ratio.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps

GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
BACKGROUND = 255  # transparent pixels become white


def is_gray_mode(mode: str) -> bool:
    return mode in GRAY_MODES


def probe(path: str) -> str:
    """The image's mode after a cheap structural check; raises whatever Pillow raises for a bad file.

    `verify` walks the file (PNG chunk checksums, for instance) without decoding the pixels, so a
    file that is damaged in the middle of its pixel data may still pass: the loader copes with that.
    """
    with Image.open(path) as im:
        mode = im.mode
        im.verify()
    return mode


def to_8bit(im: Image.Image) -> Image.Image:
    """An 'L' or 'RGB' image with the same content."""
    if im.mode in ("L", "RGB"):
        return im
    if im.mode == "1":
        return im.convert("L")
    if im.mode.startswith("I") or im.mode == "F":
        a = np.asarray(im)
        if im.mode == "F":  # float: [0, 1] when it fits there, else taken as 0..255
            scale = 255.0 if float(np.nanmax(a, initial=0.0)) <= 1.0 else 1.0
            a = np.nan_to_num(a.astype(np.float64) * scale)
        else:  # 16-bit (or 32-bit holding 16-bit values, as PNG gives): 0..65535 -> 0..255
            a = a.astype(np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("LA", "La"):
        bg = Image.new("L", im.size, BACKGROUND)
        bg.paste(im.convert("L"), mask=im.getchannel("A"))
        return bg
    if im.mode in ("RGBA", "RGBa"):
        bg = Image.new("RGB", im.size, (BACKGROUND,) * 3)
        bg.paste(im.convert("RGB"), mask=im.getchannel("A"))
        return bg
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, ...


def center_crop_box(width: int, height: int, out_h: int, out_w: int) -> tuple[float, float, float, float]:
    """The source box that, scaled to (out_h, out_w), covers it with the aspect ratio kept."""
    scale = max(out_h / height, out_w / width)
    crop_w, crop_h = out_w / scale, out_h / scale
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    return (left, top, left + crop_w, top + crop_h)


def open_upright(path: str, draft_size: int | None = None) -> Image.Image:
    """Decode one file as an 'L' or 'RGB' image turned by its EXIF orientation.

    `draft_size`: a JPEG much larger than this may be decoded at a reduced scale (faster).
    Raises whatever Pillow raises for a missing, damaged or over-large file.
    """
    with Image.open(path) as im:
        if draft_size and im.format == "JPEG":
            im.draft(im.mode, (draft_size, draft_size))
        im = ImageOps.exif_transpose(im)  # loads the pixels; a no-op copy without an orientation tag
        return to_8bit(im)


def load_image(path: str, size: tuple[int, int], channels: int) -> torch.Tensor:
    """Decode, orient, convert and resize one file: uint8 (channels, H, W)."""
    out_h, out_w = size
    im = open_upright(path, draft_size=max(out_h, out_w))
    if channels == 3 and im.mode == "L":
        im = im.convert("RGB")
    elif channels == 1 and im.mode == "RGB":
        im = im.convert("L")
    box = center_crop_box(im.width, im.height, out_h, out_w)
    im = im.resize((out_w, out_h), Image.Resampling.BICUBIC, box=box)
    a = np.asarray(im, dtype=np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(a.copy()).permute(2, 0, 1).contiguous()  # (H, W, C) -> (C, H, W)
