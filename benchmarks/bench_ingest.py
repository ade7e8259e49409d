"""Ingest and class-weights throughput, and ingest's peak memory at N and 4N images.

Prints, for N and 4N synthetic_pets train images (test split a quarter of that):

- ingest: images/s and MB/s (encoded source bytes read), peak RSS and its growth
  during ingest, each measured in a fresh subprocess so one run's peak cannot
  hide another's. Flat memory means the growth at 4N is about the growth at N.
- data statistics: seconds of the statistics pass over the ingested records against
  ingest's, in the same process, best of 3 each, alternating; the time it adds to
  ingest (goal: at most 20%).
- class weights: masks/s of the streaming tf.data pass against a plain NumPy
  pass (PIL decode, nearest-neighbour index resize, np.bincount) over the same
  masks, measured in the same run; the two pixel counts must agree.

Usage::

    python benchmarks/bench_ingest.py            # N=150 at 256 px, about 1-2 minutes
    python benchmarks/bench_ingest.py --n 1000 --image-size 500   # Oxford-sized images
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDS_DISABLE_GCS", "1")


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _config(n: int, image_size: int, data_dir: str):
    from components.config import DataConfig

    return DataConfig(
        dataset="synthetic_pets",
        data_dir=data_dir,
        synthetic_train_size=n,
        synthetic_test_size=max(1, n // 4),
        synthetic_image_size=image_size,
        records_per_shard=256,
    )


def child_ingest(n: int, image_size: int, data_dir: str, output_dir: str) -> dict:
    """Runs in a subprocess: ingest only (data already prepared), with memory figures."""
    from components import sources
    from components.ingest import ingest_dataset

    config = _config(n, image_size, data_dir)
    builder = sources.prepare(config)  # Loads the prepared dataset's info; no generation.
    # Encoded examples as TFDS stores them: what ingest reads.
    source_bytes = sum(info.num_bytes for info in builder.info.splits.values())
    rss_before = _rss_mb()
    started = time.perf_counter()
    info = ingest_dataset(config, output_dir, progress_every=10**9)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    statistics = bench_statistics(config, output_dir, first_ingest_seconds=seconds)
    records = sum(split["num_records"] for split in info["splits"].values())
    return {
        "records": records,
        "seconds": seconds,
        "source_mb": source_bytes / 1e6,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak,
        **statistics,
    }


def bench_statistics(config, output_dir: str, *, first_ingest_seconds: float, repeats: int = 3):
    """The data-statistics pass against ingest, alternated and timed ``repeats`` times each.

    The machine is shared, so each figure is the fastest of its repeats, and ingest and
    the statistics pass alternate so both see the same load. Ingest repeats write to a
    scratch folder; the statistics pass reads ``output_dir``.
    """
    from components.ingest import ingest_dataset
    from components.statistics import compute_statistics

    ingest_times = [first_ingest_seconds]
    statistics_times = []
    for attempt in range(repeats):
        started = time.perf_counter()
        compute_statistics(output_dir)
        statistics_times.append(time.perf_counter() - started)
        if attempt < repeats - 1:
            scratch = output_dir + "_again"
            started = time.perf_counter()
            ingest_dataset(config, scratch, progress_every=10**9)
            ingest_times.append(time.perf_counter() - started)
            shutil.rmtree(scratch, ignore_errors=True)
    return {"ingest_best_seconds": min(ingest_times), "statistics_seconds": min(statistics_times)}


def _numpy_counts(dataset_dir: str, image_size: int) -> tuple[list[int], int, float]:
    """The baseline: a plain Python/NumPy pass over the same masks."""
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from components import dataset_info, schema

    started = time.perf_counter()
    counts = np.zeros(schema.NUM_CLASSES, np.int64)
    images = 0
    paths = dataset_info.shard_paths(dataset_dir, "train")
    for serialized in tf.data.TFRecordDataset(paths).as_numpy_iterator():
        # Protobuf parse, PIL decode, NumPy resize and count: one record at a time.
        example = tf.train.Example.FromString(serialized)
        png = example.features.feature["mask"].bytes_list.value[0]
        mask = np.asarray(Image.open(io.BytesIO(png)))
        height, width = mask.shape[:2]
        # Nearest neighbour with half-pixel centres, as tf.image.resize(method="nearest").
        steps = np.arange(image_size) + 0.5
        rows = np.minimum((steps * height / image_size).astype(int), height - 1)
        cols = np.minimum((steps * width / image_size).astype(int), width - 1)
        resized = mask.reshape(height, width)[rows[:, None], cols[None, :]]
        counts += np.bincount(resized.ravel(), minlength=schema.NUM_CLASSES)[: schema.NUM_CLASSES]
        images += 1
    return counts.tolist(), images, time.perf_counter() - started


def bench_class_weights(dataset_dir: str, image_size: int) -> dict:
    from components.class_weights import count_mask_pixels

    count_mask_pixels(dataset_dir, image_size)  # Warm up tf.data and tracing.
    started = time.perf_counter()
    counted = count_mask_pixels(dataset_dir, image_size)
    tf_seconds = time.perf_counter() - started
    numpy_counts, images, numpy_seconds = _numpy_counts(dataset_dir, image_size)
    return {
        "images": images,
        "tf_seconds": tf_seconds,
        "numpy_seconds": numpy_seconds,
        "counts_agree": numpy_counts == counted["pixel_counts"],
        "tf_counts": counted["pixel_counts"],
        "numpy_counts": numpy_counts,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=150, help="train images in the small run (4N in the large)"
    )
    parser.add_argument(
        "--image-size", type=int, default=256, help="long side of the synthetic images"
    )
    parser.add_argument("--weights-size", type=int, default=128, help="class-weights resolution")
    parser.add_argument(
        "--workdir",
        default=None,
        help="where to put and keep the data (default: a temp dir, removed)",
    )
    parser.add_argument(
        "--child", nargs=4, metavar=("N", "SIZE", "DATA_DIR", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)

    if args.child:
        n, size, data_dir, output_dir = args.child
        print(json.dumps(child_ingest(int(n), int(size), data_dir, output_dir)))
        return

    from components import sources

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_ingest_"))
    data_dir = str(workdir / "tfds")
    rows = []
    for n in (args.n, 4 * args.n):
        started = time.perf_counter()
        sources.prepare(_config(n, args.image_size, data_dir))
        generate_seconds = time.perf_counter() - started
        output_dir = str(workdir / f"dataset_{n}")
        completed = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(n),
                str(args.image_size),
                data_dir,
                output_dir,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        ingest = json.loads(completed.stdout.strip().splitlines()[-1])
        weights = bench_class_weights(output_dir, args.weights_size)
        rows.append((n, generate_seconds, ingest, weights))

    print(
        f"\nsynthetic_pets, long side {args.image_size} px; class weights at {args.weights_size} px"
    )
    print(
        f"{'train N':>8} {'records':>8} {'gen s':>7} {'ingest s':>9} {'img/s':>8} {'MB/s':>7} "
        f"{'RSS before':>11} {'peak RSS':>9} {'growth':>7}"
    )
    for n, generate_seconds, ingest, _ in rows:
        images_per_second = ingest["records"] / ingest["seconds"]
        megabytes_per_second = ingest["source_mb"] / ingest["seconds"]
        print(
            f"{n:>8} {ingest['records']:>8} {generate_seconds:>7.1f} {ingest['seconds']:>9.2f} "
            f"{images_per_second:>8.1f} {megabytes_per_second:>7.2f} "
            f"{ingest['rss_before_mb']:>9.0f}MB {ingest['peak_rss_mb']:>7.0f}MB "
            f"{ingest['peak_rss_mb'] - ingest['rss_before_mb']:>5.0f}MB"
        )
    print(
        f"\n{'train N':>8} {'masks':>6} {'tf.data masks/s':>16} {'NumPy masks/s':>14} "
        f"{'speed-up':>9} {'agree':>6}"
    )
    for n, _, _, weights in rows:
        tf_rate = weights["images"] / weights["tf_seconds"]
        numpy_rate = weights["images"] / weights["numpy_seconds"]
        print(
            f"{n:>8} {weights['images']:>6} {tf_rate:>16.1f} {numpy_rate:>14.1f} "
            f"{tf_rate / numpy_rate:>8.2f}x {weights['counts_agree']!s:>6}"
        )
        if not weights["counts_agree"]:
            print(
                f"  counts differ: tf.data {weights['tf_counts']} NumPy {weights['numpy_counts']}"
            )
    print(
        f"\n{'train N':>8} {'ingest s':>9} {'statistics s':>13} {'added':>7}  "
        "(data statistics after ingest, best of 3 each; goal <= 20%)"
    )
    for n, _, ingest, _ in rows:
        best = ingest["ingest_best_seconds"]
        added = ingest["statistics_seconds"] / best
        print(f"{n:>8} {best:>9.2f} {ingest['statistics_seconds']:>13.2f} {added:>7.1%}")
    growth = [ingest["peak_rss_mb"] - ingest["rss_before_mb"] for _, _, ingest, _ in rows]
    print(f"\ningest memory growth: {growth[0]:.0f} MB at N, {growth[1]:.0f} MB at 4N")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
