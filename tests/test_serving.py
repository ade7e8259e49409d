"""The exported SavedModel as a client sees it: training's resize, evaluate's masks, input size.

A client (Vertex AI online prediction, TF Serving, plain TensorFlow) holds only the
SavedModel, so these tests load nothing but ``saved_model/`` and compare its answers
with training's input pipeline and with evaluate's predictions for the same images.
"""

from __future__ import annotations

import io

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from components.evaluation import evaluate
from components.model import input_pipeline as data
from components.model import model as model_lib
from tests import recordsets, tinymodels

SIZE = 32


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_serving_resizes_exactly_like_training_rounding_to_uint8(tmp_path):
    # Class 0's logit is the red value, class 1's a constant 0.25: the answer flips between
    # a rounded pixel (0) and an unrounded one (0.5).
    inputs = keras.Input(shape=(SIZE, SIZE, 3), name="image")
    logits = keras.layers.Conv2D(2, 1, name="logits")(inputs)
    model = keras.Model(inputs, logits)
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, 0, 0] = 1.0
    model.get_layer("logits").set_weights([kernel, np.array([0.0, 0.25], np.float32)])
    model_lib.export_serving_model(model, str(tmp_path / "saved_model"))

    # Columns alternate 0 and 1: halving the width bilinearly gives 0.5, which training rounds.
    image = np.zeros((SIZE, 2 * SIZE, 3), np.uint8)
    image[:, 1::2, 0] = 1
    training_input = tf.cast(data.resize_image(image, SIZE), tf.float32)[None]
    assert float(tf.reduce_max(training_input)) == 0.0
    expected = np.argmax(np.asarray(model(training_input)), axis=-1)
    assert np.all(expected == 1)

    serving = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"]
    outputs = serving(image_bytes=tf.constant([_png(image)]))
    np.testing.assert_array_equal(outputs["mask"].numpy(), expected)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    dataset_dir = str(root / "dataset")
    # Non-square 48x40 sources, resized to the model's 32x32 by both paths.
    contents = recordsets.write_recordset(
        dataset_dir, {"train": 1, "test": 5}, height=48, width=40, seed=7, shards_per_split=1
    )
    model_dir = str(root / "model")
    model_lib.save_model_dir(
        tinymodels.pixel_classifier(SIZE), model_dir, {"encoder_weights": "none"}
    )
    loaded = tf.saved_model.load(f"{model_dir}/saved_model")
    images = [image for image, _ in contents["test"]]
    return {
        "dataset": dataset_dir,
        "model": model_dir,
        "images": images,
        "outputs": loaded.signatures["serving_default"](
            image_bytes=tf.constant([_png(image) for image in images])
        ),
    }


def test_serving_mask_equals_evaluates_prediction_for_the_same_images(served):
    result = evaluate.evaluate_model(
        served["model"], served["dataset"], batch_size=2, num_samples=len(served["images"])
    )
    evaluated = np.stack([sample["predicted_mask"] for sample in result["samples"]])
    assert evaluated.shape == (5, SIZE, SIZE)
    assert len(np.unique(evaluated)) > 1  # a picture of several classes, not a constant
    np.testing.assert_array_equal(served["outputs"]["mask"].numpy(), evaluated)


def test_serving_returns_masks_at_each_inputs_own_resolution(served):
    outputs = served["outputs"]
    assert outputs["height"].numpy().tolist() == [48] * 5
    assert outputs["width"].numpy().tolist() == [40] * 5
    for index, png in enumerate(outputs[model_lib.MASK_PNG_OUTPUT].numpy()):
        mask = np.asarray(Image.open(io.BytesIO(png)))
        assert mask.shape == (48, 40) and mask.dtype == np.uint8
        fractions = np.bincount(mask.ravel(), minlength=3) / mask.size
        np.testing.assert_allclose(outputs["class_fractions"].numpy()[index], fractions, atol=1e-6)
        # Scaled back down nearest-neighbour, it is (almost) the model-size mask.
        small = tf.image.resize(mask[..., None], [SIZE, SIZE], method="nearest")[..., 0]
        assert np.mean(small.numpy() == outputs["mask"].numpy()[index]) > 0.9


def test_mixed_sizes_in_one_request_each_come_back_at_their_size(served, tmp_path):
    loaded = tf.saved_model.load(f"{served['model']}/saved_model")
    wide = np.full((10, 70, 3), 200, np.uint8)
    tall = np.full((90, 12, 3), 30, np.uint8)
    outputs = loaded.signatures["serving_default"](
        image_bytes=tf.constant([_png(wide), _png(tall)])
    )
    shapes = [
        np.asarray(Image.open(io.BytesIO(png))).shape
        for png in outputs[model_lib.MASK_PNG_OUTPUT].numpy()
    ]
    assert shapes == [(10, 70), (90, 12)]


def test_default_signature_is_json_friendly_for_vertex(served):
    loaded = tf.saved_model.load(f"{served['model']}/saved_model")
    signature = loaded.signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    assert list(inputs) == ["image_bytes"] and inputs["image_bytes"].dtype == tf.string
    outputs = signature.structured_outputs
    assert set(outputs) == {
        "mask",
        "mask_png_bytes",
        "height",
        "width",
        "class_fractions",
        "mean_confidence",
    }
    # TF Serving (Vertex's prebuilt container) base64-encodes only string outputs named *_bytes;
    # every other output must be numeric, and each one has the batch as its first dimension.
    for name, spec in outputs.items():
        assert spec.dtype != tf.string or name.endswith("_bytes"), name
        assert spec.shape[0] is None, name
    # Probabilities (S*S*C floats per image) live in their own signature.
    assert "probabilities" in loaded.signatures["probabilities"].structured_outputs
