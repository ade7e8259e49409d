"""Vertex AI submission at its request boundary: the exact CreatePipelineJob request.

The SDK's transport is replaced (PipelineServiceClient methods are patched), so
the tests see the request proto Vertex AI would receive and nothing leaves the
machine. Bad input must fail before any request: the tests assert nothing was sent.
"""

# No `from __future__ import annotations`: KFP reads the stand-in component's real types.
import argparse
import socket
from pathlib import Path

import pytest
from kfp import compiler, dsl

from components.platform.config import load_config
from pipelines.vertex import (
    CloudInputError,
    VertexSettings,
    build_pipeline_job,
    console_url,
    submit_pipeline_job,
    wait_for_pipeline_job,
)
from tests.cloudargs import CLOUD_READY

PROJECT = "petseg-test"
REGION = "europe-west4"
ROOT_URI = "gs://petseg-test-bucket/pipeline_root"
SERVICE_ACCOUNT = "pipelines@petseg-test.iam.gserviceaccount.com"
KMS_KEY = f"projects/{PROJECT}/locations/{REGION}/keyRings/petseg/cryptoKeys/pipelines"
NETWORK = "projects/123456789/global/networks/petseg-vpc"


# --- a stand-in pipeline: submission takes any compiled template -------------------------------


@dsl.component(base_image="petseg-cpu:test", install_kfp_package=False)
def echo_config(data_config: str, epochs: int) -> str:
    return f"{data_config} {epochs}"


def stand_in_pipeline(name: str = "petseg-standin", cache: bool = True):
    @dsl.pipeline(name=name)
    def pipeline(
        data_config: str = '{"dataset": "synthetic_pets"}',
        epochs: int = 2,
        learning_rate: float = 0.001,
        augment: bool = True,
    ):
        echo_config(data_config=data_config, epochs=epochs).set_caching_options(cache)

    return pipeline


def compile_stand_in(path: Path, name: str = "petseg-standin", cache: bool = True) -> str:
    compiler.Compiler().compile(stand_in_pipeline(name, cache), str(path))
    return str(path)


class StandInCompiler:
    """A compile_fn for the CLI: the config's name, caching off for scheduled runs."""

    def __init__(self):
        self.calls: list[dict] = []

    def __call__(self, config, output_path, *, target, scheduled=False) -> str:
        self.calls.append({"name": config.name, "target": target, "scheduled": scheduled})
        return compile_stand_in(Path(output_path), name=config.name, cache=not scheduled)


def cli_parser(compile_fn) -> argparse.ArgumentParser:
    """The main CLI's shape: a config parent parser and the cloud commands."""
    from pipelines.cloud_cli import add_cloud_commands

    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--preset")
    parent.add_argument("--config")
    parent.add_argument("--set", dest="overrides", action="append", default=[])
    parser = argparse.ArgumentParser(prog="petseg")
    commands = parser.add_subparsers(dest="command", required=True)
    add_cloud_commands(
        commands,
        parent=parent,
        config_loader=lambda args: load_config(args.preset, args.config, args.overrides),
        compile_fn=compile_fn,
    )
    return parser


def run_cli(compile_fn, *argv: str) -> int:
    args = cli_parser(compile_fn).parse_args(list(argv))
    return args.handler(args)


# --- the transport --------------------------------------------------------------------------


def block_internet(monkeypatch) -> None:
    """Python sockets may reach 127.0.0.1 only."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise AssertionError(f"test tried to reach {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


class VertexTransport:
    """Records what would go to Vertex AI and answers like it."""

    def __init__(self):
        self.created: list[dict] = []
        self.buckets: list[dict] = []
        self.states: list[str] = []
        self.polls = 0
        self.error_message = ""


@pytest.fixture
def vertex(monkeypatch):
    from google.auth import credentials as auth_credentials
    from google.cloud import aiplatform_v1
    from google.cloud.aiplatform.utils import gcs_utils

    block_internet(monkeypatch)
    transport = VertexTransport()

    def create_pipeline_job(self, *, parent, pipeline_job, pipeline_job_id, timeout=None, **_):
        transport.created.append(
            {"parent": parent, "pipeline_job": pipeline_job, "pipeline_job_id": pipeline_job_id}
        )
        created = aiplatform_v1.PipelineJob(pipeline_job)
        created.name = f"{parent}/pipelineJobs/{pipeline_job_id}"
        created.state = aiplatform_v1.PipelineState.PIPELINE_STATE_PENDING
        return created

    def get_pipeline_job(self, *, name, **_):
        transport.polls += 1
        state = transport.states.pop(0) if transport.states else "PIPELINE_STATE_RUNNING"
        job = aiplatform_v1.PipelineJob(name=name, state=aiplatform_v1.PipelineState[state])
        if state == "PIPELINE_STATE_FAILED":
            job.error.message = transport.error_message
        return job

    monkeypatch.setattr(
        aiplatform_v1.PipelineServiceClient, "create_pipeline_job", create_pipeline_job
    )
    monkeypatch.setattr(aiplatform_v1.PipelineServiceClient, "get_pipeline_job", get_pipeline_job)
    # PipelineJob.submit checks (and may create) the root's bucket: record it instead.
    monkeypatch.setattr(
        gcs_utils,
        "create_gcs_bucket_for_pipeline_artifacts_if_it_does_not_exist",
        lambda **kwargs: transport.buckets.append(kwargs),
    )
    # Application Default Credentials, as the CLI uses them, without a real account.
    monkeypatch.setattr(
        "google.auth.default",
        lambda *args, **kwargs: (auth_credentials.AnonymousCredentials(), PROJECT),
    )
    return transport


@pytest.fixture
def template(tmp_path) -> str:
    return compile_stand_in(tmp_path / "standin.yaml")


def full_settings(**changes) -> VertexSettings:
    values = {
        "project": PROJECT,
        "region": REGION,
        "pipeline_root": ROOT_URI,
        "service_account": SERVICE_ACCOUNT,
        "labels": {"team": "vision", "env": "dev"},
        "enable_caching": False,
        "encryption_key": KMS_KEY,
        "network": NETWORK,
    }
    values.update(changes)
    return VertexSettings(**values)


# --- tests ------------------------------------------------------------------------------------


def test_submit_boundary_sends_the_exact_pipeline_job(vertex, template, capsys):
    job = submit_pipeline_job(
        template,
        full_settings(),
        parameter_values={"epochs": "5", "learning_rate": "0.01", "augment": "false"},
        display_name="weekly retrain",
        job_id="petseg-standin-20250101000000",
    )

    (request,) = vertex.created
    assert request["parent"] == f"projects/{PROJECT}/locations/{REGION}"
    assert request["pipeline_job_id"] == "petseg-standin-20250101000000"
    sent = request["pipeline_job"]
    assert sent.display_name == "weekly retrain"
    assert sent.service_account == SERVICE_ACCOUNT
    assert sent.network == NETWORK
    assert dict(sent.labels) == {"team": "vision", "env": "dev"}
    assert sent.encryption_spec.kms_key_name == KMS_KEY
    assert sent.runtime_config.gcs_output_directory == ROOT_URI
    # Command-line strings arrive typed as the template declares them.
    assert dict(sent.runtime_config.parameter_values) == {
        "epochs": 5,
        "learning_rate": 0.01,
        "augment": False,
    }
    spec = dict(sent.pipeline_spec)
    assert spec["pipelineInfo"]["name"] == "petseg-standin"
    # --no-cache turns caching off for every task, whatever was compiled.
    assert {
        name: task["cachingOptions"].get("enableCache", False)
        for name, task in spec["root"]["dag"]["tasks"].items()
    } == {"echo-config": False}
    assert vertex.buckets[0]["output_artifacts_gcs_dir"] == ROOT_URI

    out = capsys.readouterr().out
    url = console_url(PROJECT, REGION, "petseg-standin-20250101000000")
    assert url in out
    assert url == (
        "https://console.cloud.google.com/vertex-ai/locations/europe-west4/pipelines/runs/"
        "petseg-standin-20250101000000?project=petseg-test"
    )
    assert job.resource_name.endswith("/pipelineJobs/petseg-standin-20250101000000")


def test_submit_boundary_minimal_settings_keep_compiled_defaults(vertex, template):
    submit_pipeline_job(
        template, VertexSettings(project=PROJECT, region=REGION, pipeline_root=ROOT_URI)
    )
    (request,) = vertex.created
    sent = request["pipeline_job"]
    assert request["pipeline_job_id"].startswith("petseg-standin-")
    assert sent.display_name == "petseg-standin"
    assert sent.service_account == ""
    assert sent.network == ""
    assert dict(sent.labels) == {}
    assert sent.encryption_spec.kms_key_name == ""
    assert dict(sent.runtime_config.parameter_values) == {}
    spec = dict(sent.pipeline_spec)
    assert spec["root"]["dag"]["tasks"]["echo-config"]["cachingOptions"]["enableCache"] is True


def test_submit_boundary_sends_no_credentials(vertex, template, capsys):
    from google.oauth2 import credentials as oauth_credentials

    secret = "ya29.not-a-real-token-but-secret"
    submit_pipeline_job(
        template,
        full_settings(),
        credentials=oauth_credentials.Credentials(token=secret),
        job_id="petseg-standin-1",
    )
    (request,) = vertex.created
    serialized = type(request["pipeline_job"]).to_json(request["pipeline_job"])
    captured = capsys.readouterr()
    assert secret not in serialized
    assert secret not in captured.out + captured.err


BAD_SETTINGS = [
    ({"project": None}, "--project is required"),
    ({"project": "My_Project"}, "is not a project id"),
    ({"region": ""}, "--region is required"),
    ({"region": "europe west4"}, "is not a region"),
    ({"pipeline_root": None}, "--pipeline-root is required"),
    ({"pipeline_root": "/tmp/pipeline_root"}, "must be a gs:// path"),
    ({"pipeline_root": "s3://bucket/root"}, "must be a gs:// path"),
    ({"labels": {"Team": "vision"}}, "key 'Team'"),
    ({"labels": {"team": "Vision Team"}}, "value 'Vision Team'"),
    ({"service_account": "pipelines"}, "--service-account"),
    ({"encryption_key": "my-key"}, "is not a Cloud KMS key name"),
    (
        {"encryption_key": KMS_KEY.replace(REGION, "us-central1")},
        "Vertex AI needs a key in the run's region",
    ),
    ({"network": "petseg-vpc"}, "--network"),
]


@pytest.mark.parametrize(("changes", "message"), BAD_SETTINGS)
def test_submit_boundary_rejects_bad_settings_before_sending(vertex, template, changes, message):
    with pytest.raises(CloudInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        submit_pipeline_job(template, full_settings(**changes))
    assert vertex.created == []
    assert vertex.buckets == []


def test_submit_boundary_reports_every_problem_at_once(vertex, template):
    with pytest.raises(CloudInputError) as raised:
        submit_pipeline_job(
            template, VertexSettings(project=None, region=None, pipeline_root="/local")
        )
    message = str(raised.value)
    assert "--project" in message and "--region" in message and "--pipeline-root" in message
    assert vertex.created == []


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"epochs": "five"}, "epochs='five' is not a valid NUMBER_INTEGER"),
        ({"augment": "maybe"}, "is not a valid BOOLEAN"),
        ({"batch": "3"}, "has no parameter batch"),
    ],
)
def test_submit_boundary_rejects_bad_parameters_before_sending(
    vertex, template, parameters, message
):
    with pytest.raises(CloudInputError, match=message):
        submit_pipeline_job(template, full_settings(), parameter_values=parameters)
    assert vertex.created == []


def test_submit_boundary_rejects_a_file_that_is_not_a_pipeline(vertex, tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(CloudInputError, match="does not exist"):
        submit_pipeline_job(missing, full_settings())
    not_pipeline = tmp_path / "config.yaml"
    not_pipeline.write_text("training:\n  epochs: 3\n")
    with pytest.raises(CloudInputError, match="is not a compiled KFP pipeline"):
        submit_pipeline_job(not_pipeline, full_settings())
    assert vertex.created == []


def test_build_pipeline_job_sends_nothing(vertex, template):
    job = build_pipeline_job(template, full_settings(), job_id="petseg-standin-2")
    assert job.job_id == "petseg-standin-2"
    assert vertex.created == []


def test_wait_boundary_follows_states_until_the_run_ends(vertex, template):
    job = submit_pipeline_job(template, full_settings(), job_id="petseg-standin-3")
    vertex.states = [
        "PIPELINE_STATE_RUNNING",
        "PIPELINE_STATE_RUNNING",
        "PIPELINE_STATE_FAILED",
    ]
    vertex.error_message = "train: out of memory"
    lines: list[str] = []
    sleeps: list[float] = []
    state = wait_for_pipeline_job(job, poll_seconds=7, sleep=sleeps.append, echo=lines.append)
    assert state == "PIPELINE_STATE_FAILED"
    assert vertex.polls == 3
    assert sleeps == [7, 7]
    # One line per state change (time first), then the run's error.
    assert [line.split(" ", 1)[1] for line in lines[:2]] == [
        "petseg-standin-3: PIPELINE_STATE_RUNNING",
        "petseg-standin-3: PIPELINE_STATE_FAILED",
    ]
    assert lines[2:] == ["error: train: out of memory"]


# --- through the CLI ------------------------------------------------------------------------


def test_cli_submit_boundary_compiles_the_config_and_sends_the_job(vertex, capsys):
    compile_fn = StandInCompiler()
    status = run_cli(
        compile_fn,
        "submit", "--target", "vertex", "--preset", "demo", *CLOUD_READY,
        "--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI,
        "--service-account", SERVICE_ACCOUNT, "--labels", "team=vision,env=dev",
        "--no-cache", "--encryption-key", KMS_KEY, "--network", NETWORK,
        "--param", "epochs=9", "--display-name", "demo run",
    )  # fmt: skip
    assert status == 0
    assert compile_fn.calls == [{"name": "petseg-demo", "target": "vertex", "scheduled": False}]
    (request,) = vertex.created
    sent = request["pipeline_job"]
    assert sent.display_name == "demo run"
    assert dict(sent.pipeline_spec)["pipelineInfo"]["name"] == "petseg-demo"
    assert dict(sent.labels) == {"team": "vision", "env": "dev"}
    assert dict(sent.runtime_config.parameter_values) == {"epochs": 9}
    assert sent.service_account == SERVICE_ACCOUNT
    assert "console.cloud.google.com/vertex-ai/locations/europe-west4" in capsys.readouterr().out


def test_cli_submit_boundary_wait_exits_non_zero_on_failure(vertex, capsys):
    vertex.states = ["PIPELINE_STATE_RUNNING", "PIPELINE_STATE_FAILED"]
    status = run_cli(
        StandInCompiler(),
        "submit", "--target", "vertex", "--project", PROJECT, "--region", REGION,
        "--pipeline-root", ROOT_URI, "--wait", "--poll-seconds", "0.001", *CLOUD_READY,
    )  # fmt: skip
    assert status == 1
    out = capsys.readouterr().out
    assert "PIPELINE_STATE_RUNNING" in out and "PIPELINE_STATE_FAILED" in out


def test_cli_submit_boundary_wait_exits_zero_on_success(vertex):
    vertex.states = ["PIPELINE_STATE_SUCCEEDED"]
    status = run_cli(
        StandInCompiler(),
        "submit", "--target", "vertex", "--project", PROJECT, "--region", REGION,
        "--pipeline-root", ROOT_URI, "--wait", "--poll-seconds", "0.001", *CLOUD_READY,
    )  # fmt: skip
    assert status == 0
    assert vertex.polls == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--region", REGION, "--pipeline-root", ROOT_URI), "--project is required"),
        (
            ("--project", PROJECT, "--region", REGION, "--pipeline-root", "petseg/root"),
            "must be a gs:// path",
        ),
        (
            ("--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI,
             "--host", "http://127.0.0.1:8080"),
            "--host does not apply to --target vertex",
        ),
        (
            ("--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI,
             "--labels", "team"),
            "'team' is not key=value",
        ),
        (
            ("--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI,
             "--param", "epochs"),
            "is not NAME=VALUE",
        ),
    ],
)  # fmt: skip
def test_cli_submit_boundary_rejects_bad_input_before_compiling(vertex, capsys, argv, message):
    compile_fn = StandInCompiler()
    status = run_cli(compile_fn, "submit", "--target", "vertex", *argv)
    assert status == 2
    assert message in capsys.readouterr().err
    assert compile_fn.calls == []
    assert vertex.created == []


def test_cli_submit_rejects_an_unknown_target(vertex, capsys):
    with pytest.raises(SystemExit) as raised:
        run_cli(StandInCompiler(), "submit", "--target", "sagemaker", "--project", PROJECT)
    assert raised.value.code == 2
    assert "invalid choice: 'sagemaker'" in capsys.readouterr().err
    assert vertex.created == []


def test_cli_submit_boundary_with_the_real_pipeline(vertex, tmp_path):
    """The lead's CLI and pipeline: what `petseg submit` sends for the demo preset."""
    cli = pytest.importorskip("pipelines.cli")
    status = cli.main(
        [
            "submit", "--target", "vertex", "--preset", "demo", *CLOUD_READY,
            "--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI,
        ]
    )  # fmt: skip
    assert status == 0
    (request,) = vertex.created
    spec = dict(request["pipeline_job"].pipeline_spec)
    assert spec["pipelineInfo"]["name"] == "petseg-demo"
    assert "train" in spec["root"]["dag"]["tasks"]
    demo = load_config("demo")
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["epochs"] == {
        "parameterType": "NUMBER_INTEGER",
        "defaultValue": demo.training.epochs,
        "isOptional": True,
    }
    assert parameters["batch_size"]["defaultValue"] == demo.training.batch_size


def test_cli_submit_boundary_sends_a_given_template(vertex, tmp_path):
    template = compile_stand_in(tmp_path / "given.yaml", name="petseg-given")
    compile_fn = StandInCompiler()
    location = ("--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI)
    status = run_cli(compile_fn, "submit", "--target", "vertex", *location, "--template", template)
    assert status == 0
    assert compile_fn.calls == []
    (request,) = vertex.created
    assert dict(request["pipeline_job"].pipeline_spec)["pipelineInfo"]["name"] == "petseg-given"


def test_cli_submit_refuses_config_options_with_a_template(vertex, tmp_path, capsys):
    template = compile_stand_in(tmp_path / "given.yaml")
    location = ("--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI)
    status = run_cli(
        StandInCompiler(),
        "submit", "--target", "vertex", *location, "--template", template, "--preset", "demo",
    )  # fmt: skip
    assert status == 2
    assert "--template is already compiled; --preset would be ignored" in capsys.readouterr().err
    assert vertex.created == []


def test_submit_boundary_refuses_the_laptop_demo_before_sending(vertex, capsys):
    compile_fn = StandInCompiler()
    status = run_cli(
        compile_fn,
        "submit", "--target", "vertex", "--preset", "demo",
        "--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI,
    )  # fmt: skip
    assert status == 2
    assert vertex.created == [] and compile_fn.calls == []
    err = capsys.readouterr().err
    assert "runtime.cpu_image" in err and "push.destination" in err


# --- run-time parameters of the real pipeline ------------------------------------------------

REAL_LOCATION = ("--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI)


def test_cli_submit_boundary_sends_typed_run_time_values(vertex):
    cli = pytest.importorskip("pipelines.cli")
    status = cli.main(
        [
            "submit", "--target", "vertex", "--preset", "demo", *CLOUD_READY, *REAL_LOCATION,
            "--param", "epochs=30", "--param", "learning_rate=0.01",
            "--param", "push_destination=gs://petseg-test-models/runtime",
            "--param", "data_version=",
        ]
    )  # fmt: skip
    assert status == 0
    (request,) = vertex.created
    sent = request["pipeline_job"]
    assert dict(sent.runtime_config.parameter_values) == {
        "epochs": 30,
        "learning_rate": 0.01,
        "push_destination": "gs://petseg-test-models/runtime",
        "data_version": "",
    }
    # Numbers travel as numbers, not text the pipeline would have to parse.
    values = type(sent.runtime_config).pb(sent.runtime_config).parameter_values
    assert values["epochs"].WhichOneof("kind") == "number_value"
    assert values["learning_rate"].number_value == 0.01
    # The typed parameters the run fills in, with the compiled values as defaults.
    parameters = dict(sent.pipeline_spec)["root"]["inputDefinitions"]["parameters"]
    assert parameters["epochs"]["parameterType"] == "NUMBER_INTEGER"
    assert parameters["batch_size"]["defaultValue"] == 16


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("epochs=0", "training.epochs: Input should be greater than or equal to 1 (got 0)"),
        ("epochs=three", "epochs='three' (training.epochs) is not an int"),
        ("min_mean_iou=1.5", "evaluation.min_mean_iou"),
        ("image_size=64", "unknown run-time parameter 'image_size'"),
        ("push_destination=models", "push.destination 'models' is a relative local path"),
        ("data_path=pets", "data.path 'pets' is a relative local path"),
    ],
)
def test_cli_submit_boundary_refuses_bad_run_time_values_before_sending(
    vertex, capsys, param, message
):
    cli = pytest.importorskip("pipelines.cli")
    status = cli.main(
        ["submit", "--target", "vertex", "--preset", "demo", *CLOUD_READY, *REAL_LOCATION,
         "--param", param]
    )  # fmt: skip
    assert status == 2
    assert message in capsys.readouterr().err
    assert vertex.created == []


def test_cli_submit_boundary_checks_run_time_values_against_a_given_template(
    vertex, tmp_path, capsys
):
    cli = pytest.importorskip("pipelines.cli")
    template = tmp_path / "petseg.yaml"
    assert cli.main(["compile", "--preset", "demo", *CLOUD_READY, "-o", str(template)]) == 0
    submit = ["submit", "--target", "vertex", *REAL_LOCATION, "--template", str(template)]

    assert cli.main([*submit, "--param", "batch_size=-1"]) == 2
    assert "training.batch_size" in capsys.readouterr().err
    assert vertex.created == []

    assert cli.main([*submit, "--param", "batch_size=8"]) == 0
    (request,) = vertex.created
    assert dict(request["pipeline_job"].runtime_config.parameter_values) == {"batch_size": 8}
