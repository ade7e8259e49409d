"""Segmentation quality on real photos: the tutorial's recipe against the production preset.

Both recipes go through petseg's own code path in the same run: the folder source and
ingest (``components.data.ingest``), the train step's
``components.model.train.train_model`` with its
input pipeline, and the evaluate step's ``components.evaluation.evaluate.evaluate_model``.

Data (``../shared/data`` beside the repository, or --shared-data / $PETSEG_SHARED_DATA):

- ``oxford_real`` (687 Oxford-IIIT Pet photos) as a folder source: validation (10%) and
  test (15%) carved by petseg's split rule (key hash), the rest trains;
- ``oxford_holdout`` (26 other photos), test only: never trained, tuned or picked on.

Scored on the carved test photos plus the holdout (about 130 photos), each part printed
apart as well; the last line is the combined figures::

    quality: production mean_iou=… pixel_accuracy=… | tutorial mean_iou=… pixel_accuracy=…

The tutorial's recipe is the ``tutorial`` preset: [0, 1] inputs, frozen ImageNet encoder,
Adam 1e-3, 20 epochs, batch 64, flips only, 128 px. The encoder weights are the shared
``mobilenet_v2_..._1.0_224_no_top.h5`` (what ``imagenet`` downloads; no internet here).

Time: about 21 minutes on 2 CPU cores at the defaults (ingest 5 s, tutorial recipe about
6 min, production preset about 14 min at 160 px: its fine-tuning epochs train the encoder too).
Extra recipes for before/after figures: ``--variant NAME:key=value,key=value`` trains the
production preset with those overrides as one more column (each adds its training time).

Usage::

    python benchmarks/bench_quality.py
    python benchmarks/bench_quality.py --variant no_fine_tune:training.fine_tune_epochs=0
    python benchmarks/bench_quality.py --variant px160:model.image_size=160
    python benchmarks/bench_quality.py --limit 32 --holdout-limit 4 --image-size 32 \\
        --epochs 1 --fine-tune-epochs 1 --batch-size 8          # smoke test, ~1 min
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
VALIDATION_FRACTION = 0.1
TEST_FRACTION = 0.15
FOLDER_FIELDS = {"source": "folder", "masks_folder": "trimaps"}


def shared_data_dir(flag: str | None) -> Path:
    """--shared-data, else $PETSEG_SHARED_DATA, else ../shared/data beside the repository
    (or beside the folder of worktrees when this checkout is a git worktree)."""
    if flag or os.environ.get("PETSEG_SHARED_DATA"):
        return Path(flag or os.environ["PETSEG_SHARED_DATA"])
    candidates = [REPO.parent / "shared" / "data", REPO.parent.parent / "shared" / "data"]
    return next((path for path in candidates if path.is_dir()), candidates[0])


def link_photos(source: Path, target: Path, limit: int | None) -> int:
    """Symlinks the first `limit` image/trimap pairs (by stem) of `source` into `target`."""
    stems = sorted(path.stem for path in (source / "images").glob("*.jpg"))[:limit]
    for folder, extension in (("images", "jpg"), ("trimaps", "png")):
        (target / folder).mkdir(parents=True, exist_ok=True)
        for stem in stems:
            (target / folder / f"{stem}.{extension}").symlink_to(
                source / folder / f"{stem}.{extension}"
            )
    return len(stems)


def ingest_views(shared: Path, work: Path, limit: int | None, holdout_limit: int | None):
    """Ingests oxford_real (validation and test carved) and the holdout (as test/ only).

    The holdout's dataset needs train and validation splits to exist; four real photos
    fill each, unused.
    """
    from components.data.ingest import ingest_dataset
    from components.platform.config import DataConfig

    marker = work / "ingested.json"
    wanted = {"limit": limit, "holdout_limit": holdout_limit, "shared": str(shared)}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        print(f"data: reusing the datasets ingested in {work}")
        return str(work / "real"), str(work / "holdout")
    if work.is_dir() and any(work.iterdir()):
        raise SystemExit(f"--workdir {work} is not empty and holds no matching ingest")
    real_view, holdout_view = work / "real_view", work / "holdout_view"
    count = link_photos(shared / "oxford_real", real_view, limit)
    holdout_count = link_photos(shared / "oxford_holdout", holdout_view / "test", holdout_limit)
    filler = work / "filler"
    link_photos(shared / "oxford_real", filler, 8)
    for split, stems in (("train", slice(0, 4)), ("validation", slice(4, 8))):
        for folder in ("images", "trimaps"):
            (holdout_view / split / folder).mkdir(parents=True)
            for path in sorted((filler / folder).iterdir())[stems]:
                (holdout_view / split / folder / path.name).symlink_to(path.resolve())
    real_config = DataConfig(
        **FOLDER_FIELDS,
        path=str(real_view),
        validation_fraction=VALIDATION_FRACTION,
        test_fraction=TEST_FRACTION,
    )
    holdout_config = DataConfig(**FOLDER_FIELDS, path=str(holdout_view))
    real_info = ingest_dataset(real_config, str(work / "real"), progress_every=10**9)
    ingest_dataset(holdout_config, str(work / "holdout"), progress_every=10**9)
    splits = {name: split["num_records"] for name, split in real_info["splits"].items()}
    print(
        f"data: oxford_real {count} photos -> train {splits.get('train')}, validation "
        f"{splits.get('validation')}, test {splits.get('test')} (carved); "
        f"oxford_holdout {holdout_count} photos (test only)"
    )
    marker.write_text(json.dumps(wanted))
    return str(work / "real"), str(work / "holdout")


def recipe_config(preset: str, overrides: list[str]):
    from components.platform.config import load_config

    return load_config(preset=preset, overrides=overrides)


def cpu_seconds() -> float:
    """User + system CPU time of this process and its threads so far (the machine is shared,
    so wall time alone says little)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def train_and_evaluate(
    name: str, config, real_dir: str, holdout_dir: str, work: Path, evaluation_size: int
) -> dict:
    """Trains one recipe on the real train split and scores it on validation and both test
    parts, every recipe at the same mask resolution (`evaluation_size`)."""
    import shutil

    import numpy as np

    from components.evaluation.evaluate import evaluate_model
    from components.evaluation.metrics import segmentation_metrics
    from components.model import train as train_lib
    from components.model.class_weights import compute_class_weights

    shutil.rmtree(work / name, ignore_errors=True)  # a reused --workdir: train afresh
    model_dir = str(work / name / "model")
    weights_path = None
    started, cpu_started = time.perf_counter(), cpu_seconds()
    if config.training.class_weighting != "none":
        weights_path = str(work / name / "class_weights.json")
        record = compute_class_weights(
            real_dir,
            config.model.image_size,
            config.training.class_weighting,
            config.training.fixed_class_weights,
        )
        record.write(weights_path)
    final = train_lib.train_model(
        real_dir,
        model_dir,
        str(work / name / "tensorboard"),
        config.model,
        config.training,
        weights_path,
    )
    train_seconds, train_cpu = time.perf_counter() - started, cpu_seconds() - cpu_started

    def score(dataset_dir: str, split: str) -> dict:
        return evaluate_model(model_dir, dataset_dir, split=split, evaluation_size=evaluation_size)

    parts = {
        "validation": score(real_dir, "validation"),
        "carved test": score(real_dir, "test"),
        "holdout": score(holdout_dir, "test"),
    }
    classes = parts["holdout"]["classes"]
    combined = np.asarray(parts["carved test"]["confusion_matrix"]) + np.asarray(
        parts["holdout"]["confusion_matrix"]
    )
    parts["combined"] = segmentation_metrics(combined, classes)
    parts["combined"]["num_images"] = sum(
        parts[part]["num_images"] for part in ("carved test", "holdout")
    )
    return {
        "parts": parts,
        "train_seconds": train_seconds,
        "train_cpu": train_cpu,
        "final": final,
    }


def describe(config) -> str:
    training, model = config.training, config.model
    items = [
        f"{model.image_size}px",
        f"{model.normalization} scaling",
        f"{training.epochs} epochs",
        f"batch {training.batch_size}",
        f"lr {training.learning_rate:g} {training.learning_rate_schedule}",
        training.loss.replace("_", " "),
    ]
    if training.fine_tune_epochs:
        items.append(
            f"+{training.fine_tune_epochs} fine-tune epochs at "
            f"x{training.fine_tune_learning_rate_factor:g} from block "
            f"{training.fine_tune_from_block}"
        )
    extra = []
    if training.augment_min_crop_scale < 1:
        extra.append(f"crop>={training.augment_min_crop_scale:g}")
    if training.augment_max_rotation_degrees:
        extra.append(f"rotate<={training.augment_max_rotation_degrees:g}deg")
    if training.augment_color_jitter:
        extra.append(f"colour {training.augment_color_jitter:g}")
    items.append("flips" + "".join(f"+{item}" for item in extra) if training.augment else "no aug")
    if training.keep_best_epoch:
        items.append("best epoch kept")
    if model.batchnorm_momentum is not None:
        items.append(f"BN momentum {model.batchnorm_momentum}")
    return ", ".join(items)


def print_table(results: dict[str, dict], configs: dict) -> None:
    classes = results[next(iter(results))]["parts"]["combined"]["classes"]
    print()
    for name, config in configs.items():
        if name in results:
            print(f"{name}: {describe(config)}")
    header = (
        f"\n{'recipe':<16} {'part':<12} {'photos':>6} {'mean IoU':>9} {'pixel acc':>9} "
        + " ".join(f"{cls[:10]:>10}" for cls in classes)
        + f" {'train s':>8} {'cpu s':>8}"
    )
    print(header)
    for name, result in results.items():
        for part in ("combined", "carved test", "holdout", "validation"):
            metrics = result["parts"][part]
            ious = [metrics["per_class"][cls]["iou"] for cls in classes]
            times = (
                f" {result['train_seconds']:>8.0f} {result['train_cpu']:>8.0f}"
                if part == "combined"
                else ""
            )
            print(
                f"{name:<16} {part:<12} {metrics['num_images']:>6} {metrics['mean_iou']:>9.3f} "
                f"{metrics['pixel_accuracy']:>9.3f} "
                + " ".join(f"{'-' if iou is None else f'{iou:.3f}':>10}" for iou in ious)
                + times
            )
        final = result["final"]
        print(
            f"{'':<16} (train mean IoU {final.get('mean_iou', float('nan')):.3f}, "
            f"validation {final.get('val_mean_iou', float('nan')):.3f} at the kept epoch)"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared-data", help="folder with oxford_real, oxford_holdout, weights")
    parser.add_argument("--weights", help="encoder weights file (default: the shared one)")
    parser.add_argument(
        "--workdir",
        help="where to ingest and train (default: a temp dir); a folder already ingested "
        "by an earlier run with the same limits is reused",
    )
    parser.add_argument("--limit", type=int, help="use only the first N oxford_real photos")
    parser.add_argument("--holdout-limit", type=int, help="use only the first N holdout photos")
    parser.add_argument("--image-size", type=int, help="every recipe's image size (smoke runs)")
    parser.add_argument("--epochs", type=int, help="every recipe's first-phase epochs")
    parser.add_argument("--fine-tune-epochs", type=int, help="the production fine-tune epochs")
    parser.add_argument("--batch-size", type=int, help="every recipe's batch size")
    parser.add_argument(
        "--evaluation-size",
        type=int,
        help="mask resolution every recipe is scored at (default: the tutorial's image size, "
        "so recipes at other sizes are compared on the same true pixels)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="one more recipe: the production preset with these overrides",
    )
    parser.add_argument(
        "--only",
        help="comma-separated recipes to train (default all); the last line needs both "
        "tutorial and production",
    )
    args = parser.parse_args(argv)

    shared = shared_data_dir(args.shared_data)
    weights = args.weights or str(shared / "weights" / WEIGHTS_FILE)
    if not os.path.exists(weights):
        parser.error(f"encoder weights {weights} not found; pass --weights or --shared-data")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_quality_"))

    common = [f"model.encoder_weights={weights}"]
    for flag, key in (
        (args.image_size, "model.image_size"),
        (args.epochs, "training.epochs"),
        (args.batch_size, "training.batch_size"),
    ):
        if flag is not None:
            common.append(f"{key}={flag}")
    production = list(common)
    if args.fine_tune_epochs is not None:
        production.append(f"training.fine_tune_epochs={args.fine_tune_epochs}")
    configs = {
        "tutorial": recipe_config("tutorial", common),
        "production": recipe_config("production", production),
    }
    for variant in args.variant:
        name, _, settings = variant.partition(":")
        configs[name] = recipe_config("production", production + settings.split(","))
    if args.only:
        chosen = args.only.split(",")
        unknown = sorted(set(chosen) - set(configs))
        if unknown:
            parser.error(f"--only names unknown recipes {unknown}; known: {', '.join(configs)}")
        configs = {name: config for name, config in configs.items() if name in chosen}
    evaluation_size = args.evaluation_size or recipe_config("tutorial", common).model.image_size

    print(f"machine: {os.cpu_count()} CPUs, load average {load_average()} (1, 5, 15 min)")
    started, cpu_started = time.perf_counter(), cpu_seconds()
    real_dir, holdout_dir = ingest_views(shared, work, args.limit, args.holdout_limit)
    print(f"ingest: {time.perf_counter() - started:.0f} s")
    results = {}
    for name, config in configs.items():
        results[name] = train_and_evaluate(
            name, config, real_dir, holdout_dir, work, evaluation_size
        )
        parts = results[name]["parts"]
        print(
            f"{name}: validation mean IoU {parts['validation']['mean_iou']:.3f}, combined test "
            f"{parts['combined']['mean_iou']:.3f} ({results[name]['train_seconds']:.0f} s, "
            f"{results[name]['train_cpu']:.0f} CPU s; load {load_average()})",
            flush=True,
        )
    print_table(results, configs)
    print(
        f"\nscored at {evaluation_size} px. total time: {time.perf_counter() - started:.0f} s "
        f"wall, {cpu_seconds() - cpu_started:.0f} s CPU (user+sys); "
        f"load average {load_average()}"
    )
    if "production" in results and "tutorial" in results:
        ours, theirs = (
            results["production"]["parts"]["combined"],
            results["tutorial"]["parts"]["combined"],
        )
        print(
            f"quality: production mean_iou={ours['mean_iou']:.3f} "
            f"pixel_accuracy={ours['pixel_accuracy']:.3f} | "
            f"tutorial mean_iou={theirs['mean_iou']:.3f} "
            f"pixel_accuracy={theirs['pixel_accuracy']:.3f}"
        )


if __name__ == "__main__":
    main()
