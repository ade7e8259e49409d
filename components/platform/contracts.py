"""What one step writes and another reads, as typed contracts with a schema version.

One pydantic model per hand-off, read and written here only (as the config is):

- ``DatasetInfo``: ``dataset.json`` beside the shards (ingest → every later step).
- ``ModelMetadata``: a Model's ``metadata.json`` (train → evaluate, push, predict).
- ``Statistics`` and ``CheckVerdicts``: ``statistics.json`` and ``checks.json``
  (data validation → push, the next run's drift checks).
- ``EvaluationOutcome``: the blessing decision and metrics (evaluate → push).
- ``PushResult``: what push published, or why not (push → predict, the local summary).
- ``LatestPointer``, ``PushManifest``, ``VersionClaim``: a push destination's ``LATEST``,
  each version's ``manifest.json`` and ``.claim`` (push → every reader of pushed models).
- ``PredictionSummary``: what batch prediction produced.
- ``ClassWeights``: the class-weights file (class weights → train).
- ``ResolvedConfig``, ``DataChange``, ``NotifyOutcome``: what resolve_config, skip_unchanged
  and notify decided (their tasks pass strings on; these are what the strings say).

A core step is ``run(inputs) -> outcome`` (TFX's executor): its ``StepInputs`` hold the
config sections it reads and where its artifacts are, and its outcome's ``to_metadata()``
is what the ``components/ops`` wrapper copies into the output artifact's metadata.

Field names are the ones the JSON files always had, so files written before these
contracts read unchanged. Each contract carries its version in a named field
(``schema_version``, ``statistics_format``...); ``read`` refuses a file of another
version and names both, so a step never guesses at a layout it does not know. The
contracts that had no version field before (model metadata, evaluation outcome,
push result, prediction summary, LATEST, claims) read a file without one as their
first version. Facts a contract does not name are kept as they are (``extra="allow"``):
a writer adding a fact never loses it on a round trip. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from components.platform import files
from components.platform.config import (
    IGNORE_ID,
    DataConfig,
    EvaluationConfig,
    ModelConfig,
    PushConfig,
    TrainingConfig,
    apply_runtime_parameters,
    section_from_json,
)
from components.platform.storage import is_safe_key

# dataset.json's and the records' layout (components.data.schema re-exports it as SCHEMA_VERSION).
# 2: class table, ignore id 255, validation split and fingerprint in dataset.json.
DATASET_SCHEMA_VERSION = 2


class ContractError(ValueError):
    """A hand-off file is missing facts, malformed, or of a version this code does not read."""


class ContractVersionError(ContractError):
    """The file's schema version is older or newer than this code's; the message names both."""


class DatasetMismatchError(ContractError):
    """The dataset is not what this step was configured for."""


def _problem(problem: Any) -> str:
    """'field: what is wrong', or 'field <value> ...' for this module's own checks."""
    field = ".".join(str(part) for part in problem["loc"]) or "(top)"
    own = problem["msg"].removeprefix("Value error, ")
    return f"{field} {own}" if own != problem["msg"] else f"{field}: {own}"


class _Contract(BaseModel):
    """Shared read/write/version handling; subclasses name their file, field and version."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    VERSION_FIELD: ClassVar[str] = "schema_version"
    VERSION: ClassVar[int] = 1
    # The version a file without the version field is read as (None: the field is required).
    UNVERSIONED_AS: ClassVar[int | None] = 1
    WHAT: ClassVar[str] = "file"
    ERROR: ClassVar[type[ContractError]] = ContractError
    REMEDY: ClassVar[str] = "re-run the step that wrote it"

    @classmethod
    def from_dict(cls, payload: dict[str, Any], where: str = "") -> Self:
        """Checks the version, then the fields; errors name ``where`` and the field."""
        where = where or cls.WHAT
        found = payload.get(cls.VERSION_FIELD, cls.UNVERSIONED_AS)
        if found != cls.VERSION:
            shown = "missing" if cls.VERSION_FIELD not in payload else repr(found)
            raise ContractVersionError(
                f"{where}: {cls.VERSION_FIELD} {shown}, this code reads {cls.VERSION}; {cls.REMEDY}"
            )
        if cls.VERSION_FIELD not in cls.model_fields:  # checked above; written by to_dict
            payload = {key: value for key, value in payload.items() if key != cls.VERSION_FIELD}
        try:
            return cls.model_validate(payload)
        except ValidationError as error:
            problems = "; ".join(_problem(problem) for problem in error.errors())
            raise cls.ERROR(f"{where}: {problems}; {cls.REMEDY}") from None

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "") -> Self:
        """Checks a file's content read elsewhere (a ``storage.Store``); errors name ``where``."""
        try:
            payload = files.parse_json(data, where or cls.WHAT)
        except files.FileFormatError as error:
            raise cls.ERROR(f"{error}; {cls.REMEDY}") from None
        return cls.from_dict(payload, where)

    @classmethod
    def read(cls, path: str) -> Self:
        """Reads and checks the contract at ``path`` (local or gs://)."""
        return cls.from_bytes(files.read_bytes(path), path)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object as written: the facts given (no filled-in defaults) and the version."""
        # Python mode: a NaN stays a NaN (JSON mode would quietly write null).
        payload = self.model_dump(by_alias=True, exclude_unset=True)
        payload[self.VERSION_FIELD] = self.VERSION
        return payload

    def to_bytes(self) -> bytes:
        """The file's content as written (what a checksum of the file is taken over)."""
        return files.to_json(self.to_dict()).encode()

    def write(self, path: str) -> None:
        """Writes the contract atomically (see ``components.platform.files``)."""
        files.write_json(path, self.to_dict())

    def to_metadata(self) -> dict[str, Any]:
        """The facts given, as an output artifact's metadata (JSON values, no version)."""
        return self.model_dump(mode="json", exclude_unset=True)


class ArtifactRef(BaseModel):
    """An input artifact as a core step sees it: where it is and what its metadata says."""

    uri: str
    path: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, artifact: Any) -> Self:
        """From a KFP artifact (anything with uri, path and metadata)."""
        return cls(uri=artifact.uri, path=artifact.path, metadata=dict(artifact.metadata))


class StepInputs(BaseModel):
    """A core step's one input: the config sections it reads and where its artifacts are.

    Artifacts whose metadata the step reads are ``ArtifactRef``; the others are paths.
    """

    model_config = ConfigDict(frozen=True)

    @classmethod
    def of(cls, *values: Any) -> Self:
        """From a task's values, in the fields' order (a wrapper's call fits on one line).

        A section's JSON is parsed (an invalid one is named with its field); a KFP
        artifact becomes an ``ArtifactRef``, or its path where the field is a path.
        """

        def given(name: str, value: Any) -> Any:
            kind = cls.model_fields[name].annotation
            if isinstance(value, str) and isinstance(kind, type) and issubclass(kind, BaseModel):
                return section_from_json(kind, value)
            if hasattr(value, "metadata"):  # a KFP artifact
                return ArtifactRef.of(value) if kind is ArtifactRef else value.path
            return value

        fields = zip(cls.model_fields, values, strict=True)
        return cls(**{name: given(name, value) for name, value in fields})


# ----------------------------------------------------------------------------- dataset.json


class Fingerprint(BaseModel):
    """A dataset's content fingerprint: the whole dataset's and each split's (hex)."""

    model_config = ConfigDict(extra="allow")

    dataset: str = ""
    splits: dict[str, str] = Field(default_factory=dict)


class SplitEntry(BaseModel):
    """One split of an ingested dataset: shards, counts, pixel frequencies, skips."""

    model_config = ConfigDict(extra="allow")

    num_records: int
    shards: list[str]
    shard_sizes: list[int] | None = None
    pixel_counts: dict[str, int] = Field(default_factory=dict)
    ignored_pixels: int = 0
    num_skipped: int = 0
    skipped: list[dict[str, Any]] = Field(default_factory=list)
    fingerprint: str = ""
    carved_from: str | None = None


class DatasetInfo(_Contract):
    """``dataset.json``: the facts of an ingested dataset that every later step checks."""

    FILE_NAME: ClassVar[str] = "dataset.json"
    VERSION: ClassVar[int] = DATASET_SCHEMA_VERSION
    UNVERSIONED_AS: ClassVar[int | None] = None
    WHAT: ClassVar[str] = "dataset.json"
    ERROR: ClassVar[type[ContractError]] = DatasetMismatchError
    REMEDY: ClassVar[str] = "re-run ingest"

    schema_version: int = DATASET_SCHEMA_VERSION
    classes: list[str]
    class_table: dict[str, Any] | None = None
    ignore_id: int = IGNORE_ID
    mask_format: str | None = None
    source: dict[str, Any] = Field(default_factory=dict)
    split_rule: dict[str, Any] = Field(default_factory=dict)
    splits: dict[str, SplitEntry] = Field(default_factory=dict)
    fingerprint: Fingerprint = Field(default_factory=Fingerprint)
    bad_record_policy: str = ""

    @field_validator("classes")
    @classmethod
    def _distinct_names(cls, classes: list[str]) -> list[str]:
        if len(classes) < 2 or not all(classes) or len(set(classes)) != len(classes):
            raise ValueError(f"{classes!r} is not a list of at least 2 distinct names")
        return classes

    @field_validator("ignore_id")
    @classmethod
    def _known_ignore_id(cls, value: int) -> int:
        if value != IGNORE_ID:
            raise ValueError(f"{value!r}, this code reads {IGNORE_ID}")
        return value

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def dataset_fingerprint(self) -> str:
        """The whole dataset's content fingerprint (hex), '' for a dataset without one."""
        return self.fingerprint.dataset

    def table(self) -> dict[str, Any]:
        """Names with their source mask values/colours, and the ignore values/colours."""
        return self.class_table or {
            "classes": [{"name": name, "values": [], "colors": []} for name in self.classes],
            "ignore_values": [],
            "ignore_colors": [],
        }

    def to_metadata(self) -> dict[str, Any]:
        """The Dataset artifact's metadata: the facts later steps check, and counts per split."""
        source = self.source
        metadata: dict[str, Any] = {
            "source_type": source["type"],
            "source_name": source.get("name") or source.get("path", ""),
            "source_version": source.get("version", ""),
            "source_config": source.get("config") or "",
            "schema_version": self.schema_version,
            "classes": self.classes,
            "ignore_id": self.ignore_id,
            "fingerprint": self.fingerprint.dataset,
            "split_fingerprints": dict(self.fingerprint.splits),
            "bad_record_policy": self.bad_record_policy,
            "splits": sorted(self.splits),
            "num_records": {name: split.num_records for name, split in self.splits.items()},
            "num_skipped": {name: split.num_skipped for name, split in self.splits.items()},
            "shards": {name: split.shards for name, split in self.splits.items()},
        }
        for name, split in self.splits.items():
            metadata[f"num_{name}_records"] = split.num_records
        return metadata

    def check_classes(self, expected: list[str] | tuple[str, ...], where: str = "") -> None:
        """Refuses a dataset whose class list differs from ``expected`` (e.g. a model's)."""
        if list(self.classes) != list(expected):
            raise DatasetMismatchError(
                f"{where or self.WHAT}: classes {self.classes} differ from {list(expected)}"
            )


# ----------------------------------------------------------------------------- metadata.json


class ModelMetadata(_Contract):
    """A Model artifact's ``metadata.json``: what the model predicts and how it was made.

    ``classes`` name the output channels in order; ``image_size`` and ``normalization``
    are what inputs must be. Training facts (config, metrics, dataset, runtime,
    provenance) travel as further fields.
    """

    FILE_NAME: ClassVar[str] = "metadata.json"
    VERSION_FIELD: ClassVar[str] = "metadata_format"
    WHAT: ClassVar[str] = "metadata.json"
    REMEDY: ClassVar[str] = "re-run train"

    classes: list[str] | None = None
    image_size: int | None = None
    normalization: str | None = None
    num_classes: int | None = None
    ignore_id: int | None = None
    dataset: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None

    def write(self, path: str) -> None:
        """Facts of types JSON lacks (a NumPy scalar in metrics) are written as text."""
        files.write_json(path, self.to_dict(), default=str)

    @property
    def dataset_fingerprint(self) -> str:
        """The fingerprint of the data the model was trained on, '' when not recorded."""
        return str((self.dataset or {}).get("fingerprint") or "")


# ----------------------------------------------------------------------------- data checks


class Statistics(_Contract):
    """``statistics.json``: per-split image and mask statistics, and duplicates."""

    FILE_NAME: ClassVar[str] = "statistics.json"
    PUSHED_PATH: ClassVar[str] = "data/statistics.json"  # in a pushed version
    VERSION_FIELD: ClassVar[str] = "statistics_format"
    UNVERSIONED_AS: ClassVar[int | None] = None
    WHAT: ClassVar[str] = "statistics.json"
    REMEDY: ClassVar[str] = "re-run the data statistics step"

    classes: list[str]
    ignore_id: int = IGNORE_ID
    fingerprint: dict[str, Any] | None = None
    splits: dict[str, dict[str, Any]]
    duplicates: dict[str, Any] = Field(default_factory=dict)


CheckStatus = Literal["pass", "fail", "skipped", "off"]


class CheckVerdict(BaseModel):
    """One data check: its figure against its threshold, and what that means."""

    model_config = ConfigDict(extra="allow")

    name: str
    severity: Literal["error", "warn", "off"]
    threshold: float
    figure: float | None = None
    status: CheckStatus
    message: str = ""


class CheckVerdicts(_Contract):
    """``checks.json``: every data check's verdict and which ones failed."""

    FILE_NAME: ClassVar[str] = "checks.json"
    PUSHED_PATH: ClassVar[str] = "data/checks.json"  # in a pushed version
    VERSION_FIELD: ClassVar[str] = "checks_format"
    UNVERSIONED_AS: ClassVar[int | None] = None
    WHAT: ClassVar[str] = "checks.json"
    REMEDY: ClassVar[str] = "re-run the data checks"

    compared_with: str = ""
    checks: list[CheckVerdict] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


# ----------------------------------------------------------------------------- evaluate, push


class EvaluationOutcome(_Contract):
    """The blessing decision with the candidate's (and the baseline's) metrics."""

    FILE_NAME: ClassVar[str] = "metrics.json"
    VERSION_FIELD: ClassVar[str] = "outcome_format"
    WHAT: ClassVar[str] = "evaluation outcome"
    REMEDY: ClassVar[str] = "re-run evaluate"

    blessed: bool
    reasons: list[str] = Field(default_factory=list)
    reason: str = ""
    candidate: dict[str, Any]
    baseline: dict[str, Any] | None = None
    baseline_dir: str | None = None
    baseline_status: str = "none"
    # components.evaluation.bootstrap.paired_bootstrap: samples, seed, confidence, num_images, and
    # challenger / production / difference as {estimate, low, high}; {} = not computed.
    intervals: dict[str, Any] = Field(default_factory=dict)
    # evaluation.slices.slice_table rows: name, family, num_images, challenger, production,
    # difference, checked, failed.
    slices: list[dict[str, Any]] = Field(default_factory=list)
    # improved / worsened: [{file_name, mean_iou, baseline_mean_iou, change}], most first.
    changed: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    report_path: str = ""

    def write(self, path: str) -> None:
        """Strict JSON (no NaN): KFP and browsers parse this file."""
        files.write_json(path, self.to_dict(), allow_nan=False)


class PushResult(_Contract):
    """What push published (version, digest, registry entry), or why it did not."""

    VERSION_FIELD: ClassVar[str] = "result_format"
    WHAT: ClassVar[str] = "push result"
    REMEDY: ClassVar[str] = "re-run push"

    pushed: bool
    skip_reason: str = ""
    # The published version's directory: the pushed_model artifact's URI, not its metadata.
    uri: str = Field(default="", exclude=True)
    version: str = ""
    latest: str = ""
    digest: str = ""
    reused: bool = False
    destination: str = ""
    manifest: str = ""
    vertex_model: str = ""
    vertex_model_version: str = ""
    vertex_alias_version: str = ""


# ----------------------------------------------------------------------------- push destination


# A pushed version's name: v000001, v000002, ... (the number is group 1).
VERSION_NAME_PATTERN = re.compile(r"v(\d{6,})")


def _version_name(name: str) -> str:
    if not VERSION_NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{name!r} is not a petseg version name (v000001, v000002, ...)")
    return name


VersionName = Annotated[str, AfterValidator(_version_name)]


class LatestPointer(_Contract):
    """A push destination's ``LATEST``: the version readers use, and its manifest's sha256.

    ``manifest_sha256`` is over the manifest's bytes as written, so a manifest changed
    after publication is refused (a pointer without it is still read).
    """

    FILE_NAME: ClassVar[str] = "LATEST"
    VERSION_FIELD: ClassVar[str] = "pointer_format"
    WHAT: ClassVar[str] = "LATEST"
    REMEDY: ClassVar[str] = "fix or remove it"

    version: VersionName
    model_digest: str | None = None
    manifest_sha256: str | None = None


class ManifestFile(BaseModel):
    """One file of a pushed version as its manifest records it."""

    model_config = ConfigDict(extra="allow")

    sha256: str
    size: int


class PushManifest(_Contract):
    """A pushed version's ``manifest.json``, written last: it makes the version complete.

    ``files`` maps each path in the version to its sha256 and size. The fields are what
    push records itself; a caller's facts (metrics, data_checks, push_config, the source
    artifact) travel as further fields and may not replace these.
    """

    FILE_NAME: ClassVar[str] = "manifest.json"
    VERSION_FIELD: ClassVar[str] = "manifest_format"
    WHAT: ClassVar[str] = "manifest.json"
    REMEDY: ClassVar[str] = "roll back to a good version (`petseg models rollback`) or push again"

    version: VersionName
    model_digest: str
    files: dict[str, ManifestFile]
    created_at: str = ""
    run_id: str = ""
    source_model_dir: str = ""
    model_metadata: dict[str, Any] | None = None
    classes: list[str] | None = None  # output channels in order, for whoever serves the model
    dataset: dict[str, Any] | None = None
    pushed_by: dict[str, Any] | None = None  # the petseg that pushed (model_metadata: trained)

    @field_validator("files")
    @classmethod
    def _safe_paths(cls, listed: dict[str, ManifestFile]) -> dict[str, ManifestFile]:
        if not listed:
            raise ValueError("lists no files")
        unsafe = [path for path in listed if not is_safe_key(path)]  # it would leave the version
        if unsafe:
            raise ValueError(f"holds an unsafe path {unsafe[0]!r}")
        return listed

    @property
    def dataset_fingerprint(self) -> str:
        """The fingerprint of the data the model was trained on, '' when not recorded."""
        for dataset in (self.dataset, (self.model_metadata or {}).get("dataset")):
            if isinstance(dataset, dict) and dataset.get("fingerprint"):
                return str(dataset["fingerprint"])
        return ""


class VersionClaim(_Contract):
    """A version's ``.claim``, created first: which model (digest) and run took the number."""

    FILE_NAME: ClassVar[str] = ".claim"
    VERSION_FIELD: ClassVar[str] = "claim_format"
    WHAT: ClassVar[str] = ".claim"

    version: str = ""
    model_digest: str = ""
    run_id: str = ""
    claimed_at: str = ""


class PredictionSummary(_Contract):
    """What a batch prediction produced: counts, the unreadable files, the model used."""

    FILE_NAME: ClassVar[str] = "summary.json"
    VERSION_FIELD: ClassVar[str] = "summary_format"
    WHAT: ClassVar[str] = "prediction summary"
    REMEDY: ClassVar[str] = "re-run predict"

    predicted: int
    unreadable: int
    unreadable_files: list[str] = Field(default_factory=list)
    skipped: int = 0  # the input folder's other files (not images), listed in skipped.jsonl
    skipped_files: list[str] = Field(default_factory=list)
    input: str = ""
    model: str = ""
    version: str = ""
    classes: list[str] = Field(default_factory=list)
    skip_reason: str = ""


# ----------------------------------------------------------------------------- class weights


class ClassWeightsError(ContractError):
    """A class-weights request or file that cannot be used; the message says why."""


class ClassWeights(_Contract):
    """The class-weights file: per-class pixel counts, frequencies and the loss weights."""

    VERSION_FIELD: ClassVar[str] = "weights_format"
    WHAT: ClassVar[str] = "class weights"
    ERROR: ClassVar[type[ContractError]] = ClassWeightsError
    REMEDY: ClassVar[str] = "re-run class weights"

    strategy: str
    classes: list[str]
    image_size: int
    num_images: int
    pixel_counts: list[int]
    ignored_pixels: int
    frequencies: list[float]
    weights: list[float]
    absent_classes: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _weights_fit_classes(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {
                **data,
                "weights": cls.checked_weights(data.get("classes"), data.get("weights")),
            }
        return data

    @staticmethod
    def checked_weights(classes: Any, weights: Any) -> list[float]:
        """The weights as floats: one finite, non-negative number per class, not all 0."""
        if (
            not isinstance(classes, list)
            or len(classes) < 2
            or not all(isinstance(name, str) for name in classes)
        ):
            raise ValueError(f"classes {classes!r} is not a list of class names")
        if not isinstance(weights, list) or len(weights) != len(classes):
            raise ValueError(
                f"'weights' must be a list of {len(classes)} numbers (one per class "
                f"{classes}), got {weights!r}"
            )
        values = []
        for name, weight in zip(classes, weights, strict=True):
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ValueError(f"weight of {name!r} is not a number: {weight!r}")
            if not math.isfinite(weight) or weight < 0:
                raise ValueError(f"weight of {name!r} is {weight}; need finite >= 0")
            values.append(float(weight))
        if not any(value > 0 for value in values):
            raise ValueError("all weights are 0")
        return values

    def to_metadata(self) -> dict[str, Any]:
        return self.model_dump(include={"strategy", "classes", "image_size", "weights"})

    def metrics(self) -> dict[str, float]:
        """Images and ignored pixels, then each class's pixels, frequency and weight."""
        figures = {"num_images": self.num_images, "ignored_pixels": self.ignored_pixels}
        for index, name in enumerate(self.classes):
            figures[f"pixels_{name}"] = self.pixel_counts[index]
            figures[f"frequency_{name}"] = self.frequencies[index]
            figures[f"weight_{name}"] = self.weights[index]
        return figures


# ----------------------------------------------------------------------------- run control


class ResolveInputs(StepInputs):
    """The compiled config's JSON and the run-time values by name (``RUNTIME_PARAMETERS``)."""

    compiled_config: str
    values: dict[str, Any]


class ResolvedConfig(_Contract):
    """resolve_config's outcome: the run's config, validated, as the sections later tasks take."""

    VERSION_FIELD: ClassVar[str] = "resolved_format"
    WHAT: ClassVar[str] = "resolved config"

    data: DataConfig
    model: ModelConfig
    training: TrainingConfig
    evaluation: EvaluationConfig
    push: PushConfig

    @classmethod
    def run(cls, inputs: ResolveInputs) -> ResolvedConfig:
        """The resolve_config step: each run-time value on the field it names, validated whole."""
        config = apply_runtime_parameters(inputs.compiled_config, inputs.values)
        return cls(**{name: getattr(config, name) for name in cls.model_fields})

    def outputs(self) -> tuple[str, ...]:
        """The task's outputs in its NamedTuple's order (data, model, ...), each as JSON."""
        return tuple(getattr(self, name).model_dump_json() for name in type(self).model_fields)


class DataChange(_Contract):
    """skip_unchanged's decision: train, or skip because production saw this very data."""

    VERSION_FIELD: ClassVar[str] = "decision_format"
    WHAT: ClassVar[str] = "data change decision"
    TRAIN: ClassVar[str] = "train"  # the task's output when it trains; dsl.If compares with it

    train: bool
    reason: str
    fingerprint: str = ""
    production_version: str = ""

    @property
    def output(self) -> str:
        """The task's one output: 'train', or 'skip: <reason>'."""
        return self.TRAIN if self.train else f"skip: {self.reason}"


class NotifyOutcome(_Contract):
    """What the end-of-run report step did: whether the webhook got the run's report."""

    VERSION_FIELD: ClassVar[str] = "notify_format"
    WHAT: ClassVar[str] = "notify outcome"

    state: str
    sent: bool
    policy: str = ""  # notify.report: 'always' or 'failure'
    http_status: int = 0

    def summary(self) -> str:
        """The line the task prints."""
        state = self.state.lower()
        if not self.sent:
            return f"run {state}; notify.report={self.policy}: not reported"
        return f"reported run {state} to the webhook (HTTP {self.http_status})"
