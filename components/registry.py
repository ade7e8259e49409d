"""Registering a pushed model in Vertex AI Model Registry.

The request is built by a pure function (tested field by field); the caller
only sends it. Registration is idempotent per model: the model's content digest
is a label, and a model that already carries it is returned instead of being
uploaded again, so a retried push task does not register a duplicate.
"""

from __future__ import annotations

import os
import re
from typing import Any

from components.storage import GCS_SCHEME

DIGEST_LABEL = "petseg_digest"
VERSION_LABEL = "petseg_version"
# Label values hold at most 63 characters; 40 hex digits of sha256 are ample to identify.
DIGEST_LABEL_LENGTH = 40
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_MAX_LABELS = 64
_LOCATION = re.compile(r"[a-z]+-[a-z]+\d+")


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """Vertex label rules: lowercase keys starting with a letter, values of [a-z0-9_-]."""
    if len(labels) > _MAX_LABELS:
        raise ValueError(f"push.labels has {len(labels)} labels; Vertex allows {_MAX_LABELS}")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(str(key)):
            raise ValueError(
                f"push.labels key {key!r}: use lowercase letters, digits, '_' or '-', "
                "starting with a letter, at most 63 characters"
            )
        if not _LABEL_VALUE.fullmatch(str(value)):
            raise ValueError(
                f"push.labels[{key!r}] = {value!r}: use lowercase letters, digits, '_' or '-', "
                "at most 63 characters"
            )
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
    if not _LOCATION.fullmatch(location):
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
    return aiplatform_v1.UploadModelRequest(
        parent=f"projects/{project}/locations/{location}",
        model=aiplatform_v1.Model(
            display_name=display_name,
            description=description,
            artifact_uri=artifact_uri,
            container_spec=aiplatform_v1.ModelContainerSpec(image_uri=serving_image),
            labels=check_labels(labels),
        ),
    )


def find_registered_model(client: Any, parent: str, digest: str) -> str | None:
    """The resource name of a model already registered for this digest, or None."""
    from google.cloud import aiplatform_v1

    request = aiplatform_v1.ListModelsRequest(
        parent=parent,
        filter=f'labels.{DIGEST_LABEL}="{digest[:DIGEST_LABEL_LENGTH].lower()}"',
    )
    for model in client.list_models(request=request):
        return model.name
    return None


def register_model(
    request,
    *,
    digest: str,
    client: Any = None,
    timeout_s: float = 1800.0,
) -> dict[str, Any]:
    """Uploads the model unless one with the same digest label exists.

    Returns:
        ``{resource_name, reused}``.
    """
    from google.cloud import aiplatform_v1

    location = request.parent.rsplit("/", 1)[-1]
    if client is None:
        client = aiplatform_v1.ModelServiceClient(
            client_options={"api_endpoint": f"{location}-aiplatform.googleapis.com"}
        )
    existing = find_registered_model(client, request.parent, digest)
    if existing:
        return {"resource_name": existing, "reused": True}
    operation = client.upload_model(request=request, timeout=timeout_s)
    response = operation.result(timeout=timeout_s)
    return {"resource_name": response.model, "reused": False}
