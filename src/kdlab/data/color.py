"""Any PIL image as 8-bit RGB, its pixel values kept faithfully.

`Image.convert("RGB")` alone is wrong for several modes: it clips 16-bit greys (I;16, I) to
255, so a 16-bit PNG turns almost white, reads floats (F) as 0..255, and drops alpha,
leaving whatever colour transparent pixels happen to hold. Here:

- 16-bit and 32-bit integer greys (I;16*, I) are 0..65535 scaled to 0..255 (v / 257,
  rounded; values outside are clipped);
- float greys (F) are 0..1 scaled to 0..255 (rounded, clipped);
- anything with transparency (RGBA, LA, PA, RGBa, La, and P or L/RGB with a transparency
  entry) is composited over white: out = (c * a + 255 * (255 - a)) / 255, rounded;
- the rest (RGB, L, 1, P, CMYK, YCbCr...) is PIL's own conversion: greys repeated, 1-bit as
  0/255, palettes looked up, CMYK as (255 - c)(255 - k) / 255.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

BACKGROUND = 255  # white: what transparent pixels show, as on a page

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` as an RGB image with 8 bits per channel."""
    if image.mode.startswith("I") or image.mode == "F":
        return Image.fromarray(_grey_to_8bit(image), "L").convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return _over_background(np.asarray(image.convert("RGBA")))
    return image.convert("RGB")


def _grey_to_8bit(image: Image.Image) -> np.ndarray:
    values = np.asarray(image).astype(np.float64)
    scaled = values * 255.0 if image.mode == "F" else values / 257.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _over_background(rgba: np.ndarray) -> Image.Image:
    colour = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:].astype(np.uint32)
    # + 127 then floor: rounding to nearest (x / 255 is never exactly halfway, 255 is odd)
    mixed = (colour * alpha + BACKGROUND * (255 - alpha) + 127) // 255
    return Image.fromarray(mixed.astype(np.uint8), "RGB")
