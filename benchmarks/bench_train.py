"""Input-pipeline and training throughput: ours against the tutorial's, in the same run.

On the same synthetic_pets data (prepared with TFDS, then ingested to our records):

- input pipeline, images/s: the tutorial's ``tfds.load`` → ``map(load_image)`` → cache →
  shuffle → batch → repeat → ``map(Augment())`` → prefetch, against
  ``components.model.input_pipeline.make_dataset`` (parallel shard reads, uint8 cache,
  per-example seeded
  flips), and against make_dataset with the production preset's augmentation (random
  crop/scale, rotation, colour jitter after the cache). The first epoch (decode and cache
  fill) and the cached epochs are timed apart.
- training, images/s: our train step (``components.model.train``'s compile, with the runtime
  plan ``components.model.devices`` picks: mixed precision and XLA on a GPU) on our input,
  against the tutorial's plain ``model.compile('adam', ...)`` + ``model.fit`` on its own
  input, both on the same U-Net. The first epoch (tracing, XLA compile) is left out.

Usage::

    python benchmarks/bench_train.py                       # ~1-2 minutes on 2 CPU cores
    python benchmarks/bench_train.py --train-size 1024 --image-size 128 --batch-size 64 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TFDS_DISABLE_GCS", "1")


def tutorial_input(builder, split: str, image_size: int, batch_size: int, seed: int):
    """The tutorial's input pipeline, as its notebook writes it (with nearest-neighbour masks)."""
    import keras
    import tensorflow as tf

    def normalize(input_image, input_mask):
        input_image = tf.cast(input_image, tf.float32) / 255.0
        input_mask -= 1
        return input_image, input_mask

    def load_image(datapoint):
        input_image = tf.image.resize(datapoint["image"], (image_size, image_size))
        input_mask = tf.image.resize(
            datapoint["segmentation_mask"],
            (image_size, image_size),
            method=tf.image.ResizeMethod.NEAREST_NEIGHBOR,
        )
        return normalize(input_image, input_mask)

    class Augment(keras.layers.Layer):
        def __init__(self, seed=42):
            super().__init__()
            self.augment_inputs = keras.layers.RandomFlip(mode="horizontal", seed=seed)
            self.augment_labels = keras.layers.RandomFlip(mode="horizontal", seed=seed)

        def call(self, inputs, labels):
            return self.augment_inputs(inputs), self.augment_labels(labels)

    dataset = builder.as_dataset(split=split)  # what tfds.load returns for a prepared builder
    images = dataset.map(load_image, num_parallel_calls=tf.data.AUTOTUNE)
    return (
        images.cache()
        .shuffle(1000, seed=seed)
        .batch(batch_size)
        .repeat()
        .map(Augment(seed))
        .prefetch(buffer_size=tf.data.AUTOTUNE)
    )


def time_epochs(dataset, steps: int, epochs: int) -> list[float]:
    """Seconds per epoch of pulling `steps` batches, for `epochs` epochs of one iterator."""
    iterator = iter(dataset)
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        for _ in range(steps):
            next(iterator)
        seconds.append(time.perf_counter() - started)
    return seconds


class EpochTimer:
    def __init__(self):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self._started = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._started)

        self.callback = _Timer()


def train_throughput(model_builder, compile_fn, dataset, steps, epochs, batch_size, strategy):
    timer = EpochTimer()
    with strategy.scope():
        model = model_builder()
        compile_fn(model)
    model.fit(
        dataset,
        epochs=epochs + 1,
        steps_per_epoch=steps,
        callbacks=[timer.callback],
        verbose=0,
    )
    timed = timer.callback.seconds[1:]  # the first epoch traces (and compiles with XLA)
    return steps * batch_size / statistics.median(timed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-size", type=int, default=128, help="synthetic train images")
    parser.add_argument("--source-size", type=int, default=160, help="synthetic image side")
    parser.add_argument("--image-size", type=int, default=96, help="model input side")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs after a warm-up")
    parser.add_argument("--data-dir", default=None, help="where to prepare and ingest the data")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from components.data import schema, sources
    from components.data.ingest import ingest_dataset
    from components.model import devices
    from components.model import input_pipeline as data
    from components.model import model as model_lib
    from components.model import train as train_lib
    from components.platform.config import DataConfig, TrainingConfig, load_config

    gpus, capabilities = devices.visible_gpus()
    plan = devices.choose_runtime(gpus, TrainingConfig(), capabilities)
    print(
        f"device: {', '.join(gpu.name for gpu in gpus) or 'CPU only'}; our plan: {plan.describe()}"
    )
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}")

    work_dir = args.data_dir or tempfile.mkdtemp(prefix="bench_train_")
    data_config = DataConfig(
        dataset="synthetic_pets",
        data_dir=os.path.join(work_dir, "tfds"),
        synthetic_train_size=args.train_size,
        synthetic_test_size=max(1, args.train_size // 8),
        synthetic_image_size=args.source_size,
        records_per_shard=max(1, args.train_size // 4),
    )
    builder = sources.prepare(data_config)
    dataset_dir = os.path.join(work_dir, "records")
    if not os.path.exists(os.path.join(dataset_dir, "dataset.json")):
        ingest_dataset(data_config, dataset_dir, progress_every=10**9)

    size, batch = args.image_size, args.batch_size
    steps = args.train_size // batch
    images_per_epoch = steps * batch
    print(
        f"data: {args.train_size} train images at {args.source_size}px -> {size}px, "
        f"batch {batch}, {steps} steps/epoch"
    )

    # Input pipeline alone: one cold epoch (decode + cache fill), then cached epochs.
    ours = data.make_dataset(
        dataset_dir,
        "train",
        size,
        batch,
        training=True,
        augment=True,
        seed=42,
        drop_remainder=True,
    ).repeat()
    production = load_config(preset="production").training
    augmented = data.make_dataset(
        dataset_dir,
        "train",
        size,
        batch,
        training=True,
        augment=True,
        seed=42,
        drop_remainder=True,
        augmentation=train_lib.augmentation_for(production),
    ).repeat()
    theirs = tutorial_input(builder, "train", size, batch, seed=42)
    input_epochs = 1 + max(2, args.epochs)
    ours_seconds = time_epochs(ours, steps, input_epochs)
    augmented_seconds = time_epochs(augmented, steps, input_epochs)
    theirs_seconds = time_epochs(theirs, steps, input_epochs)
    print("\ninput pipeline, images/s        first epoch   cached epochs (median)")
    for name, seconds in (
        ("tutorial (tfds.load + map)", theirs_seconds),
        ("petseg make_dataset", ours_seconds),
        ("petseg, production augment", augmented_seconds),
    ):
        cold = images_per_epoch / seconds[0]
        warm = images_per_epoch / statistics.median(seconds[1:])
        print(f"  {name:28s} {cold:12.0f} {warm:14.0f}")
    print(
        f"  speed-up (ours/tutorial)     {theirs_seconds[0] / ours_seconds[0]:12.2f}x "
        f"{statistics.median(theirs_seconds[1:]) / statistics.median(ours_seconds[1:]):13.2f}x"
    )

    # Training: the same U-Net, our compile + plan + input against the tutorial's fit.
    keras.utils.set_random_seed(0)

    def build():
        return model_lib.build_unet(size, encoder_weights="none", normalization="tutorial")

    def tutorial_compile(model):
        model.compile(
            optimizer="adam",
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    def our_compile(model):
        train_lib._compile(model, 1e-3, plan.jit_compile, schema.NUM_CLASSES)

    theirs_rate = train_throughput(
        build, tutorial_compile, theirs, steps, args.epochs, batch, tf.distribute.get_strategy()
    )
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(plan.precision_policy)
    try:
        ours_rate = train_throughput(
            build, our_compile, ours, steps, args.epochs, batch, devices.make_strategy(plan)
        )
    finally:
        keras.mixed_precision.set_dtype_policy(previous)
    print("\ntraining, images/s (after a warm-up epoch)")
    print(f"  tutorial model.fit (float32, no XLA)   {theirs_rate:8.1f}")
    print(
        f"  petseg train step ({plan.precision_policy}, XLA {plan.jit_compile}) {ours_rate:8.1f}"
        f"   speed-up {ours_rate / theirs_rate:.2f}x"
    )
    print(
        "  (on CPU both run float32 without XLA: the difference is the input pipeline and "
        "the compiled metrics; on a GPU the plan adds mixed precision and XLA)"
    )


if __name__ == "__main__":
    main()
