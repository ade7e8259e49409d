"""The end-of-run report: exit handler wiring, the webhook over real HTTP, the secret kept out."""

from __future__ import annotations

import base64
import http.server
import json
import threading

import pytest
import yaml

from components.platform import notify
from components.platform.config import ConfigError, NotifyConfig, load_config
from components.platform.notify import RunStatus
from pipelines.local import run_local
from pipelines.segmentation import compile_pipeline

# A URL with a token, as chat webhooks have; it must never show up in the spec or a log.
TOKEN = "T0KEN-9f8e7d6c5b4a"
ENV = "PETSEG_TEST_WEBHOOK_URL"
SECRET = "projects/p/secrets/petseg-webhook/versions/latest"
SMALL = [
    "data.synthetic_train_size=24",
    "data.synthetic_test_size=8",
    "data.synthetic_image_size=64",
    "model.image_size=64",
    "training.epochs=1",
    "training.batch_size=8",
]


class Webhook:
    """A real HTTP server on loopback that records every JSON body posted to it."""

    def __init__(self, status: int = 200):
        self.received: list[dict] = []
        self.paths: list[str] = []
        webhook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                webhook.received.append(json.loads(body))
                webhook.paths.append(self.path)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/{TOKEN}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_report_names_the_failed_tasks_and_the_error_line():
    message = (
        "The DAG failed because some tasks failed. The failed tasks are: [train].\n"
        "Job (project_id = p, job_id = 1) is failed due to the above error."
    )
    report = notify.run_report(RunStatus(
        state="FAILED", pipeline_job="projects/p/locations/r/pipelineJobs/j",
        task_name="exit-handler-1", error_message=message, run_name="weekly",
    ))  # fmt: skip
    assert report["failed_tasks"] == ["train"]
    assert report["error"] == message.splitlines()[0]
    assert report["text"].startswith("petseg run weekly failed in train: The DAG failed")
    ok = notify.run_report(RunStatus(state="SUCCEEDED", pipeline_job="j", task_name="t"))
    assert (ok["succeeded"], ok["failed_tasks"], ok["text"]) == (True, [], "petseg run j succeeded")


def test_webhook_receives_the_report_and_errors_never_show_the_url(monkeypatch):
    settings = NotifyConfig(webhook_url_env=ENV)
    report = notify.run_report(RunStatus(state="FAILED", pipeline_job="j", error_message="x"))
    with Webhook() as hook:
        monkeypatch.setenv(ENV, hook.url)
        assert notify.send(settings, report) == 200
    assert hook.received == [report] and hook.paths == [f"/hooks/{TOKEN}"]

    with Webhook(status=500) as failing:
        monkeypatch.setenv(ENV, failing.url)
        with pytest.raises(notify.NotifyError) as error:
            notify.send(settings, report)
    assert str(error.value) == "the webhook answered HTTP 500" and TOKEN not in str(error.value)
    # The server is gone now: connection refused.
    with pytest.raises(notify.NotifyError, match="could not be reached") as error:
        notify.send(settings, report)
    assert TOKEN not in str(error.value)
    monkeypatch.delenv(ENV)
    with pytest.raises(notify.NotifyError, match=f"{ENV} holding the webhook URL is unset"):
        notify.send(settings, report)


def test_step_reports_per_policy_and_says_what_it_did(monkeypatch):
    status = RunStatus(state="SUCCEEDED", pipeline_job="j", task_name="t", run_name="weekly")
    settings = NotifyConfig(webhook_url_env=ENV, report="failure")
    with Webhook() as hook:
        monkeypatch.setenv(ENV, hook.url)
        quiet = notify.run(notify.NotifyInputs(notify=settings, status=status))
        always = settings.model_copy(update={"report": "always"})
        sent = notify.run(notify.NotifyInputs(notify=always, status=status))
    assert (quiet.sent, quiet.http_status) == (False, 0) and len(hook.received) == 1
    assert quiet.summary() == "run succeeded; notify.report=failure: not reported"
    assert (sent.sent, sent.http_status, hook.received[0]["run"]) == (True, 200, "weekly")
    assert sent.summary() == "reported run succeeded to the webhook (HTTP 200)"


def test_url_from_secret_manager_request_boundary():
    class Session:
        def __init__(self, status):
            self.status, self.urls = status, []

        def get(self, url, timeout):
            self.urls.append(url)
            payload = {"payload": {"data": base64.b64encode(b"https://hooks/x\n").decode()}}
            return type("Response", (), {"status_code": self.status, "json": lambda _: payload})()

    session = Session(200)
    settings = NotifyConfig(webhook_url_secret=SECRET)
    assert notify.webhook_url(settings, session=session) == "https://hooks/x"
    assert session.urls == [f"https://secretmanager.googleapis.com/v1/{SECRET}:access"]
    with pytest.raises(notify.NotifyError, match=r"refused .* \(HTTP 403\).*secretAccessor"):
        notify.webhook_url(settings, session=Session(403))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (f"notify.webhook_url_env=https://hooks/{TOKEN}", "name an environment variable"),
        (f"notify.webhook_url_secret=https://hooks/{TOKEN}", "Secret Manager version name"),
        ("notify.kubernetes_secret=webhook", "needs notify.webhook_url_env"),
    ],
)
def test_a_url_in_the_config_is_refused_without_echoing_it(override, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_config(overrides=[override])
    assert TOKEN not in str(error.value)


def compiled(tmp_path, target: str, *overrides: str) -> tuple[str, dict]:
    config = load_config("tutorial", overrides=list(overrides))
    path = compile_pipeline(config, tmp_path / f"{target}.yaml", target=target)
    with open(path) as handle:
        text = handle.read()
    return text, next(yaml.safe_load_all(text))


def test_exit_handler_wraps_every_task_and_the_secret_stays_out_of_the_spec(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, f"https://hooks.example/{TOKEN}")  # set while compiling
    text, spec = compiled(tmp_path, "vertex", f"notify.webhook_url_secret={SECRET}")

    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"exit-handler-1", "notify-run-end"}
    notify_task = root["notify-run-end"]
    assert notify_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert notify_task["dependentTasks"] == ["exit-handler-1"]
    assert notify_task["inputs"]["parameters"]["status"] == {
        "taskFinalStatus": {"producerTask": "exit-handler-1"}
    }
    body = spec["components"][root["exit-handler-1"]["componentRef"]["name"]]["dag"]["tasks"]
    assert {"resolve-config", "ingest", "train", "evaluate", "push"} <= set(body)
    sent = json.loads(
        notify_task["inputs"]["parameters"]["notify_config"]["runtimeValue"]["constant"]
    )
    assert sent["webhook_url_secret"] == SECRET
    assert TOKEN not in text and "hooks.example" not in text


def test_kubeflow_mounts_the_kubernetes_secret_as_the_env_var(tmp_path):
    text, _ = compiled(
        tmp_path, "kubeflow",
        "notify.kubernetes_secret=petseg-webhook", f"notify.webhook_url_env={ENV}",
        "runtime.accelerator_type=nvidia.com/gpu",
    )  # fmt: skip
    [_, platform] = yaml.safe_load_all(text)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    [secret] = executors["exec-notify-run-end"]["secretAsEnv"]
    assert secret["keyToEnv"] == [{"secretKey": "url", "envVar": ENV}]
    assert "petseg-webhook" in json.dumps(secret)  # the secret's name, not its value


def test_a_url_source_the_target_cannot_read_is_refused_before_compiling(tmp_path):
    with pytest.raises(ValueError, match=r"set notify\.webhook_url_secret"):
        compiled(tmp_path, "vertex", f"notify.webhook_url_env={ENV}")
    with pytest.raises(ValueError, match=r"set notify\.kubernetes_secret"):
        compiled(tmp_path, "kubeflow", f"notify.webhook_url_env={ENV}")


@pytest.mark.parametrize(
    ("overrides", "parameters", "task", "error"),
    [
        # An invalid run-time value fails the first task.
        (
            [],
            {"epochs": 0},
            "resolve-config",
            "ConfigError: invalid configuration (run-time parameters epochs=0): "
            "training.epochs: Input should be greater than or equal to 1 (got 0)",
        ),
        # A data folder that does not exist fails ingest, after resolve-config succeeded.
        (["data.source=folder", "data.path=/nonexistent/pets"], {}, "ingest", "/nonexistent/pets"),
    ],
    ids=["resolve-config", "ingest"],
)
def test_failed_local_run_reports_the_failed_task_and_its_error_line_through_kfp_local(
    tmp_path, monkeypatch, capfd, overrides, parameters, task, error
):
    config = load_config(
        "demo",
        overrides=[
            *SMALL,
            *overrides,
            f"data.data_dir={tmp_path / 'tfds'}",
            f"notify.webhook_url_env={ENV}",
        ],
    )
    with Webhook() as hook:
        monkeypatch.setenv(ENV, hook.url)
        with pytest.raises(RuntimeError):
            run_local(config, pipeline_root=tmp_path / "root", parameters=parameters)

    [report] = hook.received
    assert report["state"] == "FAILED" and report["succeeded"] is False
    # kfp.local's status names only the exit handler's group ("exit-handler-1"); the failed
    # task's own record (components/platform/failures.py) names it and gives its error line.
    assert report["failed_tasks"] == [task]
    assert error in report["error"] and "\n" not in report["error"]
    assert report["task_errors"] == [{"task": task, "error": report["error"]}]
    assert report["text"].endswith(f"failed in {task}: {report['error']}")
    assert report["run"].startswith("petseg-demo")
    [run_folder] = (tmp_path / "root").iterdir()
    [record] = run_folder.glob("*/failure.json")
    assert record.parent.name == task
    # The quiet local run shows step lines; what the notify step printed is in its log.
    output = "".join(capfd.readouterr())
    assert "FAILED   " + task in output
    notify_log = (run_folder / "logs" / "notify-run-end.log").read_text()
    assert "reported run failed to the webhook (HTTP 200)" in notify_log
    assert TOKEN not in output and TOKEN not in notify_log


def test_failed_tasks_and_their_error_lines_from_vertex_request_boundary(monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1

    job_name = "projects/p/locations/europe-west4/pipelineJobs/petseg-123"
    task = aiplatform_v1.PipelineTaskDetail
    executor = aiplatform_v1.PipelineTaskExecutorDetail
    job = aiplatform_v1.PipelineJob(
        name=job_name,
        job_detail=aiplatform_v1.PipelineJobDetail(
            task_details=[
                task(task_name="petseg-demo", state=task.State.FAILED),  # the root DAG
                task(task_name="exit-handler-1", state=task.State.FAILED),  # its group
                task(
                    task_name="ingest",
                    state=task.State.SUCCEEDED,
                    executor_detail=executor(container_detail=executor.ContainerDetail()),
                ),
                task(
                    task_name="train",
                    state=task.State.FAILED,
                    executor_detail=executor(custom_job_detail=executor.CustomJobDetail()),
                    error={"code": 9, "message": "ValueError: dataset has 3 classes\nTraceback"},
                ),
            ]
        ),
    )
    calls = []

    def get_pipeline_job(self, request=None, **kwargs):
        calls.append((request, self.api_endpoint))
        return job

    monkeypatch.setattr(aiplatform_v1.PipelineServiceClient, "get_pipeline_job", get_pipeline_job)
    monkeypatch.setattr("google.auth.default", lambda *a, **k: (AnonymousCredentials(), "p"))

    task_errors = notify.vertex_failed_tasks(job_name)

    assert calls == [
        (
            aiplatform_v1.GetPipelineJobRequest(name=job_name),
            "europe-west4-aiplatform.googleapis.com",
        )
    ]
    assert task_errors == [{"task": "train", "error": "ValueError: dataset has 3 classes"}]
    status = RunStatus(
        state="FAILED", pipeline_job=job_name, task_name="exit-handler-1",
        error_message="The DAG failed because some tasks failed.",
    )  # fmt: skip
    report = notify.run_report(status, task_errors)
    assert (report["failed_tasks"], report["error"]) == (
        ["train"],
        "ValueError: dataset has 3 classes",
    )
    assert notify.vertex_failed_tasks("local-pipeline-exit-handler-1") == []


def test_vertex_notification_email_is_the_exit_handler_task_when_configured(tmp_path):
    _, spec = compiled(tmp_path, "vertex", "notify.emails=[ops@example.com]")

    root = spec["root"]["dag"]["tasks"]
    [email] = [name for name in root if name.startswith("vertex-pipelines-notification-email")]
    assert set(root) == {"exit-handler-1", email}
    assert root[email]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    status = root[email]["inputs"]["parameters"]["pipeline_task_final_status"]
    assert status == {"taskFinalStatus": {"producerTask": "exit-handler-1"}}
    recipients = root[email]["inputs"]["parameters"]["recipients"]["runtimeValue"]["constant"]
    assert recipients == ["ops@example.com"]
    body = spec["components"][root["exit-handler-1"]["componentRef"]["name"]]["dag"]["tasks"]
    assert {"resolve-config", "train", "push"} <= set(body)

    with pytest.raises(ValueError, match=r"notify\.emails is Vertex AI's notification email"):
        compiled(tmp_path, "kubeflow", "notify.emails=[ops@example.com]")
    with pytest.raises(ValueError, match=r"either Vertex AI's email .* or the webhook"):
        compiled(
            tmp_path, "vertex", "notify.emails=[ops@example.com]",
            f"notify.webhook_url_secret={SECRET}",
        )  # fmt: skip
    with pytest.raises(ConfigError, match="'not-an-address' is not an email address"):
        load_config(overrides=["notify.emails=[not-an-address]"])
