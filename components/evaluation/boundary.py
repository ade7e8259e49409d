"""Boundary IoU (Cheng, Girshick, Dollár, Berg, Kirillov, CVPR 2021), per class.

Mean IoU barely moves when masks get blurry at the edges, because the interior
dominates the pixel count. Boundary IoU scores only the band of pixels near each
contour:

    BIoU(G, P) = |(G_d ∩ G) ∩ (P_d ∩ P)| / |(G_d ∩ G) ∪ (P_d ∩ P)|

where G_d is the set of pixels within distance d of G's contour, so ``G_d ∩ G`` is
G's inner band of width d. As in the authors' reference code, d is a fraction of
the image diagonal (their default 2%, at least one pixel), the band is what a
square (chessboard-distance) erosion by d removes, and the world outside the image
counts as "not G", so a mask touching the image edge has a band along that edge.

Per image and class the band intersection and union are kept as counts
(``[N, C, 2]``), so dataset figures, slices and resamples add counts, exactly as
the confusion matrix does. Pixels whose true label is the ignore id are counted in
neither (they still end the truth's region, so its band runs along them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_BAND_FRACTION = 0.02


def band_width(height: int, width: int, fraction: float = DEFAULT_BAND_FRACTION) -> int:
    """The band width d in pixels: ``round(fraction × diagonal)``, at least 1."""
    return max(1, round(fraction * float(np.hypot(height, width))))


def inner_band(masks: np.ndarray, width: int) -> np.ndarray:
    """The inner band of each ``[..., H, W]`` boolean mask.

    A pixel is in it when it is in the mask and within chessboard distance ``width`` of
    a pixel outside it (outside the image counts as outside the mask).
    """
    masks = np.asarray(masks, dtype=bool)
    pad = [(0, 0)] * (masks.ndim - 2) + [(width, width), (width, width)]
    padded = np.pad(masks, pad, constant_values=False)
    window = 2 * width + 1
    # A square erosion is a row erosion followed by a column erosion.
    rows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=-1).all(axis=-1)
    eroded = np.lib.stride_tricks.sliding_window_view(rows, window, axis=-2).all(axis=-1)
    return masks & ~eroded


def boundary_counts(
    true_masks: np.ndarray,
    predicted_masks: np.ndarray,
    num_classes: int,
    *,
    ignore_id: int | None = None,
    fraction: float = DEFAULT_BAND_FRACTION,
) -> np.ndarray:
    """``[N, C, 2]`` int64: per image and class, band intersection and band union pixels.

    Args:
        true_masks: ``[N, H, W]`` true class ids (ignore id allowed).
        predicted_masks: ``[N, H, W]`` predicted class ids.
        num_classes: C.
        ignore_id: true label of pixels left out of both counts, or None.
        fraction: band width as a fraction of the image diagonal.
    """
    true_masks = np.asarray(true_masks)
    predicted_masks = np.asarray(predicted_masks)
    if true_masks.shape != predicted_masks.shape or true_masks.ndim != 3:
        raise ValueError(
            f"masks must be [N, H, W] of one shape, got {true_masks.shape} "
            f"and {predicted_masks.shape}"
        )
    width = band_width(true_masks.shape[1], true_masks.shape[2], fraction)
    counted = (
        np.ones(true_masks.shape, dtype=bool) if ignore_id is None else true_masks != ignore_id
    )
    counts = np.zeros((true_masks.shape[0], num_classes, 2), dtype=np.int64)
    for class_id in range(num_classes):
        truth = inner_band(true_masks == class_id, width) & counted
        predicted = inner_band(predicted_masks == class_id, width) & counted
        counts[:, class_id, 0] = (truth & predicted).sum(axis=(1, 2))
        counts[:, class_id, 1] = (truth | predicted).sum(axis=(1, 2))
    return counts


def boundary_metrics(counts: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Per-class and mean boundary IoU from summed (or per-image) ``[..., C, 2]`` counts.

    A class with an empty band union in truth and prediction has no boundary IoU (None)
    and is left out of the mean, as with IoU.
    """
    totals = np.asarray(counts, dtype=np.int64).reshape(-1, len(class_names), 2).sum(axis=0)
    per_class: dict[str, float | None] = {}
    for name, (intersection, union) in zip(class_names, totals, strict=True):
        per_class[name] = float(intersection) / float(union) if union > 0 else None
    defined = [value for value in per_class.values() if value is not None]
    return {
        "boundary_iou": per_class,
        "mean_boundary_iou": float(np.mean(defined)) if defined else None,
    }
