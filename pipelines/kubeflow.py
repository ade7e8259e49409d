"""Submit a compiled pipeline to a Kubeflow Pipelines cluster, and GPU scheduling there.

Runs go through ``kfp.Client`` (the KFP v2beta1 REST API). Authentication is the
client's own (an in-cluster service account token, an IAP client id in its
environment variables, or a port-forwarded host); nothing here takes a token on
the command line or prints one. Inputs are checked before the first request,
with the same template and parameter checks as Vertex AI.
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from components.platform.config import NotifyConfig, RuntimeConfig, TrainingConfig
from pipelines.vertex import (
    CloudInputError,
    raise_problems,
    read_pipeline_template,
    resolve_parameters,
)

_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_KUBERNETES_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
# Object stores the KFP launcher can write artifacts to.
_PIPELINE_ROOT_SCHEMES = ("gs", "s3", "minio")
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "toleration_seconds"}
_TOLERATION_OPERATORS = ("Equal", "Exists")
_TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

TERMINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")
SUCCEEDED = "SUCCEEDED"
DEFAULT_EXPERIMENT = "petseg"


def check_host(host: str | None) -> list[str]:
    if not host:
        return [
            "--host is required for Kubeflow (the KFP API endpoint, e.g. "
            "http://localhost:8080 after 'kubectl port-forward' or https://<cluster>/pipeline)"
        ]
    parsed = urlparse(host)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return [f"--host {host!r} must be an http:// or https:// URL"]
    return []


def check_namespace(namespace: str | None) -> list[str]:
    if namespace and not _NAMESPACE.fullmatch(namespace):
        return [f"--namespace {namespace!r} is not a Kubernetes namespace name"]
    return []


def check_pipeline_root(pipeline_root: str | None) -> list[str]:
    """None keeps the cluster's default root; otherwise an object-store URI."""
    if not pipeline_root:
        return []
    parsed = urlparse(pipeline_root)
    if parsed.scheme not in _PIPELINE_ROOT_SCHEMES or not parsed.netloc:
        schemes = ", ".join(f"{scheme}://" for scheme in _PIPELINE_ROOT_SCHEMES)
        return [f"--pipeline-root {pipeline_root!r} must start with one of {schemes}"]
    return []


@dataclass(frozen=True)
class KubeflowSettings:
    """Where and how a run goes on Kubeflow Pipelines."""

    host: str | None
    namespace: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    pipeline_root: str | None = None
    service_account: str | None = None
    enable_caching: bool | None = None

    def problems(self) -> list[str]:
        found = check_host(self.host) + check_namespace(self.namespace)
        found += check_pipeline_root(self.pipeline_root)
        if not self.experiment or not self.experiment.strip():
            found.append("--experiment must not be empty")
        if self.service_account and not _KUBERNETES_NAME.fullmatch(self.service_account):
            found.append(
                f"--service-account {self.service_account!r} is not a Kubernetes service "
                "account name (lowercase letters, digits, '-', '.')"
            )
        return found

    def validate(self) -> None:
        raise_problems(self.problems())


def connect(settings: KubeflowSettings):
    """A kfp.Client for the settings' host and namespace (the client does the auth)."""
    settings.validate()
    import kfp

    # kfp.Client treats 'kubeflow' as "no namespace given".
    return kfp.Client(host=settings.host, namespace=settings.namespace or "kubeflow")


def run_url(host: str, run_id: str) -> str:
    """The run's page in the Kubeflow Pipelines UI."""
    return f"{host.rstrip('/')}/#/runs/details/{run_id}"


def default_run_name(pipeline_name: str, now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.UTC)
    return f"{pipeline_name} {now:%Y-%m-%d %H-%M-%S}"


def submit_run(
    template_path: str | Path,
    settings: KubeflowSettings,
    *,
    parameter_values: Mapping[str, Any] | None = None,
    run_name: str | None = None,
    client=None,
    echo: Callable[[str], None] = print,
) -> str:
    """Submits a compiled pipeline as a run in the settings' experiment.

    Args:
        template_path: a compiled pipeline (``petseg compile --target kubeflow``).
        settings: host, namespace, experiment and the run's options.
        parameter_values: pipeline parameters; strings are converted to the
            template's types.
        run_name: the run's display name; default '<pipeline> <UTC time>'.
        client: a ``kfp.Client``; default one from ``connect(settings)``.
        echo: where the run's URL is printed.

    Returns:
        The run id.
    """
    settings.validate()
    template = read_pipeline_template(template_path)
    parameters = resolve_parameters(template, parameter_values)
    client = client or connect(settings)
    result = client.create_run_from_pipeline_package(
        pipeline_file=template.path,
        arguments=parameters,
        run_name=run_name or default_run_name(template.name),
        experiment_name=settings.experiment,
        namespace=settings.namespace,
        pipeline_root=settings.pipeline_root,
        enable_caching=settings.enable_caching,
        service_account=settings.service_account,
    )
    echo(f"submitted Kubeflow run {result.run_id}")
    echo(f"ui: {run_url(settings.host, result.run_id)}")
    return result.run_id


def wait_for_run(
    client,
    run_id: str,
    *,
    poll_seconds: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    echo: Callable[[str], None] = print,
) -> str:
    """Prints each state change until the run ends; returns the final state."""
    last_state = None
    while True:
        run = client.get_run(run_id)
        state = str(run.state or "RUNTIME_STATE_UNSPECIFIED")
        if state != last_state:
            stamp = datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S")
            echo(f"{stamp} {run_id}: {state}")
            last_state = state
        if state in TERMINAL_STATES:
            error = getattr(run, "error", None)
            if state != SUCCEEDED and error is not None and getattr(error, "message", None):
                echo(f"error: {error.message}")
            return state
        sleep(poll_seconds)


def _toleration_arguments(index: int, toleration: Mapping[str, Any]) -> dict[str, Any]:
    """Checks one runtime.gpu_tolerations entry and turns it into add_toleration arguments."""
    where = f"runtime.gpu_tolerations[{index}]"
    unknown = sorted(set(toleration) - _TOLERATION_KEYS)
    if unknown:
        raise CloudInputError(
            f"{where}: unknown key {', '.join(unknown)}; use {', '.join(sorted(_TOLERATION_KEYS))}"
        )
    operator = toleration.get("operator") or ("Equal" if toleration.get("value") else "Exists")
    if operator not in _TOLERATION_OPERATORS:
        raise CloudInputError(
            f"{where}: operator {operator!r} must be one of {', '.join(_TOLERATION_OPERATORS)}"
        )
    if operator == "Exists" and toleration.get("value"):
        raise CloudInputError(f"{where}: operator 'Exists' takes no value")
    effect = toleration.get("effect") or None
    if effect is not None and effect not in _TOLERATION_EFFECTS:
        raise CloudInputError(
            f"{where}: effect {effect!r} must be one of {', '.join(_TOLERATION_EFFECTS)}"
        )
    seconds = toleration.get("toleration_seconds")
    if seconds not in (None, ""):
        try:
            seconds = int(seconds)
        except (TypeError, ValueError):
            raise CloudInputError(
                f"{where}: toleration_seconds {seconds!r} is not a whole number"
            ) from None
        if effect != "NoExecute":
            raise CloudInputError(f"{where}: toleration_seconds only applies to NoExecute")
    else:
        seconds = None
    return {
        "key": toleration.get("key") or None,
        "operator": operator,
        "value": toleration.get("value") or None,
        "effect": effect,
        "toleration_seconds": seconds,
    }


# Vertex AI names GPUs like NVIDIA_TESLA_T4; GKE labels its GPU nodes nvidia-tesla-t4.
_VERTEX_GPU = re.compile(r"NVIDIA_[A-Z0-9_]+")
_KUBERNETES_RESOURCE = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*)")
GKE_ACCELERATOR_LABEL = "cloud.google.com/gke-accelerator"


def kubernetes_accelerator(runtime_config: RuntimeConfig) -> tuple[str, dict[str, str]]:
    """The Kubernetes resource the train task requests on Kubeflow, and its node selector.

    KFP's Kubeflow backend turns the compiled accelerator type into the container's
    resource limit name as it is, so a Vertex AI name (``NVIDIA_TESLA_T4``) would ask
    for a resource no node has and the pod would stay Pending. A Vertex-style NVIDIA
    name becomes a request for ``runtime.kubernetes_gpu_resource`` (``nvidia.com/gpu``)
    on GKE nodes labelled ``cloud.google.com/gke-accelerator: nvidia-tesla-t4``, unless
    ``runtime.gpu_node_selector`` says which nodes; a Kubernetes resource name
    (``nvidia.com/gpu``, ``amd.com/gpu``) is requested as given.

    Raises:
        CloudInputError: an accelerator that is neither, saying what to set.
    """
    accelerator = runtime_config.accelerator_type
    selector = dict(runtime_config.gpu_node_selector)
    if _KUBERNETES_RESOURCE.fullmatch(accelerator):
        return accelerator, selector
    if _VERTEX_GPU.fullmatch(accelerator):
        resource = runtime_config.kubernetes_gpu_resource
        if not _KUBERNETES_RESOURCE.fullmatch(resource):
            raise CloudInputError(
                f"runtime.kubernetes_gpu_resource {resource!r} is not a Kubernetes resource "
                "name such as nvidia.com/gpu"
            )
        if not selector:
            selector = {GKE_ACCELERATOR_LABEL: accelerator.lower().replace("_", "-")}
        return resource, selector
    raise CloudInputError(
        f"runtime.accelerator_type {accelerator!r} cannot be requested on Kubeflow: set it to "
        "the Kubernetes resource name (e.g. --set runtime.accelerator_type=nvidia.com/gpu or "
        "google.com/tpu) and runtime.gpu_node_selector to the label of the nodes that carry it"
    )


def apply_kubernetes_gpu_scheduling(
    task, runtime_config: RuntimeConfig, node_selector: dict[str, str] | None = None
):
    """Puts the train task on GPU nodes of a Kubeflow cluster.

    Which nodes carry the accelerator is cluster-specific (on GKE, e.g. the node
    selector ``cloud.google.com/gke-accelerator: nvidia-tesla-t4``; GKE adds the
    toleration for its ``nvidia.com/gpu`` taint itself), so it comes from
    ``runtime.gpu_node_selector`` (or ``node_selector``, see
    ``kubernetes_accelerator``) and ``runtime.gpu_tolerations``. Vertex AI
    rejects Kubernetes platform config, so call this only when compiling for Kubeflow.

    Args:
        task: the pipeline task to schedule.
        runtime_config: a ``RuntimeConfig`` (or anything with ``gpu_node_selector``
            and ``gpu_tolerations``).
        node_selector: node labels to use instead of ``runtime.gpu_node_selector``.

    Returns:
        The task, for chaining.

    Raises:
        CloudInputError: a toleration with an unknown key, operator or effect.
    """
    tolerations = [
        _toleration_arguments(index, toleration)
        for index, toleration in enumerate(runtime_config.gpu_tolerations)
    ]
    selector = runtime_config.gpu_node_selector if node_selector is None else node_selector
    if any(not key for key in selector):
        raise CloudInputError("runtime.gpu_node_selector has an empty label key")
    if not tolerations and not selector:
        return task

    from kfp import kubernetes

    for key, value in sorted(selector.items()):
        kubernetes.add_node_selector(task, label_key=key, label_value=str(value))
    for arguments in tolerations:
        kubernetes.add_toleration(task, **arguments)
    return task


def mount_notify_secret(task, settings: NotifyConfig) -> None:
    """Mounts the Kubernetes secret holding the webhook URL as the notify task's env var.

    Only the secret's name and key enter the compiled spec; the kubelet fills the
    variable from the secret when the pod starts.
    """
    from kfp import kubernetes

    kubernetes.use_secret_as_env(
        task,
        secret_name=settings.kubernetes_secret,
        secret_key_to_env={settings.kubernetes_secret_key: settings.webhook_url_env},
    )


def refuse_replicas(training_config: TrainingConfig, target: str) -> None:
    """Only a Vertex AI custom job runs the train step on several machines.

    Raises:
        ValueError: training.replica_count > 1 for Kubeflow or the local runner, saying
            what to use instead.
    """
    count = training_config.replica_count
    if count <= 1 or target == "vertex":
        return
    if target == "kubeflow":
        raise ValueError(
            f"training.replica_count={count}: Kubeflow Pipelines runs the train step as one "
            "pod, and this pipeline does not create the Kubeflow Training Operator's TFJob "
            "that several workers need. Compile for Vertex AI (--target vertex), or set "
            "training.replica_count=1 and use several GPUs of one node "
            "(runtime.accelerator_count)."
        )
    raise ValueError(
        f"training.replica_count={count}: the {target} runner trains in one process; set "
        "training.replica_count=1 (components.model.loopback runs several workers on this machine "
        "for testing)."
    )
