"""The tf.data input for training and evaluation, read from ingest's TFRecord shards.

The order of operations follows the tf.data performance guide: parallel shard reads,
parallel decode and resize, cache of the resized examples (as uint8, four times smaller
than float32, so a larger dataset still fits), shuffle, augmentation, batch, optional
per-pixel sample weights, prefetch. With a seed every random choice (shard order,
shuffle, flips) is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import tensorflow as tf

from components.data import dataset_info, schema

AUTOTUNE = tf.data.AUTOTUNE
# Resized examples are cached in memory only below this size, so a large dataset at a large
# image size streams from disk instead of exhausting the host's memory.
CACHE_LIMIT_BYTES = 4 * 1024**3
MAX_PARALLEL_SHARD_READS = 16


def resize_image(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resizes a uint8 image bilinearly to [S, S, 3], rounded back to uint8."""
    resized = tf.image.resize(
        image, [image_size, image_size], method=tf.image.ResizeMethod.BILINEAR
    )
    return tf.saturate_cast(tf.round(resized), tf.uint8)


def resize_mask(mask: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resizes a [H, W, 1] class-id mask nearest-neighbour to uint8 [S, S, 1].

    Nearest-neighbour keeps every mask pixel a real class id; bilinear would invent
    labels between classes.
    """
    resized = tf.image.resize(
        mask, [image_size, image_size], method=tf.image.ResizeMethod.NEAREST_NEIGHBOR
    )
    return tf.cast(resized, tf.uint8)


def resize_example(
    image: tf.Tensor, mask: tf.Tensor, image_size: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Resizes an image bilinearly (uint8 out) and its mask nearest-neighbour."""
    return resize_image(image, image_size), resize_mask(mask, image_size)


def _decode_and_resize(serialized: tf.Tensor, image_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    example = schema.decode_example(serialized)
    return resize_example(example["image"], example["mask"], image_size)


@dataclass(frozen=True)
class Augmentation:
    """Random changes applied to each training example, the same geometry for image and mask.

    The defaults are the tutorial's: horizontal flips only. Geometry (crop, rotation) moves
    image and mask together (bilinear for the image, nearest-neighbour for the mask, so no
    label is invented); pixels a rotation brings in from outside the frame are ignored
    (the ignore id), so ignored pixels stay ignored and no fake background is learned.
    Colour jitter touches the image only.

    Attributes:
        flip: random horizontal flips.
        min_crop_scale: a random square crop of this share of the area or more (1 = none),
            resized back to the full side: random scale and position.
        max_rotation_degrees: random rotation in [-d, d] degrees (0 = none).
        color_jitter: random brightness (+-jitter*255), contrast and saturation
            (factor in [1-jitter, 1+jitter]) (0 = none).
    """

    flip: bool = True
    min_crop_scale: float = 1.0
    max_rotation_degrees: float = 0.0
    color_jitter: float = 0.0

    def __post_init__(self):
        if not 0.0 < self.min_crop_scale <= 1.0:
            raise ValueError(f"min_crop_scale must be in (0, 1], got {self.min_crop_scale}")
        if not 0.0 <= self.max_rotation_degrees <= 180.0:
            raise ValueError(
                f"max_rotation_degrees must be in [0, 180], got {self.max_rotation_degrees}"
            )
        if not 0.0 <= self.color_jitter < 1.0:
            raise ValueError(f"color_jitter must be in [0, 1), got {self.color_jitter}")


FLIPS_ONLY = Augmentation()


def _random_crop_pair(image, mask, seed, min_scale: float):
    """A random square crop (side sqrt(scale) of the image's) resized back to the full side."""
    size = tf.shape(image)[0]
    side_fraction = tf.random.stateless_uniform([], seed, math.sqrt(min_scale), 1.0)
    side = tf.maximum(1, tf.cast(tf.cast(size, tf.float32) * side_fraction, tf.int32))
    offsets = tf.random.stateless_uniform(
        [2], seed + tf.constant([1, 0], seed.dtype), 0, size - side + 1, dtype=tf.int32
    )
    image = tf.image.crop_to_bounding_box(image, offsets[0], offsets[1], side, side)
    mask = tf.image.crop_to_bounding_box(mask, offsets[0], offsets[1], side, side)
    return resize_image(image, size), resize_mask(mask, size)


def _rotate(image, angle, interpolation: str, fill_value: float):
    """Rotates [S, S, C] about its centre (TensorFlow's projective transform, no Keras)."""
    size = tf.cast(tf.shape(image)[0], tf.float32)
    cos, sin = tf.cos(angle), tf.sin(angle)
    centre = (size - 1.0) / 2.0
    # Output pixel (x, y) reads the input at the inverse rotation about the centre.
    transform = tf.stack(
        [
            cos,
            -sin,
            centre - cos * centre + sin * centre,
            sin,
            cos,
            centre - sin * centre - cos * centre,
            0.0,
            0.0,
        ]
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=tf.shape(image)[:2],
        fill_value=tf.constant(fill_value, tf.float32),
        interpolation=interpolation,
        fill_mode="CONSTANT",
    )[0]


def _jitter_colour(image, seed, strength: float):
    pixels = tf.cast(image, tf.float32)
    pixels = tf.image.stateless_random_brightness(pixels, strength * 255.0, seed)
    pixels = tf.image.stateless_random_contrast(
        pixels, 1.0 - strength, 1.0 + strength, seed + tf.constant([2, 0], seed.dtype)
    )
    pixels = tf.image.stateless_random_saturation(
        pixels, 1.0 - strength, 1.0 + strength, seed + tf.constant([3, 0], seed.dtype)
    )
    return tf.saturate_cast(tf.round(tf.clip_by_value(pixels, 0.0, 255.0)), tf.uint8)


def augment_pair(
    image: tf.Tensor,
    mask: tf.Tensor,
    seed: tf.Tensor,
    augmentation: Augmentation = FLIPS_ONLY,
    ignore_id: int = schema.IGNORE_ID,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Applies ``augmentation`` to a uint8 image [S, S, 3] and mask [S, S, 1].

    ``seed`` is a stateless seed (int64 [2]): the same seed gives the same result, and
    every geometric change is drawn once and applied to both image and mask.
    """
    seed = tf.cast(seed, tf.int64)
    if augmentation.flip:
        # The same stateless seed for both makes the flip identical for image and mask.
        image = tf.image.stateless_random_flip_left_right(image, seed)
        mask = tf.image.stateless_random_flip_left_right(mask, seed)
    if augmentation.min_crop_scale < 1.0:
        image, mask = _random_crop_pair(
            image, mask, seed + tf.constant([10, 0], tf.int64), augmentation.min_crop_scale
        )
    if augmentation.max_rotation_degrees > 0:
        limit = augmentation.max_rotation_degrees * math.pi / 180.0
        angle = tf.random.stateless_uniform(
            [], seed + tf.constant([20, 0], tf.int64), -limit, limit
        )
        image = _rotate(image, angle, "BILINEAR", 0.0)
        mask = _rotate(mask, angle, "NEAREST", float(ignore_id))
    if augmentation.color_jitter > 0:
        image = _jitter_colour(
            image, seed + tf.constant([30, 0], tf.int64), augmentation.color_jitter
        )
    return image, mask


def sample_weights_for(mask: tf.Tensor, class_weights: Sequence[float]) -> tf.Tensor:
    """Per-pixel weights, shaped like the uint8 mask, from one weight per class id.

    Any other value, the ignore id above all, gets weight 0: ignored pixels add
    nothing to the loss.
    """
    weights = list(class_weights)
    # One entry per uint8 value, so every mask value finds its weight.
    table = tf.constant(weights + [0.0] * (256 - len(weights)), dtype=tf.float32)
    return tf.gather(table, tf.cast(mask, tf.int32))


def make_dataset(
    dataset_dir: str,
    split: str,
    image_size: int,
    batch_size: int,
    *,
    training: bool,
    augment: bool = False,
    shuffle_buffer: int = 1000,
    cache: bool = True,
    seed: int | None = None,
    class_weights: list[float] | None = None,
    drop_remainder: bool = False,
    file_shard: tuple[int, int] | None = None,
    augmentation: Augmentation = FLIPS_ONLY,
) -> tf.data.Dataset:
    """Builds the batched input of one split of an ingested dataset.

    Args:
        dataset_dir: a Dataset artifact directory (dataset.json and shards), local or gs://.
        split: the split to read, e.g. 'train' or 'test'.
        image_size: side of the square images and masks the model takes.
        batch_size: examples per batch.
        training: reads shards in parallel and shuffles; otherwise records come in stored
            order (decoding is parallel either way).
        augment: applies ``augmentation`` (training only); off, examples come unchanged.
        shuffle_buffer: examples in the shuffle buffer.
        cache: keeps the resized examples in memory when they fit under CACHE_LIMIT_BYTES.
        seed: makes shard order, shuffle and augmentation reproducible; None = random.
        class_weights: one weight per class of the dataset; adds a per-pixel sample weight
            to each element (0 for ignored pixels).
        drop_remainder: drops a last partial batch (fixed shapes for XLA and replicas).
        file_shard: (index, count): read only every count-th shard file from index on,
            one worker's part of a multi-worker job (components.model.distributed). Its record
            count is then unknown, so the cardinality is not asserted.
        augmentation: what ``augment`` does; default the tutorial's flips. It runs after
            the cache, on the cached uint8 examples, so cached epochs stay fast.

    Returns:
        Elements (image float32 [B, S, S, 3] in 0..255, mask uint8 [B, S, S, 1] class ids,
        or the ignore id for ignored pixels), plus sample weights float32 [B, S, S, 1]
        when class_weights is given.

    Raises:
        ValueError: on a non-positive image_size, batch_size or shuffle_buffer, or a
            class_weights list that does not have one weight per class.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if shuffle_buffer < 1:
        raise ValueError(f"shuffle_buffer must be positive, got {shuffle_buffer}")
    info = dataset_info.load_dataset_info(dataset_dir)
    if class_weights is not None:
        class_weights = [float(weight) for weight in class_weights]
        classes = info.classes
        if len(class_weights) != len(classes):
            raise ValueError(
                f"class_weights has {len(class_weights)} values; one per class of the "
                f"dataset {classes} is needed"
            )
        if any(weight < 0 for weight in class_weights):
            raise ValueError(f"class_weights must not be negative, got {class_weights}")

    paths = dataset_info.shard_paths(dataset_dir, split, info)
    num_records = dataset_info.split_size(dataset_dir, split, info)
    if file_shard is not None:
        paths = paths[file_shard[0] :: file_shard[1]]

    if training:
        # Shards in a fresh order each epoch, read in parallel.
        files = tf.data.Dataset.from_tensor_slices(paths)
        if len(paths) > 1:
            files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        records = files.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(len(paths), MAX_PARALLEL_SHARD_READS),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
    else:
        # Stored order, so predictions line up with the records a report names.
        records = tf.data.TFRecordDataset(paths)
    # Known cardinality lets Keras count the steps of an epoch, and a dataset.json whose
    # count disagrees with its shards fails loudly instead of silently training on less.
    if file_shard is None:
        records = records.apply(tf.data.experimental.assert_cardinality(num_records))
    examples = records.map(
        lambda serialized: _decode_and_resize(serialized, image_size), num_parallel_calls=AUTOTUNE
    )
    cached_bytes = num_records * image_size * image_size * 4  # 3 image bytes + 1 mask byte
    if cache and cached_bytes <= CACHE_LIMIT_BYTES:
        examples = examples.cache()
    if training:
        examples = examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if training and augment:
        # One stateless seed per example, drawn afresh each epoch but reproducible from `seed`.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ignore_id = info.ignore_id
        examples = tf.data.Dataset.zip(examples, seeds).map(
            lambda pair, example_seed: augment_pair(
                pair[0], pair[1], example_seed, augmentation, ignore_id
            ),
            num_parallel_calls=AUTOTUNE,
        )
    batches = examples.batch(batch_size, drop_remainder=drop_remainder)

    def to_model_input(image: tf.Tensor, mask: tf.Tensor):
        image = tf.cast(image, tf.float32)
        if class_weights is None:
            return image, mask
        return image, mask, sample_weights_for(mask, class_weights)

    return batches.map(to_model_input, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
