"""Paired bootstrap intervals for mean IoU, from per-image confusion counts.

On a few hundred test images two equally good models differ by chance, so the
blessing compares intervals, not two point estimates. The test images are the
sampling unit: a resample draws N images with replacement, and because the
challenger's and production's counts come from the same images, one set of
draws serves both (a *paired* bootstrap): the difference's spread is the spread
of the difference, not of two independent estimates.

Nothing is predicted again. A resample is a vector of how many times each image
was drawn, ``weights[b, n]``, so its confusion matrix is ``weights @ counts``: one
matrix product over all resamples, then mean IoU for every resample at once.
Intervals are percentile intervals (Efron & Tibshirani, 1993, ch. 13).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CONFIDENCE = 0.95


def mean_iou_of_counts(confusion: np.ndarray) -> np.ndarray:
    """Mean IoU of each ``[..., C, C]`` confusion matrix, as ``segmentation_metrics`` does.

    A class absent from truth and prediction has no IoU and is left out of the mean; a
    matrix with no class defined gives NaN (callers skip it).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positives = np.diagonal(confusion, axis1=-2, axis2=-1)
    union = confusion.sum(axis=-1) + confusion.sum(axis=-2) - true_positives
    defined = union > 0
    iou = np.divide(true_positives, union, out=np.zeros_like(union), where=defined)
    count = defined.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, iou.sum(axis=-1) / np.maximum(count, 1), np.nan)


def resample_weights(num_images: int, samples: int, seed: int) -> np.ndarray:
    """``[samples, num_images]`` draw counts: row b says how often resample b drew each image.

    Each row sums to ``num_images`` (N draws with replacement). Seeded: the same seed and
    sizes give the same weights on every machine (NumPy's PCG64 stream).
    """
    if num_images < 1 or samples < 1:
        raise ValueError(f"need images and samples >= 1, got {num_images} and {samples}")
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, num_images, size=(samples, num_images))
    offsets = np.arange(samples, dtype=np.int64)[:, None] * num_images
    counts = np.bincount((drawn + offsets).ravel(), minlength=samples * num_images)
    return counts.reshape(samples, num_images)


def resampled_confusions(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``[B, C, C]`` confusion of each resample: ``weights [B, N] @ counts [N, C, C]``."""
    counts = np.asarray(counts)
    num_images, rows, columns = counts.shape
    flat = counts.reshape(num_images, rows * columns).astype(np.float64)
    return (weights.astype(np.float64) @ flat).reshape(-1, rows, columns)


def percentile_interval(
    values: np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The central ``confidence`` percentile interval of the finite values (None: none)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return None
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def _estimate(point: float, resampled: np.ndarray, confidence: float) -> dict[str, Any]:
    interval = percentile_interval(resampled, confidence)
    return {
        "estimate": None if not np.isfinite(point) else float(point),
        "low": None if interval is None else interval[0],
        "high": None if interval is None else interval[1],
    }


def paired_bootstrap(
    challenger_counts: np.ndarray,
    production_counts: np.ndarray | None = None,
    *,
    samples: int = 1000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    subsets: dict[str, Sequence[int] | np.ndarray] | None = None,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """Intervals for the challenger's mean IoU and for challenger − production.

    Args:
        challenger_counts: ``[N, C, C]`` per-image confusion counts (rows true).
        production_counts: the production model's counts on the same N images, or None.
        samples: resamples drawn.
        seed: the random seed; the same seed gives the same intervals.
        confidence: the interval's coverage (0.95: the 2.5th to 97.5th percentile).
        subsets: named image subsets (slices) given by image indices; each gets its own
            figures from the same resamples, as if the statistic were computed on the
            subset's images in each resample.
        weights: precomputed ``resample_weights`` (overrides samples and seed).

    Returns:
        A JSON-ready dict: samples, seed, confidence, num_images, challenger and (with
        production) production and difference, each {estimate, low, high}; and with
        subsets, ``subsets``: {name: {num_images, challenger, production, difference}}.
    """
    challenger_counts = np.asarray(challenger_counts)
    if challenger_counts.ndim != 3 or challenger_counts.shape[1] != challenger_counts.shape[2]:
        raise ValueError(f"counts must be [N, C, C], got shape {challenger_counts.shape}")
    if production_counts is not None:
        production_counts = np.asarray(production_counts)
        if production_counts.shape != challenger_counts.shape:
            raise ValueError(
                f"production counts {production_counts.shape} differ from the "
                f"challenger's {challenger_counts.shape}: the pair must share its images"
            )
    num_images = challenger_counts.shape[0]
    if weights is None:
        weights = resample_weights(num_images, samples, seed)

    def figures(index: np.ndarray | slice) -> dict[str, Any]:
        part = weights[:, index]
        challenger = mean_iou_of_counts(resampled_confusions(challenger_counts[index], part))
        result: dict[str, Any] = {
            "challenger": _estimate(
                float(mean_iou_of_counts(challenger_counts[index].sum(axis=0))),
                challenger,
                confidence,
            )
        }
        if production_counts is not None:
            production = mean_iou_of_counts(resampled_confusions(production_counts[index], part))
            point = float(mean_iou_of_counts(production_counts[index].sum(axis=0)))
            result["production"] = _estimate(point, production, confidence)
            estimate = result["challenger"]["estimate"]
            result["difference"] = _estimate(
                (np.nan if estimate is None else estimate) - point,
                challenger - production,
                confidence,
            )
        return result

    outcome: dict[str, Any] = {
        "samples": int(weights.shape[0]),
        "seed": int(seed),
        "confidence": float(confidence),
        "num_images": int(num_images),
        **figures(slice(None)),
    }
    if subsets:
        outcome["subsets"] = {}
        for name, members in subsets.items():
            index = np.asarray(members, dtype=np.int64)
            outcome["subsets"][name] = {"num_images": int(index.size), **figures(index)}
    return outcome


def describe_interval(figure: dict[str, Any] | None, confidence: float = CONFIDENCE) -> str:
    """``+0.0123 (95% interval -0.0040 to +0.0290)`` for a signed figure, or 'undefined'."""
    if not figure or figure.get("estimate") is None:
        return "undefined"
    text = f"{figure['estimate']:+.4f}"
    if figure.get("low") is not None:
        text += f" ({confidence:.0%} interval {figure['low']:+.4f} to {figure['high']:+.4f})"
    return text
