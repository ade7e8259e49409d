"""Pixel metrics from a confusion matrix: pure NumPy, shared by evaluation and the report.

A class absent from both truth and prediction has no IoU (None, never NaN) and
is left out of the mean IoU, so a test split that lacks a class does not drag
the mean towards zero or one. Pixels whose true class is the ignore id are not
counted at all, whatever the model predicts there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from components.platform.config import CLASS_NAMES, IGNORE_ID


def confusion_matrix(
    true: np.ndarray,
    pred: np.ndarray,
    num_classes: int,
    into: np.ndarray | None = None,
    ignore_id: int | None = IGNORE_ID,
) -> np.ndarray:
    """Counts (true class, predicted class) pixel pairs; rows true, columns predicted.

    Streaming-friendly: pass the running matrix as ``into`` and each batch is
    added to it in place, so a split is scored without holding it in memory.

    Args:
        true: integer class ids of any shape.
        pred: integer class ids, the same shape as ``true``.
        num_classes: the number of classes; ids must lie in 0..num_classes-1.
        into: an int64 [num_classes, num_classes] matrix to add to, or None.
        ignore_id: pixels whose true value is this are left out (None: none are).

    Returns:
        The int64 [num_classes, num_classes] matrix (``into`` itself when given).

    Raises:
        ValueError: on mismatched shapes, ids out of range, or a wrong ``into``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    true = np.asarray(true)
    pred = np.asarray(pred)
    if true.shape != pred.shape:
        raise ValueError(f"true mask shape {true.shape} differs from predicted {pred.shape}")
    true = true.astype(np.int64, copy=False).ravel()
    pred = pred.astype(np.int64, copy=False).ravel()
    if ignore_id is not None:
        counted = true != ignore_id
        true, pred = true[counted], pred[counted]
    _check_class_ids(true, pred, num_classes)
    counts = np.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    counts = counts.reshape(num_classes, num_classes).astype(np.int64)
    if into is None:
        return counts
    if into.shape != (num_classes, num_classes):
        raise ValueError(f"into has shape {into.shape}, expected {(num_classes, num_classes)}")
    into += counts
    return into


def _check_class_ids(true: np.ndarray, pred: np.ndarray, num_classes: int) -> None:
    for name, values in (("true", true), ("predicted", pred)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} mask has class ids outside 0..{num_classes - 1}: "
                f"min {int(values.min())}, max {int(values.max())}"
            )


def _ratio(numerator: float, denominator: float) -> float | None:
    return float(numerator) / float(denominator) if denominator > 0 else None


def segmentation_metrics(
    confusion: np.ndarray | Sequence[Sequence[int]], class_names: Sequence[str] = CLASS_NAMES
) -> dict[str, Any]:
    """Pixel accuracy, per-class IoU/precision/recall and mean IoU from a confusion matrix.

    Undefined ratios (zero denominator) are None, never NaN; see the module
    docstring for why absent classes are left out of the mean IoU.

    Args:
        confusion: [C, C] pixel counts, rows true class, columns predicted class.
        class_names: the C class names, in class-id order.

    Returns:
        A JSON-ready dict: classes, num_pixels, pixel_accuracy, mean_iou,
        mean_iou_classes (the classes averaged), per_class {name: {iou,
        precision, recall, true_pixels, predicted_pixels}}, confusion_matrix.

    Raises:
        ValueError: if the matrix is not square, has negative counts, or does
            not match the class names.
    """
    matrix = np.asarray(confusion, dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {matrix.shape}")
    if matrix.shape[0] != len(class_names):
        raise ValueError(
            f"confusion matrix is {matrix.shape[0]}x{matrix.shape[0]} "
            f"but there are {len(class_names)} class names {list(class_names)}"
        )
    if (matrix < 0).any():
        raise ValueError("confusion matrix has negative counts")
    true_positives = np.diag(matrix)
    true_pixels = matrix.sum(axis=1)
    predicted_pixels = matrix.sum(axis=0)
    total = int(matrix.sum())

    per_class: dict[str, dict[str, Any]] = {}
    defined_ious: list[float] = []
    averaged: list[str] = []
    for index, name in enumerate(class_names):
        tp = int(true_positives[index])
        union = int(true_pixels[index] + predicted_pixels[index] - tp)
        iou = _ratio(tp, union)
        if iou is not None:
            defined_ious.append(iou)
            averaged.append(name)
        per_class[name] = {
            "iou": iou,
            "precision": _ratio(tp, predicted_pixels[index]),
            "recall": _ratio(tp, true_pixels[index]),
            "true_pixels": int(true_pixels[index]),
            "predicted_pixels": int(predicted_pixels[index]),
        }
    return {
        "classes": list(class_names),
        "num_pixels": total,
        "pixel_accuracy": _ratio(int(true_positives.sum()), total),
        "mean_iou": float(np.mean(defined_ious)) if defined_ious else None,
        "mean_iou_classes": averaged,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def per_image_confusion(
    true: np.ndarray, pred: np.ndarray, num_classes: int, ignore_id: int | None = IGNORE_ID
) -> np.ndarray:
    """``[N, C, C]`` int64: one confusion matrix per image of ``[N, ...]`` masks.

    Their sum over images is ``confusion_matrix`` of the whole batch. Kept per image so
    intervals, slices and the images that changed most are all derived from one pass.

    Raises:
        ValueError: on mismatched shapes or class ids out of range.
    """
    true = np.asarray(true)
    pred = np.asarray(pred)
    if true.shape != pred.shape or true.ndim < 1:
        raise ValueError(f"true mask shape {true.shape} differs from predicted {pred.shape}")
    num_images = true.shape[0]
    true = true.reshape(num_images, -1).astype(np.int64, copy=False)
    pred = pred.reshape(num_images, -1).astype(np.int64, copy=False)
    counted = np.ones(true.shape, dtype=bool) if ignore_id is None else true != ignore_id
    _check_class_ids(true[counted], pred[counted], num_classes)
    cells = num_classes * num_classes
    image = np.arange(num_images, dtype=np.int64)[:, None] * cells
    index = (image + true * num_classes + pred)[counted]
    counts = np.bincount(index, minlength=num_images * cells)
    return counts.reshape(num_images, num_classes, num_classes).astype(np.int64)
