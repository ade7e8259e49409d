"""Class colours, colour masks and overlays: the pictures report, TensorBoard and predict draw."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from components.evaluation import visualize


def test_palette_starts_with_oxfords_three_colours():
    palette = visualize.class_palette(3)
    assert palette.shape == (3, 3) and palette.dtype == np.uint8
    assert [tuple(int(c) for c in colour) for colour in palette] == [
        (230, 159, 0),  # pet: orange
        (86, 180, 233),  # background: sky blue
        (0, 0, 0),  # border: black
    ]


@pytest.mark.parametrize("num_classes", [1, 8, 9, 21, 255])
def test_palette_has_one_distinct_colour_per_class_and_keeps_earlier_ones(num_classes):
    palette = visualize.class_palette(num_classes)
    colours = {tuple(int(c) for c in colour) for colour in palette}
    assert len(colours) == num_classes
    assert visualize.IGNORE_COLOUR not in colours
    # Adding classes never recolours the earlier ones.
    np.testing.assert_array_equal(visualize.class_palette(255)[:num_classes], palette)


def test_generated_colours_are_not_near_duplicates():
    palette = visualize.class_palette(24).astype(np.int64)
    distances = np.abs(palette[:, None, :] - palette[None, :, :]).sum(-1)
    np.fill_diagonal(distances, 10**6)
    # Summed channel distance: near-identical colours would be under ~30.
    assert distances.min() >= 40


@pytest.mark.parametrize("bad", [0, 256, -1, 2.5])
def test_palette_refuses_impossible_class_counts(bad):
    with pytest.raises(ValueError, match="num_classes"):
        visualize.class_palette(bad)


def test_colour_mask_maps_ids_and_ignored_pixels():
    palette = visualize.class_palette(3)
    mask = np.array([[0, 1], [2, visualize.IGNORE_ID]], dtype=np.uint8)
    colours = visualize.colour_mask(mask, palette)
    assert colours.shape == (2, 2, 3) and colours.dtype == np.uint8
    np.testing.assert_array_equal(colours[0, 0], palette[0])
    np.testing.assert_array_equal(colours[0, 1], palette[1])
    np.testing.assert_array_equal(colours[1, 0], palette[2])
    assert tuple(int(c) for c in colours[1, 1]) == visualize.IGNORE_COLOUR
    np.testing.assert_array_equal(visualize.colour_mask(mask[..., None], palette), colours)


def test_colour_mask_names_ids_without_a_colour():
    with pytest.raises(ValueError, match=r"class ids \[3, 7\] outside 0\.\.2"):
        visualize.colour_mask(np.array([[3, 7], [0, 1]]), visualize.class_palette(3))
    with pytest.raises(ValueError, match="shape"):
        visualize.colour_mask(np.zeros((2, 2, 2)), visualize.class_palette(3))


def test_overlay_blends_colour_over_image_and_leaves_ignored_pixels():
    palette = visualize.class_palette(3)
    image = np.full((2, 3, 3), 100, dtype=np.uint8)
    mask = np.array([[0, 1, 2], [visualize.IGNORE_ID, 0, 0]], dtype=np.uint8)
    blended = visualize.overlay(image, mask, palette, alpha=0.25)
    assert blended.shape == (2, 3, 3) and blended.dtype == np.uint8
    # 0.75 * 100 + 0.25 * (230, 159, 0) = (132.5, 114.75, 75) -> rounded.
    assert tuple(int(c) for c in blended[0, 0]) == (132, 115, 75)
    assert tuple(int(c) for c in blended[0, 2]) == (75, 75, 75)
    np.testing.assert_array_equal(blended[1, 0], image[1, 0])
    np.testing.assert_array_equal(visualize.overlay(image, mask, palette, alpha=0.0), image)
    np.testing.assert_array_equal(
        visualize.overlay(image, mask, palette, alpha=1.0)[0],
        visualize.colour_mask(mask, palette)[0],
    )


def test_overlay_takes_grayscale_and_refuses_mismatched_sizes():
    palette = visualize.class_palette(2)
    gray = np.full((4, 5), 10, dtype=np.uint8)
    blended = visualize.overlay(gray, np.ones((4, 5), np.uint8), palette, alpha=0.5)
    assert blended.shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"mask is 5x4 \(HxW\) but the image is 4x5"):
        visualize.overlay(gray, np.zeros((5, 4), np.uint8), palette)
    with pytest.raises(ValueError, match="alpha"):
        visualize.overlay(gray, np.zeros((4, 5), np.uint8), palette, alpha=1.5)


def test_encode_png_round_trips_masks_and_rgb():
    rng = np.random.default_rng(0)
    for pixels in (
        rng.integers(0, 3, size=(5, 7)).astype(np.uint8),
        rng.integers(0, 256, size=(5, 7, 3)).astype(np.uint8),
    ):
        decoded = np.asarray(Image.open(io.BytesIO(visualize.encode_png(pixels))))
        np.testing.assert_array_equal(decoded, pixels)
    with pytest.raises(ValueError, match="uint8"):
        visualize.encode_png(np.zeros((2, 2), np.float32))
