"""Ingest and class-weights throughput, ingest's peak memory at N and 4N images, and
ingest's speed-up from checking records on every core.

Prints:

- parallel ingest: images/s on one core (the process pinned to it, one checking
  thread) and on all cores (one checking thread per core), for the TFDS source
  (synthetic_pets) and the folder source (the same kind of images as JPEG files with
  PNG masks), each run in a fresh subprocess; the speed-up is all cores over one
  core, measured in the same run (goal: at least 1.7x on 2 cores). It runs at
  Oxford's image size (long side 500 px) by default: smaller images leave more of
  the time to the serial part (reading the source, writing shards), so the speed-up
  at 256 px is lower (--parallel-image-size 256 shows it).

and, for N and 4N synthetic_pets train images (test split a quarter of that):

- ingest: images/s and MB/s (encoded source bytes read), peak RSS and its growth
  during ingest, each measured in a fresh subprocess so one run's peak cannot
  hide another's. Flat memory means the growth at 4N is about the growth at N.
- data statistics: ingest with and without gathering the statistics as it writes
  (what the pipeline does), and the separate pass over the shards (what the
  data-statistics step does for a dataset without stored statistics), in the same
  process, best of 3 each, alternating; the time each adds to ingest (goal: at
  most 20%).
- class weights: masks/s of the streaming tf.data pass against a plain NumPy
  pass (PIL decode, nearest-neighbour index resize, np.bincount) over the same
  masks, measured in the same run; the two pixel counts must agree.

Usage::

    python benchmarks/bench_ingest.py            # N=150 at 256 px, a few minutes
    python benchmarks/bench_ingest.py --parallel-only --parallel-n 1500
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
    from components.platform.config import DataConfig

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
    from components.data import sources
    from components.data.ingest import ingest_dataset

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
    """Ingest with and without gathering statistics, and the separate pass over the shards.

    The machine is shared, so each figure is the fastest of its repeats, and the runs
    alternate so all see the same load. The first ingest (with statistics) wrote
    ``output_dir``; the others write to a scratch folder. The separate pass
    (``compute_statistics``, what the data-statistics step does for a dataset without
    stored statistics) reads ``output_dir``.
    """
    from components.data.ingest import ingest_dataset
    from components.data.statistics import compute_statistics

    with_statistics = [first_ingest_seconds]
    without_statistics = []
    separate_pass = []
    scratch = output_dir + "_again"
    for attempt in range(repeats):
        for gather, times in ((False, without_statistics), (True, with_statistics)):
            if gather and attempt == 0:
                continue  # the first ingest was this one
            started = time.perf_counter()
            ingest_dataset(config, scratch, progress_every=10**9, statistics=gather)
            times.append(time.perf_counter() - started)
            shutil.rmtree(scratch, ignore_errors=True)
        started = time.perf_counter()
        compute_statistics(output_dir)
        separate_pass.append(time.perf_counter() - started)
    return {
        "ingest_best_seconds": min(with_statistics),
        "ingest_without_statistics_seconds": min(without_statistics),
        "statistics_seconds": min(separate_pass),
    }


def child_parallel(source: str, n: int, image_size: int, where: str, workers: int, out: str):
    """Runs in a subprocess: one ingest of an already written source with ``workers``.

    With one worker the process is pinned to one core, so TensorFlow's reader threads
    cannot borrow another one: "1 core" means one core, not one checking thread.
    """
    if workers == 1 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from components.data.ingest import ingest_dataset
    from components.platform.config import DataConfig

    if source == "tfds":
        config = _config(n, image_size, where).model_copy(update={"download": False})
    else:
        from components.data import synthetic_pets

        fields = synthetic_pets.folder_class_table(3, "values")
        config = DataConfig(source="folder", path=where, records_per_shard=256, **fields)
    started = time.perf_counter()
    info = ingest_dataset(config, out, progress_every=10**9, workers=workers)
    seconds = time.perf_counter() - started
    records = sum(split["num_records"] for split in info["splits"].values())
    return {"records": records, "seconds": seconds, "fingerprint": info["fingerprint"]["dataset"]}


def bench_parallel(workdir: Path, n: int, image_size: int) -> list[tuple]:
    """(source, cores, one-worker result, all-cores result) for TFDS and folder."""
    from components.data import sources, synthetic_pets
    from components.data.ingest import worker_count

    cores = worker_count(_config(n, image_size, str(workdir)))
    data_dir = str(workdir / "tfds_parallel")
    sources.prepare(_config(n, image_size, data_dir))
    folder = str(workdir / "folder")
    synthetic_pets.write_folder_dataset(folder, n, image_size=image_size)
    rows = []
    for source, where in (("tfds", data_dir), ("folder", folder)):
        results = []
        for workers in (1, cores):
            completed = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child-parallel",
                    source,
                    str(n),
                    str(image_size),
                    where,
                    str(workers),
                    str(workdir / f"parallel_{source}_{workers}"),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            results.append(json.loads(completed.stdout.strip().splitlines()[-1]))
        rows.append((source, cores, results[0], results[1]))
    return rows


def print_parallel(rows: list[tuple], n: int, image_size: int) -> None:
    print(f"\nparallel ingest, {n} source images, long side {image_size} px")
    print(
        f"{'source':>7} {'records':>8} {'1 core img/s':>13} {'cores':>6} {'all img/s':>10} "
        f"{'speed-up':>9} {'same output':>12}"
    )
    for source, cores, one, every in rows:
        one_rate = one["records"] / one["seconds"]
        every_rate = every["records"] / every["seconds"]
        same = one["fingerprint"] == every["fingerprint"]
        print(
            f"{source:>7} {one['records']:>8} {one_rate:>13.1f} {cores:>6} {every_rate:>10.1f} "
            f"{every_rate / one_rate:>8.2f}x {same!s:>12}"
        )


def _numpy_counts(dataset_dir: str, image_size: int) -> tuple[list[int], int, float]:
    """The baseline: a plain Python/NumPy pass over the same masks."""
    import numpy as np
    import tensorflow as tf
    from PIL import Image

    from components.data import dataset_info, schema

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
    from components.model.class_weights import count_mask_pixels

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
        "--parallel-n", type=int, default=400, help="source images in the parallel comparison"
    )
    parser.add_argument(
        "--parallel-image-size",
        type=int,
        default=500,
        help="long side of the images in the parallel comparison (Oxford's is about 500)",
    )
    parser.add_argument(
        "--parallel-only", action="store_true", help="only the 1-core vs all-cores comparison"
    )
    parser.add_argument(
        "--child", nargs=4, metavar=("N", "SIZE", "DATA_DIR", "OUT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--child-parallel", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        n, size, data_dir, output_dir = args.child
        print(json.dumps(child_ingest(int(n), int(size), data_dir, output_dir)))
        return
    if args.child_parallel:
        source, n, size, where, workers, output_dir = args.child_parallel
        result = child_parallel(source, int(n), int(size), where, int(workers), output_dir)
        print(json.dumps(result))
        return

    from components.data import sources

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_ingest_"))
    parallel = bench_parallel(workdir, args.parallel_n, args.parallel_image_size)
    print_parallel(parallel, args.parallel_n, args.parallel_image_size)
    if args.parallel_only:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
        return
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
        f"\n{'train N':>8} {'ingest s':>9} {'+statistics s':>14} {'added':>7} "
        f"{'separate pass s':>16} {'added':>7}"
    )
    print(
        "  (ingest without and with gathering statistics, and the separate pass over the\n"
        "   shards against ingest without; best of 3 each, alternating; goal <= 20%)"
    )
    for n, _, ingest, _ in rows:
        plain = ingest["ingest_without_statistics_seconds"]
        gathered = ingest["ingest_best_seconds"]
        separate = ingest["statistics_seconds"]
        print(
            f"{n:>8} {plain:>9.2f} {gathered:>14.2f} {gathered / plain - 1:>7.1%} "
            f"{separate:>16.2f} {separate / plain:>7.1%}"
        )
    growth = [ingest["peak_rss_mb"] - ingest["rss_before_mb"] for _, _, ingest, _ in rows]
    print(f"\ningest memory growth: {growth[0]:.0f} MB at N, {growth[1]:.0f} MB at 4N")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
