"""The training recipe for real photos: augmentation, fine-tuning, best epoch, schedule."""

from __future__ import annotations

import json
import math
import posixpath

import keras
import numpy as np
import pytest
import recordsets
import tensorflow as tf

from components.model import input_pipeline as data
from components.model import model as model_lib
from components.model import train
from components.platform.config import ModelConfig, TrainingConfig, load_config

SIZE = 64
STRONG = data.Augmentation(min_crop_scale=0.5, max_rotation_degrees=20, color_jitter=0.2)


def _pair():
    """A mask with three classes and an ignored band, and an image whose grey level is
    80 * class id, so image and mask can be compared after the same geometry."""
    mask = np.full((SIZE, SIZE, 1), 1, np.uint8)
    mask[10:40, 20:50] = 0
    mask[40:] = 2
    mask[:4] = 255
    image = np.repeat(np.minimum(mask, 3) * 80, 3, axis=2).astype(np.uint8)
    return tf.constant(image), tf.constant(mask)


def test_geometry_is_the_same_for_image_and_mask_and_labels_stay_real():
    image, mask = _pair()
    geometry_only = data.Augmentation(min_crop_scale=0.5, max_rotation_degrees=20)
    for seed in range(6):
        out_image, out_mask = data.augment_pair(
            image, mask, tf.constant([seed, 1], tf.int64), geometry_only
        )
        out_image, out_mask = out_image.numpy(), out_mask.numpy()[..., 0]
        assert out_image.shape == (SIZE, SIZE, 3) and out_image.dtype == np.uint8
        assert out_mask.shape == (SIZE, SIZE) and out_mask.dtype == np.uint8
        # Nearest-neighbour: no value between classes is invented.
        assert set(np.unique(out_mask)) <= {0, 1, 2, 255}
        labelled = out_mask != 255
        grey = out_image[..., 0][labelled].astype(int)
        agree = np.abs(grey - out_mask[labelled].astype(int) * 80) <= 40
        assert agree.mean() > 0.9, (seed, agree.mean())  # only edges blur


def test_rotation_fills_the_mask_with_the_ignore_id_not_background():
    image, _ = _pair()
    clean = tf.constant(np.ones((SIZE, SIZE, 1), np.uint8))  # all background, none ignored
    _, rotated = data.augment_pair(
        image, clean, tf.constant([3, 3], tf.int64), data.Augmentation(max_rotation_degrees=30)
    )
    rotated = rotated.numpy()[..., 0]
    corners = rotated[[0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 255).all()  # brought in from outside the frame: ignored
    assert set(np.unique(rotated)) <= {1, 255}


def test_augmentation_is_seeded_and_colour_jitter_leaves_the_mask_alone():
    image, mask = _pair()
    seed = tf.constant([5, 9], tf.int64)
    first = data.augment_pair(image, mask, seed, STRONG)
    again = data.augment_pair(image, mask, seed, STRONG)
    other = data.augment_pair(image, mask, tf.constant([6, 9], tf.int64), STRONG)
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0].numpy(), other[0].numpy())
    jittered_image, jittered_mask = data.augment_pair(
        image, mask, seed, data.Augmentation(flip=False, color_jitter=0.3)
    )
    assert np.array_equal(jittered_mask.numpy(), mask.numpy())
    assert not np.array_equal(jittered_image.numpy(), image.numpy())


@pytest.mark.parametrize(
    "settings",
    [{"min_crop_scale": 0.0}, {"max_rotation_degrees": 200}, {"color_jitter": 1.0}],
)
def test_augmentation_refuses_out_of_range_settings(settings):
    with pytest.raises(ValueError, match=next(iter(settings))):
        data.Augmentation(**settings)


def test_make_dataset_augments_cached_examples_afresh_each_epoch(tmp_path):
    dataset_dir = str(tmp_path / "dataset")
    recordsets.write_recordset(dataset_dir, {"train": 8, "validation": 4}, height=48, width=48)
    dataset = data.make_dataset(
        dataset_dir, "train", 32, 8, training=True, augment=True, seed=1, augmentation=STRONG
    )
    epochs = [next(iter(dataset)) for _ in range(2)]
    images, masks = (tensor.numpy() for tensor in epochs[0])
    assert images.shape == (8, 32, 32, 3) and masks.shape == (8, 32, 32, 1)
    assert set(np.unique(masks)) <= {0, 1, 2, 255}
    assert not np.array_equal(images, epochs[1][0].numpy())
    repeat = data.make_dataset(
        dataset_dir, "train", 32, 8, training=True, augment=True, seed=1, augmentation=STRONG
    )
    assert np.array_equal(next(iter(repeat))[0].numpy(), images)


def test_unfreeze_encoder_keeps_batchnorm_frozen_and_starts_at_the_block():
    model = model_lib.build_unet(SIZE, encoder_weights="none", encoder_trainable=False)
    train.unfreeze_encoder(model, from_block=13)
    encoder = model.get_layer(model_lib.ENCODER_NAME)
    layers = {layer.name: layer for layer in encoder.layers}
    assert not layers["block_12_project"].trainable
    assert layers["block_13_expand"].trainable and layers["block_16_project"].trainable
    assert not any(
        layer.trainable
        for layer in encoder.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    train.unfreeze_encoder(model, from_block=0)
    assert layers["Conv1"].trainable and not layers["bn_Conv1"].trainable


def test_phases_and_cosine_schedule_follow_the_config():
    config = TrainingConfig(
        epochs=4, learning_rate=1e-3, fine_tune_epochs=2, learning_rate_schedule="cosine"
    )
    head, fine_tune = train.training_phases(config)
    assert (head.initial_epoch, head.epochs, head.fine_tune) == (0, 4, False)
    assert (fine_tune.initial_epoch, fine_tune.epochs, fine_tune.fine_tune) == (4, 6, True)
    assert math.isclose(fine_tune.learning_rate, 1e-4)
    schedule = train.learning_rate_for(config, fine_tune, steps_per_epoch=5)
    assert math.isclose(float(schedule(0)), 1e-4, rel_tol=1e-5)
    assert float(schedule(10)) < 1e-9
    assert train.learning_rate_for(TrainingConfig(), head, 5) == 1e-3
    assert len(train.training_phases(TrainingConfig())) == 1


def test_keep_best_weights_restores_the_best_epoch():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    keeper = train.KeepBestWeights()
    keeper.set_model(model)
    for epoch, score in enumerate([0.2, 0.7, 0.5]):
        model.layers[0].kernel.assign(np.full((2, 1), epoch, np.float32))
        keeper.on_epoch_end(epoch, {"val_mean_iou": score, "mean_iou": 0.9})
    keeper.restore()
    assert keeper.best_epoch == 1 and keeper.best_logs["val_mean_iou"] == 0.7
    assert np.array_equal(model.layers[0].kernel.numpy(), np.ones((2, 1)))


def test_tutorial_preset_keeps_the_notebook_recipe():
    tutorial = load_config(preset="tutorial").training
    defaults = TrainingConfig()
    for name in (
        "augment_min_crop_scale",
        "augment_max_rotation_degrees",
        "augment_color_jitter",
        "learning_rate_schedule",
        "fine_tune_epochs",
        "keep_best_epoch",
        "early_stopping_patience",
    ):
        assert getattr(tutorial, name) == getattr(defaults, name), name
    assert load_config(preset="tutorial").model.batchnorm_momentum is None
    assert (tutorial.epochs, tutorial.batch_size, tutorial.learning_rate) == (20, 64, 1e-3)


@pytest.mark.parametrize(
    ("steps", "momentum"),
    # 499 photos at batch 64 and 16, the full Oxford train split at 64, a large dataset.
    [(1, 0.9), (7, 0.9), (31, 0.9677), (57, 0.9825), (5000, 0.99)],
)
def test_batchnorm_momentum_from_steps_averages_over_about_one_epoch(steps, momentum):
    config = ModelConfig(batchnorm_momentum="from_steps")
    assert train.batchnorm_momentum_for(config, steps) == pytest.approx(momentum, abs=1e-4)
    assert train.batchnorm_momentum_for(ModelConfig(batchnorm_momentum=0.95), steps) == 0.95


def test_batchnorm_momentum_setting_is_a_number_from_steps_or_none():
    with pytest.raises(ValueError, match="batchnorm_momentum"):
        ModelConfig(batchnorm_momentum="auto")
    with pytest.raises(ValueError, match="steps per epoch"):
        train.batchnorm_momentum_for(ModelConfig(batchnorm_momentum="from_steps"))


def _dice_reference(labels, logits, ignore_id=255, per_pixel=False):
    """Numpy: mean cross-entropy over labelled pixels + per-image soft Dice (mean over
    classes), each image's Dice weighted by its labelled pixels."""
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labelled = labels != ignore_id
    safe = np.where(labelled, labels, 0)
    picked = np.take_along_axis(probs, safe[..., None], axis=-1)[..., 0]
    truth = np.eye(logits.shape[-1])[safe] * labelled[..., None]
    predicted = probs * labelled[..., None]
    overlap = (truth * predicted).sum((1, 2))
    dice = (1 - (2 * overlap + 1) / ((truth + predicted).sum((1, 2)) + 1)).mean(-1)
    values = -np.log(picked) + dice[:, None, None]
    return values if per_pixel else values[labelled].mean()


def test_cross_entropy_dice_is_cross_entropy_plus_dice_over_labelled_pixels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=(2, 6, 6)).astype(np.int32)
    labels[0, :2] = 255  # an ignored band
    logits = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    loss = train.loss_for("cross_entropy_dice", 3)
    value = float(loss(labels[..., None], logits))
    assert value == pytest.approx(_dice_reference(labels, logits), rel=1e-5)
    # Ignored pixels: their logits change nothing.
    changed = logits.copy()
    changed[0, :2] += 5.0
    assert float(loss(labels[..., None], changed)) == pytest.approx(value, rel=1e-6)
    # Less overlap on a thin class costs more than plain cross-entropy says.
    plain = train.loss_for("cross_entropy", 3)
    assert value > float(plain(labels[..., None], logits))
    perfect = np.eye(3, dtype=np.float32)[np.where(labels == 255, 0, labels)] * 20
    assert float(loss(labels[..., None], perfect)) < 0.01
    # Class weights arrive as per-pixel sample weights (0 on ignored pixels).
    weights = np.where(labels == 255, 0.0, np.where(labels == 2, 3.0, 1.0)).astype(np.float32)
    weighted = float(loss(labels[..., None], logits, sample_weight=weights))
    per_pixel = _dice_reference(labels, logits, per_pixel=True)
    reference = (per_pixel * weights)[labels != 255].sum() / (labels != 255).sum()
    assert weighted == pytest.approx(reference, rel=1e-5)
    config = train.CrossEntropyDice.from_config(loss.get_config())
    assert (config.num_classes, config.ignore_class) == (3, 255)


@pytest.mark.slow
def test_train_model_fine_tunes_and_keeps_the_best_epoch(tmp_path):
    dataset_dir = str(tmp_path / "dataset")
    recordsets.write_recordset(dataset_dir, {"train": 16, "validation": 8}, height=40, width=40)
    model_config = ModelConfig(
        image_size=32,
        encoder_weights="none",
        freeze_encoder=True,
        batchnorm_momentum="from_steps",
    )
    training_config = TrainingConfig(
        epochs=2,
        batch_size=4,
        steps_per_epoch=12,  # BatchNorm momentum from steps: 1 - 1/12
        learning_rate=2e-3,
        fine_tune_epochs=2,
        learning_rate_schedule="cosine",
        keep_best_epoch=True,
        augment_min_crop_scale=0.7,
        augment_max_rotation_degrees=10,
        augment_color_jitter=0.1,
        loss="cross_entropy_dice",
        tensorboard_images=0,
    )
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            encoder = self.model.get_layer(model_lib.ENCODER_NAME)
            seen.append((epoch, logs["val_mean_iou"], len(encoder.trainable_weights)))

    model_dir = str(tmp_path / "model")
    metrics = train.train_model(
        dataset_dir,
        model_dir,
        str(tmp_path / "tb"),
        model_config,
        training_config,
        None,
        callbacks=[Record()],
    )
    assert [epoch for epoch, _, _ in seen] == [0, 1, 2, 3]
    assert seen[0][2] == 0 and seen[1][2] == 0  # frozen encoder first
    assert seen[2][2] > 0 and seen[3][2] > 0  # then fine-tuned
    best_epoch, best_score, _ = max(seen, key=lambda item: item[1])
    assert math.isclose(metrics["val_mean_iou"], best_score, rel_tol=1e-6)
    with open(posixpath.join(model_dir, model_lib.METADATA_FILE)) as handle:
        metadata = json.load(handle)
    assert metadata["best_epoch"] == best_epoch + 1
    assert metadata["batchnorm_momentum"] == train.momentum_from_steps(12) == 0.9167
    saved = keras.saving.load_model(posixpath.join(model_dir, model_lib.MODEL_FILE), compile=False)
    decoder_norms = [
        layer
        for block in saved.layers
        if block.name.startswith("upsample_")
        for layer in block.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert decoder_norms and all(layer.momentum == 0.9167 for layer in decoder_norms)
    assert not tf.io.gfile.exists(posixpath.join(model_dir, train.FINE_TUNE_BACKUP_DIR))
