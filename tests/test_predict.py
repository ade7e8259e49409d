"""petseg predict: masks at each image's resolution, overlays, summaries, unreadable files.

The model is a real Model artifact (a per-pixel classifier saved by save_model_dir, so its
SavedModel is the one Vertex would serve); gs:// goes to a real GCS emulator.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from gcs_emulator import running_emulator
from PIL import Image

from components.evaluation import visualize
from components.model import model as model_lib
from components.platform.config import PredictConfig
from components.platform.contracts import ArtifactRef
from components.publish import predict as predict_lib
from components.publish import push
from pipelines.cli import main
from tests import tinymodels

SIZE = 32
pytestmark = pytest.mark.timeout(300)


def _save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def _read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("model") / "model")
    model_lib.save_model_dir(tinymodels.pixel_classifier(SIZE), directory, {})
    return directory


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A folder of non-square images in two formats, a sub-folder, a broken file, a note."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    images = {
        "wide.jpg": rng.integers(0, 256, (37, 53, 3), dtype=np.uint8),
        "sub/tall.png": rng.integers(0, 256, (70, 21, 3), dtype=np.uint8),
        "square.png": rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8),
    }
    for name, image in images.items():
        _save(folder / name, image)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("not an image: listed as not read")
    decoded = {name: _read_png(folder / name) if name.endswith(".png") else None for name in images}
    decoded["wide.jpg"] = tf.io.decode_jpeg((folder / "wide.jpg").read_bytes()).numpy()
    return folder, decoded


def _serve(model_dir: str, path: Path) -> dict:
    signature = tf.saved_model.load(f"{model_dir}/saved_model").signatures["serving_default"]
    outputs = signature(image_bytes=tf.constant([path.read_bytes()]))
    return {name: value.numpy()[0] for name, value in outputs.items()}


def test_predicts_a_folder_at_each_images_resolution_and_lists_the_unreadable(
    model_dir, photos, tmp_path
):
    folder, images = photos
    calls = []
    summary = predict_lib.predict(
        model_dir,
        str(folder),
        str(tmp_path / "out"),
        batch_size=2,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert (
        summary.predicted == 3
        and predict_lib.exit_code(summary) == predict_lib.EXIT_SOME_UNREADABLE
    )
    assert summary.unreadable_files == [str(folder / "broken.jpg")]
    assert calls[-1] == (4, 4) and [done for done, _ in calls] == sorted(done for done, _ in calls)

    rows = {
        Path(row["file"]).relative_to(folder).as_posix(): row
        for row in _jsonl(tmp_path / "out" / "predictions.jsonl")
    }
    assert sorted(rows) == ["square.png", "sub/tall.png", "wide.jpg"]
    palette = visualize.class_palette(3)
    for name, image in images.items():
        row = rows[name]
        stem = name.rsplit(".", 1)[0]
        assert row["mask"] == f"masks/{stem}.png" and row["overlay"] == f"overlays/{stem}.png"
        mask = _read_png(tmp_path / "out" / row["mask"])
        # The image's own resolution, and exactly what the served model answers.
        assert mask.shape == image.shape[:2] == (row["height"], row["width"])
        served = _serve(model_dir, folder / name)
        np.testing.assert_array_equal(
            mask, np.asarray(Image.open(io.BytesIO(served[model_lib.MASK_PNG_OUTPUT])))
        )
        overlay = _read_png(tmp_path / "out" / row["overlay"])
        np.testing.assert_array_equal(overlay, visualize.overlay(image, mask, palette, 0.5))
        fractions = np.bincount(mask.ravel(), minlength=3) / mask.size
        assert list(row["class_fractions"]) == ["pet", "background", "border"]
        np.testing.assert_allclose(list(row["class_fractions"].values()), fractions, atol=1e-5)
        assert row["mean_confidence"] == pytest.approx(float(served["mean_confidence"]), abs=1e-5)
        assert 1 / 3 <= row["mean_confidence"] <= 1.0
    failed = _jsonl(tmp_path / "out" / "failed.jsonl")
    assert failed[0]["file"] == str(folder / "broken.jpg")
    assert "not a readable image" in failed[0]["error"]


def test_cli_names_the_unreadable_file_and_exits_3(model_dir, photos, tmp_path, capfd):
    folder, _ = photos
    output = tmp_path / "out"
    code = main(["predict", "--model", model_dir, "--input", str(folder), "--output", str(output)])
    captured = capfd.readouterr()
    assert code == 3
    assert captured.out == (
        f"predicted 3 image(s) into {output}; 1 unreadable, skipped and listed in "
        f"{output / 'failed.jsonl'}; 1 other file(s) not read (not images), listed in "
        f"{output / 'skipped.jsonl'}\n"
    )
    # Quiet: only the unreadable file and the file that is no image are named on stderr, no
    # TensorFlow start-up lines.
    assert captured.err.splitlines() == [
        f"unreadable: {folder / 'broken.jpg'}: not a readable image: "
        + _jsonl(output / "failed.jsonl")[0]["error"].removeprefix("not a readable image: "),
        f"not read: {folder / 'notes.txt'}: " + _jsonl(output / "skipped.jsonl")[0]["reason"],
    ]
    assert _jsonl(output / "skipped.jsonl")[0]["reason"].startswith(
        "not an image file name (.txt); predict reads .jpg, .jpeg, .png"
    )


def test_cli_exit_codes_for_success_bad_model_and_bad_command_line(
    model_dir, photos, tmp_path, capfd
):
    folder, _ = photos
    glob_input = str(folder / "**" / "*.png")
    assert (
        main(["predict", "--model", model_dir, "--input", glob_input, "-o", str(tmp_path / "a")])
        == 0
    )
    assert capfd.readouterr().out == f"predicted 2 image(s) into {tmp_path / 'a'}\n"
    assert sorted(
        p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a").rglob("*.png")
    ) == ["masks/square.png", "masks/sub/tall.png", "overlays/square.png", "overlays/sub/tall.png"]
    assert (tmp_path / "a" / "failed.jsonl").read_text() == ""

    assert (
        main(
            ["predict", "--model", str(tmp_path), "--input", str(folder), "-o", str(tmp_path / "b")]
        )
        == 1
    )
    err = capfd.readouterr().err
    assert err == (
        f"error: --model {str(tmp_path)!r} is neither a model directory (no metadata.json) "
        "nor a push destination (no LATEST)\n"
    )
    assert (
        main(
            [
                "predict",
                "--model",
                model_dir,
                "--input",
                str(tmp_path / "none"),
                "-o",
                str(tmp_path / "c"),
            ]
        )
        == 1
    )
    assert "no such file or folder" in capfd.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--model", model_dir])
    assert exit_info.value.code == 2


def test_push_destination_resolves_to_its_latest_model(model_dir, photos, tmp_path):
    folder, _ = photos
    destination = str(tmp_path / "models")
    pushed = push.push_model(model_dir, destination, run_id="run-1")
    summary = predict_lib.predict(destination, str(folder / "wide.jpg"), str(tmp_path / "out"))
    assert predict_lib.exit_code(summary) == 0 and summary.predicted == 1
    assert summary.model == str(Path(destination) / "versions" / pushed["version"])
    assert _read_png(tmp_path / "out" / "masks" / "wide.png").shape == (37, 53)


def test_class_names_and_colours_come_from_the_models_metadata(photos, tmp_path):
    folder, images = photos
    classes = ["sky", "road", "car", "person", "sign"]
    directory = str(tmp_path / "model5")
    model_lib.save_model_dir(
        tinymodels.pixel_classifier(SIZE, num_classes=5, seed=3), directory, {"classes": classes}
    )
    predict_lib.predict(directory, str(folder / "sub"), str(tmp_path / "out"))
    (row,) = _jsonl(tmp_path / "out" / "predictions.jsonl")
    assert list(row["class_fractions"]) == classes
    mask = _read_png(tmp_path / "out" / "masks" / "tall.png")
    overlay = _read_png(tmp_path / "out" / "overlays" / "tall.png")
    np.testing.assert_array_equal(
        overlay, visualize.overlay(images["sub/tall.png"], mask, visualize.class_palette(5), 0.5)
    )


def test_same_name_in_two_formats_keeps_both(model_dir, tmp_path):
    folder = tmp_path / "in"
    rng = np.random.default_rng(4)
    _save(folder / "cat.png", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    _save(folder / "cat.jpg", rng.integers(0, 256, (40, 10, 3), dtype=np.uint8))
    predict_lib.predict(model_dir, str(folder), str(tmp_path / "out"))
    assert _read_png(tmp_path / "out" / "masks" / "cat.jpg.png").shape == (40, 10)
    assert _read_png(tmp_path / "out" / "masks" / "cat.png.png").shape == (20, 30)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with running_emulator(tmp_path_factory.mktemp("gcs")) as server:
        yield server


def test_gcs_model_input_and_output_on_the_emulator(emulator, model_dir, photos, tmp_path):
    folder, images = photos
    client = emulator.client()
    bucket = client.create_bucket(f"petseg-{uuid.uuid4().hex[:12]}")
    for path in Path(model_dir).rglob("*"):
        if path.is_file():
            bucket.blob(f"models/m1/{path.relative_to(model_dir).as_posix()}").upload_from_filename(
                str(path)
            )
    for name in ("wide.jpg", "sub/tall.png", "broken.jpg", "notes.txt"):
        bucket.blob(f"photos/{name}").upload_from_filename(str(folder / name))
    bucket.blob("photos_old/other.png").upload_from_filename(str(folder / "square.png"))

    summary = predict_lib.predict(
        f"gs://{bucket.name}/models/m1",
        f"gs://{bucket.name}/photos/",
        f"gs://{bucket.name}/predictions",
        gcs_client=client,
    )
    assert (
        summary.predicted == 2
        and predict_lib.exit_code(summary) == predict_lib.EXIT_SOME_UNREADABLE
    )
    assert summary.unreadable_files[0] == f"gs://{bucket.name}/photos/broken.jpg"

    def blob_bytes(name):
        return bucket.blob(f"predictions/{name}").download_as_bytes()

    rows = [json.loads(line) for line in blob_bytes("predictions.jsonl").decode().splitlines()]
    assert [row["file"] for row in rows] == [
        f"gs://{bucket.name}/photos/sub/tall.png",
        f"gs://{bucket.name}/photos/wide.jpg",
    ]
    tall = np.asarray(Image.open(io.BytesIO(blob_bytes("masks/sub/tall.png"))))
    assert tall.shape == images["sub/tall.png"].shape[:2] == (70, 21)
    wide = np.asarray(Image.open(io.BytesIO(blob_bytes("overlays/wide.png"))))
    assert wide.shape == (37, 53, 3)
    failed = [json.loads(line) for line in blob_bytes("failed.jsonl").decode().splitlines()]
    assert [row["file"] for row in failed] == [f"gs://{bucket.name}/photos/broken.jpg"]

    # A gs:// push destination is resolved through its LATEST too.
    from components.platform.storage import GcsStore

    destination = f"gs://{bucket.name}/pushed"
    push.push_model(model_dir, destination, run_id="r", store=GcsStore(destination, client=client))
    again = predict_lib.predict(
        destination,
        f"gs://{bucket.name}/photos/wide.jpg",
        str(tmp_path / "local"),
        gcs_client=client,
    )
    assert again.predicted == 1
    assert _read_png(tmp_path / "local" / "masks" / "wide.png").shape == (37, 53)


def test_pipeline_step_core_says_why_when_nothing_was_pushed(tmp_path):
    outcome = predict_lib.run(
        predict_lib.PredictInputs(
            predict=PredictConfig(input=str(tmp_path / "photos")),
            pushed=ArtifactRef(
                uri=str(tmp_path / "unused"),
                metadata={
                    "pushed": False,
                    "skip_reason": "the model is not blessed: mean IoU 0.1 < 0.5",
                },
            ),
            output_dir=str(tmp_path / "out"),
        )
    ).to_metadata()
    assert outcome["predicted"] == 0
    assert outcome["skip_reason"] == (
        "nothing was pushed (the model is not blessed: mean IoU 0.1 < 0.5), "
        "so there is no model to predict with"
    )
    assert not (tmp_path / "out").exists()


def test_pipeline_step_core_predicts_with_the_pushed_version(model_dir, photos, tmp_path):
    folder, _ = photos
    destination = tmp_path / "models"
    pushed = push.push_model(model_dir, str(destination), run_id="run-1")
    outcome = predict_lib.run(
        predict_lib.PredictInputs(
            predict=PredictConfig(input=str(folder)),
            pushed=ArtifactRef(
                uri=pushed["uri"], metadata={"pushed": True, "version": pushed["version"]}
            ),
            output_dir=str(tmp_path / "out"),
        )
    ).to_metadata()
    assert outcome["predicted"] == 3 and outcome["unreadable"] == 1
    assert outcome["unreadable_files"] == [str(folder / "broken.jpg")]
    assert outcome["version"] == pushed["version"] and outcome["skip_reason"] == ""
    assert outcome["classes"] == ["pet", "background", "border"]
    assert len(_jsonl(tmp_path / "out" / "predictions.jsonl")) == 3


def test_cli_reports_a_damaged_model_in_one_line(model_dir, photos, tmp_path, capfd):
    import shutil

    folder, _ = photos
    damaged = tmp_path / "damaged"
    shutil.copytree(model_dir, damaged)
    (damaged / "saved_model" / "saved_model.pb").write_bytes(b"\x00garbage")
    code = main(
        ["predict", "--model", str(damaged), "--input", str(folder), "-o", str(tmp_path / "o")]
    )
    err = capfd.readouterr().err
    assert code == 1
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "--verbose for details" in err


def test_reads_any_case_of_extension_webp_and_tiff_and_names_every_file_it_does_not_read(
    model_dir, tmp_path, capfd
):
    folder = tmp_path / "in"
    rng = np.random.default_rng(7)
    images = {
        "UPPER.JPG": rng.integers(0, 256, (24, 40, 3), dtype=np.uint8),
        "mixed.Png": rng.integers(0, 256, (33, 17, 3), dtype=np.uint8),
        "photo.webp": rng.integers(0, 256, (20, 30, 3), dtype=np.uint8),
        "scan.TIF": rng.integers(0, 256, (45, 26, 3), dtype=np.uint8),
        "gray.tiff": rng.integers(0, 256, (16, 50), dtype=np.uint8),
    }
    folder.mkdir()
    for name, image in images.items():
        Image.fromarray(image).save(folder / name, lossless=True)  # lossless: WebP
    for other in ("README", "labels.csv", "photo.heic"):
        (folder / other).write_text("no image")

    output = tmp_path / "out"
    code = main(["predict", "--model", model_dir, "--input", str(folder), "-o", str(output)])
    captured = capfd.readouterr()
    assert code == 0
    rows = {Path(row["file"]).name: row for row in _jsonl(output / "predictions.jsonl")}
    assert sorted(rows) == sorted(images)
    palette = visualize.class_palette(3)
    for name, image in images.items():
        mask = _read_png(output / rows[name]["mask"])
        assert mask.shape == image.shape[:2]
        rgb = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
        if name.endswith(".JPG"):  # lossy: the pixels are the decoder's
            rgb = tf.io.decode_jpeg((folder / name).read_bytes()).numpy()
        overlay = _read_png(output / rows[name]["overlay"])
        np.testing.assert_array_equal(overlay, visualize.overlay(rgb, mask, palette, 0.5))
    # The TIFF reaches the model as the same pixels the PNG of it would.
    png = tmp_path / "scan.png"
    Image.fromarray(images["scan.TIF"]).save(png)
    served = _serve(model_dir, png)
    np.testing.assert_array_equal(
        _read_png(output / rows["scan.TIF"]["mask"]),
        np.asarray(Image.open(io.BytesIO(served[model_lib.MASK_PNG_OUTPUT]))),
    )
    skipped = _jsonl(output / "skipped.jsonl")
    assert [Path(row["file"]).name for row in skipped] == ["README", "labels.csv", "photo.heic"]
    assert skipped[0]["reason"].startswith("not an image file name (no extension)")
    assert skipped[2]["reason"].startswith("not an image file name (.heic)")
    assert captured.err.splitlines() == [
        f"not read: {row['file']}: {row['reason']}" for row in skipped
    ]
    assert captured.out.endswith(
        f"; 3 other file(s) not read (not images), listed in {output / 'skipped.jsonl'}\n"
    )

    # A folder of nothing but other files says what it found.
    for name in images:
        (folder / name).unlink()
    with pytest.raises(predict_lib.PredictError, match=r"its 3 file\(s\) are not images, e.g. "):
        predict_lib.predict(model_dir, str(folder), str(tmp_path / "none"))
