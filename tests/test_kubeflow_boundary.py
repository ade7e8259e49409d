"""Kubeflow submission at its request boundary: the JSON kfp.Client sends to the KFP API.

A small HTTP server on 127.0.0.1 answers the KFP v2beta1 REST API and records
every request, so the tests see exactly what a cluster would receive (method,
path, query, body) through the real kfp.Client. Bad input must fail before any
request: the tests assert the server saw nothing.
"""

# No `from __future__ import annotations`: KFP reads the stand-in component's real types.
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from kfp import compiler, dsl

from components.platform.config import RuntimeConfig
from pipelines.kubeflow import (
    CloudInputError,
    KubeflowSettings,
    apply_kubernetes_gpu_scheduling,
    connect,
    run_url,
    submit_run,
    wait_for_run,
)
from tests.cloudargs import CLOUD_READY
from tests.test_vertex_boundary import (
    StandInCompiler,
    block_internet,
    compile_stand_in,
    run_cli,
)

API = "/apis/v2beta1"


class FakeKubeflow:
    """The part of the KFP v2beta1 API that submission and schedules use."""

    def __init__(self):
        self.requests: list[dict] = []
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.run_states: list[str] = []
        self.recurring_runs: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.server.shutdown()
        self.server.server_close()

    def sent(self, method: str, path_prefix: str = "") -> list[dict]:
        """Requests other than the client's own health and experiment lookups."""
        return [
            request
            for request in self.requests
            if request["method"] == method and request["path"].startswith(API + path_prefix)
        ]

    def writes(self) -> list[dict]:
        return [request for request in self.requests if request["method"] != "GET"]

    # --- routes -------------------------------------------------------------------------------

    def answer(self, method: str, path: str, query: dict, body) -> tuple[int, dict]:
        if path == f"{API}/healthz":
            return 200, {"multi_user": False}
        if path == f"{API}/experiments" and method == "GET":
            wanted = None
            if "filter" in query:
                predicate = json.loads(query["filter"][0])["predicates"][0]
                wanted = predicate["stringValue"]
            found = [
                experiment
                for experiment in self.experiments.values()
                if wanted is None or experiment["display_name"] == wanted
            ]
            return 200, {"experiments": found, "total_size": len(found)}
        if path == f"{API}/experiments" and method == "POST":
            experiment = {**body, "experiment_id": f"experiment-{len(self.experiments) + 1}"}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if path == f"{API}/runs" and method == "POST":
            run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING"}
            self.runs[run["run_id"]] = run
            return 200, run
        if path.startswith(f"{API}/runs/") and method == "GET":
            run = dict(self.runs[path.rsplit("/", 1)[1]])
            if self.run_states:
                run["state"] = self.run_states.pop(0)
            if run["state"] == "FAILED":
                run["error"] = {"code": 2, "message": "train: out of memory"}
            return 200, run
        if path == f"{API}/recurringruns" and method == "POST":
            created = {**body, "recurring_run_id": str(uuid.uuid4()), "status": "ENABLED"}
            self.recurring_runs[created["recurring_run_id"]] = created
            return 200, created
        if path == f"{API}/recurringruns" and method == "GET":
            found = list(self.recurring_runs.values())
            if "filter" in query:
                predicate = json.loads(query["filter"][0])["predicates"][0]
                found = [run for run in found if run["display_name"] == predicate["stringValue"]]
            if "experiment_id" in query:
                found = [run for run in found if run["experiment_id"] == query["experiment_id"][0]]
            return 200, {"recurringRuns": found, "total_size": len(found)}
        if path.startswith(f"{API}/recurringruns/"):
            target = path.rsplit("/", 1)[1]
            run_id, _, verb = target.partition(":")
            if run_id not in self.recurring_runs:
                return 404, {"error": f"recurring run {run_id} not found", "code": 5}
            if method == "DELETE":
                del self.recurring_runs[run_id]
            elif verb in ("enable", "disable"):
                self.recurring_runs[run_id]["status"] = verb.upper() + "D"
            return 200, {}
        return 404, {"error": f"no route {method} {path}", "code": 5}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                parsed = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                query = parse_qs(parsed.query)
                with fake.lock:
                    fake.requests.append(
                        {
                            "method": self.command,
                            "path": parsed.path,
                            "query": query,
                            "body": body,
                            "authorization": self.headers.get("Authorization"),
                        }
                    )
                    status, payload = fake.answer(self.command, parsed.path, query, body)
                encoded = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(encoded)))
                self.end_headers()
                self.wfile.write(encoded)

            do_GET = do_POST = do_DELETE = _serve

            def log_message(self, *_):
                pass

        return Handler


@pytest.fixture
def kubeflow(monkeypatch, tmp_path):
    import kfp

    block_internet(monkeypatch)
    # The client reads ~/.config/kfp/context.json: keep a developer's own out of the test.
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    for variable in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    with FakeKubeflow() as fake:
        yield fake


@pytest.fixture
def template(tmp_path) -> str:
    return compile_stand_in(tmp_path / "standin.yaml")


def settings(kubeflow, **changes) -> KubeflowSettings:
    values = {
        "host": kubeflow.host,
        "namespace": "team-vision",
        "experiment": "petseg-nightly",
        "pipeline_root": "gs://petseg-test-bucket/kfp",
        "service_account": "pipeline-runner",
        "enable_caching": False,
    }
    values.update(changes)
    return KubeflowSettings(**values)


def test_submit_boundary_sends_the_exact_run(kubeflow, template, capsys):
    run_id = submit_run(
        template,
        settings(kubeflow),
        parameter_values={"epochs": "4", "augment": "false"},
        run_name="petseg nightly",
    )

    # The experiment is looked up by name in the namespace, then created.
    lookup = kubeflow.sent("GET", "/experiments")[0]
    assert json.loads(lookup["query"]["filter"][0])["predicates"][0]["stringValue"] == (
        "petseg-nightly"
    )
    assert lookup["query"]["namespace"] == ["team-vision"]
    (create_experiment,) = kubeflow.sent("POST", "/experiments")
    assert create_experiment["body"] == {
        "display_name": "petseg-nightly",
        "namespace": "team-vision",
    }

    (create_run,) = kubeflow.sent("POST", "/runs")
    body = create_run["body"]
    assert body["display_name"] == "petseg nightly"
    assert body["experiment_id"] == "experiment-1"
    assert body["service_account"] == "pipeline-runner"
    assert body["runtime_config"] == {
        "pipeline_root": "gs://petseg-test-bucket/kfp",
        "parameters": {"epochs": 4, "augment": False},
    }
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "petseg-standin"
    tasks = body["pipeline_spec"]["root"]["dag"]["tasks"]
    assert tasks["echo-config"]["cachingOptions"].get("enableCache", False) is False
    assert run_id == kubeflow.runs[run_id]["run_id"]
    assert run_url(kubeflow.host, run_id) in capsys.readouterr().out


def test_submit_boundary_reuses_an_existing_experiment(kubeflow, template):
    kubeflow.experiments["experiment-7"] = {
        "experiment_id": "experiment-7",
        "display_name": "petseg",
    }
    submit_run(template, KubeflowSettings(host=kubeflow.host))
    assert kubeflow.sent("POST", "/experiments") == []
    (create_run,) = kubeflow.sent("POST", "/runs")
    body = create_run["body"]
    assert body["experiment_id"] == "experiment-7"
    assert body["runtime_config"] == {"parameters": {}}
    # Caching as compiled when no switch is given.
    tasks = body["pipeline_spec"]["root"]["dag"]["tasks"]
    assert tasks["echo-config"]["cachingOptions"]["enableCache"] is True
    assert "service_account" not in body


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"host": None}, "--host is required"),
        ({"host": "ml-pipeline:8888"}, "must be an http:// or https:// URL"),
        ({"namespace": "Team_Vision"}, "is not a Kubernetes namespace"),
        ({"pipeline_root": "/mnt/artifacts"}, "must start with one of gs://, s3://, minio://"),
        ({"experiment": " "}, "--experiment must not be empty"),
        ({"service_account": "Pipeline Runner"}, "is not a Kubernetes service account"),
    ],
)
def test_submit_boundary_rejects_bad_settings_before_sending(kubeflow, template, changes, message):
    with pytest.raises(CloudInputError, match=message):
        submit_run(template, settings(kubeflow, **changes))
    assert kubeflow.requests == []


def test_submit_boundary_rejects_unknown_parameters_before_sending(kubeflow, template):
    with pytest.raises(CloudInputError, match="has no parameter batch_size"):
        submit_run(template, settings(kubeflow), parameter_values={"batch_size": "8"})
    assert kubeflow.requests == []


def test_wait_boundary_follows_states_until_the_run_ends(kubeflow, template):
    client = connect(settings(kubeflow))
    run_id = submit_run(template, settings(kubeflow), client=client)
    kubeflow.run_states = ["RUNNING", "RUNNING", "FAILED"]
    lines, sleeps = [], []
    state = wait_for_run(client, run_id, poll_seconds=3, sleep=sleeps.append, echo=lines.append)
    assert state == "FAILED"
    assert sleeps == [3, 3]
    assert [line.split(" ", 1)[1] for line in lines[:2]] == [
        f"{run_id}: RUNNING",
        f"{run_id}: FAILED",
    ]
    assert lines[2:] == ["error: train: out of memory"]
    assert len(kubeflow.sent("GET", f"/runs/{run_id}")) == 3


def test_cli_submit_boundary_to_kubeflow(kubeflow, capsys):
    kubeflow.run_states = ["RUNNING", "SUCCEEDED"]
    compile_fn = StandInCompiler()
    status = run_cli(
        compile_fn,
        "submit", "--target", "kubeflow", "--preset", "demo", *CLOUD_READY, "--host", kubeflow.host,
        "--namespace", "team-vision", "--experiment", "demo", "--enable-caching",
        "--pipeline-root", "minio://mlpipeline/v2/artifacts", "--wait", "--poll-seconds", "0.001",
    )  # fmt: skip
    assert status == 0
    assert compile_fn.calls == [{"name": "petseg-demo", "target": "kubeflow", "scheduled": False}]
    (create_run,) = kubeflow.sent("POST", "/runs")
    body = create_run["body"]
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "petseg-demo"
    assert body["runtime_config"]["pipeline_root"] == "minio://mlpipeline/v2/artifacts"
    tasks = body["pipeline_spec"]["root"]["dag"]["tasks"]
    assert tasks["echo-config"]["cachingOptions"]["enableCache"] is True
    out = capsys.readouterr().out
    assert "RUNNING" in out and "SUCCEEDED" in out


def test_cli_submit_boundary_kubeflow_failure_exits_non_zero(kubeflow):
    kubeflow.run_states = ["FAILED"]
    status = run_cli(
        StandInCompiler(),
        "submit", "--target", "kubeflow", "--host", kubeflow.host, "--wait", *CLOUD_READY,
        "--poll-seconds", "0.001",
    )  # fmt: skip
    assert status == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ((), "--host is required"),
        (("--host", "{host}", "--project", "petseg-test"), "--project does not apply"),
        (
            ("--host", "{host}", "--labels", "a=b", "--network", "x"),
            "--labels, --network do not apply to --target kubeflow",
        ),
        (("--host", "{host}", "--pipeline-root", "/data"), "must start with one of"),
    ],
)
def test_cli_submit_boundary_kubeflow_rejects_bad_input(kubeflow, capsys, argv, message):
    compile_fn = StandInCompiler()
    argv = [item.format(host=kubeflow.host) for item in argv]
    status = run_cli(compile_fn, "submit", "--target", "kubeflow", *argv)
    assert status == 2
    assert message in capsys.readouterr().err
    assert compile_fn.calls == []
    assert kubeflow.requests == []


# --- GPU scheduling on Kubernetes ------------------------------------------------------------


@dsl.component(base_image="petseg-gpu:test", install_kfp_package=False)
def gpu_step() -> str:
    return "trained"


def compile_with_scheduling(tmp_path, runtime: RuntimeConfig) -> list[dict]:
    @dsl.pipeline(name="gpu-scheduling")
    def pipeline():
        task = gpu_step()
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
        apply_kubernetes_gpu_scheduling(task, runtime)

    path = tmp_path / "gpu.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_gpu_scheduling_adds_node_selector_and_tolerations(tmp_path):
    runtime = RuntimeConfig(
        gpu_node_selector={"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
        gpu_tolerations=[
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "dedicated", "value": "ml", "effect": "NoExecute", "toleration_seconds": "60"},
        ],
    )
    spec, platform = compile_with_scheduling(tmp_path, runtime)
    executor = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-gpu-step"]
    assert executor["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-tesla-t4"
    }
    assert executor["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {
            "key": "dedicated",
            "operator": "Equal",
            "value": "ml",
            "effect": "NoExecute",
            "tolerationSeconds": "60",
        },
    ]
    resources = spec["deploymentSpec"]["executors"]["exec-gpu-step"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"


def test_gpu_scheduling_without_settings_adds_no_platform_spec(tmp_path):
    documents = compile_with_scheduling(tmp_path, RuntimeConfig())
    assert len(documents) == 1


@pytest.mark.parametrize(
    ("toleration", "message"),
    [
        ({"key": "gpu", "operator": "Maybe"}, "operator 'Maybe'"),
        ({"key": "gpu", "effect": "NoRun"}, "effect 'NoRun'"),
        ({"key": "gpu", "taint": "x"}, "unknown key taint"),
        ({"key": "gpu", "operator": "Exists", "value": "x"}, "'Exists' takes no value"),
        ({"key": "gpu", "effect": "NoExecute", "toleration_seconds": "soon"}, "whole number"),
        ({"key": "gpu", "effect": "NoSchedule", "toleration_seconds": "5"}, "only applies to"),
    ],
)
def test_gpu_scheduling_rejects_bad_tolerations(tmp_path, toleration, message):
    runtime = RuntimeConfig(gpu_tolerations=[toleration])
    with pytest.raises(CloudInputError, match=r"runtime\.gpu_tolerations\[0\]: .*" + message):
        compile_with_scheduling(tmp_path, runtime)


def test_submit_boundary_sends_the_kubernetes_gpu_scheduling(kubeflow, tmp_path):
    runtime = RuntimeConfig(
        gpu_node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"},
        gpu_tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    compile_with_scheduling(tmp_path, runtime)
    submit_run(tmp_path / "gpu.yaml", KubeflowSettings(host=kubeflow.host))
    (create_run,) = kubeflow.sent("POST", "/runs")
    sent = create_run["body"]["pipeline_spec"]
    assert sent["pipeline_spec"]["pipelineInfo"]["name"] == "gpu-scheduling"
    executor = sent["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executor["exec-gpu-step"]["nodeSelector"]["labels"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4"
    }


def test_cli_submit_boundary_to_kubeflow_sends_typed_run_time_values(kubeflow, capsys):
    from pipelines.cli import main

    status = main(
        [
            "submit", "--target", "kubeflow", "--preset", "demo", *CLOUD_READY,
            "--host", kubeflow.host, "--param", "epochs=5", "--param", "learning_rate=0.0005",
            "--param", "push_destination=gs://petseg-test-models/kf",
        ]
    )  # fmt: skip
    assert status == 0
    (create_run,) = kubeflow.sent("POST", "/runs")
    assert create_run["body"]["runtime_config"]["parameters"] == {
        "epochs": 5,
        "learning_rate": 0.0005,
        "push_destination": "gs://petseg-test-models/kf",
    }


def test_cli_submit_to_kubeflow_refuses_a_bad_run_time_value_before_sending(kubeflow, capsys):
    from pipelines.cli import main

    status = main(
        ["submit", "--target", "kubeflow", "--preset", "demo", *CLOUD_READY,
         "--host", kubeflow.host, "--param", "learning_rate=0"]
    )  # fmt: skip
    assert status == 2
    assert "training.learning_rate" in capsys.readouterr().err
    assert kubeflow.sent("POST", "/runs") == []
