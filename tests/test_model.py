"""components.model.model: the U-Net, its encoder weights, and the Model artifact directory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from gcs_emulator import running_emulator
from PIL import Image

from components.data import schema
from components.model import model as model_lib

SIZE = 32


@pytest.fixture(scope="module")
def unet():
    keras.utils.set_random_seed(0)
    return model_lib.build_unet(SIZE)


@pytest.fixture(scope="module")
def saved_dir(unet, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("model") / "model")
    model_lib.save_model_dir(unet, directory, {"encoder_weights": "none", "metrics": {"x": 1.0}})
    return directory


def _pixels(count=2, size=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype(np.float32)


def test_unet_maps_pixels_to_float32_logits_per_class(unet):
    logits = unet(_pixels())
    assert logits.shape == (2, SIZE, SIZE, schema.NUM_CLASSES)
    assert logits.dtype == "float32"
    assert unet.input_shape == (None, SIZE, SIZE, 3)


def test_encoder_exposes_the_five_tutorial_skips_from_half_to_one_32nd(unet):
    encoder = unet.get_layer(model_lib.ENCODER_NAME)
    assert [tensor.shape[1] for tensor in encoder.outputs] == [16, 8, 4, 2, 1]
    names = [tensor._keras_history.operation.name for tensor in encoder.outputs]
    assert names == list(model_lib.SKIP_LAYER_NAMES)


def test_decoder_is_pix2pix_upsampling_with_the_tutorial_filters(unet):
    blocks = [unet.get_layer(f"upsample_{index}") for index in range(4)]
    assert [block.layers[0].filters for block in blocks] == [512, 256, 128, 64]
    for block in blocks:
        transpose, norm, relu = block.layers
        assert isinstance(transpose, keras.layers.Conv2DTranspose)
        assert transpose.strides == (2, 2) and transpose.kernel_size == (3, 3)
        assert isinstance(norm, keras.layers.BatchNormalization)
        assert isinstance(relu, keras.layers.ReLU)


@pytest.mark.parametrize(
    ("normalization", "low", "high"), [("mobilenet", -1.0, 1.0), ("tutorial", 0.0, 1.0)]
)
def test_normalization_is_a_layer_inside_the_model(normalization, low, high):
    net = model_lib.build_unet(SIZE, normalization=normalization)
    layer = net.get_layer(model_lib.NORMALIZATION_LAYER)
    scaled = np.asarray(layer(np.array([[0.0, 255.0]], np.float32)))
    np.testing.assert_allclose(scaled, [[low, high]], atol=1e-6)
    assert model_lib.model_normalization(net) == normalization


def test_frozen_encoder_leaves_only_the_decoder_trainable():
    net = model_lib.build_unet(SIZE, encoder_trainable=False)
    encoder = net.get_layer(model_lib.ENCODER_NAME)
    assert not encoder.trainable and encoder.trainable_weights == []
    encoder_ids = {id(weight) for weight in encoder.weights}
    assert net.trainable_weights
    assert not any(id(weight) in encoder_ids for weight in net.trainable_weights)
    trainable = model_lib.build_unet(SIZE, encoder_trainable=True)
    assert trainable.get_layer(model_lib.ENCODER_NAME).trainable_weights


def _saved_encoder_weights(path):
    keras.utils.set_random_seed(123)
    base = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), include_top=False, weights=None
    )
    base.save_weights(path)
    return {layer.name: layer.get_weights() for layer in base.layers}


def _assert_encoder_has(net, expected):
    encoder = net.get_layer(model_lib.ENCODER_NAME)
    compared = 0
    for layer in encoder.layers:
        for got, want in zip(layer.get_weights(), expected.get(layer.name, []), strict=True):
            np.testing.assert_array_equal(got, want)
            compared += 1
    assert compared == len(encoder.weights) > 200


def test_encoder_weights_load_from_a_local_file(tmp_path):
    path = str(tmp_path / "encoder.weights.h5")
    expected = _saved_encoder_weights(path)
    net = model_lib.build_unet(SIZE, encoder_weights=path)
    _assert_encoder_has(net, expected)


def test_encoder_weights_on_gcs_are_copied_locally_first(tmp_path, monkeypatch):
    """Keras opens only local files; a gs:// file comes through the file layer (emulator)."""
    local = str(tmp_path / "encoder.weights.h5")
    expected = _saved_encoder_weights(local)
    with running_emulator(tmp_path / "gcs") as emulator:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
        bucket = emulator.client().create_bucket("petseg-weights")
        bucket.blob("encoder.weights.h5").upload_from_filename(local)
        net = model_lib.build_unet(SIZE, encoder_weights="gs://petseg-weights/encoder.weights.h5")
    _assert_encoder_has(net, expected)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.weights\.h5"):
        model_lib.build_unet(SIZE, encoder_weights=str(tmp_path / "nope.weights.h5"))


def test_imagenet_asks_keras_for_the_imagenet_weights(monkeypatch):
    requested = []
    real = keras.applications.MobileNetV2

    def recording(**kwargs):
        requested.append(kwargs["weights"])
        return real(**{**kwargs, "weights": None})  # no network in tests

    monkeypatch.setattr(keras.applications, "MobileNetV2", recording)
    model_lib.build_unet(SIZE, encoder_weights="imagenet", encoder_trainable=False)
    model_lib.build_unet(SIZE, encoder_weights="none")
    assert requested == ["imagenet", None]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"image_size": 48}, "multiple of 32"),
        ({"image_size": SIZE, "normalization": "imagenet"}, "normalization 'imagenet'"),
        ({"image_size": SIZE, "num_classes": 1}, "num_classes"),
    ],
)
def test_bad_build_arguments_raise_value_errors(arguments, message):
    with pytest.raises(ValueError, match=message):
        model_lib.build_unet(**arguments)


def test_model_dir_round_trip_predicts_the_same(unet, saved_dir):
    loaded, metadata = model_lib.load_model_dir(saved_dir)
    pixels = _pixels(seed=1)
    np.testing.assert_allclose(np.asarray(loaded(pixels)), np.asarray(unet(pixels)), atol=1e-5)
    assert metadata.classes == list(schema.CLASS_NAMES)
    assert metadata.image_size == SIZE and metadata.normalization == "mobilenet"
    assert metadata.encoder_weights == "none" and metadata.metrics == {"x": 1.0}
    assert metadata.tensorflow_version == tf.__version__
    assert metadata.keras_version == keras.__version__


def test_model_dir_holds_the_four_contract_files(saved_dir):
    names = set(tf.io.gfile.listdir(saved_dir))
    assert {"model.keras", "saved_model/", "metadata.json", "summary.txt"} <= names | {
        name + "/" for name in names
    }
    summary = tf.io.gfile.GFile(f"{saved_dir}/summary.txt").read()
    assert "encoder" in summary and "upsample_3" in summary and "Total params" in summary


def test_model_keras_loads_with_plain_keras_in_safe_mode(saved_dir):
    loaded = keras.saving.load_model(f"{saved_dir}/model.keras", safe_mode=True, compile=False)
    assert loaded.output_shape == (None, SIZE, SIZE, schema.NUM_CLASSES)


def test_load_names_the_missing_file(saved_dir, tmp_path):
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "metadata.json").write_text(json.dumps({"classes": list(schema.CLASS_NAMES)}))
    with pytest.raises(FileNotFoundError, match=r"model\.keras"):
        model_lib.load_model_dir(str(incomplete))
    with pytest.raises(FileNotFoundError, match=r"metadata\.json"):
        model_lib.load_model_dir(str(tmp_path / "empty"))


def test_load_refuses_a_model_with_other_classes(saved_dir, tmp_path):
    copy = tmp_path / "copy"
    tf.io.gfile.makedirs(str(copy))
    tf.io.gfile.copy(f"{saved_dir}/model.keras", str(copy / "model.keras"))
    (copy / "metadata.json").write_text(json.dumps({"classes": ["cat", "dog"]}))
    with pytest.raises(model_lib.ModelMismatchError, match="classes"):
        model_lib.load_model_dir(str(copy))


def _encode(image, image_format):
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format)
    return buffer.getvalue()


def test_serving_signature_decodes_resizes_and_predicts(unet, saved_dir):
    from components.model import input_pipeline as data

    rng = np.random.default_rng(5)
    small = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    large = rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)
    loaded = tf.saved_model.load(f"{saved_dir}/saved_model")
    serving = loaded.signatures["serving_default"]
    encoded = tf.constant([_encode(small, "PNG"), _encode(large, "PNG")])
    outputs = serving(image_bytes=encoded)
    assert outputs["mask"].dtype == tf.uint8 and outputs["mask"].shape == (2, SIZE, SIZE)
    assert outputs["height"].numpy().tolist() == [20, 50]
    assert outputs["width"].numpy().tolist() == [24, 40]
    np.testing.assert_allclose(outputs["class_fractions"].numpy().sum(axis=-1), 1.0, atol=1e-5)
    confidence = outputs["mean_confidence"].numpy()
    assert np.all((confidence >= 1 / schema.NUM_CLASSES) & (confidence <= 1.0))
    dense = loaded.signatures["probabilities"](image_bytes=encoded)
    probabilities = dense["probabilities"].numpy()
    assert probabilities.shape == (2, SIZE, SIZE, schema.NUM_CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(dense["mask"].numpy(), outputs["mask"].numpy())
    # Training's input: bilinear resize rounded back to uint8.
    resized = tf.cast(data.resize_image(small, SIZE), tf.float32)[None]
    expected = np.argmax(np.asarray(unet(resized)), axis=-1)
    np.testing.assert_array_equal(outputs["mask"].numpy()[0], expected[0])
    jpeg = serving(image_bytes=tf.constant([_encode(large, "JPEG")]))
    assert jpeg["mask"].shape == (1, SIZE, SIZE)


def test_saved_model_serves_without_this_package(saved_dir, tmp_path):
    script = textwrap.dedent(
        """
        import importlib.util, io, sys
        import numpy as np, tensorflow as tf
        assert importlib.util.find_spec("components") is None, "petseg must not be importable"
        image = tf.io.encode_png(np.full((30, 30, 3), 128, np.uint8))
        serving = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
        print("MASK_SHAPE", tuple(serving(image_bytes=tf.stack([image]))["mask"].shape))
        """
    )
    # -I: isolated mode, so neither the working directory nor PYTHONPATH puts petseg on the path;
    # -S keeps site-packages' editable-install hook out, so only tensorflow's own path is added.
    site_packages = [path for path in sys.path if path.endswith("site-packages")]
    runner = (
        "import sys; sys.path.extend(" + repr(site_packages) + "); "
        "sys.argv = sys.argv[1:]; exec(open(sys.argv[0]).read())"
    )
    script_path = tmp_path / "serve.py"
    script_path.write_text(script)
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", runner, str(script_path), f"{saved_dir}/saved_model"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"MASK_SHAPE (1, {SIZE}, {SIZE})" in result.stdout


def test_batchnorm_momentum_reaches_every_batchnorm_layer():
    net = model_lib.build_unet(SIZE, batchnorm_momentum=0.9)
    encoder = net.get_layer(model_lib.ENCODER_NAME)
    decoder_norms = [net.get_layer(f"upsample_{index}").layers[1] for index in range(4)]
    norms = [
        layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(norms) > 40
    assert {layer.momentum for layer in norms + decoder_norms} == {0.9}
    default = model_lib.build_unet(SIZE)
    assert default.get_layer(model_lib.ENCODER_NAME).get_layer("bn_Conv1").momentum == 0.999
    assert default.get_layer("upsample_0").layers[1].momentum == 0.99
    with pytest.raises(ValueError, match="batchnorm_momentum"):
        model_lib.build_unet(SIZE, batchnorm_momentum=1.5)
