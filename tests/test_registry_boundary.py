"""Vertex AI Model Registry: the exact requests at the client boundary (no network)."""

from __future__ import annotations

import google.auth
import google.auth.exceptions
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1

from components import registry

DIGEST = "ab" * 32
ARTIFACT_URI = "gs://bucket/models/petseg/versions/v000003/saved_model"
IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"


class FakeOperation:
    def __init__(self, model_name: str):
        self.model_name = model_name
        self.timeouts = []

    def result(self, timeout=None):
        self.timeouts.append(timeout)
        return aiplatform_v1.UploadModelResponse(model=self.model_name)


@pytest.fixture
def vertex_calls(monkeypatch):
    """Replaces the two RPCs on the real client class and records what reaches them."""
    calls = {"upload": [], "list": [], "endpoints": [], "registered": []}

    def list_models(self, request=None, **kwargs):
        calls["list"].append(request)
        calls["endpoints"].append(self.api_endpoint)
        return [aiplatform_v1.Model(name=name) for name in calls["registered"]]

    def upload_model(self, request=None, **kwargs):
        calls["upload"].append((request, kwargs))
        calls["endpoints"].append(self.api_endpoint)
        return FakeOperation("projects/P/locations/europe-west4/models/123")

    monkeypatch.setattr(aiplatform_v1.ModelServiceClient, "list_models", list_models)
    monkeypatch.setattr(aiplatform_v1.ModelServiceClient, "upload_model", upload_model)
    # The client the caller builds finds anonymous credentials instead of ADC.
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "P"))
    return calls


def build_request(**overrides):
    arguments = {
        "project": "P",
        "location": "europe-west4",
        "display_name": "petseg",
        "artifact_uri": ARTIFACT_URI,
        "serving_image": IMAGE,
        "labels": registry.model_labels({"team": "vision"}, version="v000003", digest=DIGEST),
        "description": "petseg v000003",
    }
    return registry.build_upload_model_request(**{**arguments, **overrides})


def test_upload_model_request_boundary(vertex_calls):
    result = registry.register_model(build_request(), digest=DIGEST, timeout_s=42)

    assert result == {
        "resource_name": "projects/P/locations/europe-west4/models/123",
        "reused": False,
    }
    [(request, kwargs)] = vertex_calls["upload"]
    assert request == aiplatform_v1.UploadModelRequest(
        parent="projects/P/locations/europe-west4",
        model=aiplatform_v1.Model(
            display_name="petseg",
            description="petseg v000003",
            artifact_uri=ARTIFACT_URI,
            container_spec=aiplatform_v1.ModelContainerSpec(image_uri=IMAGE),
            labels={"team": "vision", "petseg_version": "v000003", "petseg_digest": "ab" * 20},
        ),
    )
    assert kwargs == {"timeout": 42}
    [listed] = vertex_calls["list"]
    assert listed.parent == "projects/P/locations/europe-west4"
    assert listed.filter == f'labels.petseg_digest="{"ab" * 20}"'
    # The regional endpoint the caller chose for the client it built.
    assert vertex_calls["endpoints"] == ["europe-west4-aiplatform.googleapis.com"] * 2


def test_registration_is_skipped_when_the_digest_is_registered_boundary(vertex_calls):
    vertex_calls["registered"].append("projects/P/locations/europe-west4/models/7")

    result = registry.register_model(build_request(), digest=DIGEST)

    assert result == {"resource_name": "projects/P/locations/europe-west4/models/7", "reused": True}
    assert vertex_calls["upload"] == []


def test_request_refuses_what_vertex_would_reject():
    with pytest.raises(ValueError, match="needs a gs:// artifact URI"):
        build_request(artifact_uri="/tmp/models/v000003/saved_model")
    with pytest.raises(ValueError, match="vertex_model_display_name is empty"):
        build_request(display_name=" ")
    with pytest.raises(ValueError, match="serving_image is empty"):
        build_request(serving_image="")
    with pytest.raises(ValueError, match=r"push\.labels key 'Team'"):
        registry.check_labels({"Team": "vision"})
    with pytest.raises(ValueError, match=r"push.labels\['team'\] = 'Vision Group'"):
        registry.check_labels({"team": "Vision Group"})


def test_project_and_location_come_from_arguments_or_the_vertex_job(monkeypatch):
    monkeypatch.delenv("CLOUD_ML_PROJECT_ID", raising=False)
    monkeypatch.delenv("CLOUD_ML_REGION", raising=False)

    def no_credentials(*args, **kwargs):
        raise google.auth.exceptions.DefaultCredentialsError("none here")

    monkeypatch.setattr(google.auth, "default", no_credentials)
    assert registry.resolve_project_location("p1", "us-central1") == ("p1", "us-central1")
    with pytest.raises(ValueError, match="needs a project"):
        registry.resolve_project_location("", "us-central1")
    with pytest.raises(ValueError, match="location '' is not a region"):
        registry.resolve_project_location("p1", "")
    monkeypatch.setenv("CLOUD_ML_PROJECT_ID", "from-job")
    monkeypatch.setenv("CLOUD_ML_REGION", "asia-northeast1")
    assert registry.resolve_project_location("", "") == ("from-job", "asia-northeast1")
    monkeypatch.delenv("CLOUD_ML_PROJECT_ID")
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "adc"))
    assert registry.resolve_project_location("", "us-east1") == ("adc", "us-east1")
