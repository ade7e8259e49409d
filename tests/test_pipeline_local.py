"""The whole pipeline through kfp.local on the synthetic dataset, twice.

Small sizes keep it to a few minutes on 2 cores; the assertions are on what
each task wrote: records, weights, a model that predicts, metrics, the push.
The first run gives epochs and the push destination only at run time, as a
Vertex AI or Kubeflow run would.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from components.platform.config import load_config
from pipelines.local import LocalRunError, format_summary, run_local

pytestmark = pytest.mark.slow

SMALL = [
    "data.synthetic_train_size=24",
    "data.synthetic_test_size=8",
    "data.synthetic_image_size=64",
    "data.records_per_shard=10",
    "model.image_size=64",
    "training.epochs=2",
    "training.batch_size=8",
    "training.class_weighting=median_frequency",
    "evaluation.report_images=2",
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="module")
def photos(workspace):
    """Images for the predict step: two non-square ones and one that is not an image."""
    from PIL import Image

    folder = workspace / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 70, 3), dtype=np.uint8)).save(folder / "wide.png")
    Image.fromarray(rng.integers(0, 256, (90, 30, 3), dtype=np.uint8)).save(folder / "tall.jpg")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


@pytest.fixture(scope="module")
def blessed_run(workspace, photos):
    config = load_config(
        "demo",
        overrides=[
            *SMALL,
            f"data.data_dir={workspace / 'tfds'}",
            "push.destination=",
            "evaluation.min_mean_iou=0.0",
            "evaluation.baseline=latest",
            f"predict.input={photos}",
        ],
    )
    printed = io.StringIO()
    summary = run_local(
        config,
        pipeline_root=workspace / "root-blessed",
        parameters={"epochs": 1, "push_destination": str(workspace / "models")},
        out=printed,
    )
    summary.printed = printed.getvalue()
    return summary


def test_run_time_values_change_only_what_they_name(blessed_run):
    resolved = blessed_run.task("resolve-config").parameters
    training = json.loads(resolved["training_config"])
    assert training["epochs"] == 1  # the run-time value
    # Everything else keeps the compiled values: SMALL and the demo preset, not the defaults.
    assert (training["batch_size"], training["learning_rate"]) == (8, 2e-3)
    assert training["class_weighting"] == "median_frequency"
    model = json.loads(resolved["model_config"])
    assert (model["image_size"], model["encoder_weights"], model["freeze_encoder"]) == (
        64,
        "none",
        False,
    )
    # ...and train really used them.
    model_dir = Path(blessed_run.task("train").artifacts["model"]["uri"])
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert metadata["training"] == training
    assert (metadata["image_size"], metadata["encoder_trainable"]) == (64, True)


def test_ingest_wrote_sharded_records_and_facts(blessed_run):
    dataset = blessed_run.task("ingest").artifacts["dataset"]
    info = json.loads((Path(dataset["uri"]) / "dataset.json").read_text())
    num_train = info["splits"]["train"]["num_records"]
    # Validation is carved from the 24 train records; test stays the source's test.
    assert num_train + info["splits"]["validation"]["num_records"] == 24
    assert info["splits"]["validation"]["num_records"] > 0
    assert info["splits"]["test"]["num_records"] == 8
    shards = sorted((Path(dataset["uri"]) / "train").glob("*.tfrecord"))
    assert len(shards) == -(-num_train // 10)  # 10 per shard
    assert dataset["metadata"]["fingerprint"] == info["fingerprint"]["dataset"]
    assert dataset["metadata"]["classes"] == ["pet", "background", "border"]


def test_class_weights_json_is_finite_and_logged(blessed_run):
    task = blessed_run.task("compute-class-weights")
    weights = json.loads(Path(task.artifacts["class_weights"]["uri"]).read_text())
    assert weights["strategy"] == "median_frequency"
    assert len(weights["weights"]) == 3 and all(np.isfinite(weights["weights"]))
    assert sum(weights["pixel_counts"]) == weights["num_images"] * 64 * 64
    assert 16 < weights["num_images"] < 24  # the train split, without the carved validation
    assert task.artifacts["metrics"]["metadata"]


def test_trained_model_loads_and_predicts(blessed_run):
    from components.model.model import load_model_dir

    model_dir = blessed_run.task("train").artifacts["model"]["uri"]
    model, metadata = load_model_dir(model_dir)
    assert metadata.image_size == 64
    logits = model.predict(np.zeros((2, 64, 64, 3), np.float32), verbose=0)
    assert logits.shape == (2, 64, 64, 3)


def test_evaluation_metrics_and_push_when_blessed(blessed_run):
    evaluate = blessed_run.task("evaluate")
    metrics = evaluate.artifacts["metrics"]["metadata"]
    assert 0.0 <= metrics["mean_iou"] <= 1.0
    assert 0.0 <= metrics["pixel_accuracy"] <= 1.0
    assert blessed_run.blessed is True
    pushed = blessed_run.pushed_uri
    assert pushed and Path(pushed).is_dir()
    assert (Path(pushed) / "manifest.json").is_file()
    report = format_summary(blessed_run)
    assert "blessed: True" in report and str(pushed) in report


def test_predict_step_segments_the_input_with_the_pushed_model(blessed_run, photos):
    from PIL import Image

    predictions = blessed_run.task("predict").artifacts["predictions"]
    metadata = predictions["metadata"]
    assert metadata["predicted"] == 2 and metadata["unreadable"] == 1
    assert metadata["unreadable_files"] == [str(photos / "broken.png")]
    assert metadata["model"] == blessed_run.pushed_uri and metadata["skip_reason"] == ""
    folder = Path(predictions["uri"])
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    assert [(Path(row["file"]).name, row["height"], row["width"]) for row in rows] == [
        ("tall.jpg", 90, 30),
        ("wide.png", 40, 70),
    ]
    assert np.asarray(Image.open(folder / "masks" / "tall.png")).shape == (90, 30)
    assert np.asarray(Image.open(folder / "overlays" / "wide.png")).shape == (40, 70, 3)
    assert f"predictions: {folder} (2 images, 1 unreadable)" in format_summary(blessed_run)


def test_quiet_run_prints_a_start_and_an_end_line_per_step_with_its_figures(blessed_run):
    lines = blessed_run.printed.splitlines()
    steps = [
        *("resolve-config", "ingest", "data-statistics", "compute-class-weights"),
        *("enforce-data-checks", "train", "evaluate", "push", "predict"),
    ]
    # kfp.local runs one step at a time, so each start line is followed by its end line; steps
    # that do not depend on each other (statistics, class weights) may run in either order.
    assert len(lines) == 2 * len(steps), blessed_run.printed
    ran = []
    for start_line, end_line in zip(lines[::2], lines[1::2], strict=True):
        started = re.match(r"\d\d:\d\d:\d\d started  (\S+)$", start_line)
        assert started, start_line
        ran.append(started.group(1))
        assert re.match(r"\d\d:\d\d:\d\d finished " + re.escape(ran[-1]) + " in ", end_line)
    assert sorted(ran) == sorted(steps)
    for upstream, downstream in [
        ("resolve-config", "ingest"),
        ("ingest", "data-statistics"),
        ("ingest", "compute-class-weights"),
        ("data-statistics", "enforce-data-checks"),
        ("enforce-data-checks", "train"),
        ("compute-class-weights", "train"),
        ("train", "evaluate"),
        ("evaluate", "push"),
        ("push", "predict"),
    ]:
        assert ran.index(upstream) < ran.index(downstream), ran
    by_step = {line.split()[2]: line for line in lines if " finished " in line}
    dataset = Path(blessed_run.task("ingest").artifacts["dataset"]["uri"])
    splits = json.loads((dataset / "dataset.json").read_text())["splits"]
    order = [split for split in ("train", "validation", "test") if split in splits]
    counts = ", ".join(f"{split} {splits[split]['num_records']}" for split in order)
    assert by_step["ingest"].endswith(f": records {counts}")
    weights = by_step["compute-class-weights"]
    assert "weights (median_frequency) pet " in weights and ", border " in weights
    train_metrics = blessed_run.task("train").artifacts["metrics"]["metadata"]
    assert f"val_mean_iou {train_metrics['val_mean_iou']:.3f}" in by_step["train"]
    eval_metrics = blessed_run.task("evaluate").artifacts["metrics"]["metadata"]
    assert f"mean_iou {eval_metrics['mean_iou']:.3f}" in by_step["evaluate"]
    assert by_step["evaluate"].endswith(", blessed")
    assert by_step["push"].endswith(f"version v000001 at {blessed_run.pushed_uri}")
    assert by_step["predict"].endswith(": predicted 2 images, 1 unreadable")
    # The noise went to the step logs, not to the terminal.
    for noise in ("KFP Executor", "oneDNN", "executorInput", "Traceback", "\x1b["):
        assert noise not in blessed_run.printed
    logs = blessed_run.run_dir / "logs"
    assert {f"{step}.log" for step in steps} <= {path.name for path in logs.iterdir()}
    assert "Traceback" not in (logs / "evaluate.log").read_text()
    assert "KFP Executor" in (logs / "train.log").read_text()
    # What `petseg run --local` prints in all: the step lines and the summary. The demo has no
    # predict step; without this run's predict lines the whole output fits in 60 lines.
    summary = format_summary(blessed_run).splitlines()
    assert "    check/empty_splits = 0" not in summary  # checks that found nothing stay quiet
    printed = [line for line in lines + summary if "predict" not in line]
    assert len(printed) <= 60, "\n".join(printed)


def test_data_statistics_are_checked_and_travel_with_the_pushed_model(blessed_run):
    statistics = blessed_run.task("data-statistics").artifacts["statistics"]
    assert statistics["metadata"]["compared_with"] == ""  # nothing pushed before this run
    dataset = blessed_run.task("ingest").artifacts["dataset"]
    info = json.loads((Path(dataset["uri"]) / "dataset.json").read_text())
    assert statistics["metadata"]["errors"] == []
    assert statistics["metadata"]["num_records"] == {
        split: entry["num_records"] for split, entry in info["splits"].items()
    }
    figures = blessed_run.task("data-statistics").artifacts["check_metrics"]["metadata"]
    assert figures["check/empty_splits"] == 0.0 and figures["check_errors"] == 0.0
    pushed = Path(blessed_run.pushed_uri)
    stored = json.loads((pushed / "data" / "statistics.json").read_text())
    assert stored == json.loads((Path(statistics["uri"]) / "statistics.json").read_text())
    manifest = json.loads((pushed / "manifest.json").read_text())
    assert manifest["data_checks"]["errors"] == []
    assert manifest["data_checks"]["checks"]["cross_split_duplicates"]["status"] == "pass"
    assert "data checks: no errors, no warnings" in format_summary(blessed_run)


def test_unmet_threshold_skips_push(workspace, blessed_run, photos):
    config = load_config(
        "demo",
        overrides=[
            *SMALL,
            f"data.data_dir={workspace / 'tfds'}",
            f"push.destination={workspace / 'models'}",
            "evaluation.min_mean_iou=1.0",
            "evaluation.blessing_rule=confident",
            f"predict.input={photos}",
        ],
    )
    versions_before = sorted((workspace / "models" / "versions").iterdir())
    summary = run_local(config, pipeline_root=workspace / "root-unblessed")
    assert summary.blessed is False
    assert summary.pushed_uri is None
    assert summary.push_skip_reason.startswith("the model is not blessed: ")
    assert "mean IoU" in summary.push_skip_reason
    assert sorted((workspace / "models" / "versions").iterdir()) == versions_before
    assert f"not pushed: {summary.push_skip_reason}" in format_summary(summary)
    # Production (the first run's model) is the baseline: the difference's interval is
    # printed, and the confident rule compares its lower bound with the margin.
    figures = summary.task("evaluate").artifacts["metrics"]["metadata"]
    low = figures["mean_iou_difference_low"]
    assert low <= figures["mean_iou_difference"] <= figures["mean_iou_difference_high"]
    assert (
        f"mean IoU vs production: {figures['mean_iou_difference']:+.4f}, 95% interval "
        f"{low:+.4f} to {figures['mean_iou_difference_high']:+.4f}"
    ) in format_summary(summary)
    verdict = ">=" if low >= 0 else "<"
    assert f"lower bound {low:+.4f} {verdict} -max_regression -0.0000" in (summary.push_skip_reason)
    # The predict step runs, predicts nothing and says why.
    predictions = summary.task("predict").artifacts["predictions"]
    assert predictions["metadata"]["predicted"] == 0
    assert predictions["metadata"]["skip_reason"].startswith(
        "nothing was pushed (the model is not blessed: "
    )
    assert "no predictions: nothing was pushed" in format_summary(summary)
    # This run's data checks compared with the statistics pushed by the first run.
    checked = summary.task("data-statistics").artifacts["statistics"]["metadata"]
    assert checked["compared_with"] == blessed_run.pushed_uri
    figures = summary.task("data-statistics").artifacts["check_metrics"]["metadata"]
    assert figures["check/class_frequency_distance"] == 0.0
    assert figures["check/split_shrink"] == 0.0


def test_invalid_run_time_value_fails_first_naming_field_and_value(workspace):
    config = load_config("demo", overrides=[*SMALL, f"data.data_dir={workspace / 'tfds'}"])
    root = workspace / "root-invalid"
    printed = io.StringIO()
    with pytest.raises(LocalRunError) as failure:
        run_local(config, pipeline_root=root, parameters={"min_mean_iou": 1.5}, out=printed)
    assert failure.value.step == "resolve-config"
    assert "evaluation.min_mean_iou" in failure.value.message and "1.5" in failure.value.message
    assert "Traceback" not in failure.value.message
    assert failure.value.log_path.is_file()
    lines = [line.split(" ", 1)[1] for line in printed.getvalue().splitlines()]
    assert lines[0] == "started  resolve-config" and lines[1].startswith("FAILED   resolve-config")
    assert len(lines) == 2
    assert not list(root.rglob("ingest"))  # nothing after the first task ran
