"""Tiny models saved through the real Model artifact code, for serving and predict tests."""

from __future__ import annotations

import numpy as np


def pixel_classifier(size: int, num_classes: int = 3, seed: int = 0):
    """A per-pixel linear classifier (1x1 convolution) with fixed random weights.

    Every output pixel depends on its own input pixel only, so its predictions are stable
    across batch sizes and runtimes (no near-ties from a deep network's float noise), and
    it has the Model artifact's input, normalisation layer and logits.
    """
    import keras

    from components.model import model as model_lib

    inputs = keras.Input(shape=(size, size, 3), name="image")
    scale, offset = model_lib.NORMALIZATIONS["tutorial"]
    normalized = keras.layers.Rescaling(scale, offset, name=model_lib.NORMALIZATION_LAYER)(inputs)
    logits = keras.layers.Conv2D(num_classes, 1, name="logits")(normalized)
    model = keras.Model(inputs, logits)
    rng = np.random.default_rng(seed)
    kernel = rng.normal(0.0, 3.0, size=(1, 1, 3, num_classes)).astype(np.float32)
    bias = rng.normal(0.0, 0.5, size=num_classes).astype(np.float32)
    model.get_layer("logits").set_weights([kernel, bias])
    return model
