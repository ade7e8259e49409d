"""Training images/s per worker: two loopback workers against one, in the same run.

Both runs are ``components.model.loopback`` jobs (one process per worker with its own
TF_CONFIG, 127.0.0.1) training the real ``train_model`` on the demo's synthetic_pets
data (prepared with TFDS, then ingested to our records) on CPU:

- baseline: one worker, per-replica batch B, so a step takes B images;
- two workers under MultiWorkerMirroredStrategy, per-replica batch B each (global 2B),
  each reading its own shard files and all-reducing gradients every step.

An epoch is timed from its first step to its end (validation included), the first epoch
(tracing, graph building) left out. Per worker, a step processes B images in both runs,
so "images/s per worker" compares like with like; on a 2-core machine shared by both
workers this is a correctness and overhead figure, not a speed-up claim.

Usage::

    python benchmarks/bench_multiworker.py                     # a few minutes on 2 CPU cores
    python benchmarks/bench_multiworker.py --train-size 256 --image-size 64 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDS_DISABLE_GCS", "1")


def run_job(
    num_workers: int,
    dataset_dir: str,
    work_dir: str,
    model_config,
    training_config,
    small_encoder: bool = False,
):
    """Runs one loopback job to the end; returns each worker's result."""
    from components.model import loopback

    arguments = loopback.worker_arguments(
        dataset_dir,
        os.path.join(work_dir, "model"),
        os.path.join(work_dir, "tensorboard"),
        model_config,
        training_config,
        small_encoder=small_encoder,
    )
    with loopback.LoopbackJob(num_workers, arguments, os.path.join(work_dir, "job")) as job:
        codes = job.wait(timeout=3600)
        if codes != [0] * num_workers:
            raise SystemExit(f"{num_workers}-worker job failed: {codes}\n{job.tail_logs()}")
        return job.results()


def images_per_second(result: dict, images_per_epoch: int) -> float:
    """Median rate of the timed epochs (all but the first)."""
    timed = result["epoch_seconds"][1:] or result["epoch_seconds"]
    return images_per_epoch / statistics.median(timed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-size", type=int, default=128, help="synthetic train images")
    parser.add_argument("--source-size", type=int, default=96, help="synthetic image side")
    parser.add_argument("--image-size", type=int, default=64, help="model input side")
    parser.add_argument("--batch-size", type=int, default=8, help="per-replica batch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs; the first is not timed")
    parser.add_argument("--data-dir", default=None, help="where to prepare and ingest the data")
    parser.add_argument(
        "--small-encoder",
        action="store_true",
        help="a five-convolution encoder instead of MobileNetV2 (the smoke test's shortcut)",
    )
    args = parser.parse_args(argv)

    from components.data import sources
    from components.data.ingest import ingest_dataset
    from components.platform.config import DataConfig, ModelConfig, TrainingConfig

    work_dir = args.data_dir or tempfile.mkdtemp(prefix="bench_multiworker_")
    data_config = DataConfig(
        dataset="synthetic_pets",
        data_dir=os.path.join(work_dir, "tfds"),
        synthetic_train_size=args.train_size,
        synthetic_test_size=max(1, args.train_size // 8),
        synthetic_image_size=args.source_size,
        # At least two train shards, so each of two workers has its own files.
        records_per_shard=max(1, args.train_size // 8),
    )
    sources.prepare(data_config)
    dataset_dir = os.path.join(work_dir, "records")
    if not os.path.exists(os.path.join(dataset_dir, "dataset.json")):
        ingest_dataset(data_config, dataset_dir, progress_every=10**9)

    from components.data import dataset_info, splits

    num_train = dataset_info.split_size(dataset_dir, splits.TRAIN)
    model_config = ModelConfig(image_size=args.image_size, encoder_weights="none")
    batch = args.batch_size
    print(
        f"data: {num_train} train images at {args.source_size}px -> {args.image_size}px, "
        f"per-replica batch {batch}, {args.epochs} epochs (first not timed), "
        f"{'small' if args.small_encoder else 'MobileNetV2'} encoder, CPU, "
        f"{os.cpu_count()} cores"
    )

    settings = {"epochs": args.epochs, "batch_size": batch, "tensorboard_images": 0, "seed": 7}
    rates = {}
    for workers in (1, 2):
        results = run_job(
            workers,
            dataset_dir,
            os.path.join(work_dir, f"{workers}_workers"),
            model_config,
            TrainingConfig(**settings),
            small_encoder=args.small_encoder,
        )
        # Every worker takes `batch` images per step; an epoch is one pass at the global batch.
        steps = max(1, num_train // (batch * workers))
        per_worker = [images_per_second(result, steps * batch) for result in results]
        rates[workers] = statistics.mean(per_worker)
        label = "baseline, 1 worker " if workers == 1 else "2 loopback workers"
        print(
            f"{label}: {rates[workers]:.1f} images/s per worker, "
            f"{sum(per_worker):.1f} images/s in all ({steps} steps/epoch, global batch "
            f"{batch * workers})"
        )
    print(
        f"per-worker rate, 2 workers / 1: {rates[2] / rates[1]:.2f} "
        "(both workers share this machine's cores; below 1 is the cost of sharing and of "
        "the all-reduce, not a verdict on several machines)"
    )


if __name__ == "__main__":
    main()
