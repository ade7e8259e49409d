r"""Checks that a SavedModel exported by this project's TensorFlow serves in an older one.

Vertex AI's prebuilt prediction containers lag TensorFlow releases (the default
``push.serving_image`` is TF 2.15; petseg trains with TF 2.21). Run ``export`` in the
project environment and ``check`` under the serving container's TensorFlow version::

    uv run python containers/serving_compat.py export /tmp/petseg-compat
    uv run --no-project --python 3.11 --with tensorflow-cpu==2.15.1 \
        python containers/serving_compat.py check /tmp/petseg-compat

``export`` writes a small U-Net's serving SavedModel (random weights, 64 px), a PNG and
the probabilities the exporting TensorFlow computes for it; ``check`` (TensorFlow and
NumPy only, no petseg) loads the SavedModel, calls ``serving_default`` on the PNG, and
fails unless the outputs have the same shapes and values.
"""

from __future__ import annotations

import argparse
import io
import os

TOLERANCE = 1e-5


def export(directory: str) -> None:
    import numpy as np
    from PIL import Image

    from components.model import model

    os.makedirs(directory, exist_ok=True)
    network = model.build_unet(64, encoder_weights="none")
    model.export_serving_model(network, os.path.join(directory, "saved_model"))
    pixels = (np.random.default_rng(0).random((80, 70, 3)) * 255).astype("uint8")
    encoded = io.BytesIO()
    Image.fromarray(pixels).save(encoded, "PNG")
    with open(os.path.join(directory, "image.png"), "wb") as handle:
        handle.write(encoded.getvalue())
    probabilities = _serve(directory)["probabilities"]
    np.save(os.path.join(directory, "probabilities.npy"), probabilities)


def _serve(directory: str) -> dict:
    import tensorflow as tf

    with open(os.path.join(directory, "image.png"), "rb") as handle:
        image = handle.read()
    signatures = tf.saved_model.load(os.path.join(directory, "saved_model")).signatures
    # serving_default is what Vertex calls; the probabilities signature holds the dense values.
    outputs = dict(signatures["serving_default"](image_bytes=tf.constant([image])))
    outputs["probabilities"] = signatures["probabilities"](image_bytes=tf.constant([image]))[
        "probabilities"
    ]
    return {name: value.numpy() for name, value in outputs.items()}


def check(directory: str) -> None:
    import numpy as np
    import tensorflow as tf

    outputs = _serve(directory)
    expected = np.load(os.path.join(directory, "probabilities.npy"))
    difference = float(np.abs(outputs["probabilities"] - expected).max())
    # The class-id PNG at the input's own size (80x70) must decode in this TensorFlow too.
    full_size = tf.io.decode_png(outputs["mask_png_bytes"][0]).shape[:2]
    if (
        outputs["mask"].shape != expected.shape[:-1]
        or difference > TOLERANCE
        or tuple(full_size) != (80, 70)
    ):
        raise SystemExit(
            f"TensorFlow {tf.__version__}: serving_default differs from the exporting version "
            f"(mask {outputs['mask'].shape}, input-size mask {tuple(full_size)}, "
            f"max probability difference {difference})"
        )
    print(f"TensorFlow {tf.__version__} serves it: max probability difference {difference:g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["export", "check"])
    parser.add_argument("directory")
    arguments = parser.parse_args()
    (export if arguments.step == "export" else check)(arguments.directory)


if __name__ == "__main__":
    main()
