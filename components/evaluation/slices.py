"""Test-image slices: groups whose regression can hide inside an overall gain.

A slice is a named set of test images. Families:

* ``species`` and ``breed``, where the records carry them (Oxford does; -1 = unknown,
  in no slice);
* ``folder``: own data's first folder level under ``images/`` or a manifest's
  ``slice`` column, where the records carry one;
* ``object``: the fraction of the image's scored pixels whose true class is not
  background: small (< ``object_small``), medium, large (> ``object_large``);
* ``image``: the source image's longer side against ``image_side_edges``.

Membership is decided from per-image facts evaluate gathered once (the true
class counts are the rows of the per-image confusion counts), so no image is read
twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

SPECIES_NAMES = ("cat", "dog")
BACKGROUND = "background"


def _breed_names(dataset_source: str) -> Sequence[str] | None:
    """Oxford-IIIT Pet's breed names, when the dataset uses its labels (it or the demo)."""
    if "oxford_iiit_pet" not in dataset_source and "synthetic_pets" not in dataset_source:
        return None
    # Imported here: only Oxford-labelled datasets need the breed table.
    from components.data.synthetic_pets import BREEDS

    return BREEDS


def image_slices(
    *,
    classes: Sequence[str],
    true_pixels: np.ndarray,
    label: np.ndarray,
    species: np.ndarray,
    longer_side: np.ndarray,
    folder: Sequence[str] | None = None,
    object_small: float = 0.10,
    object_large: float = 0.40,
    image_side_edges: Sequence[int] = (256, 512),
    dataset_source: str = "",
) -> dict[str, np.ndarray]:
    """Named slices as arrays of image indices, ordered by family then name.

    Args:
        classes: the class names (the one named 'background' defines object size).
        true_pixels: ``[N, C]`` scored true pixels per class (row sums of the counts).
        label: ``[N]`` breed ids, -1 unknown.
        species: ``[N]`` 0 cat, 1 dog, -1 unknown.
        longer_side: ``[N]`` the source image's longer side in pixels.
        folder: per image its own-data slice name ('' = none), or None.
        object_small: below this non-background fraction an object is small.
        object_large: above this it is large.
        image_side_edges: ascending edges splitting the longer side into buckets.
        dataset_source: dataset.json's source, to name Oxford's breeds.
    """
    slices: dict[str, np.ndarray] = {}

    def add(name: str, members: np.ndarray) -> None:
        if members.size:
            slices[name] = members.astype(np.int64)

    species = np.asarray(species)
    for value in sorted(set(species.tolist()) - {-1}):
        name = SPECIES_NAMES[value] if 0 <= value < len(SPECIES_NAMES) else str(value)
        add(f"species={name}", np.flatnonzero(species == value))
    label = np.asarray(label)
    breeds = _breed_names(dataset_source)
    for value in sorted(set(label.tolist()) - {-1}):
        name = breeds[value] if breeds is not None and 0 <= value < len(breeds) else str(value)
        add(f"breed={name}", np.flatnonzero(label == value))
    if folder is not None:
        names = np.asarray(folder, dtype=object)
        for value in sorted(set(names.tolist()) - {""}):
            add(f"folder={value}", np.flatnonzero(names == value))
    true_pixels = np.asarray(true_pixels, dtype=np.float64)
    if BACKGROUND in classes:
        totals = true_pixels.sum(axis=1)
        background = true_pixels[:, list(classes).index(BACKGROUND)]
        scored = totals > 0
        covered = np.divide(totals - background, totals, out=np.zeros_like(totals), where=scored)
        small, large = covered < object_small, covered > object_large
        add(f"object=small (<{object_small:.0%})", np.flatnonzero(scored & small))
        add(
            f"object=medium ({object_small:.0%}-{object_large:.0%})",
            np.flatnonzero(scored & ~small & ~large),
        )
        add(f"object=large (>{object_large:.0%})", np.flatnonzero(scored & large))
    sides = np.asarray(longer_side)
    edges = list(image_side_edges)
    bucket = np.searchsorted(edges, sides, side="right")
    for index in range(len(edges) + 1):
        if index == 0:
            name = f"image=<{edges[0]} px" if edges else "image=all"
        elif index == len(edges):
            name = f"image=>={edges[-1]} px"
        else:
            name = f"image={edges[index - 1]}-{edges[index] - 1} px"
        add(name, np.flatnonzero(bucket == index))
    return slices


def slice_table(
    figures: dict[str, dict[str, Any]],
    *,
    min_images: int,
    max_regression: float | None,
    tolerance: float = 1e-9,
) -> list[dict[str, Any]]:
    """One row per slice, for the slice rule, the report and the metrics.

    Rows: name, family, num_images, challenger, production, difference (each {estimate,
    low, high}), checked (enough images and a production model) and failed (checked and
    the point difference is below ``-max_regression``). Slices are judged on the point
    difference: with many slices, requiring every interval to clear the margin would
    block nearly every model; the interval is shown so a reader can judge chance.
    """
    rows = []
    for name, figure in figures.items():
        difference = figure.get("difference")
        checked = (
            max_regression is not None
            and difference is not None
            and difference.get("estimate") is not None
            and figure["num_images"] >= min_images
        )
        failed = bool(checked and difference["estimate"] < -max_regression - tolerance)
        rows.append(
            {
                "name": name,
                "family": name.split("=", 1)[0],
                "num_images": figure["num_images"],
                "challenger": figure["challenger"],
                "production": figure.get("production"),
                "difference": difference,
                "checked": bool(checked),
                "failed": failed,
            }
        )
    return rows
