"""The pipeline's one configuration: a pydantic model, presets, YAML and overrides.

Every default lives here. Pipeline parameters, component arguments and CLI
flags are derived from these models rather than retyped, and every section
forbids unknown keys, so a typo fails loudly with the field's path.
"""

from __future__ import annotations

import copy
import json
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# The segmentation classes of the default dataset. Oxford-IIIT Pet trimaps store
# 1 = pet, 2 = background, 3 = border; class ids are ``trimap - 1``.
# components.data.schema re-exports these with the record format.
CLASS_NAMES: tuple[str, ...] = ("pet", "background", "border")
NUM_CLASSES: int = len(CLASS_NAMES)
# Raw trimap values in the source dataset, in class-id order.
TRIMAP_VALUES: tuple[int, ...] = (1, 2, 3)
TRIMAP_OFFSET: int = 1
# Stored mask value of ignored pixels (Pascal VOC's void); class ids stay below it.
# components.data.schema re-exports it; here so TF-free code (ingest workers) can use it.
IGNORE_ID: int = 255

WeightingStrategy = Literal["none", "fixed", "inverse_frequency", "median_frequency"]
# The tutorial's weights in class-id order (pet, background, border).
TUTORIAL_CLASS_WEIGHTS: tuple[float, ...] = (2.0, 2.0, 1.0)

PositiveInt = Annotated[int, Field(ge=1)]
# Vertex AI Model Registry names (its documented patterns).
VERTEX_MODEL_RESOURCE = re.compile(r"projects/[^/]+/locations/[a-z0-9-]+/models/[^/@]+")
VERTEX_ALIAS = re.compile(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9-]")
# Google Cloud's naming rules, written once: config, push's registry and the Vertex AI
# submission refuse a bad name before any request is sent.
GCP_REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")
MAX_LABELS = 64


def label_problems(labels: Mapping[str, Any], option: str) -> list[str]:
    """What breaks Google Cloud's label rules, one line each naming ``option`` (none: fine)."""
    problems = []
    if len(labels) > MAX_LABELS:
        problems.append(f"{option}: {len(labels)} labels, at most {MAX_LABELS} are allowed")
    for key, value in labels.items():
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", str(key)):
            problems.append(
                f"{option} key {key!r}: use lowercase letters, digits, '_' or '-', starting "
                "with a letter, at most 63 characters"
            )
        if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9_-]{0,63}", value):
            problems.append(
                f"{option}[{key!r}]: value {value!r}: use lowercase letters, digits, '_' or "
                "'-', at most 63 characters"
            )
    return problems


# The offline demo dataset (a TFDS builder of this project, components/data/synthetic_pets.py).
SYNTHETIC_DATASET = "synthetic_pets"
DataSource = Literal["tfds", "folder", "manifest"]
MaskFormat = Literal["auto", "values", "palette", "rgb"]
# Class ids 0..254 fit a uint8 mask next to the ignore id.
MAX_CLASSES = IGNORE_ID


class ConfigError(ValueError):
    """A configuration problem; the message names the field and the value."""


def _scalar_type(annotation: Any) -> Any:
    """bool, int or float when a field holds one (optional or constrained), else None."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) != 1:
            return None
        return _scalar_type(members[0])
    return annotation if annotation in (bool, int, float) else None


class _Section(BaseModel):
    # Numbers become strings where a string is expected: `--set runtime.train_resources.cpu=4`
    # and a YAML `vertex_project: 123456789012` (a project number) are strings to the user.
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, frozen=False, coerce_numbers_to_str=True
    )

    @field_validator("*", mode="before")
    @classmethod
    def _strict_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        # Pydantic would read `epochs: true` as 1 and `augment: 1` or "yes" as True: a
        # switch and a count are never each other, and text is neither.
        kind = _scalar_type(cls.model_fields[info.field_name].annotation)
        if kind is bool and not isinstance(value, bool) and value is not None:
            raise PydanticCustomError("bool_type", "must be true or false")
        if kind is int and isinstance(value, bool):
            raise PydanticCustomError("int_type", "must be a whole number, not true or false")
        if kind is int and isinstance(value, str | float):
            raise PydanticCustomError("int_type", "must be a whole number")
        if kind is float and isinstance(value, bool):
            raise PydanticCustomError("float_type", "must be a number, not true or false")
        return value


def _text(pattern: str, refusal: str, *, empty_ok: bool = False) -> Any:
    """Text that must fully match ``pattern`` ('' too, with ``empty_ok``).

    ``refusal`` is the error naming the field: it may show ``{value!r}`` or only ``{length}``
    (a value that may be a secret is never repeated).
    """

    def check(value: str) -> str:
        if (value or not empty_ok) and not re.fullmatch(pattern, value):
            raise ValueError(refusal.format(value=value, length=len(value)))
        return value

    return Annotated[str, AfterValidator(check)]


ClassName = _text(
    r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}",
    "class name {value!r} must be 1-64 letters, digits, '_', '.' or '-' (it names metrics)",
)
# A TFDS name, optionally with its builder config ('name/config').
DatasetName = _text(
    r"[a-z][a-z0-9_]*(/[A-Za-z0-9_.+-]+)?",
    "dataset {value!r} is not a TFDS dataset name such as 'oxford_iiit_pet'",
)
# One path component: not '.' or '..', no slashes.
FolderName = _text(r"(?!\.\.?\Z)[^/\\]+", "folder name {value!r} must be one path component")
DatasetVersion = _text(
    r"\d+\.(\d+|\*)\.(\d+|\*)", "version {value!r} is not like '4.0.0' or '4.*.*'"
)


def _unset(description: str) -> Any:
    """A text field whose default '' means "not set" (each description says what then)."""
    return Field(default="", description=description)


def _parse_colour(value: Any) -> Any:
    """'#rrggbb' or [r, g, b] → [r, g, b]; anything else is left for pydantic to refuse."""
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if not re.fullmatch(r"[0-9a-fA-F]{6}", text):
            raise ValueError(f"colour {value!r} is not like '#ff8800' or [255, 136, 0]")
        return [int(text[i : i + 2], 16) for i in (0, 2, 4)]
    return value


Colour = Annotated[
    tuple[
        Annotated[int, Field(ge=0, le=255)],
        Annotated[int, Field(ge=0, le=255)],
        Annotated[int, Field(ge=0, le=255)],
    ],
    BeforeValidator(_parse_colour),
]
MaskValue = Annotated[int, Field(ge=0, le=65535)]


class ClassSpec(_Section):
    """One class: its name, and the raw mask values and/or RGB colours that mean it."""

    name: ClassName
    values: list[MaskValue] = Field(
        default_factory=list, description="Mask values (single-channel or palette index)."
    )
    colors: list[Colour] = Field(
        default_factory=list, description="RGB colours ('#rrggbb' or [r, g, b]) for RGB masks."
    )

    @model_validator(mode="after")
    def _has_a_value(self) -> ClassSpec:
        if not self.values and not self.colors:
            raise ValueError(f"class {self.name!r} has neither values nor colors")
        return self


# Oxford-IIIT Pet trimaps: 1 pet, 2 background, 3 border ("not classified").
DEFAULT_CLASSES: tuple[dict[str, Any], ...] = tuple(
    {"name": name, "values": [value]}
    for name, value in zip(CLASS_NAMES, TRIMAP_VALUES, strict=True)
)


BeamRunner = Literal["DirectRunner", "DataflowRunner"]
_GCP_PROJECT = re.compile(r"[a-z][-a-z0-9]{4,28}[a-z0-9]")


class BeamConfig(_Section):
    """How ingest runs with ``data.engine=beam``: the Beam runner and its options.

    Nothing here is a secret: the service account is a name, and Dataflow gets its
    credentials from the environment (the pipeline's service account on Vertex AI).
    """

    runner: BeamRunner = Field(
        default="DirectRunner",
        description="'DirectRunner' (this machine) or 'DataflowRunner' (Google Cloud Dataflow).",
    )
    direct_num_workers: Annotated[int, Field(ge=0, le=256)] = Field(
        default=1,
        description=(
            "DirectRunner: parallel workers; 0 = one per core. Ingest turns off the "
            "DirectRunner's timer flush, which lost records in Beam 2.77 (README)."
        ),
    )
    direct_running_mode: Literal["in_memory", "multi_threading", "multi_processing"] = Field(
        default="multi_threading",
        description=(
            "DirectRunner: workers as threads (image codecs and NumPy release the GIL, and "
            "start in no time) or processes (each starts its own TensorFlow)."
        ),
    )
    project: str = _unset("DataflowRunner: the Google Cloud project.")
    region: str = _unset("DataflowRunner: the region, e.g. us-central1.")
    temp_location: str = _unset("DataflowRunner: gs:// folder for temporary files (required).")
    staging_location: str = _unset("DataflowRunner: gs:// folder for staged code; '' = temp.")
    max_num_workers: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=10, description="DataflowRunner: autoscaling ceiling (cost ceiling too)."
    )
    machine_type: str = _unset("DataflowRunner: worker machine type; '' = Dataflow's default.")
    service_account_email: str = _unset(
        "DataflowRunner: the workers' service account; '' = default."
    )
    sdk_container_image: str = _unset(
        "DataflowRunner: the workers' image (required): the CPU component image plus "
        "Beam's boot program, built by containers/Dockerfile.dataflow."
    )
    job_name: str = _unset("DataflowRunner: job name; '' = generated.")

    @model_validator(mode="after")
    def _dataflow_needs(self) -> BeamConfig:
        if self.runner != "DataflowRunner":
            return self
        required = ("project", "region", "temp_location", "sdk_container_image")
        missing = [name for name in required if not getattr(self, name)]
        if missing:
            raise ValueError(
                "DataflowRunner needs " + ", ".join(f"data.beam.{name}" for name in missing)
            )
        if not _GCP_PROJECT.fullmatch(self.project):
            raise ValueError(f"data.beam.project {self.project!r} is not a project id")
        if not GCP_REGION.fullmatch(self.region):
            raise ValueError(f"data.beam.region {self.region!r} is not a region like us-central1")
        for name in ("temp_location", "staging_location"):
            value = getattr(self, name)
            if value and not value.startswith("gs://"):
                raise ValueError(
                    f"data.beam.{name} {value!r} is a local path; Dataflow workers cannot see "
                    "it: give a gs:// folder"
                )
        return self


class DataConfig(_Section):
    """Where the data comes from, what its masks mean, how it is split and written."""

    source: DataSource = Field(
        default="tfds",
        description="'tfds' (a TFDS dataset), 'folder' (images/ + masks/) or 'manifest'.",
    )
    dataset: DatasetName = Field(default=SYNTHETIC_DATASET, description="TFDS dataset name (tfds).")
    version: DatasetVersion | None = Field(
        default=None, description="TFDS version or pattern such as '4.*.*'; None = latest."
    )
    image_feature: str = Field(default="image", description="TFDS image feature (tfds).")
    mask_feature: str = Field(
        default="segmentation_mask", description="TFDS segmentation-mask feature (tfds)."
    )
    data_dir: str | None = Field(default=None, description="TFDS data_dir (local or gs://).")
    manual_dir: str | None = Field(
        default=None,
        description="Folder holding images.tar.gz and annotations.tar.gz for an offline build.",
    )
    download: bool = Field(
        default=True,
        description=(
            "Let TFDS download and prepare the data; with manual_dir set, an offline build "
            "from the archives runs even when off."
        ),
    )
    try_gcs: bool = Field(
        default=False,
        description="Use TFDS's prepared GCS copy; off because it can be ArrayRecord.",
    )
    path: str = _unset("Folder root (folder) or CSV/JSON Lines file (manifest), local or gs://.")
    images_folder: FolderName = Field(default="images", description="Image folder name (folder).")
    masks_folder: FolderName = Field(default="masks", description="Mask folder name (folder).")
    image_extensions: list[str] = Field(
        default_factory=lambda: ["jpg", "jpeg", "png"],
        description="Image file extensions (folder), matched case-insensitively.",
    )
    mask_extensions: list[str] = Field(
        default_factory=lambda: ["png"], description="Mask file extensions (folder)."
    )
    mask_format: MaskFormat = Field(
        default="auto",
        description=(
            "'auto' reads palette PNGs by index, single-channel masks by value and RGB masks "
            "by colour; 'values', 'palette' or 'rgb' insist on one kind."
        ),
    )
    classes: list[ClassSpec] = Field(
        default_factory=lambda: [ClassSpec(**spec) for spec in DEFAULT_CLASSES],
        description="Class table in class-id order: name, mask values and/or RGB colours.",
    )
    ignore_values: list[MaskValue] = Field(
        default_factory=list,
        description="Mask values left out of the loss and every metric (e.g. VOC's 255).",
    )
    ignore_colors: list[Colour] = Field(
        default_factory=list, description="RGB colours left out of the loss and every metric."
    )
    validation_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.1,
        description="Share of train carved into validation when the source has no validation.",
    )
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.1, description="Share of train carved into test when the source has no test."
    )
    records_per_shard: PositiveInt = 1024
    bad_record_policy: Literal["error", "skip"] = "error"
    ingest_workers: Annotated[int, Field(ge=0, le=256)] = Field(
        default=0, description="Threads decoding and checking records; 0 = every core."
    )
    engine: Literal["local", "beam"] = Field(
        default="local",
        description=(
            "'local': threads in this process; 'beam': an Apache Beam pipeline (data.beam.*; "
            "needs the beam extra). Both write the same records, dataset.json and statistics."
        ),
    )
    beam: BeamConfig = Field(default_factory=BeamConfig)
    skip_unchanged: bool | None = Field(
        default=None,
        description=(
            "Skip train, evaluate and push when the data's fingerprint equals the one the "
            "production model (push destination's LATEST) was trained on; None = on in "
            "pipelines compiled for a schedule, off otherwise."
        ),
    )
    # Size of the generated offline dataset (synthetic_pets only).
    synthetic_train_size: PositiveInt = 96
    synthetic_test_size: PositiveInt = 32
    synthetic_image_size: Annotated[int, Field(ge=32, le=1024)] = 96
    synthetic_seed: int = 0

    @field_validator("image_extensions", "mask_extensions")
    @classmethod
    def _extensions(cls, value: list[str]) -> list[str]:
        cleaned = [item.strip().lstrip(".").lower() for item in value]
        if not cleaned or not all(re.fullmatch(r"[a-z0-9]+", item) for item in cleaned):
            raise ValueError(f"extensions {value!r} must be a non-empty list like ['jpg', 'png']")
        return cleaned

    @model_validator(mode="after")
    def _consistent(self) -> DataConfig:
        if self.source != "tfds" and not self.path.strip():
            raise ValueError(f"data.path is required for source {self.source!r}")
        if not 2 <= len(self.classes) <= MAX_CLASSES:
            raise ValueError(
                f"classes: {len(self.classes)} given; between 2 and {MAX_CLASSES} are needed"
            )
        names = [spec.name for spec in self.classes]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"classes: names {duplicates} appear more than once")
        _check_unique(
            "value",
            [(spec.name, value) for spec in self.classes for value in spec.values]
            + [("ignore_values", value) for value in self.ignore_values],
        )
        _check_unique(
            "colour",
            [(spec.name, colour) for spec in self.classes for colour in spec.colors]
            + [("ignore_colors", colour) for colour in self.ignore_colors],
        )
        if self.validation_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"validation_fraction {self.validation_fraction} + test_fraction "
                f"{self.test_fraction} must leave some of train for training (sum < 1)"
            )
        return self

    @property
    def class_names(self) -> list[str]:
        return [spec.name for spec in self.classes]

    def class_table(self) -> dict[str, Any]:
        """The class table as dataset.json records it (class id = list index)."""
        return {
            "classes": [
                {"name": s.name, "values": list(s.values), "colors": [list(c) for c in s.colors]}
                for s in self.classes
            ],
            "ignore_values": list(self.ignore_values),
            "ignore_colors": [list(colour) for colour in self.ignore_colors],
        }


def _check_unique(kind: str, owners: list[tuple[str, Any]]) -> None:
    """A mask value or colour may mean one class (or ignore) only."""
    seen: dict[Any, str] = {}
    for owner, item in owners:
        key = tuple(item) if isinstance(item, list | tuple) else item
        if key in seen and seen[key] != owner:
            raise ValueError(f"{kind} {item!r} is claimed by both {seen[key]!r} and {owner!r}")
        if key in seen:
            raise ValueError(f"{kind} {item!r} is listed twice for {owner!r}")
        seen[key] = owner


class ModelConfig(_Section):
    """The U-Net and its encoder."""

    image_size: Annotated[int, Field(ge=32, le=1024)] = 128
    encoder_weights: str = Field(
        default="imagenet",
        description="'imagenet', 'none', or a path (local or gs://) to a Keras weights file.",
    )
    freeze_encoder: bool | None = Field(
        default=None, description="None = frozen with pretrained weights, trainable without."
    )
    batchnorm_momentum: Annotated[float, Field(ge=0, lt=1)] | Literal["from_steps"] | None = Field(
        default=None,
        description=(
            "BatchNorm momentum for every layer; None = MobileNetV2's 0.999 with pretrained "
            "weights, 0.9 from scratch (a random encoder at 0.999 only learns background); "
            "'from_steps' = 1 - 1/(train steps per epoch) within [0.9, 0.99], so the moving "
            "statistics average over about one epoch whatever the data size."
        ),
    )
    normalization: Literal["mobilenet", "tutorial"] = Field(
        default="mobilenet",
        description="'mobilenet' scales to [-1, 1] as MobileNetV2 expects; 'tutorial' to [0, 1].",
    )

    @field_validator("image_size")
    @classmethod
    def _multiple_of_32(cls, value: int) -> int:
        if value % 32:
            raise ValueError(f"image_size {value} is not a multiple of 32 (the encoder's stride)")
        return value

    @field_validator("encoder_weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("encoder_weights is empty; use 'imagenet', 'none' or a file path")
        return value

    @property
    def pretrained(self) -> bool:
        return self.encoder_weights != "none"

    @property
    def encoder_trainable(self) -> bool:
        if self.freeze_encoder is None:
            return not self.pretrained
        return not self.freeze_encoder


class TrainingConfig(_Section):
    """Optimisation, input pipeline and device settings for the train step."""

    epochs: PositiveInt = 20
    batch_size: PositiveInt = 64
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 1e-3
    steps_per_epoch: PositiveInt | None = Field(
        default=None, description="None = one pass over the train split."
    )
    class_weighting: WeightingStrategy = "none"
    fixed_class_weights: list[Annotated[float, Field(ge=0)]] | None = Field(
        default=None, description="Weights per class for 'fixed'; default the tutorial's."
    )
    augment: bool = True
    shuffle_buffer: PositiveInt = 1000
    cache: bool = True
    seed: int | None = 42
    mixed_precision: bool = Field(default=True, description="Used only when a GPU is visible.")
    xla: bool = Field(default=True, description="Used only when a GPU is visible.")
    tensorboard_images: Annotated[int, Field(ge=0)] = 3
    replica_count: Annotated[int, Field(ge=1, le=64)] = Field(
        default=1,
        description=(
            "Machines the train step runs on (Vertex AI only: a custom job with this many "
            "replicas of the same machine and accelerator, under MultiWorkerMirroredStrategy). "
            "batch_size is per replica: the global batch is batch_size x replica_count."
        ),
    )
    # The recipe for real photos (issue 16; README "Quality on real photos"). Each default
    # is the tutorial's; the production preset turns on what the benchmark showed helps.
    augment_min_crop_scale: Annotated[float, Field(gt=0, le=1)] = Field(
        default=1.0,
        description="With augment: random square crops of at least this share of the area, "
        "resized back (random scale and position); 1 = none.",
    )
    augment_max_rotation_degrees: Annotated[float, Field(ge=0, le=180)] = Field(
        default=0.0, description="With augment: random rotation within +-this; 0 = none."
    )
    augment_color_jitter: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.0,
        description="With augment: brightness, contrast and saturation jitter; 0 = none.",
    )
    loss: Literal["cross_entropy", "cross_entropy_dice"] = Field(
        default="cross_entropy",
        description="Per-pixel cross-entropy; 'cross_entropy_dice' adds each image's soft "
        "Dice loss (mean over classes), which weighs a thin class such as the trimap border "
        "by its overlap rather than by its few pixels.",
    )
    learning_rate_schedule: Literal["constant", "cosine"] = Field(
        default="constant",
        description="'cosine' decays each phase's learning rate to 0 over its steps.",
    )
    fine_tune_epochs: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="Epochs after the first `epochs` with the encoder unfrozen (its "
        "BatchNorm kept in inference mode); 0 = no fine-tuning phase.",
    )
    fine_tune_learning_rate_factor: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.1, description="Fine-tuning learning rate = learning_rate * this."
    )
    fine_tune_from_block: Annotated[int, Field(ge=0, le=16)] = Field(
        default=0, description="Fine-tune MobileNetV2 from this block on (block_N_...); 0 = all."
    )
    keep_best_epoch: bool = Field(
        default=False,
        description="Keep the weights of the epoch with the best validation mean IoU.",
    )
    early_stopping_patience: Annotated[int, Field(ge=1)] | None = Field(
        default=None,
        description="Stop a phase after this many epochs without a better validation "
        "mean IoU; None = never.",
    )

    @field_validator("fixed_class_weights")
    @classmethod
    def _weights_finite(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and not any(w > 0 for w in value):
            raise ValueError("fixed_class_weights needs at least one positive weight")
        return value


class EvaluationConfig(_Section):
    """What it takes for a model to be blessed for push."""

    min_mean_iou: Annotated[float, Field(ge=0, le=1)] = 0.5
    max_regression: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.0, description="How much worse than the baseline's mean IoU is still blessed."
    )
    require_improvement: bool = Field(
        default=False,
        description=(
            "With a baseline, bless only a model whose mean IoU is higher than the baseline's; "
            "scheduled pipelines turn it on so a retrain that is merely as good is not pushed."
        ),
    )
    baseline: str = Field(
        default="latest",
        description="'latest' = the push destination's latest model, 'none', or a model path.",
    )
    report_images: Annotated[int, Field(ge=0, le=64)] = 6
    report_worst_images: Annotated[int, Field(ge=0, le=64)] = Field(
        default=4, description="How many of the worst test images (by IoU) the report shows."
    )
    batch_size: PositiveInt = 32
    blessing_rule: Literal["point", "confident"] = Field(
        default="point",
        description=(
            "'point' compares the two mean IoUs; 'confident' blesses only when the lower bound "
            "of the paired-bootstrap interval of challenger - production is >= -max_regression "
            "(and > 0 with require_improvement), so chance differences do not flip the decision."
        ),
    )
    bootstrap_samples: Annotated[int, Field(ge=10, le=100_000)] = Field(
        default=1000, description="Paired bootstrap resamples of the test images."
    )
    bootstrap_seed: int = Field(default=0, description="Same seed, same intervals.")
    max_slice_regression: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None,
        description=(
            "No slice (species, breed, folder, object or image size) with at least "
            "min_slice_images images may lose more mean IoU than this against production; "
            "None = off."
        ),
    )
    min_slice_images: PositiveInt = 30
    object_small: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.10, description="Object-size slices: non-background fraction below = small."
    )
    object_large: Annotated[float, Field(gt=0, lt=1)] = Field(
        default=0.40, description="Object-size slices: non-background fraction above = large."
    )
    image_side_edges: list[PositiveInt] = Field(
        default_factory=lambda: [256, 512],
        description="Image-size slices: ascending edges of the source image's longer side.",
    )
    boundary_band: Annotated[float, Field(gt=0, le=0.5)] = Field(
        default=0.02, description="Boundary IoU band width as a fraction of the image diagonal."
    )
    min_boundary_iou: Annotated[float, Field(ge=0, le=1)] | None = Field(
        default=None, description="Lowest mean boundary IoU blessed; None = off."
    )
    report_changed_images: Annotated[int, Field(ge=0, le=64)] = Field(
        default=3,
        description="Images whose IoU changed most against production, shown per direction.",
    )

    @model_validator(mode="after")
    def _slice_settings(self) -> EvaluationConfig:
        if self.object_small >= self.object_large:
            raise ValueError(
                f"object_small {self.object_small} must be below object_large {self.object_large}"
            )
        if self.image_side_edges != sorted(set(self.image_side_edges)):
            raise ValueError(f"image_side_edges {self.image_side_edges} must be ascending")
        return self


ParentModel = _text(
    VERTEX_MODEL_RESOURCE.pattern,
    "vertex_parent_model {value!r} is not projects/<project>/locations/<region>/models/<id>",
    empty_ok=True,
)

ModelAlias = _text(
    "(?!default\\Z)" + VERTEX_ALIAS.pattern,
    "vertex_model_alias {value!r}: use a lowercase letter, then letters, digits or "
    "'-' (at most 128 characters, not 'default')",
    empty_ok=True,
)


class PushConfig(_Section):
    """Where blessed models go."""

    destination: str = _unset("gs://bucket/prefix or a local folder; '' = no push.")
    register_vertex: bool = False
    vertex_project: str = _unset("Model Registry project; '' = the pipeline's own project.")
    vertex_location: str = _unset("Model Registry region; '' = the pipeline's own region.")
    vertex_model_display_name: str = Field(
        default="petseg",
        description="Registry model pushes add versions to, when vertex_parent_model is ''.",
    )
    vertex_parent_model: ParentModel = _unset(
        "projects/<project>/locations/<region>/models/<id> every push adds a version to; "
        "'' = the oldest model named vertex_model_display_name (the first push creates it)."
    )
    vertex_model_alias: ModelAlias = Field(
        default="production",
        description="Version alias moved to the version LATEST names; '' = move none.",
    )
    serving_image: str = Field(
        default="us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest",
        description="Prediction container registered with each version.",
    )
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("vertex_model_display_name")
    @classmethod
    def _display_name(cls, value: str) -> str:
        if not value.strip() or len(value) > 128 or any(c in value for c in '"\\'):
            raise ValueError(
                f"vertex_model_display_name {value!r} must be 1-128 characters without quotes "
                "or backslashes"
            )
        return value


class PredictConfig(_Section):
    """Batch prediction after push: the pushed model over a folder of images."""

    input: str = _unset(
        "Images the pushed model segments after each push: a folder, glob or gs:// "
        "prefix; '' = no predict step in the pipeline."
    )
    batch_size: PositiveInt = 16
    alpha: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.5, description="Overlay colour weight."
    )


Severity = Literal["error", "warn", "off"]


class CheckRule(_Section):
    """One data check: it fails when its figure exceeds ``threshold``."""

    severity: Severity = "error"
    threshold: Annotated[float, Field(ge=0)] = 0.0

    @field_validator("severity", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML reads a bare `off` as false; it means the severity "off" here.
        return "off" if value is False else value


def _rule(severity: Severity, threshold: float) -> Any:
    return Field(default_factory=lambda: CheckRule(severity=severity, threshold=threshold))


class ChecksConfig(_Section):
    """Data checks before training (components.data.data_validation): severity and threshold each.

    ``error`` stops the run before training, ``warn`` records and goes on, ``off`` skips.
    The last five compare with the statistics pushed beside the production model.
    """

    empty_splits: CheckRule = _rule("error", 0)
    classes_missing_in_train: CheckRule = _rule("error", 0)
    cross_split_duplicates: CheckRule = _rule("error", 0)
    duplicates_within_split: CheckRule = _rule("warn", 0)
    single_class_masks: CheckRule = _rule("warn", 0.5)
    skipped_records: CheckRule = _rule("warn", 0.01)
    class_frequency_distance: CheckRule = _rule("error", 0.1)
    classes_appeared: CheckRule = _rule("error", 0)
    classes_disappeared: CheckRule = _rule("error", 0)
    image_size_shift: CheckRule = _rule("warn", 0.3)
    split_shrink: CheckRule = _rule("error", 0.2)


Cpu = _text(r"\d+(\.\d+)?m?", "cpu {value!r} is not like '2', '0.5' or '500m'")
Memory = _text(r"\d+(\.\d+)?(K|M|G|T|Ki|Mi|Gi|Ti)?", "memory {value!r} is not like '8G' or '512Mi'")


class ResourcesConfig(_Section):
    cpu: Cpu = "2"
    memory: Memory = "8G"


class RuntimeConfig(_Section):
    """How the tasks run: images, resources, accelerator, retries, caching."""

    cpu_image: str = "us-docker.pkg.dev/PROJECT/petseg/petseg-cpu:0.1.0"
    gpu_image: str = "us-docker.pkg.dev/PROJECT/petseg/petseg-gpu:0.1.0"
    accelerator_type: str = Field(
        default="NVIDIA_TESLA_T4",
        description=(
            "The train task's accelerator; '' = none. A Vertex AI name (NVIDIA_TESLA_T4, "
            "NVIDIA_L4, ...); on Kubeflow it becomes a request for kubernetes_gpu_resource on "
            "GKE nodes labelled cloud.google.com/gke-accelerator=nvidia-tesla-t4 (unless "
            "gpu_node_selector is set), or give a Kubernetes resource name such as nvidia.com/gpu."
        ),
    )
    accelerator_count: Annotated[int, Field(ge=0, le=16)] = 1
    kubernetes_gpu_resource: str = Field(
        default="nvidia.com/gpu",
        description="Kubeflow: the Kubernetes resource a Vertex-style accelerator requests.",
    )
    gpu_node_selector: dict[str, str] = Field(default_factory=dict)
    gpu_tolerations: list[dict[str, str]] = Field(default_factory=list)
    default_resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    train_resources: ResourcesConfig = Field(
        default_factory=lambda: ResourcesConfig(cpu="8", memory="32G")
    )
    train_machine_type: str = Field(
        default="n1-standard-8",
        description=(
            "Vertex AI machine type of each train replica when training.replica_count > 1 "
            "(the train step is then a custom job, which takes a machine type, not cpu/memory)."
        ),
    )
    retries: Annotated[int, Field(ge=0, le=10)] = Field(
        default=2,
        description=(
            "Times the orchestrator starts the train task again after its pod was lost "
            "(preemption, eviction); it resumes from its checkpoint. Other tasks retry only "
            "transient errors, in their process; a deterministic failure is never repeated."
        ),
    )
    enable_caching: bool = Field(
        default=True, description="Let KFP reuse ingest/class-weights/train results."
    )
    cache_training_on_schedule: bool = Field(
        default=False,
        description="Scheduled runs re-ingest and retrain unless this asks to cache training.",
    )


EnvName = _text(
    r"[A-Za-z_][A-Za-z0-9_]*",
    "webhook_url_env must name an environment variable, not hold a URL "
    "({length} characters given, not shown)",
    empty_ok=True,
)
SecretVersion = _text(
    r"projects/[^/]+/secrets/[^/]+/versions/[^/]+",
    "webhook_url_secret must be a Secret Manager version name "
    "projects/<project>/secrets/<secret>/versions/<version|latest>, not the URL "
    "({length} characters given, not shown)",
    empty_ok=True,
)


class NotifyConfig(_Section):
    """Where the end-of-run report goes. The webhook URL holds a token: it is a secret.

    The config never holds the URL, only where the notify task reads it at run time, so
    it stays out of the compiled spec, the parameters, the artifacts and the logs.
    """

    webhook_url_env: EnvName = _unset(
        "Environment variable holding the webhook URL in the notify task (local runs; "
        "on Kubeflow the variable kubernetes_secret is mounted as)."
    )
    webhook_url_secret: SecretVersion = _unset(
        "Secret Manager version holding the URL: projects/P/secrets/S/versions/V."
    )
    kubernetes_secret: str = _unset("Kubeflow: Kubernetes secret mounted as webhook_url_env.")
    kubernetes_secret_key: str = Field(default="url", description="The secret's key.")
    report: Literal["always", "failure"] = Field(
        default="always", description="Report every run's end, or only failed runs."
    )
    timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0
    emails: list[str] = Field(
        default_factory=list,
        description="Vertex AI only: Vertex's run-end notification email to these (at most 3).",
    )

    @field_validator("emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        if len(value) > 3:
            raise ValueError(f"emails lists {len(value)} addresses; Vertex AI sends to at most 3")
        for address in value:
            if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", address):
                raise ValueError(f"emails: {address!r} is not an email address")
        return value

    @model_validator(mode="after")
    def _secret_mounted_somewhere(self) -> NotifyConfig:
        if self.kubernetes_secret and not self.webhook_url_env:
            raise ValueError(
                "notify.kubernetes_secret needs notify.webhook_url_env: the variable the "
                "secret is mounted as"
            )
        return self

    @property
    def enabled(self) -> bool:
        """Whether a webhook is configured (the emails are Vertex's own exit task)."""
        return bool(self.webhook_url_env or self.webhook_url_secret)


PipelineName = _text(
    r"[a-z][-a-z0-9]{0,127}", "name {value!r} must be lowercase letters, digits and '-'"
)


class PipelineConfig(_Section):
    """The whole pipeline."""

    name: PipelineName = "petseg"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    push: PushConfig = Field(default_factory=PushConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)

    @model_validator(mode="after")
    def _consistent(self) -> PipelineConfig:
        weights = self.training.fixed_class_weights
        names = self.data.class_names
        if weights is not None and len(weights) != len(names):
            raise ValueError(
                f"training.fixed_class_weights {weights} has {len(weights)} values; "
                f"one per class ({', '.join(names)}) is needed"
            )
        if (
            self.training.class_weighting == "fixed"
            and weights is None
            and list(names) != list(CLASS_NAMES)
        ):
            raise ValueError(
                "training.class_weighting 'fixed' needs training.fixed_class_weights, one per "
                f"class ({', '.join(names)}); the tutorial's default fits Oxford's classes only"
            )
        return self

    def to_json(self) -> str:
        return self.model_dump_json()


# Presets are overrides on top of the model defaults, so each default exists once.
PRESETS: dict[str, dict[str, Any]] = {
    "demo": {
        "name": "petseg-demo",
        "data": {
            "dataset": "synthetic_pets",
            "synthetic_train_size": 192,
            "synthetic_test_size": 48,
            "synthetic_image_size": 96,
            "records_per_shard": 64,
        },
        "model": {"image_size": 64, "encoder_weights": "none", "freeze_encoder": False},
        "training": {
            "epochs": 12,
            "batch_size": 16,
            "learning_rate": 2e-3,
            "class_weighting": "none",
            "shuffle_buffer": 256,
            "tensorboard_images": 2,
        },
        "evaluation": {"min_mean_iou": 0.3, "baseline": "latest", "report_images": 4},
        "push": {"destination": "petseg-local/models"},
        "runtime": {"accelerator_type": "", "accelerator_count": 0, "retries": 0},
    },
    "tutorial": {
        "name": "petseg-tutorial",
        "data": {"dataset": "oxford_iiit_pet", "version": "4.*.*"},
        "model": {
            "image_size": 128,
            "encoder_weights": "imagenet",
            "freeze_encoder": True,
            "normalization": "tutorial",
        },
        "training": {"epochs": 20, "batch_size": 64, "learning_rate": 1e-3},
        "evaluation": {"min_mean_iou": 0.5},
    },
    # The cloud preset: the tutorial's data, with the input scaling MobileNetV2 was trained
    # with ([-1, 1]), its frozen ImageNet encoder and the recipe bench_quality measured.
    "production": {
        "name": "petseg",
        # validation_fraction: training curves come from a validation split carved from
        # train by key hash (stable as data grows); the test split only blesses.
        "data": {"dataset": "oxford_iiit_pet", "version": "4.*.*", "validation_fraction": 0.1},
        "model": {
            # 160 px: validation mean IoU 0.745 against 0.725 at 128 px, for 1.5x the CPU.
            "image_size": 160,
            "encoder_weights": "imagenet",
            "freeze_encoder": True,
            "normalization": "mobilenet",
            # Keras' 0.99 makes the decoder's BatchNorm statistics lag the weights by ~100
            # steps, half the run on a few hundred photos; from the steps per epoch they
            # average over about one epoch (0.97 here, 0.98 on the full Oxford split).
            "batchnorm_momentum": "from_steps",
        },
        # The recipe measured by benchmarks/bench_quality.py (README "Quality on real photos").
        "training": {
            "epochs": 20,
            # Batch 16: four times the updates of batch 64 for the same compute, which is
            # what a few hundred photos need.
            "batch_size": 16,
            "learning_rate": 1e-3,
            "learning_rate_schedule": "cosine",
            "augment_min_crop_scale": 0.6,
            "augment_max_rotation_degrees": 10.0,
            "augment_color_jitter": 0.1,
            "fine_tune_epochs": 10,
            # 0.3: validation 0.756 against 0.748 at Keras' 0.1 (the encoder still gains
            # at the end of 10 epochs; 18 epochs at 0.1 gave 0.751 for the same compute).
            "fine_tune_learning_rate_factor": 0.3,
            "keep_best_epoch": True,
            # Dice weighs the thin trimap border by overlap: validation 0.730 against 0.725.
            "loss": "cross_entropy_dice",
        },
        "evaluation": {"min_mean_iou": 0.5, "baseline": "latest", "blessing_rule": "confident"},
    },
}


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges; its keys may be overridden on purpose
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = first_lines.get(key)
            except TypeError:  # an unhashable key: PyYAML refuses it itself
                continue
            if first is not None:
                where = f" (lines {first} and {line})" if first != line else ""
                raise ConfigError(f"key {key!r} is given twice{where}; keep one")
            first_lines[key] = line
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str) -> Any:
    loader = _UniqueKeyLoader(text)  # a SafeLoader: plain data only
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key=value (e.g. training.epochs=3)")
    key, raw = item.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ConfigError(f"override {item!r} has an empty key")
    # YAML parsing turns '3' into 3, 'true' into True, '[1, 2]' into a list, 'null' into None.
    try:
        value = _load_yaml(raw) if raw.strip() else ""
    except ConfigError as error:
        raise ConfigError(f"override {key.strip()}=...: {error}") from None
    except yaml.YAMLError:
        value = raw
    return path, value


# Values set in this section are never repeated in messages (a mistyped secret URL).
_UNECHOED_SECTION = "notify"


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "<root>"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        value = item.get("input")
        # A whole section (a model validator's input) is too long to repeat; a small
        # mapping given where text or a list belongs is the value the user must see.
        too_long = isinstance(value, dict) and len(repr(value)) > 80
        # A value given for notify may be the webhook URL itself, which holds a token.
        hidden = too_long or item["loc"][:1] == (_UNECHOED_SECTION,)
        shown = "" if hidden else f" (got {value!r})"
        lines.append(f"  {field}: {message}{shown}")
    return "\n".join(lines)


def build_config(raw: dict[str, Any], source: str = "config") -> PipelineConfig:
    """Validates a raw mapping into a PipelineConfig, with errors naming each field."""
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None


def load_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
) -> PipelineConfig:
    """Preset, then YAML file, then key=value overrides, each on top of the last."""
    raw: dict[str, Any] = {}
    sources = []
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        raw = copy.deepcopy(PRESETS[preset])
        sources.append(f"preset {preset}")
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            loaded = _load_yaml(path.read_text())
        except ConfigError as error:
            raise ConfigError(f"config file {str(path)!r}: {error}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {error}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"config file {str(path)!r} must hold a mapping at the top level, "
                f"not a {type(loaded).__name__}"
            )
        raw = _deep_merge(raw, loaded)
        sources.append(str(path))
    for item in overrides or []:
        path_parts, value = _parse_override(item)
        cursor = raw
        for part in path_parts[:-1]:
            nxt = cursor.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            cursor = nxt
        cursor[path_parts[-1]] = value
        shown = item if path_parts[0] != _UNECHOED_SECTION else f"{item.split('=', 1)[0]}=..."
        sources.append(f"--set {shown}")
    return build_config(raw, source=", ".join(sources) or "defaults")


# --- Run-time parameters ---------------------------------------------------------------------
# What people change per run, as typed pipeline parameters: parameter name → the config field it
# sets. Everything else is compiled in. Adding a parameter is one line here plus the same name
# as an argument of components/ops/resolve_config.py (tests/test_runtime_parameters.py checks
# that both agree). Its type comes from the pydantic field; its default is the compiled value.
RUNTIME_PARAMETERS: dict[str, str] = {
    "epochs": "training.epochs",
    "batch_size": "training.batch_size",
    "learning_rate": "training.learning_rate",
    "min_mean_iou": "evaluation.min_mean_iou",
    "max_regression": "evaluation.max_regression",
    "data_dir": "data.data_dir",
    "data_version": "data.version",
    "data_path": "data.path",
    "push_destination": "push.destination",
}
# An optional text field (``str | None``) is a plain string parameter: '' stands for None
# ("not set"), e.g. data_version='' = the latest version, data_dir='' = TFDS's default folder.
UNSET = ""
_PARAMETER_TYPES = (bool, int, float, str)


def _field(path: str) -> tuple[Any, bool]:
    """(scalar type, optional) of the config field at ``path``, from its pydantic annotation."""
    model: Any = PipelineConfig
    parts = path.split(".")
    for part in parts[:-1]:
        model = model.model_fields[part].annotation
    field = model.model_fields.get(parts[-1])
    if field is None:
        raise KeyError(f"config has no field {path!r}")
    annotation = field.annotation
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        optional = len(members) < len(typing.get_args(annotation))
        annotation = members[0] if len(members) == 1 else annotation
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is Literal:
        annotation = type(typing.get_args(annotation)[0])
    if annotation not in _PARAMETER_TYPES or (optional and annotation is not str):
        raise TypeError(f"config field {path!r} cannot be a run-time parameter ({annotation!r})")
    return annotation, optional


def runtime_parameter_types() -> dict[str, type]:
    """Each run-time parameter's Python type (bool, int, float or str)."""
    return {name: _field(path)[0] for name, path in RUNTIME_PARAMETERS.items()}


def _get(raw: Mapping[str, Any], path: str) -> Any:
    for part in path.split("."):
        raw = raw[part]
    return raw


def runtime_parameter_defaults(config: PipelineConfig) -> dict[str, Any]:
    """Each run-time parameter's default: the compiled config's value (None as '')."""
    raw = config.model_dump(mode="json")
    defaults = {}
    for name, path in RUNTIME_PARAMETERS.items():
        value = _get(raw, path)
        defaults[name] = UNSET if value is None else value
    return defaults


def parse_parameter_arguments(items: list[str] | None) -> dict[str, str]:
    """Repeated ``--param NAME=VALUE`` options as {name: text} (typed by name later)."""
    result: dict[str, str] = {}
    for item in items or []:
        name, separator, text = item.partition("=")
        if not separator or not name.strip():
            raise ConfigError(f"--param {item!r} is not NAME=VALUE (e.g. --param epochs=30)")
        result[name.strip()] = text
    return result


def parse_runtime_parameter(name: str, text: str) -> Any:
    """Turns a command-line ``--param name=value`` text into the parameter's type.

    Raises:
        ConfigError: an unknown name (listing the known ones) or a value of the wrong type.
    """
    if name not in RUNTIME_PARAMETERS:
        raise ConfigError(
            f"unknown run-time parameter {name!r}; the parameters are "
            f"{', '.join(RUNTIME_PARAMETERS)} (anything else is compiled in: use --set)"
        )
    kind, _ = _field(RUNTIME_PARAMETERS[name])
    if kind is str:
        return text
    try:
        value = _load_yaml(text) if text.strip() else None
    except (yaml.YAMLError, ConfigError):
        value = None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not kind:
        raise ConfigError(
            f"run-time parameter {name}={text!r} ({RUNTIME_PARAMETERS[name]}) is not "
            f"a{'n' if kind is int else ''} {kind.__name__}"
        )
    return value


def apply_runtime_parameters(
    compiled: PipelineConfig | str, values: Mapping[str, Any]
) -> PipelineConfig:
    """The compiled config with each given run-time value on the one field it names.

    Only the named fields change (not the model defaults: the compiled preset's values stay),
    and the whole result is validated, cross-section checks included.

    Args:
        compiled: the config the pipeline was compiled with (or its JSON).
        values: parameter name → value; '' sets an optional text field to None.

    Raises:
        ConfigError: an unknown parameter, or an invalid result naming field and value.
    """
    if isinstance(compiled, str):
        compiled = build_config(json.loads(compiled), source="compiled config")
    raw = compiled.model_dump(mode="json")
    changed = []
    for name, value in values.items():
        if name not in RUNTIME_PARAMETERS:
            raise ConfigError(
                f"unknown run-time parameter {name!r}; the parameters are "
                f"{', '.join(RUNTIME_PARAMETERS)}"
            )
        path = RUNTIME_PARAMETERS[name]
        _, optional = _field(path)
        if optional and value == UNSET:
            value = None
        *sections, key = path.split(".")
        cursor = raw
        for part in sections:
            cursor = cursor[part]
        if cursor[key] != value:
            changed.append(f"{name}={value!r}")
        cursor[key] = value
    source = "run-time parameters " + ", ".join(changed) if changed else "compiled config"
    return build_config(raw, source=source)


def section_from_json(section: type[_Section], payload: str) -> Any:
    """Rebuilds one config section inside a component from its JSON parameter."""
    try:
        return section.model_validate(json.loads(payload))
    except (ValidationError, json.JSONDecodeError) as error:
        if isinstance(error, ValidationError):
            raise ConfigError(_format_validation_error(error, section.__name__)) from None
        raise ConfigError(f"{section.__name__}: parameter is not JSON: {error}") from None
