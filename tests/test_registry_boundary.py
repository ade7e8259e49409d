"""Vertex AI Model Registry: the exact requests at the client boundary (no network)."""

from __future__ import annotations

import google.auth
import google.auth.exceptions
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1

from components.platform.config import ConfigError, PushConfig, load_config
from components.publish import registry

DIGEST = "ab" * 32
ARTIFACT_URI = "gs://bucket/models/petseg/versions/v000003/saved_model"
IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"


class FakeOperation:
    def __init__(self, model_name: str, version_id: str):
        self.model_name = model_name
        self.version_id = version_id

    def result(self, timeout=None):
        assert timeout is not None
        return aiplatform_v1.UploadModelResponse(
            model=self.model_name, model_version_id=self.version_id
        )


MODEL = "projects/P/locations/europe-west4/models/123"


class FakeRegistry:
    """Stands in for the service behind the real client: models, versions, aliases."""

    def __init__(self):
        self.requests: list[tuple[str, object]] = []
        self.endpoints: list[str] = []
        self.models: list[str] = []
        self.versions: dict[str, list[aiplatform_v1.Model]] = {}

    def add_version(self, model: str, digest: str, aliases=()) -> str:
        versions = self.versions.setdefault(model, [])
        version = registry_version(model, str(len(versions) + 1), digest, list(aliases))
        versions.append(version)
        if model not in self.models:
            self.models.append(model)
        return f"{model}@{version.version_id}"

    def aliases(self, model: str) -> dict[str, list[str]]:
        return {v.version_id: list(v.version_aliases) for v in self.versions.get(model, [])}

    def of(self, kind: str) -> list:
        return [request for name, request in self.requests if name == kind]


def registry_version(model: str, version_id: str, digest: str, aliases: list[str]):
    return aiplatform_v1.Model(
        name=model,
        version_id=version_id,
        version_aliases=aliases,
        labels={registry.DIGEST_LABEL: digest[: registry.DIGEST_LABEL_LENGTH]},
    )


@pytest.fixture
def vertex_calls(monkeypatch):
    """Replaces the RPCs on the real client class and records what reaches them."""
    fake = FakeRegistry()

    def list_models(self, request=None, **kwargs):
        fake.requests.append(("list_models", request))
        fake.endpoints.append(self.api_endpoint)
        return [aiplatform_v1.Model(name=name) for name in fake.models]

    def list_model_versions(self, request=None, **kwargs):
        fake.requests.append(("list_model_versions", request))
        wanted = request.filter.split('="')[1].rstrip('"')
        return [
            v
            for v in fake.versions.get(request.name, [])
            if v.labels[registry.DIGEST_LABEL] == wanted
        ]

    def upload_model(self, request=None, **kwargs):
        fake.requests.append(("upload_model", (request, kwargs)))
        fake.endpoints.append(self.api_endpoint)
        model = request.parent_model or MODEL
        name = fake.add_version(model, request.model.labels[registry.DIGEST_LABEL])
        return FakeOperation(model, name.rsplit("@", 1)[1])

    def merge_version_aliases(self, request=None, **kwargs):
        fake.requests.append(("merge_version_aliases", request))
        model, version_id = request.name.split("@")
        # Vertex: an alias applied to one version is removed from the version that had it.
        for version in fake.versions[model]:
            kept = [a for a in version.version_aliases if a not in request.version_aliases]
            if version.version_id == version_id:
                kept += list(request.version_aliases)
            version.version_aliases = kept
        return aiplatform_v1.Model(name=model)

    for name, method in {
        "list_models": list_models,
        "list_model_versions": list_model_versions,
        "upload_model": upload_model,
        "merge_version_aliases": merge_version_aliases,
    }.items():
        monkeypatch.setattr(aiplatform_v1.ModelServiceClient, name, method)
    # The client the caller builds finds anonymous credentials instead of ADC.
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "P"))
    return fake


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


def pushed(digest: str = DIGEST, version: str = "v000003") -> dict:
    return {"version": version, "uri": ARTIFACT_URI.rsplit("/", 1)[0], "digest": digest}


def register(settings: PushConfig, latest_digest=lambda: DIGEST, **overrides):
    arguments = {
        "project": "P",
        "location": "europe-west4",
        "pushed": pushed(),
        "latest_digest": latest_digest,
        "timeout_s": 42,
    }
    return registry.register_pushed_model(settings, **{**arguments, **overrides})


def test_first_push_creates_the_registry_model_request_boundary(vertex_calls):
    settings = PushConfig(labels={"team": "vision"}, serving_image=IMAGE)

    result = register(settings)

    assert result == {
        "model": MODEL,
        "version": f"{MODEL}@1",
        "reused": False,
        "alias": "production",
        "alias_version": f"{MODEL}@1",
    }
    [listed] = vertex_calls.of("list_models")
    assert listed == aiplatform_v1.ListModelsRequest(
        parent="projects/P/locations/europe-west4",
        filter='display_name="petseg"',
        order_by="create_time",
    )
    [(request, kwargs)] = vertex_calls.of("upload_model")
    assert request == aiplatform_v1.UploadModelRequest(
        parent="projects/P/locations/europe-west4",
        parent_model="",
        model=aiplatform_v1.Model(
            display_name="petseg",
            description=f"petseg v000003, manifest {pushed()['uri']}/manifest.json",
            artifact_uri=ARTIFACT_URI,
            container_spec=aiplatform_v1.ModelContainerSpec(image_uri=IMAGE),
            labels={"team": "vision", "petseg_version": "v000003", "petseg_digest": "ab" * 20},
        ),
    )
    assert kwargs == {"timeout": 42}
    assert vertex_calls.of("merge_version_aliases") == [
        aiplatform_v1.MergeVersionAliasesRequest(name=f"{MODEL}@1", version_aliases=["production"])
    ]
    # The regional endpoint the caller chose for the client it built.
    assert set(vertex_calls.endpoints) == {"europe-west4-aiplatform.googleapis.com"}


def test_later_push_adds_a_version_and_moves_the_alias_request_boundary(vertex_calls):
    vertex_calls.add_version(MODEL, "cd" * 32, aliases=["default", "production"])

    result = register(PushConfig(), client=None)

    [(request, _)] = vertex_calls.of("upload_model")
    assert request.parent_model == MODEL
    assert (result["version"], result["alias_version"]) == (f"{MODEL}@2", f"{MODEL}@2")
    # The alias left version 1 (still the default version) for the new one.
    assert vertex_calls.aliases(MODEL) == {"1": ["default"], "2": ["production"]}
    [versions_listed] = vertex_calls.of("list_model_versions")
    assert versions_listed == aiplatform_v1.ListModelVersionsRequest(
        name=MODEL, filter=f'labels.petseg_digest="{"ab" * 20}"'
    )


def test_configured_parent_model_is_used_without_a_lookup_request_boundary(vertex_calls):
    parent = "projects/P/locations/europe-west4/models/777"
    vertex_calls.add_version(parent, "cd" * 32)

    result = register(PushConfig(vertex_parent_model=parent, vertex_model_alias="staging"))

    assert vertex_calls.of("list_models") == []
    [(request, _)] = vertex_calls.of("upload_model")
    assert request.parent_model == parent
    assert result["alias_version"] == f"{parent}@2"
    assert vertex_calls.aliases(parent) == {"1": [], "2": ["staging"]}


def test_retried_push_reuses_its_version_and_still_moves_the_alias_request_boundary(
    vertex_calls,
):
    vertex_calls.add_version(MODEL, DIGEST)
    vertex_calls.add_version(MODEL, "cd" * 32, aliases=["production"])

    result = register(PushConfig())

    assert vertex_calls.of("upload_model") == []
    assert (result["version"], result["reused"]) == (f"{MODEL}@1", True)
    assert vertex_calls.aliases(MODEL) == {"1": ["production"], "2": []}


def test_alias_follows_latest_not_an_older_racing_push_request_boundary(vertex_calls):
    newer = "ef" * 32
    vertex_calls.add_version(MODEL, newer, aliases=["production"])

    # A racing push published a newer model first: LATEST names it, not this push.
    result = register(PushConfig(), latest_digest=lambda: newer)

    assert result["version"] == f"{MODEL}@2"
    assert result["alias_version"] == f"{MODEL}@1"
    assert vertex_calls.aliases(MODEL) == {"1": ["production"], "2": []}


def test_alias_is_moved_again_when_latest_moves_during_the_move_request_boundary(vertex_calls):
    newer = "ef" * 32
    vertex_calls.add_version(MODEL, newer)
    reads = iter([DIGEST, newer, newer, newer])

    result = register(PushConfig(), latest_digest=lambda: next(reads))

    assert result["alias_version"] == f"{MODEL}@1"
    assert [r.name for r in vertex_calls.of("merge_version_aliases")] == [
        f"{MODEL}@2",
        f"{MODEL}@1",
    ]
    assert vertex_calls.aliases(MODEL) == {"1": ["production"], "2": []}


def test_no_alias_configured_moves_none_request_boundary(vertex_calls):
    result = register(PushConfig(vertex_model_alias=""))

    assert result["alias_version"] is None
    assert vertex_calls.of("merge_version_aliases") == []


def test_oldest_model_of_the_display_name_is_the_parent_request_boundary(vertex_calls):
    vertex_calls.models[:] = [MODEL, "projects/P/locations/europe-west4/models/999"]
    vertex_calls.versions[MODEL] = []

    register(PushConfig())

    [(request, _)] = vertex_calls.of("upload_model")
    # The service lists in create_time order (asked for above); the first one is kept.
    assert request.parent_model == MODEL


def test_request_refuses_what_vertex_would_reject():
    with pytest.raises(ValueError, match="needs a gs:// artifact URI"):
        build_request(artifact_uri="/tmp/models/v000003/saved_model")
    with pytest.raises(ValueError, match="vertex_model_display_name is empty"):
        build_request(display_name=" ")
    with pytest.raises(ValueError, match="serving_image is empty"):
        build_request(serving_image="")
    with pytest.raises(ValueError, match="parent model 'models/1' is not projects/"):
        build_request(parent_model="models/1")
    with pytest.raises(ValueError, match="is not in europe-west4"):
        build_request(parent_model="projects/P/locations/us-central1/models/1")
    with pytest.raises(ValueError, match=r"push\.labels key 'Team'"):
        registry.check_labels({"Team": "vision"})
    with pytest.raises(ValueError, match=r"push\.labels\['team'\]: value 'Vision Group'"):
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


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("push.vertex_model_alias=Prod", "push.vertex_model_alias: .*'Prod'"),
        ("push.vertex_model_alias=default", "not 'default'"),
        ("push.vertex_parent_model=models/5", "push.vertex_parent_model: .*'models/5'"),
        ('push.vertex_model_display_name=a"b', "push.vertex_model_display_name"),
    ],
)
def test_registry_settings_are_checked_in_the_config(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


@pytest.fixture
def gcs_destination(tmp_path, monkeypatch):
    from gcs_emulator import running_emulator

    with running_emulator(tmp_path / "gcs") as server:
        server.client().create_bucket("petseg-models")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.endpoint)
        yield "gs://petseg-models/petseg"


def test_push_component_versions_one_registry_model_and_moves_the_alias_request_boundary(
    vertex_calls, gcs_destination, tmp_path
):
    from kfp import dsl
    from test_push_gcs import make_model_dir

    from components.ops.push import push

    settings = PushConfig(
        destination=gcs_destination,
        register_vertex=True,
        vertex_project="P",
        vertex_location="europe-west4",
    )

    def run_push(model_dir) -> dict:
        metrics = dsl.Metrics(uri=str(tmp_path / "metrics"), metadata={"mean_iou": 0.7})
        pushed = dsl.Artifact(uri=str(tmp_path / "pushed"))
        push.python_func(
            model=dsl.Model(uri=str(model_dir)),
            metrics=metrics,
            blessed=True,
            push_config=settings.model_dump_json(),
            pushed_model=pushed,
            run_id="run",
        )
        return dict(pushed.metadata)

    first_model = make_model_dir(tmp_path / "a", seed=1)
    first = run_push(first_model)
    second = run_push(make_model_dir(tmp_path / "b", seed=2))
    again = run_push(first_model)  # a retried push of the older model

    uploads = [request for request, _ in vertex_calls.of("upload_model")]
    assert [u.parent_model for u in uploads] == ["", MODEL]  # created once, then versioned
    assert uploads[1].model.artifact_uri == f"{gcs_destination}/versions/v000002/saved_model"
    assert (first["vertex_model_version"], second["vertex_model_version"]) == (
        f"{MODEL}@1",
        f"{MODEL}@2",
    )
    assert (again["version"], again["vertex_model_version"]) == ("v000001", f"{MODEL}@1")
    # The alias is where LATEST is (v000002), not on the version pushed last.
    assert again["vertex_alias_version"] == f"{MODEL}@2"
    assert vertex_calls.aliases(MODEL) == {"1": [], "2": ["production"]}
