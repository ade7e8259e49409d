"""Evaluation on the test split and the blessing decision that gates push.

Metrics come from one confusion matrix accumulated batch by batch (rows =
true class, columns = predicted class), so memory stays flat however large
the split is. From it:

* pixel accuracy = trace / total;
* per class: IoU = TP / (TP + FP + FN), precision = TP / (TP + FP),
  recall = TP / (TP + FN);
* mean IoU = the mean of the per-class IoUs that are defined.

A ratio whose denominator is zero is undefined and reported as ``None``
(``null`` in JSON), never NaN: a class absent from both truth and prediction
has no IoU and is left out of the mean IoU, rather than counted as 0 (which
would punish a model for a class the test split lacks) or 1 (which would
flatter it). A class present in the truth but never predicted, or predicted
but absent from the truth, has IoU 0 and does count.

The classes are the dataset's (``dataset.json``), any number of them, and the
model must predict exactly those. Pixels whose true label is the dataset's
ignore id are not scored: they are in no row or column of the confusion
matrix, so no metric counts them.

Masks are compared at the evaluation resolution: true masks are resized to
it nearest-neighbour (any other method invents labels), images bilinear to
the model's input size, and a model whose input size differs (a baseline
trained at another size) has its predicted mask resized nearest-neighbour
to the evaluation resolution, so candidate and baseline are scored on the
same true pixels.
"""

from __future__ import annotations

import functools
import heapq
import math
import posixpath
import re
import tempfile
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from components.data import dataset_info, schema
from components.evaluation import bootstrap, boundary, report, slices
from components.evaluation.metrics import per_image_confusion, segmentation_metrics
from components.model import input_pipeline as data
from components.model.model import ModelMismatchError, load_model_dir
from components.platform import contracts
from components.platform.config import EvaluationConfig, ModelConfig, PushConfig
from components.platform.contracts import ModelMetadata, StepInputs
from components.platform.retry import retry_transient

# Float noise allowance when comparing mean IoUs against a threshold or baseline:
# a candidate identical to its baseline must not fail by a rounding error.
COMPARISON_TOLERANCE = 1e-9
NO_BASELINE = "no baseline to compare with"


def _expected_from_config(
    model_config: ModelConfig | None,
    image_size_expected: int | None,
    normalization_expected: str | None,
) -> tuple[int | None, str | None]:
    if model_config is not None:
        if image_size_expected is None:
            image_size_expected = model_config.image_size
        if normalization_expected is None:
            normalization_expected = model_config.normalization
    return image_size_expected, normalization_expected


def _batches(
    dataset_dir: str,
    split: str,
    info: dataset_info.DatasetInfo,
    *,
    model_sizes: Sequence[int],
    evaluation_size: int,
    batch_size: int,
) -> tf.data.Dataset:
    """The split in order, with the per-image facts slices need (labels, source size).

    Images are uint8, bilinear at each model's size; masks nearest at evaluation size.
    """

    def prepare(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        example = schema.decode_example(serialized)
        shape = tf.shape(example["image"])
        # The training input's resizes, so each model sees pixels exactly as it was trained on.
        prepared = {
            _image_key(size): data.resize_image(example["image"], size) for size in model_sizes
        }
        prepared.update(
            {
                "mask": data.resize_mask(example["mask"], evaluation_size)[..., 0],
                "file_name": example["file_name"],
                "label": example["label"],
                "species": example["species"],
                "slice": example["slice"],
                "longer_side": tf.maximum(shape[0], shape[1]),
            }
        )
        return prepared

    paths = dataset_info.shard_paths(dataset_dir, split, info)
    return (
        tf.data.TFRecordDataset(paths)
        .map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def _image_key(size: int) -> str:
    return f"image_{size}"


def _checked(
    batches: tf.data.Dataset, dataset_dir: str, split: str, info: dataset_info.DatasetInfo
) -> Iterator[dict[str, tf.Tensor]]:
    """Iterates the batches; a damaged record fails with the shard's name, not an offset."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except tf.errors.DataLossError as error:
            paths = dataset_info.shard_paths(dataset_dir, split, info)
            raise dataset_info.damaged_shard_error(dataset_dir, split, paths, error) from None
        yield batch


def _predict_masks(forward: Any, images: tf.Tensor, evaluation_size: int) -> np.ndarray:
    logits = forward(tf.cast(images, tf.float32))
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)[..., None]
    if predicted.shape[1] != evaluation_size or predicted.shape[2] != evaluation_size:
        predicted = tf.image.resize(predicted, [evaluation_size, evaluation_size], method="nearest")
    return predicted[..., 0].numpy().astype(np.uint8)


class WorstImages:
    """The k images with the lowest score (per-image mean IoU, or a change) seen so far.

    A bounded heap: memory holds k images however large the split is. Ties keep the
    image seen first, so the list is the same on every run. The score is stored in the
    item under ``score_name``.
    """

    def __init__(self, k: int, score_name: str = "mean_iou") -> None:
        self.k = k
        self.score_name = score_name
        self._heap: list[tuple[tuple[float, int], dict[str, Any]]] = []
        self._seen = 0

    def offer(self, score: float | None, make_item: Callable[[], dict[str, Any]]) -> None:
        """Keeps the image if it is among the k worst; ``make_item`` runs only then."""
        if self.k <= 0 or score is None or not math.isfinite(score):
            return
        key = (-score, -self._seen)
        self._seen += 1
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, (key, {**make_item(), self.score_name: score}))
        elif key > self._heap[0][0]:
            heapq.heapreplace(self._heap, (key, {**make_item(), self.score_name: score}))

    def worst(self) -> list[dict[str, Any]]:
        """Worst first."""
        return [item for _, item in sorted(self._heap, reverse=True)]


def _image_item(
    images: tf.Tensor,
    true_masks: np.ndarray,
    predicted: Sequence[np.ndarray],
    ious: Sequence[np.ndarray],
    index: int,
    file_name: str,
    evaluation_size: int,
) -> dict[str, Any]:
    """One image of a batch for the report, at the evaluation resolution, copied out of it.

    With a production model its prediction and mean IoU ride along (baseline_mask,
    baseline_mean_iou), so the report draws both without predicting the image again.
    """
    image = images[index]
    if image.shape[0] != evaluation_size or image.shape[1] != evaluation_size:
        image = tf.image.resize(image, [evaluation_size, evaluation_size])
        image = tf.saturate_cast(tf.round(image), tf.uint8)
    item = {
        "file_name": file_name,
        "image": image.numpy(),
        "true_mask": true_masks[index].copy(),
        "predicted_mask": predicted[0][index].copy(),
    }
    if len(predicted) > 1:
        iou = float(ious[1][index])
        item["baseline_mask"] = predicted[1][index].copy()
        item["baseline_mean_iou"] = iou if math.isfinite(iou) else None
    return item


class ScoredModel:
    """A loaded, checked model ready to be scored: its directory, metadata and forward pass."""

    def __init__(self, model_dir: str, model: Any, metadata: ModelMetadata, size: int) -> None:
        self.model_dir = model_dir
        self.metadata = metadata
        self.size = size
        # Traced once per batch shape (a smaller last batch adds one trace): about twice as
        # fast on CPU as calling the model eagerly for every batch.
        self.forward = tf.function(lambda images: model(images, training=False))


def load_scored_model(
    model_dir: str,
    classes: Sequence[str],
    *,
    image_size_expected: int | None = None,
    normalization_expected: str | None = None,
) -> ScoredModel:
    """Loads a model checked against the dataset's classes and the settings (``load_model_dir``).

    Raises:
        ModelMismatchError: classes, image size, normalisation or output width differ.
    """
    model, metadata = load_model_dir(
        model_dir, classes, image_size=image_size_expected, normalization=normalization_expected
    )
    return ScoredModel(model_dir, model, metadata, metadata.image_size)


def score_models(
    models: Sequence[ScoredModel],
    dataset_dir: str,
    *,
    batch_size: int = 32,
    split: str = "test",
    evaluation_size: int | None = None,
    num_samples: int = 0,
    worst_k: int = 0,
    changed_k: int = 0,
    predict_file_names: Collection[str] = (),
    boundary_band: float = boundary.DEFAULT_BAND_FRACTION,
) -> dict[str, Any]:
    """Scores one or two models (challenger, then production) in one pass over a split.

    Each image is read and predicted once per model; per image the pass keeps a
    confusion matrix and boundary band counts per model, from which every figure is
    derived (dataset metrics, intervals, slices, the images that changed most).

    Returns:
        results: per model ``segmentation_metrics`` plus boundary IoU, num_images,
            ignored_pixels, image_size, evaluation_size, normalization, model_dir,
            dataset_dir, split; per_image: {file_names, label, species, longer_side,
            counts (per model [N, C, C]), boundary (per model [N, C, 2])}; samples,
            worst, improved and worsened (image items; the last two need two models,
            most changed first), predictions {file_name: (mask, mean IoU)} of model 0.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    info = dataset_info.load_dataset_info(dataset_dir)
    classes = info.classes
    ignore_id = info.ignore_id
    num_classes = len(classes)
    evaluation_size = evaluation_size or models[0].size
    batches = _batches(
        dataset_dir,
        split,
        info,
        model_sizes=sorted({model.size for model in models}),
        evaluation_size=evaluation_size,
        batch_size=batch_size,
    )
    counts: list[list[np.ndarray]] = [[] for _ in models]
    bands: list[list[np.ndarray]] = [[] for _ in models]
    facts: dict[str, list[Any]] = {
        "file_names": [],
        "label": [],
        "species": [],
        "longer_side": [],
        "folder": [],
    }
    samples: list[dict[str, Any]] = []
    worst = WorstImages(worst_k)
    # A change is challenger − production per image: most negative = worsened most.
    worsened = WorstImages(changed_k if len(models) > 1 else 0, "change")
    improved = WorstImages(changed_k if len(models) > 1 else 0, "negative_change")
    wanted = set(predict_file_names)
    predictions: dict[str, tuple[np.ndarray, float | None]] = {}
    ignored_pixels = 0
    for batch in _checked(batches, dataset_dir, split, info):
        true_masks = batch["mask"].numpy()
        predicted = [
            _predict_masks(model.forward, batch[_image_key(model.size)], evaluation_size)
            for model in models
        ]
        ious = []
        for index, masks in enumerate(predicted):
            per_image = per_image_confusion(true_masks, masks, num_classes, ignore_id=ignore_id)
            counts[index].append(per_image)
            ious.append(bootstrap.mean_iou_of_counts(per_image))
            bands[index].append(
                boundary.boundary_counts(
                    true_masks, masks, num_classes, ignore_id=ignore_id, fraction=boundary_band
                )
            )
        ignored_pixels += int(np.count_nonzero(true_masks == ignore_id))
        file_names = [name.decode("utf-8") for name in batch["file_name"].numpy()]
        facts["file_names"] += file_names
        facts["label"].append(batch["label"].numpy())
        facts["species"].append(batch["species"].numpy())
        facts["longer_side"].append(batch["longer_side"].numpy())
        facts["folder"] += [name.decode("utf-8") for name in batch["slice"].numpy()]
        for index, file_name in enumerate(file_names):
            keep_sample = len(samples) < num_samples
            if not (keep_sample or worst_k > 0 or changed_k > 0 or file_name in wanted):
                continue
            iou = float(ious[0][index])
            mean_iou = iou if math.isfinite(iou) else None
            item = functools.partial(
                _image_item,
                batch[_image_key(models[0].size)],
                true_masks,
                predicted,
                ious,
                index,
                file_name,
                evaluation_size,
            )
            if keep_sample:
                samples.append({**item(), "mean_iou": mean_iou})
            worst.offer(mean_iou, item)
            if len(models) > 1:
                # Only images that changed: equal models have nothing to show.
                change = float(ious[0][index] - ious[1][index])
                with_ious = functools.partial(_with_iou, item, mean_iou)
                if change < 0:
                    worsened.offer(change, with_ious)
                elif change > 0:
                    improved.offer(-change, with_ious)
            if file_name in wanted:
                predictions[file_name] = (predicted[0][index].copy(), mean_iou)
    num_images = len(facts["file_names"])
    if num_images == 0:
        raise ValueError(f"{dataset_dir}: split {split!r} has no records to evaluate")

    per_image: dict[str, Any] = {
        "file_names": facts["file_names"],
        **{key: np.concatenate(facts[key]) for key in ("label", "species", "longer_side")},
        # Own data's slice per image; None when no record has one.
        "folder": facts["folder"] if any(facts["folder"]) else None,
        "counts": [np.concatenate(parts) for parts in counts],
        "boundary": [np.concatenate(parts) for parts in bands],
    }
    results = []
    for index, model in enumerate(models):
        result = segmentation_metrics(per_image["counts"][index].sum(axis=0), classes)
        result.update(boundary.boundary_metrics(per_image["boundary"][index], classes))
        result.update(
            {
                "model_dir": model.model_dir,
                "dataset_dir": dataset_dir,
                "split": split,
                "num_images": num_images,
                "ignored_pixels": ignored_pixels,
                "image_size": model.size,
                "evaluation_size": evaluation_size,
                "normalization": model.metadata.normalization,
                "boundary_band": boundary_band,
            }
        )
        results.append(result)
    improved_items = improved.worst()
    for item in improved_items:
        item["change"] = -item.pop("negative_change")
    return {
        "results": results,
        "per_image": per_image,
        "samples": samples,
        "worst": worst.worst(),
        "worsened": worsened.worst(),
        "improved": improved_items,
        "predictions": predictions,
    }


def _with_iou(make_item: Callable[[], dict[str, Any]], mean_iou: float | None) -> dict[str, Any]:
    return {**make_item(), "mean_iou": mean_iou}


def evaluate_model(
    model_dir: str,
    dataset_dir: str,
    *,
    model_config: ModelConfig | None = None,
    image_size_expected: int | None = None,
    normalization_expected: str | None = None,
    batch_size: int = 32,
    split: str = "test",
    evaluation_size: int | None = None,
    num_samples: int = 0,
    worst_k: int = 0,
    predict_file_names: Collection[str] = (),
) -> dict[str, Any]:
    """Scores a saved model on one split of a dataset artifact, streaming it in batches.

    Args:
        model_dir: a model artifact directory (model.keras + metadata.json).
        dataset_dir: a dataset artifact directory (dataset.json + shards).
        model_config: a ModelConfig whose image_size and normalization the model
            must match; explicit ``*_expected`` arguments take precedence.
        image_size_expected: the image size the model must have, or None.
        normalization_expected: the normalisation the model must have, or None.
        batch_size: images per forward pass.
        split: the split to score.
        evaluation_size: the mask resolution scored; None = the model's image size.
        num_samples: how many of the first images to return for the visual report.
        worst_k: how many of the images with the lowest per-image mean IoU to return.
        predict_file_names: images (by file name) whose predicted masks to return.

    Returns:
        ``segmentation_metrics`` over the dataset's classes (ignored pixels left out)
        plus boundary IoU, model_dir, dataset_dir, split, num_images, ignored_pixels,
        image_size, evaluation_size, normalization, and, with NumPy arrays, which the
        caller drops before writing JSON: ``samples`` and ``worst`` (worst first), lists
        of {file_name, image (uint8 [S, S, 3]), true_mask (ignored pixels keep the ignore
        id), predicted_mask, mean_iou}, ``predictions``: {file_name: (predicted_mask,
        mean_iou)} for predict_file_names, and ``per_image`` (see ``score_models``).

    Raises:
        ModelMismatchError: classes, image size or normalisation do not match.
        DatasetMismatchError: the dataset is not readable by this code or lacks the split.
        ValueError: the split holds no records, or batch_size is not positive.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    info = dataset_info.load_dataset_info(dataset_dir)
    classes = info.classes
    size_expected, normalization = _expected_from_config(
        model_config, image_size_expected, normalization_expected
    )
    model = load_scored_model(
        model_dir, classes, image_size_expected=size_expected, normalization_expected=normalization
    )
    scored = score_models(
        [model],
        dataset_dir,
        batch_size=batch_size,
        split=split,
        evaluation_size=evaluation_size,
        num_samples=num_samples,
        worst_k=worst_k,
        predict_file_names=predict_file_names,
    )
    return {
        **scored["results"][0],
        "samples": scored["samples"],
        "worst": scored["worst"],
        "predictions": scored["predictions"],
        "per_image": scored["per_image"],
    }


def decide_blessing(
    candidate_metrics: dict[str, Any],
    baseline_metrics: dict[str, Any] | None,
    evaluation_config: EvaluationConfig,
    intervals: dict[str, Any] | None = None,
    slice_rows: Sequence[dict[str, Any]] = (),
) -> tuple[bool, list[str]]:
    """Blessed when mean IoU reaches the threshold and does not regress past the margin.

    With ``require_improvement`` (scheduled retraining) a model must also beat the
    baseline, so a retrain that is only as good as production is not pushed. With
    ``blessing_rule: confident`` both comparisons use the lower bound of the paired
    bootstrap interval of challenger − production instead of the point difference, so
    a difference that chance alone could produce neither blocks nor replaces a model.
    Slices and boundary IoU add their own checks when configured.

    Every check adds a reason, passed or failed, so the decision can be read
    back from the pipeline's outputs without the logs.

    Args:
        candidate_metrics: the candidate's metrics (needs ``mean_iou``).
        baseline_metrics: the baseline's metrics on the same split, or None
            when there is no baseline (first model, or 'none').
        evaluation_config: an EvaluationConfig (min_mean_iou, max_regression, rule...).
        intervals: ``bootstrap.paired_bootstrap`` output, or None.
        slice_rows: ``slices.slice_table`` rows (checked against production).

    Returns:
        (blessed, reasons).
    """
    threshold = float(evaluation_config.min_mean_iou)
    margin = float(evaluation_config.max_regression)
    rule = evaluation_config.blessing_rule
    candidate = candidate_metrics.get("mean_iou")
    reasons: list[str] = []
    blessed = True
    if candidate is None or not math.isfinite(candidate):
        return False, [f"candidate mean IoU is undefined ({candidate!r}); nothing was scored"]

    if candidate + COMPARISON_TOLERANCE >= threshold:
        reasons.append(f"mean IoU {candidate:.4f} >= min_mean_iou {threshold:.4f}")
    else:
        blessed = False
        reasons.append(f"mean IoU {candidate:.4f} < min_mean_iou {threshold:.4f}")
    minimum_boundary = evaluation_config.min_boundary_iou
    if minimum_boundary is not None:
        boundary_iou = candidate_metrics.get("mean_boundary_iou")
        if boundary_iou is not None and boundary_iou + COMPARISON_TOLERANCE >= minimum_boundary:
            reasons.append(
                f"boundary IoU {boundary_iou:.4f} >= min_boundary_iou {minimum_boundary:.4f}"
            )
        else:
            blessed = False
            shown = "undefined" if boundary_iou is None else f"{boundary_iou:.4f}"
            reasons.append(f"boundary IoU {shown} < min_boundary_iou {minimum_boundary:.4f}")

    if baseline_metrics is None:
        reasons.append(NO_BASELINE)
        return blessed, reasons
    baseline = baseline_metrics.get("mean_iou")
    if baseline is None or not math.isfinite(baseline):
        reasons.append(f"baseline mean IoU is undefined ({baseline!r}); not compared")
        return blessed, reasons
    difference = (intervals or {}).get("difference") or {}
    interval_text = ""
    if difference.get("low") is not None:
        interval_text = (
            f" (difference {bootstrap.describe_interval(difference, intervals['confidence'])}, "
            f"paired bootstrap over {intervals['samples']} resamples)"
        )
    if rule == "confident" and difference.get("low") is not None:
        low = float(difference["low"])
        comparison = (
            f"mean IoU {candidate:.4f} vs baseline {baseline:.4f}: difference "
            f"{bootstrap.describe_interval(difference, intervals['confidence'])}, "
            f"{intervals['samples']} paired resamples; lower bound {low:+.4f}"
        )
        if low + COMPARISON_TOLERANCE >= -margin:
            reasons.append(f"{comparison} >= -max_regression {-margin:+.4f}")
        else:
            blessed = False
            reasons.append(f"{comparison} < -max_regression {-margin:+.4f}")
        if evaluation_config.require_improvement:
            if low > COMPARISON_TOLERANCE:
                reasons.append(f"confidently improves on the baseline (lower bound {low:+.4f} > 0)")
            else:
                blessed = False
                reasons.append(
                    f"no confident improvement over the baseline (lower bound {low:+.4f} <= 0) "
                    "and require_improvement is on"
                )
    else:
        if rule == "confident":
            reasons.append("blessing_rule is 'confident' but no interval was computed: point rule")
        regression = baseline - candidate
        comparison = (
            f"mean IoU {candidate:.4f} vs baseline {baseline:.4f}: "
            f"regression {max(regression, 0.0):.4f}"
        )
        if regression <= margin + COMPARISON_TOLERANCE:
            reasons.append(f"{comparison} <= max_regression {margin:.4f}{interval_text}")
        else:
            blessed = False
            reasons.append(f"{comparison} > max_regression {margin:.4f}{interval_text}")
        if evaluation_config.require_improvement:
            if candidate > baseline + COMPARISON_TOLERANCE:
                reasons.append(f"improves on the baseline by {candidate - baseline:.4f}")
            else:
                blessed = False
                reasons.append(
                    f"no improvement over the baseline ({candidate:.4f} vs {baseline:.4f}) "
                    "and require_improvement is on"
                )
    slice_margin = evaluation_config.max_slice_regression
    if slice_margin is not None:
        checked = [row for row in slice_rows if row["checked"]]
        failed = [row for row in checked if row["failed"]]
        for row in failed:
            blessed = False
            reasons.append(
                f"slice {row['name']} ({row['num_images']} images): mean IoU "
                f"{row['challenger']['estimate']:.4f} vs baseline "
                f"{row['production']['estimate']:.4f}, difference "
                f"{bootstrap.describe_interval(row['difference'])} < -max_slice_regression "
                f"{-slice_margin:+.4f}"
            )
        if not failed:
            reasons.append(
                f"no slice of >= {evaluation_config.min_slice_images} images regresses by more "
                f"than max_slice_regression {slice_margin:.4f} ({len(checked)} slices checked)"
            )
    return blessed, reasons


def resolve_baseline(
    baseline: str, push_destination: str, cache_dir: str
) -> tuple[str | None, str]:
    """Turns EvaluationConfig.baseline into a model directory, or None, and says why.

    Args:
        baseline: 'latest' (the push destination's latest verified model),
            'none', or a model directory (local or gs://).
        push_destination: PushConfig.destination; '' means nothing was ever
            pushed, so 'latest' has no baseline.
        cache_dir: a local folder where a remote latest model may be copied.

    Returns:
        (model directory or None, a note for the reasons).

    Raises:
        ValueError: if ``baseline`` is empty.
        RuntimeError: if 'latest' is asked for but components.publish.versions (push's
            store) cannot be imported.
    """
    setting = baseline.strip()
    if not setting:
        raise ValueError("evaluation.baseline is empty; use 'latest', 'none' or a model path")
    if setting == "none":
        return None, "evaluation.baseline is 'none'"
    if setting != "latest":
        from components.publish.versions import check_not_incomplete

        check_not_incomplete(setting)  # a killed push's version is never a baseline
        return setting, f"baseline {setting} (evaluation.baseline)"
    if not push_destination:
        return None, "evaluation.baseline is 'latest' but push.destination is empty"
    try:
        # Imported here: push is optional for evaluation, and heavy clients load lazily.
        # A damaged or incomplete LATEST stops here with one line offering the ways out.
        from components.publish.versions import resolve_production_model as resolve_latest_model
    except ImportError as error:
        raise RuntimeError(
            "evaluation.baseline is 'latest' but components.publish.versions."
            f"resolve_production_model is not available ({error}); set evaluation.baseline "
            "to 'none' or a model path"
        ) from error
    latest = resolve_latest_model(push_destination, cache_dir)
    if latest is None:
        return None, f"no model pushed to {push_destination} yet (first model)"
    return latest, f"baseline: the latest model pushed to {push_destination}"


def _baseline_predictions(
    items: Sequence[dict[str, Any]],
) -> dict[str, tuple[np.ndarray, float | None]]:
    return {
        item["file_name"]: (item["baseline_mask"], item.get("baseline_mean_iou"))
        for item in items
        if "baseline_mask" in item
    }


def image_slices_of(
    per_image: dict[str, Any],
    classes: Sequence[str],
    evaluation_config: EvaluationConfig,
    dataset_source: str = "",
) -> dict[str, np.ndarray]:
    """The slices of a scored split, from the facts ``score_models`` gathered per image."""
    return slices.image_slices(
        classes=classes,
        true_pixels=per_image["counts"][0].sum(axis=2),
        label=per_image["label"],
        species=per_image["species"],
        longer_side=per_image["longer_side"],
        folder=per_image.get("folder"),
        object_small=evaluation_config.object_small,
        object_large=evaluation_config.object_large,
        image_side_edges=evaluation_config.image_side_edges,
        dataset_source=dataset_source,
    )


def run_evaluation(
    model_dir: str,
    dataset_dir: str,
    model_config: ModelConfig,
    evaluation_config: EvaluationConfig,
    baseline_model_dir: str | None,
    report_path: str,
    *,
    split: str = "test",
    baseline_note: str | None = None,
    data_checks: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Scores the candidate (and baseline), decides the blessing and writes the HTML report.

    Both models are scored in one pass over the split at the candidate's evaluation
    resolution; per-image confusion counts give the metrics, the paired bootstrap
    intervals, the slices and the images that changed most. A baseline whose classes
    differ from the dataset's cannot be compared: it is reported unusable with the
    reason and the decision rests on the threshold alone (the class list changed, so
    the old model is no yardstick). Any other baseline failure (missing files) is raised.

    Args:
        model_dir: the candidate model directory.
        dataset_dir: the dataset artifact directory.
        model_config: the ModelConfig the pipeline was configured with.
        evaluation_config: the EvaluationConfig (rules, bootstrap, slices, report images).
        baseline_model_dir: a baseline model directory, or None.
        report_path: where to write the self-contained HTML report.
        split: the split to score.
        baseline_note: where the baseline came from (or why there is none),
            added to the reasons.
        data_checks: the data-check verdicts, rendered as the report's last section.

    Returns:
        A JSON-ready dict (``contracts.EvaluationOutcome``): blessed, reasons, reason
        (the reasons joined), candidate (metrics), baseline (metrics or None), baseline_dir,
        baseline_status ('none', 'evaluated' or 'unusable: ...'), intervals
        (``bootstrap.paired_bootstrap`` without subsets), slices (``slices.slice_table``
        rows), changed (improved and worsened images by name and IoUs), report_path.
    """
    info = dataset_info.load_dataset_info(dataset_dir)
    classes = info.classes
    size_expected, normalization = _expected_from_config(model_config, None, None)
    models = [
        load_scored_model(
            model_dir,
            classes,
            image_size_expected=size_expected,
            normalization_expected=normalization,
        )
    ]
    baseline_status = "none"
    if baseline_model_dir:
        try:
            models.append(load_scored_model(baseline_model_dir, classes))
            baseline_status = "evaluated"
        except ModelMismatchError as error:
            baseline_status = f"unusable: {error}"
    scored = score_models(
        models,
        dataset_dir,
        batch_size=evaluation_config.batch_size,
        split=split,
        num_samples=evaluation_config.report_images,
        worst_k=evaluation_config.report_worst_images,
        changed_k=evaluation_config.report_changed_images,
        boundary_band=evaluation_config.boundary_band,
    )
    per_image = scored["per_image"]
    candidate = scored["results"][0]
    baseline = scored["results"][1] if len(models) > 1 else None
    image_slices = image_slices_of(per_image, classes, evaluation_config, str(info.source or ""))
    intervals = bootstrap.paired_bootstrap(
        per_image["counts"][0],
        per_image["counts"][1] if baseline is not None else None,
        samples=evaluation_config.bootstrap_samples,
        seed=evaluation_config.bootstrap_seed,
        subsets=image_slices,
    )
    slice_rows = slices.slice_table(
        intervals.pop("subsets", {}),
        min_images=evaluation_config.min_slice_images,
        max_regression=evaluation_config.max_slice_regression,
    )

    blessed, reasons = decide_blessing(
        candidate, baseline, evaluation_config, intervals=intervals, slice_rows=slice_rows
    )
    if baseline_status.startswith("unusable"):
        reasons.append(f"baseline {baseline_model_dir} {baseline_status}")
    elif baseline_note and reasons[-1] == NO_BASELINE:
        reasons[-1] = f"{NO_BASELINE} ({baseline_note})"
    elif baseline_note:
        reasons.append(baseline_note)
    samples, worst = scored["samples"], scored["worst"]
    changed = {"improved": scored["improved"], "worsened": scored["worsened"]}
    outcome = contracts.EvaluationOutcome(
        **{
            "blessed": blessed,
            "reasons": reasons,
            "reason": "; ".join(reasons),
            "candidate": candidate,
            "baseline": baseline,
            "baseline_dir": baseline_model_dir,
            "baseline_status": baseline_status,
            "intervals": intervals,
            "slices": slice_rows,
            "changed": {
                direction: [
                    {
                        "file_name": item["file_name"],
                        "mean_iou": item.get("mean_iou"),
                        "baseline_mean_iou": item.get("baseline_mean_iou"),
                        "change": item["change"],
                    }
                    for item in items
                ]
                for direction, items in changed.items()
            },
            "report_path": report_path,
        }
    ).to_dict()
    report.write_report(
        report_path,
        candidate=candidate,
        samples=samples,
        baseline=baseline,
        blessed=blessed,
        reasons=reasons,
        worst=worst,
        baseline_predictions=(
            _baseline_predictions([*samples, *worst]) if baseline is not None else None
        ),
        intervals=intervals,
        slices=slice_rows,
        changed=changed,
        max_regression=evaluation_config.max_regression,
        max_slice_regression=evaluation_config.max_slice_regression,
        min_slice_images=evaluation_config.min_slice_images,
        data_checks=data_checks,
    )
    return outcome


class EvaluateInputs(StepInputs):
    """The model settings a candidate must match, the blessing rules, and production's place.

    ``model_dir`` is the candidate Model; ``dataset_dir`` the Dataset whose test split is
    scored; the HTML report goes to ``report_path`` and the outcome
    (``contracts.EvaluationOutcome``) to ``outcome_path``; ``statistics_dir`` is
    data_statistics' output, whose verdicts end the report (None: none).
    """

    model: ModelConfig
    evaluation: EvaluationConfig
    push: PushConfig
    model_dir: str
    dataset_dir: str
    report_path: str
    outcome_path: str
    statistics_dir: str | None = None


def run(inputs: EvaluateInputs) -> contracts.EvaluationOutcome:
    """The evaluate step: the baseline resolved, ``run_evaluation``, the outcome written."""
    verdicts = None
    if inputs.statistics_dir is not None:
        checks = posixpath.join(inputs.statistics_dir, contracts.CheckVerdicts.FILE_NAME)
        verdicts = contracts.CheckVerdicts.read(checks).to_dict()
    evaluation = inputs.evaluation
    with tempfile.TemporaryDirectory() as cache_dir:
        baseline_dir, baseline_note = retry_transient(
            lambda: resolve_baseline(evaluation.baseline, inputs.push.destination, cache_dir),
            what="evaluate: reading the baseline model",
        )
        outcome = retry_transient(
            lambda: run_evaluation(
                inputs.model_dir,
                inputs.dataset_dir,
                inputs.model,
                evaluation,
                baseline_dir,
                inputs.report_path,
                baseline_note=baseline_note,
                data_checks=verdicts,
            ),
            what="evaluate",
        )
    result = contracts.EvaluationOutcome.from_dict(outcome, inputs.outcome_path)
    result.write(inputs.outcome_path)
    print(f"blessed: {result.blessed}")
    for reason in result.reasons:
        print(f"  {reason}")
    return result


def _metric_name(text: str) -> str:
    """A slice name as a metric key: lower case letters, digits and underscores."""
    return "_".join(part for part in re.split(r"[^0-9a-z]+", text.lower()) if part)


def scalar_metrics(outcome: dict[str, Any]) -> dict[str, float]:
    """Flattens a ``run_evaluation`` outcome into the scalars a KFP Metrics artifact shows.

    Undefined values (None) are left out rather than logged as NaN, matching
    the metrics' own convention; ``blessed`` is 1.0 or 0.0. The headline interval
    figures are ``mean_iou_low``/``_high`` and ``mean_iou_difference`` (with
    ``_low``/``_high``); each slice adds ``slice_<name>_mean_iou`` (and
    ``_difference`` with a baseline).
    """
    scalars: dict[str, float] = {"blessed": 1.0 if outcome["blessed"] else 0.0}
    for prefix, metrics in (("", outcome["candidate"]), ("baseline_", outcome.get("baseline"))):
        if not metrics:
            continue
        values: dict[str, Any] = {
            "mean_iou": metrics["mean_iou"],
            "pixel_accuracy": metrics["pixel_accuracy"],
            "num_images": metrics["num_images"],
            "mean_boundary_iou": metrics.get("mean_boundary_iou"),
        }
        for name, per_class in metrics["per_class"].items():
            for key in ("iou", "precision", "recall"):
                values[f"{key}_{name}"] = per_class[key]
        for name, value in (metrics.get("boundary_iou") or {}).items():
            values[f"boundary_iou_{name}"] = value
        for name, value in values.items():
            if value is not None and math.isfinite(value):
                scalars[prefix + name] = float(value)
    intervals = outcome.get("intervals") or {}
    figures = {
        "mean_iou": (intervals.get("challenger") or {}),
        "mean_iou_difference": (intervals.get("difference") or {}),
    }
    for name, figure in figures.items():
        for key, suffix in (("estimate", ""), ("low", "_low"), ("high", "_high")):
            value = figure.get(key)
            if value is not None and (name, key) != ("mean_iou", "estimate"):
                scalars[name + suffix] = float(value)
    for row in outcome.get("slices") or []:
        key = "slice_" + _metric_name(row["name"])
        if row["challenger"]["estimate"] is not None:
            scalars[key + "_mean_iou"] = float(row["challenger"]["estimate"])
        if row["difference"] and row["difference"]["estimate"] is not None:
            scalars[key + "_difference"] = float(row["difference"]["estimate"])
    return scalars
