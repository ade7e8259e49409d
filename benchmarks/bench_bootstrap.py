"""Paired bootstrap speed: 1,000 resamples of 3,669 images (Oxford's test split).

Prints, for per-image confusion counts of two models on N images (C classes):

- vectorised: ``components.evaluation.bootstrap.paired_bootstrap`` (draw counts per image, one
  matrix product over all resamples, mean IoU of every resample at once);
- naive: a Python loop over resamples, each drawing N image indices and summing
  their confusion matrices, then mean IoU via ``segmentation_metrics``, as a direct
  implementation would; timed on a share of the resamples and scaled, in the same run;
- the speed-up, and the difference interval each gives (they use different random
  streams, so they agree to Monte Carlo error, not exactly).

Usage::

    python benchmarks/bench_bootstrap.py                       # 1000 x 3669, 3 classes
    python benchmarks/bench_bootstrap.py --images 200 --samples 50 --naive-samples 10
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def synthetic_counts(num_images: int, num_classes: int, seed: int) -> tuple[np.ndarray, ...]:
    """Per-image confusion counts of a challenger and a correlated production model."""
    rng = np.random.default_rng(seed)
    pixels = 128 * 128
    shares = rng.dirichlet(np.ones(num_classes), size=num_images)
    totals = (shares * pixels).astype(np.int64)
    quality = rng.beta(8, 2, size=(num_images, 1))
    right = (totals * quality).astype(np.int64)
    challenger = np.zeros((num_images, num_classes, num_classes), dtype=np.int64)
    index = np.arange(num_classes)
    challenger[:, index, index] = right
    challenger[:, index, (index + 1) % num_classes] = totals - right
    production = challenger.copy()
    moved = (right * rng.beta(2, 30, size=right.shape)).astype(np.int64)
    production[:, index, index] -= moved
    production[:, index, (index + 1) % num_classes] += moved
    return challenger, production


def naive_bootstrap(
    challenger: np.ndarray, production: np.ndarray, samples: int, seed: int
) -> np.ndarray:
    """The loop a direct implementation writes: resample, sum, score, per resample."""
    from components.evaluation.metrics import segmentation_metrics

    names = [f"class{index}" for index in range(challenger.shape[1])]
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(samples):
        drawn = rng.integers(0, len(challenger), len(challenger))
        ours = segmentation_metrics(challenger[drawn].sum(axis=0), names)["mean_iou"]
        theirs = segmentation_metrics(production[drawn].sum(axis=0), names)["mean_iou"]
        differences.append(ours - theirs)
    return np.asarray(differences)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3669)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument(
        "--naive-samples", type=int, default=200, help="resamples the naive loop is timed on"
    )
    args = parser.parse_args(argv)

    from components.evaluation import bootstrap

    challenger, production = synthetic_counts(args.images, args.classes, seed=0)
    # Warm-up (imports, first allocation) outside the timing.
    bootstrap.paired_bootstrap(challenger[:10], production[:10], samples=10, seed=0)

    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        result = bootstrap.paired_bootstrap(challenger, production, samples=args.samples, seed=1)
        best = min(best, time.perf_counter() - start)

    naive_samples = min(args.naive_samples, args.samples)
    start = time.perf_counter()
    differences = naive_bootstrap(challenger, production, naive_samples, seed=1)
    naive = (time.perf_counter() - start) * args.samples / naive_samples
    naive_low, naive_high = np.percentile(differences, [2.5, 97.5])

    difference = result["difference"]
    print(
        f"paired bootstrap, {args.samples} resamples of {args.images} images, "
        f"{args.classes} classes"
    )
    print(f"  vectorised: {best:.3f} s (best of 3)")
    print(
        f"  naive loop: {naive:.3f} s (timed on {naive_samples} resamples, scaled to "
        f"{args.samples})"
    )
    print(f"  speed-up:   {naive / best:.1f}x")
    print(
        f"  difference interval: vectorised {difference['low']:+.4f} to "
        f"{difference['high']:+.4f}, naive {naive_low:+.4f} to {naive_high:+.4f}"
    )


if __name__ == "__main__":
    main()
