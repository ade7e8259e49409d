"""Colours for class-id masks: one palette for every picture petseg draws.

The report, the TensorBoard panels and ``petseg predict`` all colour a class the same way,
so a class looks the same in every run and every tool. The first eight colours are the
Okabe-Ito set (readable with colour-blindness), in the order of Oxford's classes: pet
orange, background sky blue, border black. A dataset with more classes gets further
colours spread around the hue circle by the golden angle, so neighbouring class ids never
look alike and adding a class never recolours the earlier ones.

Pixels with the ignore id (255, ``components.platform.config.IGNORE_ID``, Pascal VOC's "void")
are not a class: a colour mask draws them in ``IGNORE_COLOUR`` and an overlay leaves the
image visible there.
"""

from __future__ import annotations

import colorsys
import io

import numpy as np
from PIL import Image

from components.platform.config import IGNORE_ID

# Okabe-Ito; index = class id. Oxford: pet, background, border.
BASE_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0),  # orange
    (86, 180, 233),  # sky blue
    (0, 0, 0),  # black
    (0, 158, 115),  # bluish green
    (240, 228, 66),  # yellow
    (0, 114, 178),  # blue
    (213, 94, 0),  # vermillion
    (204, 121, 167),  # reddish purple
)
# Pascal VOC's colour for void pixels; never given to a class.
IGNORE_COLOUR: tuple[int, int, int] = (224, 224, 192)
# Class ids are stored in uint8 masks, with 255 reserved for ignored pixels.
MAX_CLASSES = 255
_GOLDEN_FRACTION = 0.618033988749895
# Alternating brightness and saturation separate hues that land close together.
_LEVELS: tuple[tuple[float, float], ...] = ((0.85, 0.95), (0.65, 0.75), (0.95, 0.55))


def _generated_colour(index: int) -> tuple[int, int, int]:
    hue = (0.11 + index * _GOLDEN_FRACTION) % 1.0
    saturation, value = _LEVELS[index % len(_LEVELS)]
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
    return (round(red * 255), round(green * 255), round(blue * 255))


def class_palette(num_classes: int) -> np.ndarray:
    """One distinct colour per class id: uint8 [num_classes, 3], Okabe-Ito first.

    Raises:
        ValueError: num_classes is not in 1..255 (class ids live in uint8 masks, 255 ignored).
    """
    if not isinstance(num_classes, int | np.integer) or not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must be an integer in 1..{MAX_CLASSES}, got {num_classes!r}")
    colours = list(BASE_COLOURS[:num_classes])
    taken = set(colours) | {IGNORE_COLOUR}
    index = 0
    while len(colours) < num_classes:
        colour = _generated_colour(index)
        index += 1
        if colour not in taken:
            colours.append(colour)
            taken.add(colour)
    return np.asarray(colours, dtype=np.uint8)


def _as_class_ids(class_ids: np.ndarray) -> np.ndarray:
    class_ids = np.asarray(class_ids)
    if class_ids.ndim == 3 and class_ids.shape[-1] == 1:
        class_ids = class_ids[..., 0]
    if class_ids.ndim != 2:
        raise ValueError(f"mask must be [H, W] or [H, W, 1], got shape {class_ids.shape}")
    return class_ids


def _checked_palette(palette: np.ndarray) -> np.ndarray:
    palette = np.asarray(palette)
    if palette.ndim != 2 or palette.shape[1] != 3 or len(palette) == 0:
        raise ValueError(f"palette must be [num_classes, 3] colours, got shape {palette.shape}")
    return palette.astype(np.uint8)


def colour_mask(class_ids: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Draws a [H, W] (or [H, W, 1]) class-id mask as uint8 RGB [H, W, 3].

    Args:
        class_ids: class ids 0..len(palette)-1, or IGNORE_ID for ignored pixels.
        palette: [num_classes, 3] colours, e.g. ``class_palette(num_classes)``.

    Raises:
        ValueError: a wrongly shaped mask or palette, or an id with no colour (named).
    """
    class_ids = _as_class_ids(class_ids)
    palette = _checked_palette(palette)
    ids = class_ids.astype(np.int64)
    ignored = ids == IGNORE_ID
    bad = (ids < 0) | ((ids >= len(palette)) & ~ignored)
    if bad.any():
        values = sorted({int(value) for value in ids[bad]})[:10]
        raise ValueError(
            f"mask has class ids {values} outside 0..{len(palette) - 1} (and {IGNORE_ID} = ignored)"
        )
    colours = palette[np.where(ignored, 0, ids)]
    colours[ignored] = IGNORE_COLOUR
    return colours


def overlay(
    image: np.ndarray, class_ids: np.ndarray, palette: np.ndarray, alpha: float = 0.5
) -> np.ndarray:
    """Blends class colours over an image: uint8 RGB [H, W, 3].

    Each pixel is ``(1 - alpha) * image + alpha * colour``; ignored pixels keep the image.

    Args:
        image: uint8 [H, W, 3] RGB, or [H, W] / [H, W, 1] grayscale.
        class_ids: [H, W] (or [H, W, 1]) class ids at the image's resolution.
        palette: [num_classes, 3] colours.
        alpha: the colour's weight, 0 (image only) to 1 (mask only).

    Raises:
        ValueError: alpha outside [0, 1], an image that is not RGB or grayscale, a mask of
            another height and width than the image, or a class id with no colour.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be [H, W, 3] RGB or [H, W] grayscale, got {image.shape}")
    class_ids = _as_class_ids(class_ids)
    if class_ids.shape != image.shape[:2]:
        raise ValueError(
            f"mask is {class_ids.shape[0]}x{class_ids.shape[1]} (HxW) but the image is "
            f"{image.shape[0]}x{image.shape[1]}"
        )
    colours = colour_mask(class_ids, palette).astype(np.float32)
    pixels = image.astype(np.float32)
    blended = (1.0 - alpha) * pixels + alpha * colours
    ignored = class_ids == IGNORE_ID
    blended[ignored] = pixels[ignored]
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 [H, W] (class ids, grayscale) or [H, W, 3] (RGB) array."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ValueError(f"PNG pixels must be uint8, got {pixels.dtype}")
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
