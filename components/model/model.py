"""The tutorial's U-Net and the Model artifact directory it is saved in.

Model artifact layout::

    <model_dir>/model.keras      Keras 3 model; input float32 [B, S, S, 3] pixels in 0..255,
                                 normalisation inside, output logits [B, S, S, C], one
                                 channel per class of the dataset it was trained on
    <model_dir>/saved_model/     TF SavedModel; 'serving_default': image_bytes (tf.string
                                 [None], JPEG/PNG) -> mask (uint8 [None, S, S]), mask_png_bytes
                                 (class ids at the input's own size), height, width,
                                 class_fractions, mean_confidence; 'probabilities': mask and
                                 probabilities (float32 [None, S, S, C]); see export_serving_model
    <model_dir>/metadata.json    classes, image_size, normalization, encoder, training, metrics...
    <model_dir>/summary.txt      model.summary(), the text form of the tutorial's plot_model

The normalisation is a built-in Rescaling layer inside the model (no Lambda), so the
model loads with ``safe_mode=True`` and a caller never has to know which scaling a model
was trained with.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from components.data import schema
from components.model import input_pipeline as data
from components.platform import files
from components.platform.contracts import ModelMetadata

MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
METADATA_FILE = ModelMetadata.FILE_NAME
SUMMARY_FILE = "summary.txt"
SERVING_SIGNATURE = "serving_default"
PROBABILITIES_SIGNATURE = "probabilities"
# TF Serving (and so Vertex AI) returns an output whose name ends in _bytes as {"b64": ...}.
MASK_PNG_OUTPUT = "mask_png_bytes"

# The five MobileNetV2 activations the decoder joins, from 1/2 down to 1/32 of the input side.
SKIP_LAYER_NAMES: tuple[str, ...] = (
    "block_1_expand_relu",
    "block_3_expand_relu",
    "block_6_expand_relu",
    "block_13_expand_relu",
    "block_16_project",
)
DECODER_FILTERS: tuple[int, ...] = (512, 256, 128, 64)
# scale, offset of the Rescaling layer per normalisation: MobileNetV2 expects [-1, 1];
# the tutorial feeds [0, 1].
NORMALIZATIONS: dict[str, tuple[float, float]] = {
    "mobilenet": (1.0 / 127.5, -1.0),
    "tutorial": (1.0 / 255.0, 0.0),
}
NORMALIZATION_LAYER = "normalization"
ENCODER_NAME = "encoder"
LOGITS_LAYER = "logits"
ENCODER_STRIDE = 32


class ModelMismatchError(ValueError):
    """A model artifact is not what this step expects (classes, files)."""


def _local_weights_file(encoder_weights: str, work_dir: str) -> str:
    """Copies a gs:// weights file to a local path Keras can open."""
    if not files.exists(encoder_weights):
        raise FileNotFoundError(
            f"encoder_weights {encoder_weights!r} is neither 'imagenet', 'none' nor an "
            "existing weights file"
        )
    if os.path.exists(encoder_weights):
        return encoder_weights
    local_path = os.path.join(work_dir, posixpath.basename(encoder_weights))
    files.write_bytes(local_path, files.read_bytes(encoder_weights))
    return local_path


def build_encoder(
    image_size: int,
    encoder_weights: str = "none",
    encoder_trainable: bool = True,
    batchnorm_momentum: float | None = None,
) -> keras.Model:
    """MobileNetV2 without its top, returning the five skip activations.

    Args:
        image_size: input side, a multiple of 32.
        encoder_weights: 'imagenet' (Keras downloads them), 'none' (random), or a path,
            local or gs://, to a weights file of MobileNetV2(include_top=False) at this size.
        encoder_trainable: False freezes the encoder (and runs its BatchNorm in inference
            mode), as the tutorial does with pretrained weights.
        batchnorm_momentum: replaces MobileNetV2's BatchNorm momentum (0.999); None keeps it.
    """
    if image_size % ENCODER_STRIDE:
        raise ValueError(
            f"image_size {image_size} is not a multiple of {ENCODER_STRIDE} (the encoder's stride)"
        )
    with tempfile.TemporaryDirectory() as work_dir:
        if encoder_weights == "none":
            weights = None
        elif encoder_weights == "imagenet":
            weights = "imagenet"
        else:
            weights = _local_weights_file(encoder_weights, work_dir)
        base = keras.applications.MobileNetV2(
            input_shape=(image_size, image_size, 3), include_top=False, weights=weights
        )
    if batchnorm_momentum is not None:
        _set_batchnorm_momentum(base, batchnorm_momentum)
    skips = [base.get_layer(name).output for name in SKIP_LAYER_NAMES]
    encoder = keras.Model(inputs=base.input, outputs=skips, name=ENCODER_NAME)
    encoder.trainable = encoder_trainable
    return encoder


def _set_batchnorm_momentum(model: keras.Model, momentum: float) -> None:
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"batchnorm_momentum must be in [0, 1), got {momentum}")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def upsample_block(
    filters: int, name: str, batchnorm_momentum: float | None = None
) -> keras.Sequential:
    """pix2pix upsample: Conv2DTranspose(3, stride 2) -> BatchNorm -> ReLU, doubling the side."""
    return keras.Sequential(
        [
            keras.layers.Conv2DTranspose(
                filters,
                3,
                strides=2,
                padding="same",
                kernel_initializer=keras.initializers.RandomNormal(0.0, 0.02),
                use_bias=False,
            ),
            keras.layers.BatchNormalization(
                **({} if batchnorm_momentum is None else {"momentum": batchnorm_momentum})
            ),
            keras.layers.ReLU(),
        ],
        name=name,
    )


def build_unet(
    image_size: int,
    num_classes: int = schema.NUM_CLASSES,
    encoder_weights: str = "none",
    encoder_trainable: bool = True,
    normalization: str = "mobilenet",
    batchnorm_momentum: float | None = None,
) -> keras.Model:
    """The tutorial's U-Net: MobileNetV2 encoder, pix2pix decoder, one logit per class.

    Args:
        image_size: input side, a multiple of 32.
        num_classes: output channels (logits).
        encoder_weights: 'imagenet', 'none', or a weights file path (local or gs://).
        encoder_trainable: whether the encoder's weights train.
        normalization: 'mobilenet' scales pixels to [-1, 1], 'tutorial' to [0, 1].
        batchnorm_momentum: momentum of every BatchNorm layer; None keeps the tutorial's
            (Keras' 0.99 in the decoder, MobileNetV2's 0.999 in the encoder). A randomly
            initialised encoder trained for a few hundred steps needs a lower one (e.g.
            0.9): at 0.999 its moving statistics barely leave their initial values, and the
            model predicts one class at inference although it fits in training.

    Returns:
        A model from float32 [B, S, S, 3] pixels in 0..255 to float32 logits
        [B, S, S, num_classes]. Under a mixed_float16 policy only the logits stay float32.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization {normalization!r} is not one of {sorted(NORMALIZATIONS)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    scale, offset = NORMALIZATIONS[normalization]

    inputs = keras.Input(shape=(image_size, image_size, 3), name="image", dtype="float32")
    normalized = keras.layers.Rescaling(scale, offset, name=NORMALIZATION_LAYER)(inputs)
    encoder = build_encoder(image_size, encoder_weights, encoder_trainable, batchnorm_momentum)
    skips = encoder(normalized)
    x = skips[-1]
    for index, (filters, skip) in enumerate(
        zip(DECODER_FILTERS, reversed(skips[:-1]), strict=True)
    ):
        x = upsample_block(filters, f"upsample_{index}", batchnorm_momentum)(x)
        x = keras.layers.Concatenate(name=f"skip_{index}")([x, skip])
    x = keras.layers.Conv2DTranspose(
        num_classes, 3, strides=2, padding="same", name="output_upsample"
    )(x)
    # Keeps the logits (and so the softmax and the loss) in float32 under mixed precision.
    logits = keras.layers.Activation("linear", dtype="float32", name=LOGITS_LAYER)(x)
    return keras.Model(inputs=inputs, outputs=logits, name="unet_mobilenetv2")


def model_image_size(model: keras.Model) -> int:
    return int(model.input_shape[1])


def model_normalization(model: keras.Model) -> str:
    """Which normalisation a model applies, read from its Rescaling layer."""
    config = model.get_layer(NORMALIZATION_LAYER).get_config()
    for name, (scale, offset) in NORMALIZATIONS.items():
        if abs(config["scale"] - scale) < 1e-9 and abs(config["offset"] - offset) < 1e-9:
            return name
    raise ModelMismatchError(
        f"Rescaling(scale={config['scale']}, offset={config['offset']}) is no known normalisation"
    )


def make_serving_function(model: keras.Model):
    """The serving computations: encoded images -> masks at the model's and the input's size.

    Each image is decoded and resized exactly as training's input does (bilinear, rounded
    back to uint8: ``input_pipeline.resize_image``), so a served image meets the pixels the
    model was trained on. At the input's own resolution the class probabilities are resized
    bilinearly before the argmax (smooth class edges rather than model-sized blocks).

    Returns:
        (serve, probabilities): the functions behind the two signatures of
        ``export_serving_model``.
    """
    image_size = model_image_size(model)
    num_classes = int(model.output_shape[-1])

    def decode_and_resize(image_bytes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = schema.decode_image(image_bytes)
        return data.resize_image(image, image_size), tf.shape(image, out_type=tf.int32)[:2]

    def at_input_size(element: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, ...]:
        probabilities, size = element
        resized = tf.image.resize(probabilities, size, method="bilinear")
        mask = tf.cast(tf.argmax(resized, axis=-1), tf.uint8)
        counts = tf.math.bincount(
            tf.reshape(tf.cast(mask, tf.int32), [-1]),
            minlength=num_classes,
            maxlength=num_classes,
            dtype=tf.float32,
        )
        fractions = counts / tf.cast(size[0] * size[1], tf.float32)
        confidence = tf.reduce_mean(tf.reduce_max(resized, axis=-1))
        return tf.io.encode_png(mask[..., None]), fractions, confidence

    def dense(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        images, sizes = tf.map_fn(
            decode_and_resize,
            image_bytes,
            fn_output_signature=(
                tf.TensorSpec([image_size, image_size, 3], tf.uint8),
                tf.TensorSpec([2], tf.int32),
            ),
        )
        logits = tf.cast(model(tf.cast(images, tf.float32), training=False), tf.float32)
        return {
            "mask": tf.cast(tf.argmax(logits, axis=-1), tf.uint8),
            "probabilities": tf.nn.softmax(logits, axis=-1),
            "sizes": sizes,
        }

    def serve(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = dense(image_bytes)
        png, fractions, confidence = tf.map_fn(
            at_input_size,
            (outputs["probabilities"], outputs["sizes"]),
            fn_output_signature=(
                tf.TensorSpec([], tf.string),
                tf.TensorSpec([num_classes], tf.float32),
                tf.TensorSpec([], tf.float32),
            ),
        )
        return {
            "mask": outputs["mask"],
            MASK_PNG_OUTPUT: png,
            "height": outputs["sizes"][:, 0],
            "width": outputs["sizes"][:, 1],
            "class_fractions": fractions,
            "mean_confidence": confidence,
        }

    def probabilities(image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = dense(image_bytes)
        return {"mask": outputs["mask"], "probabilities": outputs["probabilities"]}

    return serve, probabilities


def export_serving_model(model: keras.Model, export_dir: str) -> None:
    """Writes a SavedModel that serves encoded images; loading it needs TensorFlow only.

    Signatures (both take ``image_bytes``: tf.string [None], JPEG/PNG/GIF/BMP):

    * ``serving_default``, JSON-sized for online prediction: ``mask`` uint8 [None, S, S] at
      the model's size; ``mask_png_bytes`` a PNG of class ids at the input's own size
      (TF Serving / Vertex return it as ``{"b64": ...}`` because its name ends in
      ``_bytes``); ``height``, ``width`` the input's size; ``class_fractions`` float32
      [None, C] and ``mean_confidence`` float32 [None] at the input's size.
    * ``probabilities``: ``mask`` and ``probabilities`` float32 [None, S, S, C] at the
      model's size (large as JSON, so not in the default signature).
    """
    serve, probabilities = make_serving_function(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    input_signature = [tf.TensorSpec([None], tf.string, name="image_bytes")]
    archive.add_endpoint(name=SERVING_SIGNATURE, fn=serve, input_signature=input_signature)
    archive.add_endpoint(
        name=PROBABILITIES_SIGNATURE, fn=probabilities, input_signature=input_signature
    )
    archive.write_out(export_dir, verbose=False)


def model_summary_text(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(
        line_length=110,
        show_trainable=True,
        print_fn=lambda line, *args, **kwargs: lines.append(line),
    )
    return "\n".join(lines) + "\n"


def save_model_dir(model: keras.Model, model_dir: str, metadata: dict[str, Any]) -> None:
    """Writes model.keras, saved_model/, metadata.json and summary.txt into model_dir.

    Args:
        model: a model from build_unet (float32 or mixed precision).
        model_dir: the artifact directory, local or gs://; files already there are replaced.
        metadata: facts to record (classes, training config, metrics, dataset, encoder...).
            classes must name the model's output channels (left out, Oxford's for a
            3-class model); image_size, normalization and the TensorFlow and Keras
            versions are filled in from the model and this code where the caller leaves
            them out.
    """
    image_size = model_image_size(model)
    num_classes = int(model.output_shape[-1])
    record = dict(metadata)
    if "classes" not in record and num_classes == schema.NUM_CLASSES:
        record["classes"] = list(schema.CLASS_NAMES)  # Oxford's, the default dataset's
    record.setdefault("image_size", image_size)
    record.setdefault("normalization", model_normalization(model))
    record.setdefault("num_classes", num_classes)
    record.setdefault("tensorflow_version", tf.__version__)
    record.setdefault("keras_version", keras.__version__)
    if record["image_size"] != image_size:
        raise ModelMismatchError(
            f"metadata image_size {record['image_size']} differs from the model's {image_size}"
        )
    classes = record.get("classes")
    if not isinstance(classes, list) or len(classes) != num_classes:
        raise ModelMismatchError(
            f"metadata classes {classes!r} do not name the model's {num_classes} output channels"
        )

    files.makedirs(model_dir)
    with tempfile.TemporaryDirectory() as work_dir:
        model.save(os.path.join(work_dir, MODEL_FILE))
        export_serving_model(model, os.path.join(work_dir, SAVED_MODEL_DIR))
        ModelMetadata.from_dict(record).write(os.path.join(work_dir, METADATA_FILE))
        with open(os.path.join(work_dir, SUMMARY_FILE), "w") as handle:
            handle.write(model_summary_text(model))
        files.remove(posixpath.join(model_dir, SAVED_MODEL_DIR))  # no file of an older export
        for relative in files.list_files(work_dir):
            data = files.read_bytes(os.path.join(work_dir, relative))
            files.write_bytes(posixpath.join(model_dir, relative), data)


def load_metadata(model_dir: str) -> ModelMetadata:
    """A model directory's metadata.json, checked by its contract."""
    path = posixpath.join(model_dir, METADATA_FILE)
    if not files.exists(path):
        raise FileNotFoundError(f"{path} not found: {model_dir!r} is not a petseg model directory")
    return ModelMetadata.read(path)


def check_model_matches(
    metadata: ModelMetadata,
    *,
    model_dir: str,
    classes: Sequence[str] | None,
    image_size_expected: int | None = None,
    normalization_expected: str | None = None,
) -> None:
    """Refuses a model whose classes, image size or normalisation differ from what is expected.

    Args:
        metadata: the model's metadata.json.
        model_dir: named in the error message.
        classes: the dataset's class list, which the model must predict; None = any list.
        image_size_expected: the configured image size, or None to skip the check.
        normalization_expected: the configured normalisation, or None to skip it.

    Raises:
        ModelMismatchError: naming the field, both values and the model directory.
    """
    where = posixpath.join(model_dir, METADATA_FILE)
    found = metadata.classes
    if classes is None and (not isinstance(found, list) or len(found) < 2):
        raise ModelMismatchError(f"{where}: classes {found!r} is not a list of class names")
    if classes is not None and (found is None or list(found) != list(classes)):
        raise ModelMismatchError(
            f"{where}: model classes {found} differ from the dataset's classes "
            f"{list(classes)}; a model can only be used on the classes it predicts"
        )
    for field, expected in (
        ("image_size", image_size_expected),
        ("normalization", normalization_expected),
    ):
        if expected is not None and getattr(metadata, field) != expected:
            raise ModelMismatchError(
                f"{where}: model {field} {getattr(metadata, field)!r} differs from the "
                f"configured model.{field} {expected!r}"
            )


def load_model_dir(
    model_dir: str,
    expected_classes: Sequence[str] | None = None,
    *,
    image_size: int | None = None,
    normalization: str | None = None,
) -> tuple[keras.Model, ModelMetadata]:
    """Loads model.keras (safe_mode, uncompiled) and metadata.json from a Model artifact.

    Every check of a model against its use is here, once: the metadata first
    (``check_model_matches``, before any weights load), then the loaded model's input
    and output shapes against its metadata.

    Args:
        model_dir: the Model artifact directory (local or gs://).
        expected_classes: the classes the model must predict (a dataset's); None = any.
        image_size: the configured image size the model must have; None = any.
        normalization: the configured normalisation the model must have; None = any.

    Raises:
        FileNotFoundError: naming model.keras or metadata.json when either is missing.
        ModelMismatchError: classes, image size or normalisation differ from the expected,
            or the model's shapes from its metadata.
    """
    metadata = load_metadata(model_dir)
    model_path = posixpath.join(model_dir, MODEL_FILE)
    if not files.exists(model_path):
        raise FileNotFoundError(
            f"{model_path} not found: {model_dir!r} is not a petseg model directory"
        )
    check_model_matches(
        metadata,
        model_dir=model_dir,
        classes=expected_classes,
        image_size_expected=image_size,
        normalization_expected=normalization,
    )
    with tempfile.TemporaryDirectory() as work_dir:
        local_path = model_path
        if not os.path.exists(model_path):
            local_path = os.path.join(work_dir, MODEL_FILE)
            files.write_bytes(local_path, files.read_bytes(model_path))
        model = keras.saving.load_model(local_path, compile=False, safe_mode=True)
    where = posixpath.join(model_dir, METADATA_FILE)
    classes, size = metadata.classes, metadata.image_size
    if model.output_shape[-1] != len(classes):
        raise ModelMismatchError(
            f"{where}: {len(classes)} classes {classes}, but the model outputs "
            f"{model.output_shape[-1]} logits per pixel"
        )
    if not isinstance(size, int) or size < 1:
        raise ModelMismatchError(f"{where}: image_size {size!r} is not a positive integer")
    input_shape = tuple(model.input_shape)
    if len(input_shape) != 4 or input_shape[1:3] not in ((size, size), (None, None)):
        raise ModelMismatchError(
            f"{model_dir}: model input shape {input_shape} does not take "
            f"[batch, {size}, {size}, 3] images as its metadata says"
        )
    return model, metadata
