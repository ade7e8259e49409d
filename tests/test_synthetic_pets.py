"""synthetic_pets: Oxford's features, deterministic, trimaps with a border band, not trivial."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from components.data import synthetic_pets
from components.data.synthetic_pets import generate_example, make_config


def _masks(count, size=64, seed=0, split="train"):
    return [
        generate_example(seed, split, i, size)["segmentation_mask"][..., 0] for i in range(count)
    ]


def test_config_name_spells_out_sizes_and_is_one_object_per_name():
    config = make_config(train_size=12, test_size=6, image_size=64, seed=3)
    assert config.name == "train12-test6-size64-seed3"
    assert (config.train_size, config.test_size, config.image_size, config.seed) == (12, 6, 64, 3)
    assert make_config(12, 6, 64, 3) is config
    assert synthetic_pets.SyntheticPets.get_builder_config("train12-test6-size64-seed3") is config
    assert synthetic_pets.SyntheticPets.get_builder_config("not-a-config") is None


def test_config_rejects_tiny_images():
    with pytest.raises(ValueError, match="image size 16"):
        make_config(train_size=2, test_size=2, image_size=16)


def test_examples_are_deterministic_and_seed_dependent():
    first = generate_example(5, "train", 3, 64)
    again = generate_example(5, "train", 3, 64)
    np.testing.assert_array_equal(first["image"], again["image"])
    np.testing.assert_array_equal(first["segmentation_mask"], again["segmentation_mask"])
    other_seed = generate_example(6, "train", 3, 64)
    other_split = generate_example(5, "test", 3, 64)
    assert not np.array_equal(first["image"], other_seed["image"])
    assert not np.array_equal(first["image"], other_split["image"])


def test_unknown_split_is_an_error():
    with pytest.raises(ValueError, match="validation"):
        generate_example(0, "validation", 0, 64)


def test_image_shape_dtype_and_labels():
    for index in range(10):
        example = generate_example(0, "train", index, 80)
        image, mask = example["image"], example["segmentation_mask"]
        assert image.dtype == np.uint8 and mask.dtype == np.uint8
        assert image.shape[:2] == mask.shape[:2] and image.shape[2] == 3 and mask.shape[2] == 1
        assert max(image.shape[:2]) == 80 and min(image.shape[:2]) >= 60
        assert 0 <= example["label"] < 37
        assert example["species"] == synthetic_pets.species_of(example["label"])
        box = example["head_bbox"]
        assert 0 <= box.ymin <= box.ymax <= 1 and 0 <= box.xmin <= box.xmax <= 1


def test_trimaps_hold_all_three_values_and_a_border_band_between_pet_and_background():
    for mask in _masks(12):
        assert set(np.unique(mask)) == {1, 2, 3}
        pet, background = mask == 1, mask == 2
        # The band separates them: no pet pixel has a background 4-neighbour.
        touching = (
            (pet[1:, :] & background[:-1, :]).any()
            or (pet[:-1, :] & background[1:, :]).any()
            or (pet[:, 1:] & background[:, :-1]).any()
            or (pet[:, :-1] & background[:, 1:]).any()
        )
        assert not touching
        # Thin: fewer border pixels than background pixels, and present.
        assert 0 < (mask == 3).sum() < background.sum()


def test_pets_vary_in_size_and_position():
    areas, centres = [], []
    for mask in _masks(24):
        rows, cols = np.nonzero(mask != 2)
        areas.append(rows.size / mask.size)
        centres.append((rows.mean() / mask.shape[0], cols.mean() / mask.shape[1]))
    assert np.std(areas) > 0.03
    assert np.min(areas) > 0.03 and np.max(areas) < 0.7
    assert np.std(np.array(centres), axis=0).min() > 0.05


def test_colour_alone_does_not_segment_the_images():
    # A nearest-mean colour classifier fitted on some images must do poorly on others:
    # pet and background colours come from overlapping distributions.
    def pixels(indices):
        colours, labels = [], []
        for index in indices:
            example = generate_example(0, "train", index, 48)
            mask = example["segmentation_mask"][..., 0]
            keep = mask != 3
            colours.append(example["image"][keep].astype(np.float64))
            labels.append(mask[keep] == 1)
        return np.concatenate(colours), np.concatenate(labels)

    colours, is_pet = pixels(range(20))
    pet_mean, background_mean = colours[is_pet].mean(0), colours[~is_pet].mean(0)
    test_colours, test_is_pet = pixels(range(20, 40))
    predicted = np.linalg.norm(test_colours - pet_mean, axis=1) < np.linalg.norm(
        test_colours - background_mean, axis=1
    )
    pet_iou = (predicted & test_is_pet).sum() / (predicted | test_is_pet).sum()
    assert pet_iou < 0.35


def test_builder_has_oxford_features_and_prepares_deterministically(tmp_path):
    config = make_config(train_size=4, test_size=2, image_size=48, seed=1)
    download_config = tfds.download.DownloadConfig(try_download_gcs=False)
    builders = []
    for name in ("a", "b"):
        builder = synthetic_pets.SyntheticPets(config=config, data_dir=str(tmp_path / name))
        builder.download_and_prepare(download_config=download_config)
        builders.append(builder)
    builder = builders[0]
    assert builder.name == "synthetic_pets"
    assert builder.data_dir.endswith("synthetic_pets/train4-test2-size48-seed1/1.0.0")
    assert {split: info.num_examples for split, info in builder.info.splits.items()} == {
        "train": 4,
        "test": 2,
    }

    oxford = tfds.builder("oxford_iiit_pet", data_dir=str(tmp_path / "oxford"))
    ours, theirs = builder.info.features, oxford.info.features
    assert sorted(ours.keys()) == sorted(theirs.keys())
    for key in theirs:
        assert type(ours[key]) is type(theirs[key]), key
        assert ours[key].shape == theirs[key].shape, key
        assert ours[key].dtype == theirs[key].dtype, key
    assert ours["label"].names == theirs["label"].names
    assert ours["species"].names == theirs["species"].names

    def contents(prepared):
        return {
            example["file_name"]: (example["image"].tobytes(), example["segmentation_mask"])
            for split in ("train", "test")
            for example in tfds.as_numpy(prepared.as_dataset(split=split))
        }

    first, second = contents(builders[0]), contents(builders[1])
    assert sorted(first) == sorted(second) and len(first) == 6  # unique names across splits
    for name, (image, mask) in first.items():
        assert name.decode().endswith(".jpg") and "_" in name.decode()
        assert image == second[name][0]
        np.testing.assert_array_equal(mask, second[name][1])
        assert set(np.unique(mask)) <= {1, 2, 3}
