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
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from components import data, dataset_info, report, schema
from components.metrics import confusion_matrix, segmentation_metrics
from components.model import METADATA_FILE, ModelMismatchError, load_metadata, load_model_dir

if TYPE_CHECKING:
    from components.config import EvaluationConfig, ModelConfig

# Float noise allowance when comparing mean IoUs against a threshold or baseline:
# a candidate identical to its baseline must not fail by a rounding error.
COMPARISON_TOLERANCE = 1e-9
NO_BASELINE = "no baseline to compare with"


def _expected_from_config(
    model_config: ModelConfig | None,
    image_size_expected: int | None,
    normalization_expected: str | None,
) -> tuple[int | None, str | None]:
    if model_config is None:
        return image_size_expected, normalization_expected
    return (
        image_size_expected if image_size_expected is not None else model_config.image_size,
        (
            normalization_expected
            if normalization_expected is not None
            else model_config.normalization
        ),
    )


def check_model_matches(
    metadata: dict[str, Any],
    *,
    model_dir: str,
    classes: Sequence[str],
    image_size_expected: int | None = None,
    normalization_expected: str | None = None,
) -> None:
    """Refuses a model whose classes, image size or normalisation differ from what is expected.

    Args:
        metadata: the model's metadata.json.
        model_dir: named in the error message.
        classes: the dataset's class list (dataset.json), which the model must predict.
        image_size_expected: the configured image size, or None to skip the check.
        normalization_expected: the configured normalisation, or None to skip it.

    Raises:
        ModelMismatchError: naming the field, both values and the model directory.
    """
    where = posixpath.join(model_dir, METADATA_FILE)
    model_classes = metadata.get("classes")
    if model_classes is None or list(model_classes) != list(classes):
        raise ModelMismatchError(
            f"{where}: model classes {model_classes} differ from the dataset's classes "
            f"{list(classes)}; a model can only be scored on the classes it predicts"
        )
    if image_size_expected is not None and metadata.get("image_size") != image_size_expected:
        raise ModelMismatchError(
            f"{where}: model image_size {metadata.get('image_size')!r} differs from the "
            f"configured model.image_size {image_size_expected}"
        )
    if (
        normalization_expected is not None
        and metadata.get("normalization") != normalization_expected
    ):
        raise ModelMismatchError(
            f"{where}: model normalization {metadata.get('normalization')!r} differs from the "
            f"configured model.normalization {normalization_expected!r}"
        )


def _model_image_size(model: Any, metadata: dict[str, Any], model_dir: str) -> int:
    image_size = metadata.get("image_size")
    if not isinstance(image_size, int) or image_size < 1:
        raise ModelMismatchError(
            f"{posixpath.join(model_dir, METADATA_FILE)}: image_size {image_size!r} "
            "is not a positive integer"
        )
    input_shape = tuple(model.input_shape)
    if len(input_shape) != 4 or input_shape[1:3] not in ((image_size, image_size), (None, None)):
        raise ModelMismatchError(
            f"{model_dir}: model input shape {input_shape} does not take "
            f"[batch, {image_size}, {image_size}, 3] images as its metadata says"
        )
    return image_size


def _batches(
    dataset_dir: str,
    split: str,
    info: dataset_info.DatasetInfo,
    *,
    model_size: int,
    evaluation_size: int,
    batch_size: int,
) -> tf.data.Dataset:
    """The split in order: uint8 images bilinear at model size, masks nearest at evaluation size."""

    def prepare(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        example = schema.decode_example(serialized)
        # The training input's resizes, so the model sees pixels exactly as it was trained on.
        return {
            "image": data.resize_image(example["image"], model_size),
            "mask": data.resize_mask(example["mask"], evaluation_size)[..., 0],
            "file_name": example["file_name"],
        }

    paths = dataset_info.shard_paths(dataset_dir, split, info)
    return (
        tf.data.TFRecordDataset(paths)
        .map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


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
    """The k images with the lowest per-image mean IoU seen so far.

    A bounded heap: memory holds k images however large the split is. Ties keep the
    image seen first, so the list is the same on every run.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self._heap: list[tuple[tuple[float, int], dict[str, Any]]] = []
        self._seen = 0

    def offer(self, mean_iou: float | None, make_item: Callable[[], dict[str, Any]]) -> None:
        """Keeps the image if it is among the k worst; ``make_item`` runs only then."""
        if self.k <= 0 or mean_iou is None:
            return
        key = (-mean_iou, -self._seen)
        self._seen += 1
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, (key, {**make_item(), "mean_iou": mean_iou}))
        elif key > self._heap[0][0]:
            heapq.heapreplace(self._heap, (key, {**make_item(), "mean_iou": mean_iou}))

    def worst(self) -> list[dict[str, Any]]:
        """Worst first."""
        return [item for _, item in sorted(self._heap, reverse=True)]


def image_mean_iou(
    true_mask: np.ndarray, predicted_mask: np.ndarray, classes: Sequence[str]
) -> float | None:
    """One image's mean IoU over the classes it has in truth or prediction (None: none)."""
    matrix = confusion_matrix(true_mask, predicted_mask, len(classes))
    return segmentation_metrics(matrix, classes)["mean_iou"]


def _image_item(
    images: tf.Tensor,
    true_masks: np.ndarray,
    predicted_masks: np.ndarray,
    index: int,
    file_name: str,
    evaluation_size: int,
) -> dict[str, Any]:
    """One image of a batch for the report, at the evaluation resolution, copied out of it."""
    image = images[index]
    if image.shape[0] != evaluation_size or image.shape[1] != evaluation_size:
        image = tf.image.resize(image, [evaluation_size, evaluation_size])
        image = tf.saturate_cast(tf.round(image), tf.uint8)
    return {
        "file_name": file_name,
        "image": image.numpy(),
        "true_mask": true_masks[index].copy(),
        "predicted_mask": predicted_masks[index].copy(),
    }


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
        predict_file_names: images (by file name) whose predicted masks to return, so a
            baseline's predictions can be shown next to the candidate's on the same images.

    Returns:
        ``segmentation_metrics`` over the dataset's classes (ignored pixels left out)
        plus model_dir, dataset_dir, split, num_images, ignored_pixels, image_size,
        evaluation_size, normalization, and, with NumPy arrays, which the caller drops
        before writing JSON: ``samples`` and ``worst`` (worst first), lists of
        {file_name, image (uint8 [S, S, 3]), true_mask (ignored pixels keep the ignore
        id), predicted_mask, mean_iou}, and ``predictions``: {file_name: (predicted_mask,
        mean_iou)} for predict_file_names.

    Raises:
        ModelMismatchError: classes, image size or normalisation do not match.
        DatasetMismatchError: the dataset is not readable by this code or lacks the split.
        ValueError: the split holds no records, or batch_size is not positive.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    info = dataset_info.load_dataset_info(dataset_dir)
    classes = info.classes
    ignore_id = info.ignore_id
    # Metadata first: a mismatched model is refused before its weights are loaded.
    metadata = load_metadata(model_dir)
    size_expected, normalization = _expected_from_config(
        model_config, image_size_expected, normalization_expected
    )
    check_model_matches(
        metadata,
        model_dir=model_dir,
        classes=classes,
        image_size_expected=size_expected,
        normalization_expected=normalization,
    )
    model, metadata = load_model_dir(model_dir, expected_classes=classes)
    model_size = _model_image_size(model, metadata, model_dir)
    output_classes = model.output_shape[-1]
    if output_classes != len(classes):
        raise ModelMismatchError(
            f"{model_dir}: model outputs {output_classes} logits per pixel, "
            f"the dataset has {len(classes)} classes {classes}"
        )
    evaluation_size = evaluation_size or model_size
    # Traced once per batch shape (a smaller last batch adds one trace): about twice as
    # fast on CPU as calling the model eagerly for every batch.
    forward = tf.function(lambda images: model(images, training=False))

    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    samples: list[dict[str, Any]] = []
    num_images = ignored_pixels = 0
    batches = _batches(
        dataset_dir,
        split,
        info,
        model_size=model_size,
        evaluation_size=evaluation_size,
        batch_size=batch_size,
    )
    worst = WorstImages(worst_k)
    wanted = set(predict_file_names)
    predictions: dict[str, tuple[np.ndarray, float | None]] = {}
    for batch in _checked(batches, dataset_dir, split, info):
        true_masks = batch["mask"].numpy()
        predicted_masks = _predict_masks(forward, batch["image"], evaluation_size)
        confusion_matrix(
            true_masks, predicted_masks, len(classes), into=matrix, ignore_id=ignore_id
        )
        ignored_pixels += int(np.count_nonzero(true_masks == ignore_id))
        file_names = [name.decode("utf-8") for name in batch["file_name"].numpy()]
        for index, file_name in enumerate(file_names):
            keep_sample = len(samples) < num_samples
            if not (keep_sample or worst_k > 0 or file_name in wanted):
                continue
            mean_iou = image_mean_iou(true_masks[index], predicted_masks[index], classes)
            item = functools.partial(
                _image_item,
                batch["image"],
                true_masks,
                predicted_masks,
                index,
                file_name,
                evaluation_size,
            )
            if keep_sample:
                samples.append({**item(), "mean_iou": mean_iou})
            worst.offer(mean_iou, item)
            if file_name in wanted:
                predictions[file_name] = (predicted_masks[index].copy(), mean_iou)
        num_images += len(true_masks)
    if num_images == 0:
        raise ValueError(f"{dataset_dir}: split {split!r} has no records to evaluate")

    result = segmentation_metrics(matrix, classes)
    result.update(
        {
            "model_dir": model_dir,
            "dataset_dir": dataset_dir,
            "split": split,
            "num_images": num_images,
            "ignored_pixels": ignored_pixels,
            "image_size": model_size,
            "evaluation_size": evaluation_size,
            "normalization": metadata.get("normalization"),
            "samples": samples,
            "worst": worst.worst(),
            "predictions": predictions,
        }
    )
    return result


def decide_blessing(
    candidate_metrics: dict[str, Any],
    baseline_metrics: dict[str, Any] | None,
    evaluation_config: EvaluationConfig,
) -> tuple[bool, list[str]]:
    """Blessed when mean IoU reaches the threshold and does not regress past the margin.

    With ``require_improvement`` (scheduled retraining) a model must also beat the
    baseline, so a retrain that is only as good as production is not pushed.

    Every check adds a reason, passed or failed, so the decision can be read
    back from the pipeline's outputs without the logs.

    Args:
        candidate_metrics: the candidate's metrics (needs ``mean_iou``).
        baseline_metrics: the baseline's metrics on the same split, or None
            when there is no baseline (first model, or 'none').
        evaluation_config: an EvaluationConfig (min_mean_iou, max_regression).

    Returns:
        (blessed, reasons).
    """
    threshold = float(evaluation_config.min_mean_iou)
    margin = float(evaluation_config.max_regression)
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

    if baseline_metrics is None:
        reasons.append(NO_BASELINE)
        return blessed, reasons
    baseline = baseline_metrics.get("mean_iou")
    if baseline is None or not math.isfinite(baseline):
        reasons.append(f"baseline mean IoU is undefined ({baseline!r}); not compared")
        return blessed, reasons
    regression = baseline - candidate
    comparison = (
        f"mean IoU {candidate:.4f} vs baseline {baseline:.4f}: "
        f"regression {max(regression, 0.0):.4f}"
    )
    if regression <= margin + COMPARISON_TOLERANCE:
        reasons.append(f"{comparison} <= max_regression {margin:.4f}")
    else:
        blessed = False
        reasons.append(f"{comparison} > max_regression {margin:.4f}")
    if getattr(evaluation_config, "require_improvement", False):
        if candidate > baseline + COMPARISON_TOLERANCE:
            reasons.append(f"improves on the baseline by {candidate - baseline:.4f}")
        else:
            blessed = False
            reasons.append(
                f"no improvement over the baseline ({candidate:.4f} vs {baseline:.4f}) "
                "and require_improvement is on"
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
        RuntimeError: if 'latest' is asked for but components.push is not installed.
    """
    setting = baseline.strip()
    if not setting:
        raise ValueError("evaluation.baseline is empty; use 'latest', 'none' or a model path")
    if setting == "none":
        return None, "evaluation.baseline is 'none'"
    if setting != "latest":
        from components.versions import check_not_incomplete

        check_not_incomplete(setting)  # a killed push's version is never a baseline
        return setting, f"baseline {setting} (evaluation.baseline)"
    if not push_destination:
        return None, "evaluation.baseline is 'latest' but push.destination is empty"
    try:
        # Imported here: push is optional for evaluation, and heavy clients load lazily.
        # A damaged or incomplete LATEST stops here with one line offering the ways out.
        from components.versions import resolve_production_model as resolve_latest_model
    except ImportError as error:
        raise RuntimeError(
            "evaluation.baseline is 'latest' but components.push.resolve_latest_model is not "
            f"available ({error}); set evaluation.baseline to 'none' or a model path"
        ) from error
    latest = resolve_latest_model(push_destination, cache_dir)
    if latest is None:
        return None, f"no model pushed to {push_destination} yet (first model)"
    return latest, f"baseline: the latest model pushed to {push_destination}"


def _without_samples(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics without the images and masks kept for the report."""
    return {
        key: value
        for key, value in metrics.items()
        if key not in ("samples", "worst", "predictions")
    }


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
) -> dict[str, Any]:
    """Scores the candidate (and baseline), decides the blessing and writes the HTML report.

    The baseline is scored on the same split at the candidate's evaluation
    resolution. A baseline whose classes differ from the dataset's cannot be
    compared: it is reported unusable with the reason and the decision rests
    on the threshold alone (the class list changed, so the old model is no
    yardstick). Any other baseline failure (missing files) is raised.

    Args:
        model_dir: the candidate model directory.
        dataset_dir: the dataset artifact directory.
        model_config: the ModelConfig the pipeline was configured with.
        evaluation_config: the EvaluationConfig (threshold, margin, batch size,
            report images).
        baseline_model_dir: a baseline model directory, or None.
        report_path: where to write the self-contained HTML report.
        split: the split to score.
        baseline_note: where the baseline came from (or why there is none),
            added to the reasons.

    Returns:
        A JSON-ready dict: blessed, reasons, reason (the reasons joined),
        candidate (metrics), baseline (metrics or None), baseline_dir,
        baseline_status ('none', 'evaluated' or 'unusable: ...'), report_path.
    """
    candidate = evaluate_model(
        model_dir,
        dataset_dir,
        model_config=model_config,
        batch_size=evaluation_config.batch_size,
        split=split,
        num_samples=evaluation_config.report_images,
        worst_k=evaluation_config.report_worst_images,
    )
    samples, worst = candidate["samples"], candidate["worst"]
    baseline: dict[str, Any] | None = None
    baseline_status = "none"
    if baseline_model_dir:
        try:
            # The baseline's predictions on the same images are drawn beside the candidate's.
            baseline = evaluate_model(
                baseline_model_dir,
                dataset_dir,
                batch_size=evaluation_config.batch_size,
                split=split,
                evaluation_size=candidate["evaluation_size"],
                predict_file_names={item["file_name"] for item in [*samples, *worst]},
            )
            baseline_status = "evaluated"
        except ModelMismatchError as error:
            baseline_status = f"unusable: {error}"

    blessed, reasons = decide_blessing(candidate, baseline, evaluation_config)
    if baseline_status.startswith("unusable"):
        reasons.append(f"baseline {baseline_model_dir} {baseline_status}")
    elif baseline_note and reasons[-1] == NO_BASELINE:
        reasons[-1] = f"{NO_BASELINE} ({baseline_note})"
    elif baseline_note:
        reasons.append(baseline_note)
    outcome = {
        "blessed": blessed,
        "reasons": reasons,
        "reason": "; ".join(reasons),
        "candidate": _without_samples(candidate),
        "baseline": _without_samples(baseline) if baseline is not None else None,
        "baseline_dir": baseline_model_dir,
        "baseline_status": baseline_status,
        "report_path": report_path,
    }
    report.write_report(
        report_path,
        candidate=outcome["candidate"],
        samples=samples,
        baseline=outcome["baseline"],
        blessed=blessed,
        reasons=reasons,
        worst=worst,
        baseline_predictions=baseline["predictions"] if baseline is not None else None,
    )
    return outcome


def scalar_metrics(outcome: dict[str, Any]) -> dict[str, float]:
    """Flattens a ``run_evaluation`` outcome into the scalars a KFP Metrics artifact shows.

    Undefined values (None) are left out rather than logged as NaN, matching
    the metrics' own convention; ``blessed`` is 1.0 or 0.0.
    """
    scalars: dict[str, float] = {"blessed": 1.0 if outcome["blessed"] else 0.0}
    for prefix, metrics in (("", outcome["candidate"]), ("baseline_", outcome.get("baseline"))):
        if not metrics:
            continue
        values: dict[str, Any] = {
            "mean_iou": metrics["mean_iou"],
            "pixel_accuracy": metrics["pixel_accuracy"],
            "num_images": metrics["num_images"],
        }
        for name, per_class in metrics["per_class"].items():
            for key in ("iou", "precision", "recall"):
                values[f"{key}_{name}"] = per_class[key]
        for name, value in values.items():
            if value is not None and math.isfinite(value):
                scalars[prefix + name] = float(value)
    return scalars
