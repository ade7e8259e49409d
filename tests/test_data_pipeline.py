"""components.model.input_pipeline.make_dataset on tiny record sets written through the schema."""

from __future__ import annotations

import numpy as np
import pytest
import recordsets
from PIL import Image

from components.data import dataset_info
from components.model import input_pipeline as data


@pytest.fixture(scope="module")
def square_dir(tmp_path_factory):
    """32x32 PNG records: at image_size 32 the pipeline must return them unchanged."""
    directory = str(tmp_path_factory.mktemp("square"))
    contents = recordsets.write_recordset(
        directory, {"train": 10, "test": 4}, height=32, width=32, shards_per_split=3
    )
    return directory, contents


@pytest.fixture(scope="module")
def oblong_dir(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("oblong"))
    contents = recordsets.write_recordset(
        directory, {"train": 6, "test": 3}, height=48, width=40, image_format="JPEG"
    )
    return directory, contents


def _elements(dataset):
    return [tuple(part.numpy() for part in element) for element in dataset]


def test_eval_batches_have_contract_shapes_and_stored_order(square_dir):
    directory, contents = square_dir
    batches = _elements(data.make_dataset(directory, "train", 32, 4, training=False))
    assert [batch[0].shape for batch in batches] == [(4, 32, 32, 3), (4, 32, 32, 3), (2, 32, 32, 3)]
    images = np.concatenate([batch[0] for batch in batches])
    masks = np.concatenate([batch[1] for batch in batches])
    assert images.dtype == np.float32 and masks.dtype == np.uint8
    assert masks.shape == (10, 32, 32, 1)
    # PNG is lossless and the size is unchanged, so every pixel must come back as drawn.
    np.testing.assert_array_equal(images, np.stack([image for image, _ in contents["train"]]))
    np.testing.assert_array_equal(masks[..., 0], np.stack([mask for _, mask in contents["train"]]))


def test_masks_resize_nearest_neighbour_and_images_bilinear(square_dir):
    directory, contents = square_dir
    (images, masks), *_ = _elements(data.make_dataset(directory, "test", 64, 4, training=False))
    originals = np.stack([mask for _, mask in contents["test"]])
    # Doubling with nearest neighbour repeats each pixel; any interpolation would not.
    np.testing.assert_array_equal(masks[..., 0], originals.repeat(2, axis=1).repeat(2, axis=2))
    assert set(np.unique(masks)) <= {0, 1, 2}
    # Bilinear with half-pixel centres, as PIL computes it independently (to within rounding).
    for image, (source, _) in zip(images, contents["test"], strict=True):
        expected = np.asarray(Image.fromarray(source).resize((64, 64), Image.BILINEAR))
        assert np.abs(image - expected.astype(np.float32)).max() <= 1.0


def test_non_square_jpeg_records_are_resized_to_square(oblong_dir):
    directory, _ = oblong_dir
    (images, masks), *_ = _elements(data.make_dataset(directory, "train", 32, 6, training=False))
    assert images.shape == (6, 32, 32, 3) and masks.shape == (6, 32, 32, 1)
    assert images.min() >= 0.0 and images.max() <= 255.0
    assert set(np.unique(masks)) <= {0, 1, 2}


def test_sample_weights_follow_the_class_of_each_pixel(square_dir):
    directory, _ = square_dir
    weights = [2.0, 0.5, 1.0]
    for image, mask, sample_weight in _elements(
        data.make_dataset(directory, "train", 32, 4, training=True, class_weights=weights, seed=1)
    ):
        assert sample_weight.shape == mask.shape and sample_weight.dtype == np.float32
        np.testing.assert_array_equal(sample_weight, np.array(weights, np.float32)[mask])
        assert image.shape[0] == mask.shape[0]


def _training_run(directory, seed, epochs=2):
    dataset = data.make_dataset(
        directory, "train", 32, 3, training=True, augment=True, shuffle_buffer=16, seed=seed
    )
    return [np.concatenate([b[0] for b in _elements(dataset)]) for _ in range(epochs)]


def test_seeded_training_input_is_reproducible_and_reshuffles_each_epoch(square_dir):
    directory, _ = square_dir
    first, second = _training_run(directory, seed=7), _training_run(directory, seed=7)
    for epoch_a, epoch_b in zip(first, second, strict=True):
        np.testing.assert_array_equal(epoch_a, epoch_b)
    assert not np.array_equal(first[0], first[1]), "epochs should differ in order or flips"
    other = _training_run(directory, seed=8)
    assert not np.array_equal(first[0], other[0])


def test_training_epoch_sees_every_record_once_with_identical_flips(square_dir):
    directory, contents = square_dir
    originals = contents["train"]
    flipped_count = 0
    matched = []
    for images, masks in _elements(
        data.make_dataset(
            directory, "train", 32, 4, training=True, augment=True, shuffle_buffer=16, seed=3
        )
    ):
        for image, mask in zip(images, masks[..., 0], strict=True):
            for index, (original_image, original_mask) in enumerate(originals):
                if np.array_equal(image, original_image):
                    np.testing.assert_array_equal(mask, original_mask)
                    matched.append(index)
                    break
                if np.array_equal(image, original_image[:, ::-1]):
                    # The mask must be flipped with its image, never on its own.
                    np.testing.assert_array_equal(mask, original_mask[:, ::-1])
                    matched.append(index)
                    flipped_count += 1
                    break
            else:
                pytest.fail("an element matches no record, flipped or not")
    assert sorted(matched) == list(range(len(originals)))
    assert 0 < flipped_count < len(originals), flipped_count


def test_drop_remainder_keeps_only_full_batches(square_dir):
    directory, _ = square_dir
    kept = _elements(data.make_dataset(directory, "train", 32, 4, training=True, seed=0))
    dropped = _elements(
        data.make_dataset(directory, "train", 32, 4, training=True, seed=0, drop_remainder=True)
    )
    assert [len(batch[0]) for batch in kept] == [4, 4, 2]
    assert [len(batch[0]) for batch in dropped] == [4, 4]


def test_cache_does_not_change_the_data(square_dir):
    directory, _ = square_dir
    cached = _elements(data.make_dataset(directory, "test", 64, 4, training=False, cache=True))
    streamed = _elements(data.make_dataset(directory, "test", 64, 4, training=False, cache=False))
    np.testing.assert_array_equal(cached[0][0], streamed[0][0])


def test_bad_arguments_are_refused_with_the_field_named(square_dir):
    directory, _ = square_dir
    with pytest.raises(ValueError, match="class_weights has 2 values"):
        data.make_dataset(directory, "train", 32, 4, training=True, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="batch_size"):
        data.make_dataset(directory, "train", 32, 0, training=True)
    with pytest.raises(dataset_info.DatasetMismatchError, match="no split 'validation'"):
        data.make_dataset(directory, "validation", 32, 4, training=False)
