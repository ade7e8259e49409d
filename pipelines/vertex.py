"""Submit a compiled pipeline to Vertex AI Pipelines, and follow the run.

Every setting is checked before the first request (project, region, the gs://
pipeline root, labels, key and network names, the template's parameters), so a
typo fails here with the option's name instead of half-way through an API call.
Credentials come from the environment (Application Default Credentials) or an
explicit ``credentials`` object; nothing here reads, prints or stores a secret.
The checks on the template and its parameters are shared with Kubeflow.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.platform.config import (
    GCP_REGION,
    RuntimeConfig,
    TrainingConfig,
    label_problems,
)


class CloudInputError(ValueError):
    """Bad submission input, found before any request is sent; the message names the option."""


_PROJECT_ID = re.compile(r"(?:[a-z][-a-z0-9.]{1,61}[a-z0-9]:)?[a-z][-a-z0-9]{4,28}[a-z0-9]")
# Bucket names: 3-63 characters (up to 222 with dots), lowercase, digits, '-', '_', '.'.
_GCS_URI = re.compile(r"gs://([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(/[^\s]*)?")
_SERVICE_ACCOUNT = re.compile(r"[a-z0-9][-a-z0-9._]*@[-a-z0-9.]+\.gserviceaccount\.com")
_KMS_KEY = re.compile(
    r"projects/[^/\s]+/locations/(?P<location>[^/\s]+)/keyRings/[^/\s]+/cryptoKeys/[^/\s]+"
)
_NETWORK = re.compile(r"projects/[0-9]+/global/networks/[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
_JOB_ID = re.compile(r"[a-z0-9][-a-z0-9]{0,127}")
_TEMPLATE_SUFFIXES = (".yaml", ".yml", ".json")

TERMINAL_STATES = ("PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED")
SUCCEEDED = "PIPELINE_STATE_SUCCEEDED"


def check_project(project: str | None) -> list[str]:
    """Returns the problems with a project id (empty when it is fine)."""
    if not project:
        return ["--project is required (the Google Cloud project id, e.g. my-project)"]
    if not _PROJECT_ID.fullmatch(project):
        return [
            f"--project {project!r} is not a project id: 6-30 lowercase letters, digits "
            "and '-', starting with a letter"
        ]
    return []


def check_region(region: str | None) -> list[str]:
    if not region:
        return ["--region is required (a Vertex AI region such as us-central1)"]
    if not GCP_REGION.fullmatch(region):
        return [f"--region {region!r} is not a region such as us-central1 or europe-west4"]
    return []


def check_gcs_root(pipeline_root: str | None) -> list[str]:
    """Vertex AI writes every artifact under the root, so it must be a bucket path."""
    if not pipeline_root:
        return ["--pipeline-root is required (a gs:// path, e.g. gs://my-bucket/pipeline_root)"]
    if not _GCS_URI.fullmatch(pipeline_root):
        return [
            f"--pipeline-root {pipeline_root!r} must be a gs:// path such as "
            "gs://my-bucket/pipeline_root (Vertex AI cannot write elsewhere)"
        ]
    return []


def parse_key_values(text: str | None, option: str) -> dict[str, str]:
    """Parses 'k=v,k2=v2' (the --labels form) into a dict, refusing duplicates."""
    result: dict[str, str] = {}
    if not text:
        return result
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise CloudInputError(f"{option}: {item!r} is not key=value")
        key, value = (part.strip() for part in item.split("=", 1))
        if key in result:
            raise CloudInputError(f"{option}: {key!r} is given twice")
        result[key] = value
    return result


def check_labels(labels: Mapping[str, str]) -> list[str]:
    """Google Cloud label rules, so the API does not reject the run after the upload."""
    return label_problems(labels, "--labels")


def raise_problems(problems: list[str]) -> None:
    if len(problems) == 1:
        raise CloudInputError(problems[0])
    if problems:
        raise CloudInputError("invalid options:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class PipelineTemplate:
    """What submission needs to know about a compiled pipeline (KFP IR YAML)."""

    path: str
    name: str
    parameters: dict[str, dict[str, Any]]


def read_pipeline_template(path: str | Path) -> PipelineTemplate:
    """Reads a compiled pipeline and checks that it is one, before anything is sent."""
    template_path = Path(path)
    if not template_path.is_file():
        raise CloudInputError(f"pipeline template {str(template_path)!r} does not exist")
    if template_path.suffix.lower() not in _TEMPLATE_SUFFIXES:
        raise CloudInputError(
            f"pipeline template {str(template_path)!r} must be compiled KFP YAML or JSON "
            f"({', '.join(_TEMPLATE_SUFFIXES)})"
        )
    try:
        # A Kubeflow compile appends the Kubernetes platform spec as a second document.
        documents = [doc for doc in yaml.safe_load_all(template_path.read_text()) if doc]
    except yaml.YAMLError as error:
        raise CloudInputError(
            f"pipeline template {str(template_path)!r} is not valid YAML: {error}"
        ) from None
    spec = documents[0] if documents else None
    if not isinstance(spec, dict) or "root" not in spec or "pipelineInfo" not in spec:
        raise CloudInputError(
            f"pipeline template {str(template_path)!r} is not a compiled KFP pipeline "
            "(no pipelineInfo/root); compile it with 'petseg compile'"
        )
    name = spec["pipelineInfo"].get("name", "")
    parameters = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    return PipelineTemplate(path=str(template_path), name=name, parameters=dict(parameters))


_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _coerce(name: str, value: Any, parameter_type: str) -> Any:
    """Turns a command-line string into the template parameter's type."""
    if not isinstance(value, str):
        return value
    try:
        if parameter_type == "NUMBER_INTEGER":
            return int(value)
        if parameter_type == "NUMBER_DOUBLE":
            return float(value)
        if parameter_type == "BOOLEAN":
            if value.lower() in _TRUE | _FALSE:
                return value.lower() in _TRUE
            raise ValueError(value)
        if parameter_type in ("LIST", "STRUCT"):
            decoded = json.loads(value)
            expected = list if parameter_type == "LIST" else dict
            if not isinstance(decoded, expected):
                raise ValueError(value)
            return decoded
    except ValueError:
        raise CloudInputError(
            f"parameter {name}={value!r} is not a valid {parameter_type} value"
        ) from None
    return value


def resolve_parameters(
    template: PipelineTemplate, values: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Checks parameter names and types against the template; strings are converted."""
    values = dict(values or {})
    unknown = sorted(set(values) - set(template.parameters))
    if unknown:
        known = ", ".join(sorted(template.parameters)) or "none"
        raise CloudInputError(
            f"pipeline {template.name!r} has no parameter {', '.join(unknown)} "
            f"(its parameters: {known})"
        )
    missing = [
        name
        for name, spec in sorted(template.parameters.items())
        if name not in values and "defaultValue" not in spec and not spec.get("isOptional")
    ]
    if missing:
        raise CloudInputError(
            f"pipeline {template.name!r} needs a value for {', '.join(missing)}: "
            "pass --param NAME=VALUE"
        )
    return {
        name: _coerce(name, value, template.parameters[name].get("parameterType", "STRING"))
        for name, value in values.items()
    }


def default_job_id(pipeline_name: str, now: datetime.datetime | None = None) -> str:
    """A readable, unique-per-second run id: '<pipeline>-YYYYMMDDhhmmss' (UTC)."""
    now = now or datetime.datetime.now(datetime.UTC)
    base = re.sub(r"[^a-z0-9-]+", "-", pipeline_name.lower()).strip("-") or "petseg"
    return f"{base[:110]}-{now:%Y%m%d%H%M%S}"


@dataclass(frozen=True)
class VertexSettings:
    """Where and how a run goes on Vertex AI Pipelines."""

    project: str | None
    region: str | None
    pipeline_root: str | None
    service_account: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    enable_caching: bool | None = None
    encryption_key: str | None = None
    network: str | None = None

    def problems(self) -> list[str]:
        found = check_project(self.project) + check_region(self.region)
        found += check_gcs_root(self.pipeline_root)
        found += check_labels(self.labels)
        if self.service_account and not _SERVICE_ACCOUNT.fullmatch(self.service_account):
            found.append(
                f"--service-account {self.service_account!r} is not a service account "
                "e-mail (NAME@PROJECT.iam.gserviceaccount.com)"
            )
        if self.encryption_key:
            match = _KMS_KEY.fullmatch(self.encryption_key)
            if not match:
                found.append(
                    f"--encryption-key {self.encryption_key!r} is not a Cloud KMS key name "
                    "(projects/P/locations/L/keyRings/R/cryptoKeys/K)"
                )
            elif self.region and match["location"] != self.region:
                found.append(
                    f"--encryption-key is in {match['location']!r} but the run is in "
                    f"{self.region!r}; Vertex AI needs a key in the run's region"
                )
        if self.network and not _NETWORK.fullmatch(self.network):
            found.append(
                f"--network {self.network!r} is not a VPC network name "
                "(projects/PROJECT_NUMBER/global/networks/NAME)"
            )
        return found

    def validate(self) -> None:
        raise_problems(self.problems())


def console_url(project: str, region: str, job_id: str) -> str:
    """The run's page in the Google Cloud console."""
    return (
        f"https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/runs/"
        f"{job_id}?project={project}"
    )


def build_pipeline_job(
    template_path: str | Path,
    settings: VertexSettings,
    *,
    parameter_values: Mapping[str, Any] | None = None,
    display_name: str | None = None,
    job_id: str | None = None,
    credentials: Any = None,
):
    """Validates everything, then builds (but does not send) the PipelineJob.

    Args:
        template_path: a compiled pipeline (``petseg compile`` output).
        settings: project, region, pipeline root and the run's options.
        parameter_values: pipeline parameters; strings are converted to the
            template's types, so command-line values can be passed as they are.
        display_name: the run's name in the console; default the pipeline's name.
        job_id: the run id; default ``<pipeline>-<UTC timestamp>``.
        credentials: google.auth credentials; default Application Default Credentials.

    Returns:
        An ``aiplatform.PipelineJob`` ready for ``submit``.
    """
    settings.validate()
    template = read_pipeline_template(template_path)
    parameters = resolve_parameters(template, parameter_values)
    job_id = job_id or default_job_id(template.name)
    if not _JOB_ID.fullmatch(job_id):
        raise CloudInputError(
            f"job id {job_id!r} must be lowercase letters, digits and '-' (at most 128)"
        )

    from google.cloud import aiplatform

    return aiplatform.PipelineJob(
        display_name=display_name or template.name,
        template_path=template.path,
        job_id=job_id,
        pipeline_root=settings.pipeline_root,
        parameter_values=parameters,
        enable_caching=settings.enable_caching,
        encryption_spec_key_name=settings.encryption_key,
        labels=dict(settings.labels) or None,
        credentials=credentials,
        project=settings.project,
        location=settings.region,
    )


def submit_pipeline_job(
    template_path: str | Path,
    settings: VertexSettings,
    *,
    echo: Callable[[str], None] = print,
    **options: Any,
):
    """Submits a compiled pipeline to Vertex AI and prints the run's console URL.

    ``options`` are ``build_pipeline_job``'s (parameter_values, display_name, job_id,
    credentials).

    Returns:
        The submitted ``aiplatform.PipelineJob`` (``wait_for_pipeline_job`` follows it).
    """
    job = build_pipeline_job(template_path, settings, **options)
    job.submit(service_account=settings.service_account, network=settings.network)
    echo(f"submitted Vertex AI pipeline run {job.job_id}")
    echo(f"console: {console_url(settings.project, settings.region, job.job_id)}")
    return job


def wait_for_pipeline_job(
    job,
    *,
    poll_seconds: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    echo: Callable[[str], None] = print,
) -> str:
    """Prints each state change until the run ends; returns the final state's name."""
    last_state = None
    while True:
        state = job.state.name
        if state != last_state:
            stamp = datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S")
            echo(f"{stamp} {job.job_id}: {state}")
            last_state = state
        if state in TERMINAL_STATES:
            if state != SUCCEEDED and job.gca_resource.error.message:
                echo(f"error: {job.gca_resource.error.message}")
            return state
        sleep(poll_seconds)


def multi_replica_train(
    train_component: Any, runtime_config: RuntimeConfig, training_config: TrainingConfig
) -> Any:
    """The train component as a Vertex AI custom job of ``training.replica_count`` replicas.

    google-cloud-pipeline-components' ``create_custom_training_job_from_component`` runs
    the component's own container on every replica: one in worker pool 0 (the chief), the
    others in worker pool 1, all of ``runtime.train_machine_type`` with the configured
    accelerator, and Vertex AI sets TF_CONFIG and CLUSTER_SPEC on each. The task in the
    pipeline is the launcher that creates and follows the job; it keeps the component's
    inputs and outputs. A restarted worker restarts the whole job (MultiWorkerMirroredStrategy
    cannot take a worker back mid-run), and every worker resumes from the chief's backup.

    Args:
        train_component: the ``components.ops.train.train`` component (not modified).
        runtime_config: a RuntimeConfig (gpu_image, train_machine_type, accelerator).
        training_config: a TrainingConfig whose replica_count is at least 2.

    Returns:
        A component to call with the train component's arguments.
    """
    import copy

    from google_cloud_pipeline_components.v1.custom_job import (
        create_custom_training_job_from_component,
    )

    if training_config.replica_count < 2:
        raise ValueError("a custom job of replicas is for training.replica_count >= 2")
    component = copy.deepcopy(train_component)
    # The custom job copies the component's image into every worker pool.
    component.component_spec.implementation.container.image = runtime_config.gpu_image
    accelerator = runtime_config.accelerator_type if runtime_config.accelerator_count else ""
    return create_custom_training_job_from_component(
        component,
        display_name="petseg-train",
        replica_count=training_config.replica_count,
        machine_type=runtime_config.train_machine_type,
        accelerator_type=accelerator,
        accelerator_count=runtime_config.accelerator_count if accelerator else 1,
        restart_job_on_worker_restart=True,
    )
