import re

import pytest
import yaml

from components.platform.config import (
    PRESETS,
    ConfigError,
    DataConfig,
    PipelineConfig,
    load_config,
    section_from_json,
)


def test_presets_validate_and_differ_where_documented():
    demo = load_config("demo")
    tutorial = load_config("tutorial")
    assert demo.data.dataset == "synthetic_pets"
    assert demo.model.encoder_weights == "none" and demo.model.encoder_trainable
    assert tutorial.data.dataset == "oxford_iiit_pet" and tutorial.data.version == "4.*.*"
    assert (tutorial.model.image_size, tutorial.training.batch_size) == (128, 64)
    assert tutorial.training.epochs == 20
    assert not tutorial.model.encoder_trainable
    assert set(PRESETS) == {"demo", "tutorial", "production"}


def test_tutorial_preset_is_the_notebooks_and_production_differs_only_in_scaling():
    tutorial, production = load_config("tutorial"), load_config("production")
    # The notebook: Oxford 4.x at 128 px, batch 64, 20 epochs, frozen ImageNet, [0, 1] inputs.
    assert tutorial.model.normalization == "tutorial"
    assert (tutorial.model.encoder_weights, tutorial.model.freeze_encoder) == ("imagenet", True)
    assert tutorial.training.learning_rate == 1e-3
    assert tutorial.training.class_weighting == "none"
    # Production: the [-1, 1] scaling MobileNetV2's ImageNet weights expect, same encoder.
    assert production.model.normalization == "mobilenet"
    assert not production.model.encoder_trainable
    assert production.model.encoder_weights == "imagenet"
    assert (production.data.dataset, production.data.version) == ("oxford_iiit_pet", "4.*.*")
    # and the real-photo recipe bench_quality chose on its validation split (README).
    assert (production.model.image_size, production.training.batch_size) == (160, 16)
    assert production.training.loss == "cross_entropy_dice"
    assert production.training.fine_tune_learning_rate_factor == 0.3
    assert production.model.batchnorm_momentum == "from_steps"
    assert production.name == "petseg"


def test_default_freeze_follows_pretrained_weights():
    assert not PipelineConfig().model.encoder_trainable  # imagenet → frozen
    cfg = load_config(overrides=["model.encoder_weights=none"])
    assert cfg.model.encoder_trainable


def test_overrides_parse_types_and_nest():
    cfg = load_config("demo", overrides=["training.epochs=3", "training.augment=false"])
    assert cfg.training.epochs == 3 and cfg.training.augment is False
    cfg = load_config("demo", overrides=["training.fixed_class_weights=[1, 2, 0.5]"])
    assert cfg.training.fixed_class_weights == [1.0, 2.0, 0.5]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("model.image_size=100", "model.image_size"),
        ("training.batch_size=0", "training.batch_size"),
        ("data.dataset=Not a dataset", "data.dataset"),
        ("data.source=bucket", "data.source"),
        ("data.validation_fraction=0", "data.validation_fraction"),
        ("data.classes=[{name: pet}]", "data.classes.0"),
        ("data.mask_format=jpeg", "data.mask_format"),
        ("training.fixed_class_weights=[-1, 1, 1]", "training.fixed_class_weights.0"),
        ("training.fixed_class_weights=[1, 1]", "fixed_class_weights"),
        ("training.learning_rate=0", "training.learning_rate"),
        ("evaluation.min_mean_iou=1.5", "evaluation.min_mean_iou"),
        ("data.version=latest", "data.version"),
        ("runtime.train_resources.memory=lots", "runtime.train_resources.memory"),
        ("training.class_weighting=magic", "training.class_weighting"),
        ("model.typo=1", "model.typo"),
    ],
)
def test_invalid_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config("demo", overrides=[override])


def test_yaml_file_layers_between_preset_and_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"training": {"epochs": 9, "batch_size": 4}}))
    cfg = load_config("demo", config_file=path, overrides=["training.epochs=2"])
    assert (cfg.training.epochs, cfg.training.batch_size) == (2, 4)
    assert cfg.model.image_size == PRESETS["demo"]["model"]["image_size"]


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(config_file=path)


def test_missing_file_unknown_preset_and_bad_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_file=tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("huge")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(overrides=["training.epochs"])


def test_sections_round_trip_through_json_parameters():
    cfg = load_config("demo")
    data = section_from_json(DataConfig, cfg.data.model_dump_json())
    assert data == cfg.data
    with pytest.raises(ConfigError, match="records_per_shard"):
        section_from_json(DataConfig, '{"records_per_shard": 0}')


def test_default_class_table_is_oxfords_trimap():
    data = load_config("tutorial").data
    assert data.source == "tfds"
    assert (data.image_feature, data.mask_feature) == ("image", "segmentation_mask")
    assert data.class_table() == {
        "classes": [
            {"name": "pet", "values": [1], "colors": []},
            {"name": "background", "values": [2], "colors": []},
            {"name": "border", "values": [3], "colors": []},
        ],
        "ignore_values": [],
        "ignore_colors": [],
    }


def test_class_table_takes_hex_or_triplet_colours_and_the_border_can_be_ignored():
    data = load_config(
        None,
        None,
        [
            "data.classes=[{name: pet, values: [1], colors: ['#FF8800']}, "
            "{name: background, values: [2], colors: [[0, 0, 0]]}]",
            "data.ignore_values=[3]",
            "data.ignore_colors=['#e0e0c0']",
        ],
    ).data
    assert data.class_names == ["pet", "background"]
    assert data.class_table()["classes"][0]["colors"] == [[255, 136, 0]]
    assert data.class_table()["ignore_colors"] == [[224, 224, 192]]
    assert data.ignore_values == [3]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.source=folder"], "data.path is required for source 'folder'"),
        (["data.classes=[{name: a, values: [1]}, {name: b, values: [1]}]"], "value 1 is claimed"),
        (
            ["data.ignore_values=[2]"],
            r"value 2 is claimed by both 'background' and 'ignore_values'",
        ),
        (["data.classes=[{name: a, values: [1]}, {name: a, values: [2]}]"], r"names \['a'\]"),
        (["data.classes=[{name: a, values: [1]}]"], "between 2 and 255"),
        (["data.classes=[{name: a, colors: ['#12345']}, {name: b, values: [1]}]"], "'#12345'"),
        (["data.validation_fraction=0.6", "data.test_fraction=0.5"], "sum < 1"),
        (["data.training_size=3"], "data.training_size: unknown key"),
    ],
)
def test_bad_class_tables_and_sources_are_refused_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, None, overrides)


def test_fixed_class_weights_follow_the_class_table():
    config = load_config(
        None,
        None,
        [
            "data.classes=[{name: a, values: [0]}, {name: b, values: [1]}]",
            "training.fixed_class_weights=[1, 2]",
        ],
    )
    assert config.training.fixed_class_weights == [1, 2]
    with pytest.raises(ConfigError, match=r"one per class \(a, b\)"):
        load_config(
            None,
            None,
            [
                "data.classes=[{name: a, values: [0]}, {name: b, values: [1]}]",
                "training.fixed_class_weights=[1, 2, 3]",
            ],
        )


@pytest.mark.parametrize(
    ("override", "field", "shown"),
    [
        ("training.epochs=true", "training.epochs", "True"),
        ("training.epochs=3.0", "training.epochs", "3.0"),
        ("training.epochs='3'", "training.epochs", "'3'"),
        ("training.augment=1", "training.augment", "1"),
        ("training.augment=sometimes", "training.augment", "'sometimes'"),
        ("data.skip_unchanged=0", "data.skip_unchanged", "0"),
        ("training.learning_rate=false", "training.learning_rate", "False"),
    ],
)
def test_booleans_and_whole_numbers_are_strict(override, field, shown):
    # Pydantic alone reads `epochs=true` as 1 epoch and `augment=1` as on.
    with pytest.raises(ConfigError) as error:
        load_config("demo", overrides=[override])
    assert f"{field}: must be " in str(error.value)
    assert f"(got {shown})" in str(error.value)


def test_strict_fields_still_take_their_own_types(tmp_path):
    config = load_config(
        "demo",
        overrides=[
            "training.epochs=3",
            "training.augment=false",
            "data.skip_unchanged=null",
            "training.learning_rate=1e-3",  # YAML 1.1 text; a float field still parses it
            "training.learning_rate=1",
        ],
    )
    assert config.training.epochs == 3 and config.training.augment is False
    assert config.data.skip_unchanged is None and config.training.learning_rate == 1.0
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  epochs: yes\n")
    with pytest.raises(ConfigError, match=r"training\.epochs: must be a whole number"):
        load_config("demo", config_file=path)


def test_a_key_given_twice_in_yaml_names_the_key_and_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("training:\n  epochs: 3\n  batch_size: 4\n  epochs: 5\nname: x\n")
    with pytest.raises(ConfigError) as error:
        load_config("demo", config_file=path)
    assert str(error.value) == (
        f"config file {str(path)!r}: key 'epochs' is given twice (lines 2 and 4); keep one"
    )
    # The same key in two sections, and a YAML merge's overrides, are not duplicates.
    path.write_text(
        "base: &base {epochs: 2, batch_size: 4}\n"
        "training:\n  <<: *base\n  epochs: 3\n"
        "evaluation:\n  batch_size: 4\n"
    )
    with pytest.raises(ConfigError, match="base: unknown key"):
        load_config("demo", config_file=path)
    with pytest.raises(
        ConfigError, match=re.escape("override data.classes=...: key 'a' is given twice")
    ):
        load_config("demo", overrides=["data.classes={a: 1, a: 2}"])
