"""Per-class pixel counts and loss weights from one streaming pass over the train masks.

Masks are counted at the training resolution, resized nearest-neighbour to
``image_size`` x ``image_size`` exactly as the input pipeline resizes them,
so the weights describe the pixels the loss actually sees.

Strategies (frequencies are over all counted pixels, f_c = n_c / sum n):

- ``none``: every weight 1.
- ``fixed``: given weights, one per class of the dataset; for Oxford's classes
  the default is the tutorial's (2.0, 2.0, 1.0) for (pet, background, border).
- ``inverse_frequency``: w_c = 1 / f_c, scaled so the average weight per
  pixel, sum_c f_c w_c, is 1 and the loss keeps its unweighted scale
  (each class then carries an equal share, w_c = 1 / (C f_c)).
- ``median_frequency``: w_c = median(f) / f_c (Eigen & Fergus, with
  frequencies over all pixels rather than over the images that hold the class).

A class with no pixels in the train split gets weight 0.0 under the two
frequency strategies: it never occurs as a target there, so its weight cannot
change the loss, and it is left out of the median and the normalisation. The
result lists such classes under ``absent_classes``. No weight is ever inf or NaN.

The classes are the dataset's (``dataset.json``), any number of them. Ignored
pixels (the dataset's ignore id) belong to no class: they are counted apart
(``ignored_pixels``) and the loss gives them weight 0 whatever the strategy.

The artifact is one JSON file: {strategy, classes, image_size, num_images,
pixel_counts, ignored_pixels, frequencies, weights, absent_classes}.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from components.data import dataset_info, schema
from components.data.splits import TRAIN
from components.platform import files
from components.platform.config import (
    CLASS_NAMES,
    TUTORIAL_CLASS_WEIGHTS,
    ModelConfig,
    TrainingConfig,
    WeightingStrategy,
)
from components.platform.contracts import ClassWeights, ClassWeightsError, StepInputs
from components.platform.retry import retry_transient

logger = logging.getLogger(__name__)

STRATEGIES: tuple[str, ...] = typing.get_args(WeightingStrategy)


def count_mask_pixels(dataset_dir: str, image_size: int, split: str = TRAIN) -> dict:
    """Counts pixels per class over a split's masks at image_size x image_size.

    Streams the shards (parallel decode, running sum), so memory stays flat
    however large the split is. Ignored pixels (the dataset's ignore id) are
    counted apart and belong to no class.

    Returns:
        {"pixel_counts": [int per class], "num_images": int, "ignored_pixels": int}.

    Raises:
        DatasetMismatchError: a mask holds a value that is neither a class id of
            the dataset nor its ignore id.
    """
    if image_size < 1:
        raise ClassWeightsError(f"image_size must be positive, got {image_size}")
    info = dataset_info.load_dataset_info(dataset_dir)
    paths = dataset_info.shard_paths(dataset_dir, split, info)
    num_classes = info.num_classes
    ignore = info.ignore_id
    # Masks are uint8: one bin per possible value, so a stray value is seen, not dropped.
    num_values = 256

    def mask_counts(serialized: tf.Tensor) -> tf.Tensor:
        parsed = schema.parse_example(serialized)
        mask = schema.decode_mask(parsed["mask"])
        mask = tf.image.resize(mask, [image_size, image_size], method="nearest")
        return tf.math.bincount(
            tf.cast(tf.reshape(mask, [-1]), tf.int32),
            minlength=num_values,
            maxlength=num_values,
            dtype=tf.int64,
        )

    try:
        counts = (
            tf.data.TFRecordDataset(paths)
            .map(mask_counts, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
            .reduce(
                (tf.zeros([num_values], tf.int64), tf.constant(0, tf.int64)),
                lambda state, per_image: (state[0] + per_image, state[1] + 1),
            )
        )
    except tf.errors.DataLossError as error:
        raise dataset_info.damaged_shard_error(dataset_dir, split, paths, error) from None
    value_counts, num_images = (tensor.numpy() for tensor in counts)
    stray = [
        value
        for value in np.flatnonzero(value_counts).tolist()
        if value >= num_classes and value != ignore
    ]
    if stray:
        raise dataset_info.DatasetMismatchError(
            f"{dataset_dir}: {split!r} masks hold values {stray}, which are neither class ids "
            f"0..{num_classes - 1} of {info.classes} nor the ignore id "
            f"{ignore}; re-run ingest"
        )
    return {
        "pixel_counts": [int(value) for value in value_counts[:num_classes]],
        "num_images": int(num_images),
        "ignored_pixels": int(value_counts[ignore]),
    }


def _names(class_names: Sequence[str] | None, count: int) -> list[str]:
    return list(class_names) if class_names is not None else [f"class {i}" for i in range(count)]


def weights_from_counts(
    pixel_counts: Sequence[int],
    strategy: str,
    fixed_weights: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
) -> tuple[list[float], list[float]]:
    """Frequencies and weights for the given per-class pixel counts (see module docstring).

    Args:
        pixel_counts: pixels per class, in class-id order (any number of classes).
        strategy: one of STRATEGIES.
        fixed_weights: one weight per class for 'fixed'; None = the tutorial's, which
            exist only for Oxford's classes.
        class_names: the dataset's classes, to check the counts against and name in
            errors; None = unnamed.

    Raises:
        ClassWeightsError: unknown strategy, counts or fixed weights that do not match
            the classes, negative or non-finite fixed weights, or no pixels at all.
    """
    if strategy not in STRATEGIES:
        raise ClassWeightsError(f"unknown class weighting strategy {strategy!r}; use {STRATEGIES}")
    counts = np.asarray(pixel_counts, dtype=np.float64)
    names = _names(class_names, counts.size)
    if counts.ndim != 1 or counts.size < 2 or counts.size != len(names):
        raise ClassWeightsError(
            f"need {len(names)} pixel counts ({', '.join(names)}), got {list(pixel_counts)}"
        )
    num_classes = counts.size
    total = counts.sum()
    if total <= 0:
        raise ClassWeightsError("no mask pixels were counted; the train split has no pixels")
    frequencies = counts / total
    present = counts > 0

    if strategy == "none":
        weights = np.ones(num_classes)
    elif strategy == "fixed":
        weights = np.asarray(_fixed_weights(fixed_weights, names), dtype=np.float64)
        if not np.all(np.isfinite(weights)) or np.any(weights < 0) or not np.any(weights > 0):
            raise ClassWeightsError(
                f"fixed class weights must be finite, >= 0 and not all 0, got {weights.tolist()}"
            )
    else:
        weights = np.zeros(num_classes)
        inverse = 1.0 / frequencies[present]
        if strategy == "inverse_frequency":
            # sum_c f_c w_c = 1: the average per-pixel weight stays 1.
            weights[present] = inverse / np.sum(frequencies[present] * inverse)
        else:
            weights[present] = np.median(frequencies[present]) * inverse
    return frequencies.tolist(), [float(weight) for weight in weights]


def _fixed_weights(fixed_weights: Sequence[float] | None, names: list[str]) -> list[float]:
    """The configured fixed weights, checked against the dataset's classes."""
    if fixed_weights is None:
        # Unnamed counts of Oxford's size are taken as Oxford's classes.
        if names in (list(CLASS_NAMES), _names(None, len(CLASS_NAMES))):
            return list(TUTORIAL_CLASS_WEIGHTS)
        raise ClassWeightsError(
            f"class weighting 'fixed' needs training.fixed_class_weights, one per class of "
            f"the dataset ({', '.join(names)}); the tutorial's default fits Oxford's "
            f"({', '.join(CLASS_NAMES)}) only"
        )
    if len(fixed_weights) != len(names):
        raise ClassWeightsError(
            f"training.fixed_class_weights {list(fixed_weights)} has {len(fixed_weights)} "
            f"values but the dataset has {len(names)} classes ({', '.join(names)}); "
            "give one value per class"
        )
    return list(fixed_weights)


def compute_class_weights(
    dataset_dir: str, image_size: int, strategy: str, fixed_weights: Sequence[float] | None = None
) -> ClassWeights:
    """One pass over the train split's masks → counts, frequencies and weights.

    Args:
        dataset_dir: a Dataset directory written by ingest; its classes are the weights'.
        image_size: the training resolution; masks are resized nearest-neighbour.
        strategy: 'none', 'fixed', 'inverse_frequency' or 'median_frequency'.
        fixed_weights: per-class weights for 'fixed'; None = the tutorial's (Oxford only).

    """
    if strategy not in STRATEGIES:
        raise ClassWeightsError(f"unknown class weighting strategy {strategy!r}; use {STRATEGIES}")
    classes = dataset_info.load_dataset_info(dataset_dir).classes
    if strategy == "fixed":
        # Checked before the pass over the masks, so a misconfiguration fails at once.
        _fixed_weights(fixed_weights, classes)
    counted = count_mask_pixels(dataset_dir, image_size)
    if counted["num_images"] == 0:
        raise ClassWeightsError(f"{dataset_dir}: the {TRAIN!r} split has no records")
    frequencies, weights = weights_from_counts(
        counted["pixel_counts"], strategy, fixed_weights, classes
    )
    absent = [
        name for name, count in zip(classes, counted["pixel_counts"], strict=True) if count == 0
    ]
    if absent:
        logger.warning(
            "Classes %s have no pixels in %s's train split; %s gives them weight %s",
            absent,
            dataset_dir,
            strategy,
            [weights[classes.index(name)] for name in absent],
        )
    return ClassWeights(
        strategy=strategy,
        classes=classes,
        image_size=int(image_size),
        num_images=counted["num_images"],
        pixel_counts=counted["pixel_counts"],
        ignored_pixels=counted["ignored_pixels"],
        frequencies=frequencies,
        weights=weights,
        absent_classes=absent,
    )


class ClassWeightsInputs(StepInputs):
    """model.image_size is the counting resolution; training picks the strategy."""

    model: ModelConfig
    training: TrainingConfig
    dataset_dir: str
    output_path: str  # the class-weights file train reads


def run(inputs: ClassWeightsInputs) -> ClassWeights:
    """The class_weights step: counts, weights and the file train reads."""
    weights = retry_transient(
        lambda: compute_class_weights(
            inputs.dataset_dir,
            image_size=inputs.model.image_size,
            strategy=inputs.training.class_weighting,
            fixed_weights=inputs.training.fixed_class_weights,
        ),
        what="class weights",
    )
    weights.write(inputs.output_path)
    return weights


def load_class_weights(path: str, classes: Sequence[str] | None = None) -> list[float]:
    """The weights in class-id order from a class-weights file (see ``read_class_weights``)."""
    return read_class_weights(path, classes).weights


def read_class_weights(path: str, classes: Sequence[str] | None = None) -> ClassWeights:
    """Reads and checks a class-weights file against the dataset's classes.

    Raises:
        FileNotFoundError: no file at ``path``.
        ClassWeightsError: not JSON, classes differ from ``classes``, or weights are
            missing, of the wrong length, negative, non-finite or all zero.
    """
    if not files.exists(path):
        raise FileNotFoundError(f"class weights file {path} not found")
    recorded = ClassWeights.read(path)
    if classes is not None and recorded.classes != list(classes):
        raise ClassWeightsError(
            f"{path}: weights are for classes {recorded.classes}, the dataset has "
            f"{list(classes)}; recompute them"
        )
    return recorded
