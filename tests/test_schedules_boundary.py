"""Scheduled retraining at its request boundary, on Vertex AI and on Kubeflow.

Vertex AI: ScheduleServiceClient methods are patched and the request protos
recorded. Kubeflow: the fake KFP API server records the JSON bodies. Each test
checks what would be sent (cron, time zone, concurrency, catch-up, template,
pipeline root, service account, labels) or that bad input sends nothing.
"""

import datetime
import types

import pytest

from pipelines.kubeflow import KubeflowSettings
from pipelines.schedules import (
    CronError,
    ScheduleSettings,
    create_kubeflow_recurring_run,
    create_vertex_schedule,
    kubeflow_cron,
    validate_cron,
    validate_time_zone,
    vertex_cron,
)
from pipelines.vertex import CloudInputError, VertexSettings
from tests.cloudargs import CLOUD_READY
from tests.test_kubeflow_boundary import FakeKubeflow
from tests.test_vertex_boundary import (
    KMS_KEY,
    NETWORK,
    PROJECT,
    REGION,
    ROOT_URI,
    SERVICE_ACCOUNT,
    StandInCompiler,
    block_internet,
    compile_stand_in,
    run_cli,
)

PARENT = f"projects/{PROJECT}/locations/{REGION}"


# --- cron and time zone -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "vertex", "kubeflow"),
    [
        ("0 3 * * 1", "TZ=Europe/Berlin 0 3 * * 1", "0 0 3 * * 1"),
        ("*/15  2-5 1,15 JAN-MAR mon-fri", "TZ=Europe/Berlin */15 2-5 1,15 JAN-MAR mon-fri", None),
        ("30 23 L * *", None, None),
    ],
)
def test_cron_forms_for_each_target(cron, vertex, kubeflow):
    if vertex is None:
        with pytest.raises(CronError):
            validate_cron(cron)
        return
    assert vertex_cron(cron, "Europe/Berlin") == vertex
    if kubeflow:
        assert kubeflow_cron(cron) == kubeflow
    assert len(kubeflow_cron(cron).split()) == 6


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("", "--cron is required"),
        ("0 3 * *", "has 4 fields; five are needed"),
        ("0 0 3 * * 1", "has 6 fields"),
        ("60 3 * * 1", "minute: 60 is outside 0-59"),
        ("0 24 * * 1", "hour: 24 is outside 0-23"),
        ("0 3 0 * *", "day of month: 0 is outside 1-31"),
        ("0 3 * 13 *", "month: 13 is outside 1-12"),
        ("0 3 * * 7", "use 0 for Sunday"),
        ("0 3 * * FUN", "day of week: 'FUN' is not a number"),
        ("0 5-3 * * *", "runs backwards"),
        ("*/0 * * * *", "step in '*/0' must be at least 1"),
        ("0 3 ? * 1", "'?' is not *, N, N-M"),
        ("@daily", "macros are not supported"),
        ("TZ=UTC 0 3 * * 1", "give the time zone with --time-zone"),
    ],
)
def test_malformed_cron_is_rejected_with_the_field_named(cron, message):
    with pytest.raises(CronError, match=message.replace("?", r"\?").replace("*", r"\*")):
        validate_cron(cron)


def test_time_zones_are_checked_against_the_database():
    assert validate_time_zone("Europe/Berlin") == "Europe/Berlin"
    assert validate_time_zone("UTC") == "UTC"
    for bad in ("Mars/Olympus", "CEST+1", "../etc/passwd", ""):
        with pytest.raises(CloudInputError, match=r"time zone|--time-zone"):
            validate_time_zone(bad)


# --- Vertex AI ------------------------------------------------------------------------------


class ScheduleTransport:
    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.existing: dict[str, object] = {}

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


@pytest.fixture
def vertex_schedules(monkeypatch):
    from google.auth import credentials as auth_credentials
    from google.cloud import aiplatform_v1

    block_internet(monkeypatch)
    transport = ScheduleTransport()
    client = aiplatform_v1.ScheduleServiceClient

    def stored(name):
        if name not in transport.existing:
            from google.api_core import exceptions

            raise exceptions.NotFound(f"schedule {name} not found")
        return transport.existing[name]

    def create_schedule(self, *, parent, schedule, timeout=None, **_):
        transport.calls.append(("create", {"parent": parent, "schedule": schedule}))
        created = aiplatform_v1.Schedule(schedule)
        created.name = f"{parent}/schedules/4242"
        created.state = aiplatform_v1.Schedule.State.ACTIVE
        transport.existing[created.name] = created
        return created

    def get_schedule(self, *, name, **_):
        transport.calls.append(("get", {"name": name}))
        return stored(name)

    def list_schedules(self, *, request, **_):
        transport.calls.append(("list", dict(request)))
        found = list(transport.existing.values())
        wanted = request.get("filter")
        if wanted:
            found = [item for item in found if f'display_name="{item.display_name}"' == wanted]
        return found

    def pause_schedule(self, *, name, **_):
        transport.calls.append(("pause", {"name": name}))

    def resume_schedule(self, *, name, catch_up=None, **_):
        transport.calls.append(("resume", {"name": name, "catch_up": catch_up}))

    class Operation:
        """A finished long-running operation."""

        operation = types.SimpleNamespace(name="operations/delete-1")

        def result(self, *_, **__):
            return None

    def delete_schedule(self, *, name, **_):
        transport.calls.append(("delete", {"name": name}))
        return Operation()

    for method in (
        create_schedule,
        get_schedule,
        list_schedules,
        pause_schedule,
        resume_schedule,
        delete_schedule,
    ):
        monkeypatch.setattr(client, method.__name__, method)
    monkeypatch.setattr(
        "google.auth.default",
        lambda *args, **kwargs: (auth_credentials.AnonymousCredentials(), PROJECT),
    )
    return transport


def existing_schedule(transport, schedule_id: str, display_name: str):
    from google.cloud import aiplatform_v1

    schedule = aiplatform_v1.Schedule(
        name=f"{PARENT}/schedules/{schedule_id}",
        display_name=display_name,
        cron="TZ=UTC 0 3 * * 1",
        state=aiplatform_v1.Schedule.State.ACTIVE,
        max_concurrent_run_count=1,
        create_time=datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC),
    )
    transport.existing[schedule.name] = schedule
    return schedule


@pytest.fixture
def template(tmp_path) -> str:
    return compile_stand_in(tmp_path / "scheduled.yaml", cache=False)


def vertex_settings(**changes) -> VertexSettings:
    values = {
        "project": PROJECT,
        "region": REGION,
        "pipeline_root": ROOT_URI,
        "service_account": SERVICE_ACCOUNT,
        "labels": {"trigger": "schedule"},
        "encryption_key": KMS_KEY,
        "network": NETWORK,
    }
    values.update(changes)
    return VertexSettings(**values)


def test_vertex_create_boundary_sends_the_exact_schedule(vertex_schedules, template, capsys):
    create_vertex_schedule(
        template,
        vertex_settings(),
        ScheduleSettings(display_name="petseg-weekly", cron="0 3 * * 1", time_zone="Europe/Berlin"),
        parameter_values={"epochs": "12"},
    )
    ((action, request),) = vertex_schedules.calls
    assert action == "create"
    assert request["parent"] == PARENT
    schedule = request["schedule"]
    assert schedule.display_name == "petseg-weekly"
    assert schedule.cron == "TZ=Europe/Berlin 0 3 * * 1"
    assert schedule.max_concurrent_run_count == 1
    assert schedule.max_run_count == 0  # unset: runs until deleted
    assert schedule.allow_queueing is False
    job_request = schedule.create_pipeline_job_request
    assert job_request.parent == PARENT
    job = job_request.pipeline_job
    assert job.service_account == SERVICE_ACCOUNT
    assert job.network == NETWORK
    assert dict(job.labels) == {"trigger": "schedule"}
    assert job.encryption_spec.kms_key_name == KMS_KEY
    assert job.runtime_config.gcs_output_directory == ROOT_URI
    assert dict(job.runtime_config.parameter_values) == {"epochs": 12}
    spec = dict(job.pipeline_spec)
    assert spec["pipelineInfo"]["name"] == "petseg-standin"
    # The scheduled template's own caching (off) is kept: no job-level override.
    assert spec["root"]["dag"]["tasks"]["echo-config"]["cachingOptions"] == {}
    assert f"{PARENT}/schedules/4242" in capsys.readouterr().out


def test_vertex_create_boundary_passes_limits(vertex_schedules, template):
    create_vertex_schedule(
        template,
        vertex_settings(service_account=None, labels={}),
        ScheduleSettings(
            display_name="petseg-daily", cron="30 1 * * *", max_concurrent_runs=2, max_runs=10
        ),
    )
    schedule = vertex_schedules.calls[0][1]["schedule"]
    assert schedule.cron == "TZ=UTC 30 1 * * *"
    assert schedule.max_concurrent_run_count == 2
    assert schedule.max_run_count == 10
    assert schedule.create_pipeline_job_request.pipeline_job.service_account == ""


@pytest.mark.parametrize(
    ("schedule_changes", "settings_changes", "message"),
    [
        ({"cron": "0 3 * *"}, {}, "has 4 fields"),
        ({"cron": "0 25 * * 1"}, {}, "hour: 25"),
        ({"time_zone": "Berlin"}, {}, "is not an IANA time zone"),
        ({"max_concurrent_runs": 0}, {}, "--max-concurrent-runs 0"),
        ({"catch_up": True}, {}, "catches up only when resumed"),
        ({}, {"project": None}, "--project is required"),
        ({}, {"pipeline_root": "/tmp/root"}, "must be a gs:// path"),
    ],
)
def test_vertex_create_boundary_rejects_bad_input_before_sending(
    vertex_schedules, template, schedule_changes, settings_changes, message
):
    values = {"display_name": "petseg-weekly", "cron": "0 3 * * 1", **schedule_changes}
    with pytest.raises(CloudInputError, match=message):
        create_vertex_schedule(
            template, vertex_settings(**settings_changes), ScheduleSettings(**values)
        )
    assert vertex_schedules.calls == []


def test_cli_vertex_schedule_create_boundary_compiles_a_scheduled_pipeline(
    vertex_schedules, capsys
):
    compile_fn = StandInCompiler()
    status = run_cli(
        compile_fn,
        "schedule", "create", "--target", "vertex", "--preset", "demo", *CLOUD_READY,
        "--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI,
        "--service-account", SERVICE_ACCOUNT, "--labels", "trigger=schedule",
        "--cron", "0 3 * * 1", "--time-zone", "Europe/Berlin",
    )  # fmt: skip
    assert status == 0
    assert compile_fn.calls == [{"name": "petseg-demo", "target": "vertex", "scheduled": True}]
    ((action, request),) = vertex_schedules.calls
    schedule = request["schedule"]
    assert action == "create"
    assert schedule.display_name == "petseg-demo-retrain"
    assert schedule.cron == "TZ=Europe/Berlin 0 3 * * 1"
    assert schedule.max_concurrent_run_count == 1
    job = schedule.create_pipeline_job_request.pipeline_job
    assert dict(job.pipeline_spec)["pipelineInfo"]["name"] == "petseg-demo"
    assert job.service_account == SERVICE_ACCOUNT


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--cron", "0 3 * * 8"), "day of week: 8 is outside 0-6"),
        (("--cron", "0 3 * * 1", "--time-zone", "Europe/Atlantis"), "IANA time zone"),
        (("--cron", "0 3 * * 1", "--catch-up"), "catches up only when resumed"),
        (("--cron", "0 3 * * 1", "--set", "evaluation.baseline=none"), "compares each new model"),
    ],
)
def test_cli_vertex_schedule_create_rejects_bad_input(vertex_schedules, capsys, argv, message):
    compile_fn = StandInCompiler()
    status = run_cli(
        compile_fn,
        "schedule", "create", "--target", "vertex", "--preset", "demo", *CLOUD_READY,
        "--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI, *argv,
    )  # fmt: skip
    assert status == 2
    assert message in capsys.readouterr().err
    assert vertex_schedules.calls == []


def test_cli_vertex_schedule_list_pause_resume_delete_boundary(vertex_schedules, capsys):
    existing_schedule(vertex_schedules, "111", "petseg-weekly")
    location = ("--target", "vertex", "--project", PROJECT, "--region", REGION)
    compile_fn = StandInCompiler()

    assert run_cli(compile_fn, "schedule", "list", *location) == 0
    out = capsys.readouterr().out
    assert "111\tpetseg-weekly\tACTIVE\tTZ=UTC 0 3 * * 1\t1" in out
    assert vertex_schedules.calls[-1] == ("list", {"parent": PARENT})

    vertex_schedules.calls.clear()
    assert run_cli(compile_fn, "schedule", "pause", *location, "--schedule-id", "111") == 0
    assert vertex_schedules.calls == [
        ("get", {"name": f"{PARENT}/schedules/111"}),
        ("pause", {"name": f"{PARENT}/schedules/111"}),
    ]

    vertex_schedules.calls.clear()
    assert (
        run_cli(compile_fn, "schedule", "resume", *location, "--schedule-name", "petseg-weekly")
        == 0
    )
    assert vertex_schedules.calls == [
        ("list", {"parent": PARENT, "filter": 'display_name="petseg-weekly"'}),
        ("resume", {"name": f"{PARENT}/schedules/111", "catch_up": False}),
    ]

    vertex_schedules.calls.clear()
    resume = ("schedule", "resume", *location, "--schedule-id", "111", "--catch-up")
    assert run_cli(compile_fn, *resume) == 0
    assert vertex_schedules.calls[-1] == (
        "resume",
        {"name": f"{PARENT}/schedules/111", "catch_up": True},
    )

    vertex_schedules.calls.clear()
    delete = ("schedule", "delete", *location, "--schedule-id", f"{PARENT}/schedules/111")
    assert run_cli(compile_fn, *delete) == 0
    assert vertex_schedules.calls[-1] == ("delete", {"name": f"{PARENT}/schedules/111"})
    assert compile_fn.calls == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--schedule-id", "weekly"), "is not a Vertex AI schedule id"),
        (("--schedule-name", "nightly"), "no Vertex AI schedule is named 'nightly'"),
        (
            ("--schedule-id", "projects/other/locations/us-central1/schedules/1"),
            "is not in project",
        ),
    ],
)
def test_cli_vertex_schedule_change_rejects_unknown_schedules(
    vertex_schedules, capsys, argv, message
):
    existing_schedule(vertex_schedules, "111", "petseg-weekly")
    status = run_cli(
        StandInCompiler(),
        "schedule", "pause", "--target", "vertex", "--project", PROJECT, "--region", REGION, *argv,
    )  # fmt: skip
    assert status == 2
    assert message in capsys.readouterr().err
    assert "pause" not in vertex_schedules.names()


def test_cli_vertex_schedule_list_needs_a_project(vertex_schedules, capsys):
    status = run_cli(StandInCompiler(), "schedule", "list", "--target", "vertex")
    assert status == 2
    assert "--project is required" in capsys.readouterr().err
    assert vertex_schedules.calls == []


# --- Kubeflow --------------------------------------------------------------------------------


@pytest.fixture
def kubeflow(monkeypatch, tmp_path):
    import kfp

    block_internet(monkeypatch)
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    for variable in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    with FakeKubeflow() as fake:
        yield fake


def test_kubeflow_create_boundary_sends_the_exact_recurring_run(kubeflow, template, capsys):
    run_id = create_kubeflow_recurring_run(
        template,
        KubeflowSettings(
            host=kubeflow.host,
            namespace="team-vision",
            experiment="petseg-scheduled",
            pipeline_root="gs://petseg-test-bucket/kfp",
            service_account="pipeline-runner",
        ),
        ScheduleSettings(display_name="petseg-weekly", cron="0 3 * * 1", time_zone="UTC"),
        parameter_values={"epochs": "12"},
    )
    (create_experiment,) = kubeflow.sent("POST", "/experiments")
    assert create_experiment["body"]["display_name"] == "petseg-scheduled"
    (create,) = kubeflow.sent("POST", "/recurringruns")
    body = create["body"]
    assert body["display_name"] == "petseg-weekly"
    assert body["experiment_id"] == "experiment-1"
    assert body["mode"] == "ENABLE"
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * 1"}}
    assert int(body["max_concurrency"]) == 1
    assert body["no_catchup"] is True
    assert body["service_account"] == "pipeline-runner"
    assert body["runtime_config"] == {
        "pipeline_root": "gs://petseg-test-bucket/kfp",
        "parameters": {"epochs": 12},
    }
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "petseg-standin"
    assert "0 3 * * 1" in body["description"]
    assert run_id in kubeflow.recurring_runs
    assert "note:" not in capsys.readouterr().out


def test_kubeflow_create_boundary_catch_up_concurrency_and_time_zone_note(kubeflow, template):
    lines: list[str] = []
    create_kubeflow_recurring_run(
        template,
        KubeflowSettings(host=kubeflow.host),
        ScheduleSettings(
            display_name="petseg-nightly",
            cron="15 2 * * *",
            time_zone="Europe/Berlin",
            max_concurrent_runs=3,
            catch_up=True,
        ),
        echo=lines.append,
    )
    (create,) = kubeflow.sent("POST", "/recurringruns")
    body = create["body"]
    assert body["trigger"]["cron_schedule"]["cron"] == "0 15 2 * * *"
    assert int(body["max_concurrency"]) == 3
    assert body["no_catchup"] is False
    assert "(Europe/Berlin)" in body["description"]
    assert any("CRON_SCHEDULE_TIMEZONE" in line and "Europe/Berlin" in line for line in lines)


@pytest.mark.parametrize(
    ("schedule_changes", "settings_changes", "message"),
    [
        ({"cron": "0 3 * * 1 2024"}, {}, "has 6 fields"),
        ({"cron": "61 * * * *"}, {}, "minute: 61"),
        ({"max_runs": 5}, {}, "no run limit"),
        ({"max_concurrent_runs": 0}, {}, "must be at least 1"),
        ({}, {"host": "kfp.example.com"}, "must be an http:// or https:// URL"),
    ],
)
def test_kubeflow_create_boundary_rejects_bad_input_before_sending(
    kubeflow, template, schedule_changes, settings_changes, message
):
    values = {"display_name": "petseg-weekly", "cron": "0 3 * * 1", **schedule_changes}
    settings = KubeflowSettings(**{"host": kubeflow.host, **settings_changes})
    with pytest.raises(CloudInputError, match=message):
        create_kubeflow_recurring_run(template, settings, ScheduleSettings(**values))
    assert kubeflow.requests == []


def test_cli_kubeflow_schedule_lifecycle_boundary(kubeflow, capsys):
    compile_fn = StandInCompiler()
    location = ("--target", "kubeflow", "--host", kubeflow.host, "--namespace", "team-vision")
    status = run_cli(
        compile_fn, "schedule", "create", "--preset", "demo", *CLOUD_READY, *location,
        "--cron", "0 3 * * 1", "--max-concurrent-runs", "1",
    )  # fmt: skip
    assert status == 0
    assert compile_fn.calls == [{"name": "petseg-demo", "target": "kubeflow", "scheduled": True}]
    (create,) = kubeflow.sent("POST", "/recurringruns")
    assert create["body"]["display_name"] == "petseg-demo-retrain"
    assert create["body"]["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert create["body"]["no_catchup"] is True
    (run_id,) = kubeflow.recurring_runs
    capsys.readouterr()

    assert run_cli(compile_fn, "schedule", "list", *location) == 0
    assert f"{run_id}\tpetseg-demo-retrain\tENABLED\t0 0 3 * * 1\t1" in capsys.readouterr().out
    assert kubeflow.sent("GET", "/recurringruns")[-1]["query"]["namespace"] == ["team-vision"]

    pause = ("schedule", "pause", *location, "--schedule-name", "petseg-demo-retrain")
    assert run_cli(compile_fn, *pause) == 0
    assert kubeflow.sent("POST", f"/recurringruns/{run_id}:disable")
    assert kubeflow.recurring_runs[run_id]["status"] == "DISABLED"

    assert run_cli(compile_fn, "schedule", "resume", *location, "--schedule-id", run_id) == 0
    assert kubeflow.sent("POST", f"/recurringruns/{run_id}:enable")
    assert kubeflow.recurring_runs[run_id]["status"] == "ENABLED"

    assert run_cli(compile_fn, "schedule", "delete", *location, "--schedule-id", run_id) == 0
    assert kubeflow.sent("DELETE", f"/recurringruns/{run_id}")
    assert kubeflow.recurring_runs == {}
    assert len(compile_fn.calls) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("pause", "--schedule-id", "weekly"), "is not a Kubeflow recurring run id"),
        (("pause", "--schedule-name", "weekly"), "no Kubeflow recurring run is named 'weekly'"),
        (
            ("resume", "--schedule-id", "00000000-0000-0000-0000-000000000000", "--catch-up"),
            "set when it is created",
        ),
        (("delete", "--schedule-id", "x", "--project", PROJECT), "--project does not apply"),
    ],
)
def test_cli_kubeflow_schedule_change_rejects_bad_input(kubeflow, capsys, argv, message):
    action, *rest = argv
    status = run_cli(
        StandInCompiler(), "schedule", action, "--target", "kubeflow", "--host", kubeflow.host,
        *rest,
    )  # fmt: skip
    assert status == 2
    assert message in capsys.readouterr().err
    assert kubeflow.writes() == []
    if "--schedule-id" in rest:  # an id is checked before the client even connects
        assert kubeflow.requests == []


def test_cli_kubeflow_api_refusal_exits_one_with_its_message(kubeflow, capsys):
    missing = "00000000-0000-0000-0000-000000000000"
    status = run_cli(
        StandInCompiler(), "schedule", "delete", "--target", "kubeflow", "--host", kubeflow.host,
        "--schedule-id", missing,
    )  # fmt: skip
    assert status == 1
    assert f"recurring run {missing} not found" in capsys.readouterr().err
    assert kubeflow.sent("DELETE", f"/recurringruns/{missing}")


def test_cli_kubeflow_list_by_unknown_experiment(kubeflow, capsys):
    status = run_cli(
        StandInCompiler(), "schedule", "list", "--target", "kubeflow", "--host", kubeflow.host,
        "--experiment", "nightly",
    )  # fmt: skip
    assert status == 2
    assert "--experiment 'nightly': No experiment is found" in capsys.readouterr().err


def test_cli_vertex_api_refusal_exits_one(vertex_schedules, capsys):
    # No schedule 999 exists: the fake answers get with NotFound, as Vertex AI would.
    status = run_cli(
        StandInCompiler(), "schedule", "pause", "--target", "vertex", "--project", PROJECT,
        "--region", REGION, "--schedule-id", "999",
    )  # fmt: skip
    assert status == 1
    assert "vertex API refused the request" in capsys.readouterr().err
    assert "pause" not in vertex_schedules.names()


# --- run-time parameters of the real pipeline ------------------------------------------------


def test_cli_vertex_schedule_create_boundary_sends_typed_run_time_values(vertex_schedules):
    from pipelines.cli import main

    status = main(
        [
            "schedule", "create", "--target", "vertex", "--preset", "demo", *CLOUD_READY,
            "--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI,
            "--cron", "0 3 * * 1", "--param", "epochs=30", "--param", "min_mean_iou=0.6",
        ]
    )  # fmt: skip
    assert status == 0
    ((_, request),) = vertex_schedules.calls
    job = request["schedule"].create_pipeline_job_request.pipeline_job
    assert dict(job.runtime_config.parameter_values) == {"epochs": 30, "min_mean_iou": 0.6}
    # The scheduled variant: only a model better than production is blessed.
    resolve = dict(job.pipeline_spec)["root"]["dag"]["tasks"]["resolve-config"]
    compiled = resolve["inputs"]["parameters"]["compiled_config"]["runtimeValue"]["constant"]
    assert '"require_improvement":true' in compiled


def test_cli_kubeflow_schedule_create_boundary_sends_typed_run_time_values(kubeflow):
    from pipelines.cli import main

    status = main(
        [
            "schedule", "create", "--target", "kubeflow", "--preset", "demo", *CLOUD_READY,
            "--host", kubeflow.host, "--cron", "0 3 * * 1",
            "--param", "batch_size=32", "--param", "data_dir=gs://petseg-test-data/tfds",
        ]
    )  # fmt: skip
    assert status == 0
    (create,) = kubeflow.sent("POST", "/recurringruns")
    assert create["body"]["runtime_config"]["parameters"] == {
        "batch_size": 32,
        "data_dir": "gs://petseg-test-data/tfds",
    }


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("max_regression=-0.1", "evaluation.max_regression"),
        ("epoch=3", "unknown run-time parameter 'epoch'"),
        ("data_dir=/tmp/tfds", "data.data_dir '/tmp/tfds' is inside the Vertex AI task"),
    ],
)
def test_cli_vertex_schedule_create_refuses_bad_run_time_values(
    vertex_schedules, capsys, param, message
):
    from pipelines.cli import main

    status = main(
        [
            "schedule", "create", "--target", "vertex", "--preset", "demo", *CLOUD_READY,
            "--project", PROJECT, "--region", REGION, "--pipeline-root", ROOT_URI,
            "--cron", "0 3 * * 1", "--param", param,
        ]
    )  # fmt: skip
    assert status == 2
    assert message in capsys.readouterr().err
    assert vertex_schedules.calls == []
