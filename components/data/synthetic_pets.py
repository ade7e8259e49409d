"""``synthetic_pets``: an offline TFDS dataset with the features of ``oxford_iiit_pet``.

The demo and the tests need data that exists without the internet, yet is not
so easy that every model looks good. Each example is a procedurally drawn
animal (body, head, ears, legs, tail; cat-like or dog-like by breed) with fur
colour, stripes or spots and shading, over a cluttered background of
gradients, smooth colour noise and random shapes drawn from the same colour
distribution, sometimes with an occluder in front. Pixel noise and JPEG
compression finish it. Masks are Oxford trimaps (1 pet, 2 background,
3 border) with a thin border band along the visible outline, computed from
a signed distance field so the band follows occluders too.

Every example is a pure function of (seed, split, index), so a dataset is
reproducible byte for byte and independent of generation order. Size, image
side and seed are a BuilderConfig whose name spells them out
(``train96-test32-size96-seed0``), so different sizes never collide in one
``data_dir``; any such name is accepted, not only the predefined ones::

    builder = SyntheticPets(config=make_config(train_size=12, test_size=6, image_size=64))
    builder.download_and_prepare()
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import re
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from components.data import schema

# Oxford-IIIT Pet's breeds in its label order; names starting with a capital are cats.
BREEDS: tuple[str, ...] = (
    "Abyssinian",
    "american_bulldog",
    "american_pit_bull_terrier",
    "basset_hound",
    "beagle",
    "Bengal",
    "Birman",
    "Bombay",
    "boxer",
    "British_Shorthair",
    "chihuahua",
    "Egyptian_Mau",
    "english_cocker_spaniel",
    "english_setter",
    "german_shorthaired",
    "great_pyrenees",
    "havanese",
    "japanese_chin",
    "keeshond",
    "leonberger",
    "Maine_Coon",
    "miniature_pinscher",
    "newfoundland",
    "Persian",
    "pomeranian",
    "pug",
    "Ragdoll",
    "Russian_Blue",
    "saint_bernard",
    "samoyed",
    "scottish_terrier",
    "shiba_inu",
    "Siamese",
    "Sphynx",
    "staffordshire_bull_terrier",
    "wheaten_terrier",
    "yorkshire_terrier",
)
SPECIES: tuple[str, ...] = ("Cat", "Dog")
TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER = schema.TRIMAP_VALUES

_CONFIG_NAME = re.compile(r"train(\d+)-test(\d+)-size(\d+)-seed(-?\d+)")
_SPLIT_IDS = {"train": 0, "test": 1}
_MIN_IMAGE_SIZE = 32


def species_of(label: int) -> int:
    """0 cat, 1 dog: Oxford capitalises cat breed names."""
    return 0 if BREEDS[label][0].isupper() else 1


@dataclasses.dataclass(eq=False)
class SyntheticPetsConfig(tfds.core.BuilderConfig):
    """Size and seed of one generated dataset; the name is derived from them."""

    train_size: int = 96
    test_size: int = 32
    image_size: int = 96
    seed: int = 0


def config_name(train_size: int, test_size: int, image_size: int, seed: int) -> str:
    return f"train{train_size}-test{test_size}-size{image_size}-seed{seed}"


@functools.cache
def _config_from_name(name: str) -> SyntheticPetsConfig | None:
    # Cached so the same name is always the same object, as TFDS requires.
    match = _CONFIG_NAME.fullmatch(name)
    if not match:
        return None
    train_size, test_size, image_size, seed = (int(group) for group in match.groups())
    if train_size < 1 or test_size < 1:
        raise ValueError(f"synthetic_pets config {name!r}: split sizes must be at least 1")
    if image_size < _MIN_IMAGE_SIZE:
        raise ValueError(
            f"synthetic_pets config {name!r}: image size {image_size} < {_MIN_IMAGE_SIZE}"
        )
    return SyntheticPetsConfig(
        name=name,
        description=(
            f"{train_size} train and {test_size} test images, long side {image_size} px, "
            f"seed {seed}"
        ),
        train_size=train_size,
        test_size=test_size,
        image_size=image_size,
        seed=seed,
    )


def make_config(
    train_size: int = 96, test_size: int = 32, image_size: int = 96, seed: int = 0
) -> SyntheticPetsConfig:
    """The BuilderConfig for these values (the same object for the same values)."""
    config = _config_from_name(config_name(train_size, test_size, image_size, seed))
    if config is None:  # Only a negative size gets here: the pattern takes digits.
        raise ValueError(
            f"synthetic_pets: invalid sizes train={train_size} test={test_size} image={image_size}"
        )
    return config


class SyntheticPets(tfds.core.GeneratorBasedBuilder):
    """Procedural cats and dogs with Oxford-style trimaps; see the module docstring."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "First version: Oxford-IIIT Pet features, procedural images."
    }
    BUILDER_CONFIGS: ClassVar[list[SyntheticPetsConfig]] = [make_config()]

    @classmethod
    def get_builder_config(cls, name, version=None):
        """Accepts any well-formed size/seed name, not only the predefined configs."""
        return super().get_builder_config(name, version) or _config_from_name(name)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(encoding_format="jpeg"),
                    "label": tfds.features.ClassLabel(names=list(BREEDS)),
                    "species": tfds.features.ClassLabel(names=list(SPECIES)),
                    "file_name": tfds.features.Text(),
                    "segmentation_mask": tfds.features.Image(
                        shape=(None, None, 1), use_colormap=True
                    ),
                    "head_bbox": tfds.features.BBoxFeature(),
                }
            ),
            supervised_keys=("image", "label"),
            description="Procedural cats and dogs with trimaps: an offline oxford_iiit_pet.",
            homepage="https://www.robots.ox.ac.uk/~vgg/data/pets/",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        config = self.builder_config
        return {
            "train": self._generate_examples(split="train", count=config.train_size, offset=0),
            "test": self._generate_examples(
                split="test", count=config.test_size, offset=config.train_size
            ),
        }

    def _generate_examples(self, split: str, count: int, offset: int):
        config = self.builder_config
        for index in range(count):
            example = generate_example(config.seed, split, index, config.image_size)
            # Oxford-style names, numbered across splits so file names stay unique.
            file_name = f"{BREEDS[example['label']]}_{offset + index + 1}.jpg"
            example["file_name"] = file_name
            yield file_name, example


def generate_example(seed: int, split: str, index: int, image_size: int) -> dict:
    """Draws one example; a pure function of its arguments.

    Returns:
        A dict with ``image`` [H, W, 3] uint8, ``segmentation_mask`` [H, W, 1]
        uint8 trimap, ``label``, ``species`` and ``head_bbox`` (a tfds BBox).
        The long side is ``image_size``; the short side is 75-100% of it.
    """
    if split not in _SPLIT_IDS:
        raise ValueError(f"synthetic_pets: unknown split {split!r}; have {sorted(_SPLIT_IDS)}")
    # Seeds may be negative; SeedSequence takes non-negative integers.
    rng = np.random.default_rng([seed % (1 << 64), _SPLIT_IDS[split], index])
    short_side = round(image_size * rng.uniform(0.75, 1.0))
    height, width = (image_size, short_side) if rng.random() < 0.5 else (short_side, image_size)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    label = int(rng.integers(len(BREEDS)))
    species = species_of(label)

    background = _draw_background(rng, xx, yy)
    pet_distance, head = _pet_distance(rng, xx, yy, species)
    fur = _draw_fur(rng, xx, yy, label, pet_distance, head)

    # An occluder in front (a bar, a toy, a hand) cuts the visible pet, as in Oxford.
    visible_distance = pet_distance
    if rng.random() < 0.3:
        occluder_distance, occluder_colour = _random_shape(rng, xx, yy, scale=0.5)
        visible_distance = np.maximum(pet_distance, -occluder_distance)

    softness = rng.uniform(0.6, 1.4)
    alpha = np.clip(0.5 - visible_distance / softness, 0.0, 1.0)[..., None]
    image = alpha * fur + (1.0 - alpha) * background
    if visible_distance is not pet_distance:
        # The occluder covers the background too; redraw it on top of everything.
        occluder_alpha = np.clip(0.5 - occluder_distance / softness, 0.0, 1.0)[..., None]
        image = occluder_alpha * occluder_colour + (1.0 - occluder_alpha) * image

    image += rng.normal(0.0, rng.uniform(3.0, 10.0), size=image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)

    # Oxford's border band is a few pixels wide around the outline.
    half_band = max(1.0, image_size * rng.uniform(0.01, 0.016))
    trimap = np.full((height, width), TRIMAP_BACKGROUND, dtype=np.uint8)
    trimap[visible_distance < -half_band] = TRIMAP_PET
    trimap[np.abs(visible_distance) <= half_band] = TRIMAP_BORDER

    head_x, head_y, head_radius = head
    head_bbox = tfds.features.BBox(
        ymin=float(np.clip((head_y - head_radius) / height, 0.0, 1.0)),
        xmin=float(np.clip((head_x - head_radius) / width, 0.0, 1.0)),
        ymax=float(np.clip((head_y + head_radius) / height, 0.0, 1.0)),
        xmax=float(np.clip((head_x + head_radius) / width, 0.0, 1.0)),
    )
    return {
        "image": image,
        "segmentation_mask": trimap[..., None],
        "label": label,
        "species": species,
        "head_bbox": head_bbox,
    }


def _ellipse_distance(xx, yy, center_x, center_y, semi_major, semi_minor, angle):
    """Approximate signed distance to a rotated ellipse (negative inside).

    First-order (value over gradient norm) approximation: exact on circles and
    close near any outline, which is all the border band needs.
    """
    cos, sin = np.cos(angle), np.sin(angle)
    u = (xx - center_x) * cos + (yy - center_y) * sin
    v = -(xx - center_x) * sin + (yy - center_y) * cos
    radius = np.sqrt((u / semi_major) ** 2 + (v / semi_minor) ** 2)
    gradient = np.sqrt((u / semi_major**2) ** 2 + (v / semi_minor**2) ** 2) / np.maximum(
        radius, 1e-6
    )
    return (radius - 1.0) / np.maximum(gradient, 1e-6)


def _pet_distance(rng, xx, yy, species):
    """Signed distance to the union of the animal's parts, and its head circle."""
    height, width = xx.shape
    side = min(height, width)
    scale = side * rng.uniform(0.2, 0.34)  # Half the body length.
    center_x = width * rng.uniform(0.25, 0.75)
    center_y = height * rng.uniform(0.3, 0.7)
    facing = 1.0 if rng.random() < 0.5 else -1.0
    tilt = rng.uniform(-0.45, 0.45)
    body_ratio = rng.uniform(0.45, 0.7)
    head_ratio = rng.uniform(0.38, 0.55)

    # Parts in body units (x forward, y down): (x, y, semi-major, semi-minor, angle).
    parts = [(0.0, 0.0, 1.0, body_ratio, 0.0)]
    head_x, head_y = 0.95, -0.45 - rng.uniform(0.0, 0.25)
    parts.append((head_x, head_y, head_ratio, head_ratio * rng.uniform(0.85, 1.0), 0.0))
    if species == 0:  # Cats: pointed upright ears.
        for offset in (-0.45, 0.45):
            parts.append(
                (
                    head_x + offset * head_ratio,
                    head_y - 0.9 * head_ratio,
                    0.45 * head_ratio,
                    0.17 * head_ratio,
                    np.pi / 2 + offset * 0.6,
                )
            )
    else:  # Dogs: a snout and hanging ears.
        parts.append((head_x + 0.6 * head_ratio, head_y + 0.2 * head_ratio, 0.5, 0.22, 0.15))
        for offset in (-0.75, 0.75):
            parts.append(
                (
                    head_x + offset * head_ratio,
                    head_y + 0.35 * head_ratio,
                    0.55 * head_ratio,
                    0.22 * head_ratio,
                    np.pi / 2 + offset * 0.3,
                )
            )
    leg_length = rng.uniform(0.3, 0.55)
    leg_width = rng.uniform(0.12, 0.17)
    for leg_x in (-0.65, -0.45, 0.45, 0.65):
        parts.append((leg_x, body_ratio * 0.8 + leg_length * 0.6, leg_length, leg_width, np.pi / 2))
    tail_angle = rng.uniform(-1.2, 0.3)
    parts.append(
        (
            -1.0 - 0.4 * np.cos(tail_angle),
            -0.2 + 0.4 * np.sin(tail_angle),
            rng.uniform(0.35, 0.55),
            rng.uniform(0.08, 0.12),
            -tail_angle,
        )
    )

    cos, sin = np.cos(tilt), np.sin(tilt)
    distance = None
    head_circle = None
    for part_index, (part_x, part_y, semi_major, semi_minor, angle) in enumerate(parts):
        part_x *= facing
        angle = angle if facing > 0 else np.pi - angle
        global_x = center_x + scale * (part_x * cos - part_y * sin)
        global_y = center_y + scale * (part_x * sin + part_y * cos)
        part = _ellipse_distance(
            xx, yy, global_x, global_y, scale * semi_major, scale * semi_minor, angle + tilt
        )
        distance = part if distance is None else np.minimum(distance, part)
        if part_index == 1:  # The head, for head_bbox and the eyes.
            head_circle = (global_x, global_y, scale * head_ratio)
    return distance, head_circle


def _smooth_noise(rng, height, width, cells, channels):
    """Low-frequency noise: a random grid bilinearly upsampled to the image."""
    grid = rng.normal(size=(cells + 1, cells + 1, channels))
    rows = np.linspace(0, cells, height)
    cols = np.linspace(0, cells, width)
    row_low = np.minimum(rows.astype(int), cells - 1)
    col_low = np.minimum(cols.astype(int), cells - 1)
    row_frac = (rows - row_low)[:, None, None]
    col_frac = (cols - col_low)[None, :, None]
    top = grid[row_low][:, col_low] * (1 - col_frac) + grid[row_low][:, col_low + 1] * col_frac
    bottom = (
        grid[row_low + 1][:, col_low] * (1 - col_frac)
        + grid[row_low + 1][:, col_low + 1] * col_frac
    )
    return top * (1 - row_frac) + bottom * row_frac


def _random_colour(rng):
    # Fur-like browns, greys and creams as often as saturated colours, so colour alone
    # cannot tell pet from background.
    if rng.random() < 0.5:
        return _fur_palette(rng)
    return rng.uniform(0, 255, size=3)


def _fur_palette(rng):
    base = np.array(
        [
            (200, 140, 80),  # ginger
            (120, 80, 50),  # brown
            (40, 35, 30),  # black
            (225, 215, 200),  # cream
            (130, 130, 135),  # grey
            (170, 120, 90),  # fawn
        ],
        dtype=np.float64,
    )[rng.integers(6)]
    return np.clip(base + rng.normal(0, 18, size=3), 0, 255)


def _random_shape(rng, xx, yy, scale):
    """A random clutter shape: signed distance and its (possibly textured) colour."""
    height, width = xx.shape
    side = min(height, width)
    center_x, center_y = rng.uniform(0, width), rng.uniform(0, height)
    semi_major = side * rng.uniform(0.05, 0.35) * scale * 2
    semi_minor = semi_major * rng.uniform(0.1, 1.0)
    angle = rng.uniform(0, np.pi)
    if rng.random() < 0.5:
        distance = _ellipse_distance(xx, yy, center_x, center_y, semi_major, semi_minor, angle)
    else:  # A rotated rectangle (box distance).
        cos, sin = np.cos(angle), np.sin(angle)
        u = np.abs((xx - center_x) * cos + (yy - center_y) * sin) - semi_major
        v = np.abs(-(xx - center_x) * sin + (yy - center_y) * cos) - semi_minor
        outside = np.sqrt(np.maximum(u, 0) ** 2 + np.maximum(v, 0) ** 2)
        distance = outside + np.minimum(np.maximum(u, v), 0)
    colour = np.broadcast_to(_random_colour(rng), (height, width, 3)).astype(np.float64)
    if rng.random() < 0.35:  # Textured clutter, so texture alone is not "pet" either.
        frequency = rng.uniform(0.15, 0.6)
        stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * frequency)
        colour = colour * (1.0 + 0.25 * stripes[..., None])
    return distance, colour


def _draw_background(rng, xx, yy):
    height, width = xx.shape
    start, end = _random_colour(rng), _random_colour(rng)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = xx * np.cos(direction) + yy * np.sin(direction)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    image = start + (end - start) * ramp[..., None]
    image += 25.0 * _smooth_noise(rng, height, width, int(rng.integers(2, 6)), 3)
    for _ in range(int(rng.integers(2, 8))):
        distance, colour = _random_shape(rng, xx, yy, scale=1.0)
        alpha = np.clip(0.5 - distance, 0.0, 1.0)[..., None]
        image = alpha * colour + (1.0 - alpha) * image
    return image


def _draw_fur(rng, xx, yy, label, distance, head):
    """The animal's appearance over the whole frame; the mask decides where it shows."""
    height, width = xx.shape
    # Each breed has a typical coat (colour and pattern); each animal varies around it.
    breed_rng = np.random.default_rng([7919, label])
    base = _fur_palette(breed_rng)
    pattern = int(breed_rng.integers(4))  # 0 plain, 1 stripes, 2 spots, 3 two-tone
    second = _fur_palette(breed_rng)
    base = np.clip(base + rng.normal(0, 15, size=3), 0, 255)
    fur = np.broadcast_to(base, (height, width, 3)).astype(np.float64).copy()
    if pattern == 1:
        angle = rng.uniform(0, np.pi)
        frequency = rng.uniform(0.35, 0.8)
        stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * frequency) > 0.3
        fur[stripes] = 0.55 * fur[stripes] + 0.45 * second
    elif pattern == 2:
        spots = _smooth_noise(rng, height, width, int(rng.integers(6, 12)), 1)[..., 0] > 0.6
        fur[spots] = second
    elif pattern == 3:
        light = (yy - (yy[distance < 0].mean() if np.any(distance < 0) else height / 2)) > 0
        fur[light] = 0.4 * fur[light] + 0.6 * np.array([235.0, 228.0, 215.0])
    # Fine fur grain and rounded shading: darker towards the outline.
    fur += rng.normal(0, 9, size=(height, width, 1))
    shading = 0.75 + 0.25 * np.clip(-distance / max(height, width) * 8, 0, 1)
    fur *= shading[..., None]
    head_x, head_y, head_radius = head
    for eye_offset in (-0.35, 0.35):
        eye = (
            (xx - (head_x + eye_offset * head_radius)) ** 2
            + (yy - (head_y - 0.1 * head_radius)) ** 2
        ) < (0.13 * head_radius) ** 2
        fur[eye] = (20.0, 20.0, 20.0)
    return fur


# --- a folder dataset (images/ + masks/) with any number of classes ------------------------

MASK_FORMATS: tuple[str, ...] = ("values", "palette", "rgb")
# Pascal VOC's colour of the void index 255, used for ignored pixels in colour masks.
VOID_COLOUR: tuple[int, int, int] = (224, 224, 192)
IGNORE_VALUE = 255


def voc_colour(index: int) -> tuple[int, int, int]:
    """Pascal VOC's colour map: index 0 black, then well-separated colours."""
    red = green = blue = 0
    for shift in range(7, -1, -1):
        red |= ((index >> 0) & 1) << shift
        green |= ((index >> 1) & 1) << shift
        blue |= ((index >> 2) & 1) << shift
        index >>= 3
    return red, green, blue


def folder_class_names(num_classes: int, ignore_border: bool = False) -> list[str]:
    """Classes of a generated folder dataset: background, border (unless ignored), pets.

    Pets are one class, cat/dog (two), or breed groups (label modulo the count).
    With two classes and no ignore, the border band belongs to the pet.
    """
    if not 2 <= num_classes <= 64:
        raise ValueError(f"num_classes {num_classes} must be between 2 and 64")
    with_border = not ignore_border and num_classes >= 3
    pet_groups = num_classes - 1 - with_border
    if pet_groups == 1:
        pets = ["pet"]
    elif pet_groups == 2:
        pets = ["cat", "dog"]
    else:
        pets = [f"pet_group_{group}" for group in range(pet_groups)]
    return ["background"] + (["border"] if with_border else []) + pets


@dataclasses.dataclass
class FolderDataset:
    """What write_folder_dataset wrote: where, its class table, and the stems per split."""

    root: str
    class_names: list[str]
    mask_format: str
    data_config: dict  # DataConfig fields reading this folder (source, path, classes, ...)
    stems: dict[str | None, list[str]]


def _class_ids(example: dict, names: list[str], ignore_border: bool) -> np.ndarray:
    trimap = example["segmentation_mask"][..., 0]
    pet_groups = [name for name in names if name not in ("background", "border")]
    if len(pet_groups) == 1:
        group = 0
    elif len(pet_groups) == 2:
        group = example["species"]
    else:
        group = example["label"] % len(pet_groups)
    ids = np.full(trimap.shape, names.index("background"), np.uint8)
    ids[trimap == TRIMAP_PET] = names.index(pet_groups[group])
    if ignore_border:
        ids[trimap == TRIMAP_BORDER] = IGNORE_VALUE
    elif "border" in names:
        ids[trimap == TRIMAP_BORDER] = names.index("border")
    else:
        ids[trimap == TRIMAP_BORDER] = names.index(pet_groups[group])
    return ids


def _encode_mask(class_ids: np.ndarray, mask_format: str, num_classes: int) -> bytes:
    from PIL import Image

    if mask_format == "values":  # Raw value = class id + 1 (0 unused, as in Oxford).
        values = np.where(class_ids == IGNORE_VALUE, IGNORE_VALUE, class_ids + 1).astype(np.uint8)
        image = Image.fromarray(values)
    elif mask_format == "palette":  # Index = class id, 255 = void (Pascal VOC).
        image = Image.fromarray(class_ids)  # putpalette makes it mode P
        palette = [0] * 768
        for index in [*range(num_classes), IGNORE_VALUE]:
            colour = VOID_COLOUR if index == IGNORE_VALUE else voc_colour(index)
            palette[3 * index : 3 * index + 3] = colour
        image.putpalette(palette)
    else:  # RGB colour mask, as labelling tools export.
        lut = np.zeros((256, 3), np.uint8)
        lut[:num_classes] = [voc_colour(index) for index in range(num_classes)]
        lut[IGNORE_VALUE] = VOID_COLOUR
        image = Image.fromarray(lut[class_ids])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def folder_class_table(
    num_classes: int, mask_format: str, ignore_border: bool = False
) -> dict[str, list]:
    """The DataConfig ``classes`` / ``ignore_*`` fields that read a generated folder."""
    names = folder_class_names(num_classes, ignore_border)
    if mask_format == "values":
        classes = [{"name": name, "values": [index + 1]} for index, name in enumerate(names)]
    elif mask_format == "palette":
        classes = [{"name": name, "values": [index]} for index, name in enumerate(names)]
    else:
        classes = [
            {"name": name, "colors": [list(voc_colour(index))]} for index, name in enumerate(names)
        ]
    table: dict[str, list] = {"classes": classes}
    if ignore_border and mask_format == "rgb":
        table["ignore_colors"] = [list(VOID_COLOUR)]
    elif ignore_border:
        table["ignore_values"] = [IGNORE_VALUE]
    return table


def write_folder_dataset(
    root: str,
    count: int | dict[str, int],
    *,
    num_classes: int = 3,
    mask_format: str = "values",
    ignore_border: bool = False,
    image_size: int = 64,
    seed: int = 0,
    start: int = 0,
) -> FolderDataset:
    """Writes drawn pets as a folder dataset that ``data.source=folder`` reads.

    Layout: ``<root>/images/pet_NNNNN.jpg`` and ``<root>/masks/pet_NNNNN.png``,
    or, when ``count`` is a mapping of split → count, the same inside
    ``<root>/<split>/``. Example ``i`` is a pure function of (seed, i), and stems
    are numbered from ``start``, so a second call with a larger ``start`` adds
    new examples next to the old ones (a growing dataset).

    Args:
        root: the dataset folder (created; local path).
        count: images to write, or images per split folder.
        num_classes: 2 or more (see folder_class_names).
        mask_format: 'values' (single-channel, value = class id + 1, 255 = ignore),
            'palette' (indexed PNG, index = class id, 255 = void) or 'rgb'
            (VOC colours, void colour for ignored pixels).
        ignore_border: write the pet outline band as ignored pixels.
        image_size: long side of the images.
        seed: drawing seed.
        start: the first example's number.

    Returns:
        The written dataset, including ``data_config``: the DataConfig fields to read it.
    """
    from PIL import Image

    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format {mask_format!r} is not one of {list(MASK_FORMATS)}")
    names = folder_class_names(num_classes, ignore_border)
    groups = count if isinstance(count, dict) else {None: count}
    stems: dict[str | None, list[str]] = {}
    index = start
    for split, split_count in groups.items():
        base = os.path.join(root, split) if split else root
        os.makedirs(os.path.join(base, "images"), exist_ok=True)
        os.makedirs(os.path.join(base, "masks"), exist_ok=True)
        stems[split] = []
        for _ in range(split_count):
            example = generate_example(seed, "train", index, image_size)
            stem = f"pet_{index:05d}"
            Image.fromarray(example["image"]).save(
                os.path.join(base, "images", f"{stem}.jpg"), format="JPEG", quality=90
            )
            mask = _encode_mask(_class_ids(example, names, ignore_border), mask_format, len(names))
            with open(os.path.join(base, "masks", f"{stem}.png"), "wb") as handle:
                handle.write(mask)
            stems[split].append(stem)
            index += 1
    data_config = {
        "source": "folder",
        "path": root,
        "mask_format": mask_format,
        **folder_class_table(num_classes, mask_format, ignore_border),
    }
    return FolderDataset(
        root=root, class_names=names, mask_format=mask_format, data_config=data_config, stems=stems
    )
