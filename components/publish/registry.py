"""Registering pushed models as versions of one Vertex AI Model Registry model.

Every push adds a version to the same registry model (``parent_model``): the one
named by ``push.vertex_parent_model``, else the oldest model whose display name is
``push.vertex_model_display_name`` (the first push creates it). An alias
(``push.vertex_model_alias``, default ``production``) then moves to the version of
the model the destination's LATEST names, so the registry and LATEST agree.

The requests are built by pure functions (tested field by field); the callers only
send them. Registration is idempotent per model: the model's content digest is a
label, and a version that already carries it is returned instead of being uploaded
again, so a retried push task does not register a duplicate.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from components.platform.config import (
    GCP_REGION,
    VERTEX_MODEL_RESOURCE,
    PushConfig,
    label_problems,
)
from components.platform.storage import GCS_SCHEME

DIGEST_LABEL = "petseg_digest"
VERSION_LABEL = "petseg_version"
# Label values hold at most 63 characters; 40 hex digits of sha256 are ample to identify.
DIGEST_LABEL_LENGTH = 40


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Vertex label rules: lowercase keys starting with a letter, values of [a-z0-9_-]."""
    problems = label_problems(labels, "push.labels")
    if problems:
        raise ValueError(problems[0])
    return dict(labels)


def model_labels(labels: dict[str, str], *, version: str, digest: str) -> dict[str, str]:
    """The configured labels plus the pushed version and the digest registration keys on."""
    return check_labels(
        {
            **labels,
            VERSION_LABEL: version.lower(),
            DIGEST_LABEL: digest[:DIGEST_LABEL_LENGTH].lower(),
        }
    )


def resolve_project_location(project: str, location: str) -> tuple[str, str]:
    """Fills an empty project or location from the job's environment, read at call time.

    Explicit values win. Otherwise the project comes from ``CLOUD_ML_PROJECT_ID``
    (set in Vertex AI training containers) or the default credentials' project,
    and the location from ``CLOUD_ML_REGION``.
    """
    project = project or os.environ.get("CLOUD_ML_PROJECT_ID", "") or _default_project()
    location = location or os.environ.get("CLOUD_ML_REGION", "")
    if not project:
        raise ValueError(
            "Vertex registration needs a project: pass vertex_project "
            "(neither CLOUD_ML_PROJECT_ID nor the default credentials name one)"
        )
    if not GCP_REGION.fullmatch(location):
        raise ValueError(f"Vertex location {location!r} is not a region such as 'us-central1'")
    return project, location


def _default_project() -> str:
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return google.auth.default()[1] or ""
    except DefaultCredentialsError:
        return ""


def build_upload_model_request(
    *,
    project: str,
    location: str,
    display_name: str,
    artifact_uri: str,
    serving_image: str,
    labels: dict[str, str],
    description: str = "",
    parent_model: str = "",
):
    """The UploadModelRequest for a SavedModel directory in GCS.

    Args:
        project: Google Cloud project id.
        location: Vertex region, e.g. ``us-central1``.
        display_name: The registry's display name (PushConfig.vertex_model_display_name).
        artifact_uri: gs:// directory holding ``saved_model.pb`` (the version's saved_model/).
        serving_image: Prediction container (PushConfig.serving_image).
        labels: Labels for the model, already checked.
        description: Free text shown in the registry.
        parent_model: ``projects/.../models/<id>`` to add a version to; '' creates the model.
    """
    from google.cloud import aiplatform_v1

    if not artifact_uri.startswith(GCS_SCHEME):
        raise ValueError(
            f"Vertex registration needs a gs:// artifact URI, not {artifact_uri!r}; "
            "push to a gs:// destination or turn push.register_vertex off"
        )
    if not display_name.strip():
        raise ValueError("push.vertex_model_display_name is empty")
    if not serving_image.strip():
        raise ValueError("push.serving_image is empty")
    if parent_model and not VERTEX_MODEL_RESOURCE.fullmatch(parent_model):
        raise ValueError(
            f"parent model {parent_model!r} is not "
            "projects/<project>/locations/<region>/models/<id>"
        )
    if parent_model and parent_model.split("/")[3] != location:
        raise ValueError(
            f"parent model {parent_model!r} is not in {location}; a version is registered in "
            "its model's region (set push.vertex_location to it)"
        )
    return aiplatform_v1.UploadModelRequest(
        parent=f"projects/{project}/locations/{location}",
        parent_model=parent_model,
        model=aiplatform_v1.Model(
            display_name=display_name,
            description=description,
            artifact_uri=artifact_uri,
            container_spec=aiplatform_v1.ModelContainerSpec(image_uri=serving_image),
            labels=check_labels(labels),
        ),
    )


def model_service_client(location: str):
    """A ModelServiceClient on the region's endpoint (credentials from ADC, at call time)."""
    from google.cloud import aiplatform_v1

    return aiplatform_v1.ModelServiceClient(
        client_options={"api_endpoint": f"{location}-aiplatform.googleapis.com"}
    )


def find_parent_model(client: Any, parent: str, display_name: str) -> str | None:
    """The registry model pushes add versions to: the oldest model with the display name.

    Oldest, so that two models of the same name (two first pushes racing, or models
    registered one per push by an earlier petseg) still give every push the same answer.
    """
    from google.cloud import aiplatform_v1

    request = aiplatform_v1.ListModelsRequest(
        parent=parent, filter=f'display_name="{display_name}"', order_by="create_time"
    )
    for model in client.list_models(request=request):
        return model.name
    return None


def find_model_version(client: Any, model_name: str, digest: str) -> str | None:
    """``<model>@<version id>`` of the model's version registered for digest, or None."""
    from google.cloud import aiplatform_v1

    request = aiplatform_v1.ListModelVersionsRequest(
        name=model_name, filter=f'labels.{DIGEST_LABEL}="{digest[:DIGEST_LABEL_LENGTH].lower()}"'
    )
    for version in client.list_model_versions(request=request):
        return f"{version.name}@{version.version_id}"
    return None


def register_version(
    request, *, digest: str, client: Any, timeout_s: float = 1800.0
) -> dict[str, Any]:
    """Uploads the model as a new version unless its parent already has one for the digest.

    Returns:
        ``{model, version, reused}``: the registry model's resource name, the version's
        (``<model>@<id>``), and whether an earlier (e.g. retried) push had registered it.
    """
    if request.parent_model:
        existing = find_model_version(client, request.parent_model, digest)
        if existing:
            return {"model": request.parent_model, "version": existing, "reused": True}
    operation = client.upload_model(request=request, timeout=timeout_s)
    response = operation.result(timeout=timeout_s)
    return {
        "model": response.model,
        "version": f"{response.model}@{response.model_version_id}",
        "reused": False,
    }


def move_alias_to_latest(
    client: Any,
    model_name: str,
    alias: str,
    latest_digest: Callable[[], str | None],
    *,
    known: dict[str, str] | None = None,
    attempts: int = 5,
) -> str | None:
    """Moves alias to the registry version of the model the destination's LATEST names.

    The alias follows LATEST, never this push: a push whose version is not (or no
    longer) the latest leaves it to the newer one, so racing pushes end with the alias
    where LATEST is. LATEST is read again after each move, and the move repeated when a
    racing push advanced it meanwhile; if the newer model is not registered yet, its own
    push moves the alias when it is.

    Args:
        client: A ModelServiceClient.
        model_name: ``projects/.../models/<id>`` holding the versions.
        alias: The alias to move, e.g. ``production``.
        latest_digest: Reads the model digest LATEST names now (None when nothing is pushed).
        known: digest → version already known (this push's), to avoid listing for it.
        attempts: How many times to follow a moving LATEST.

    Returns:
        The version the alias was moved to, or None when it was not moved.
    """
    from google.cloud import aiplatform_v1

    known = dict(known or {})
    moved = None
    for _ in range(attempts):
        digest = latest_digest()
        if digest is None:
            return moved
        target = known.get(digest) or find_model_version(client, model_name, digest)
        if target is None:
            return moved
        if target != moved:
            client.merge_version_aliases(
                request=aiplatform_v1.MergeVersionAliasesRequest(
                    name=target, version_aliases=[alias]
                )
            )
            moved = target
        if latest_digest() == digest:
            return moved
    return moved


def register_pushed_model(
    settings: PushConfig,
    *,
    project: str,
    location: str,
    pushed: dict[str, Any],
    latest_digest: Callable[[], str | None],
    client: Any = None,
    timeout_s: float = 1800.0,
) -> dict[str, Any]:
    """Registers a pushed version in the registry model and moves the alias to LATEST's.

    Args:
        settings: The push section (display name, parent model, alias, image, labels).
        project: Registry project (resolve_project_location's).
        location: Registry region.
        pushed: push_model's result: ``version``, ``uri``, ``digest``.
        latest_digest: Reads the model digest the destination's LATEST names now.
        client: A ModelServiceClient; default one on the region's endpoint.
        timeout_s: Deadline of the upload operation.

    Returns:
        ``{model, version, reused, alias, alias_version}``: the registry model, this
        push's version (``<model>@<id>``), whether it was registered before, the alias
        and the version it now names (None when the alias was not moved).
    """
    client = client or model_service_client(location)
    parent_model = settings.vertex_parent_model or find_parent_model(
        client, f"projects/{project}/locations/{location}", settings.vertex_model_display_name
    )
    request = build_upload_model_request(
        project=project,
        location=location,
        display_name=settings.vertex_model_display_name,
        artifact_uri=f"{pushed['uri']}/saved_model",
        serving_image=settings.serving_image,
        labels=model_labels(settings.labels, version=pushed["version"], digest=pushed["digest"]),
        description=f"petseg {pushed['version']}, manifest {pushed['uri']}/manifest.json",
        parent_model=parent_model or "",
    )
    registration = register_version(
        request, digest=pushed["digest"], client=client, timeout_s=timeout_s
    )
    alias_version = None
    if settings.vertex_model_alias:
        alias_version = move_alias_to_latest(
            client,
            registration["model"],
            settings.vertex_model_alias,
            latest_digest,
            known={pushed["digest"]: registration["version"]},
        )
    return {**registration, "alias": settings.vertex_model_alias, "alias_version": alias_version}
