"""Scheduled retraining: recurring runs on Vertex AI (schedules) and Kubeflow (recurring runs).

A schedule runs a template compiled with ``scheduled=True``: ingest and train
are not cached, so each run re-ingests and retrains, and evaluate compares the
new model with production before push. Schedules start at most
``max_concurrent_runs`` runs at once (1 by default) and do not catch up on runs
missed while paused unless asked.

The cron expression is the usual five fields (minute hour day-of-month month
day-of-week), checked here so a typo fails before anything is sent. Vertex AI
takes the time zone with the expression ("TZ=Europe/Berlin 0 3 * * 1"); Kubeflow
takes six fields (seconds first) and evaluates them in its scheduler's time zone.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from croniter import CroniterBadCronError, croniter

from pipelines.kubeflow import KubeflowSettings, check_host, check_namespace, connect
from pipelines.vertex import (
    CloudInputError,
    VertexSettings,
    build_pipeline_job,
    check_project,
    check_region,
    raise_problems,
    read_pipeline_template,
    resolve_parameters,
)

# The five fields in croniter's order. Vertex AI (unix-cron) and Kubeflow (robfig/cron) both
# take only these items per field; croniter reads more (L, W, #, ?), so the shape is checked first.
_CRON_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_CRON_ITEM = re.compile(r"(?P<range>\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>[0-9]+))?")
_KUBEFLOW_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UTC_NAMES = ("UTC", "Etc/UTC")


class CronError(CloudInputError):
    """A cron expression that Vertex AI or Kubeflow would reject or misread."""


def _cron_value(text: str, index: int) -> int:
    """One number or name of a field, read by croniter; its error said with the field's name."""
    field = _CRON_FIELDS[index]
    low, high = croniter.RANGES[index]
    if index == 4:
        high = 6  # Kubeflow's cron has no 7 for Sunday (croniter reads it as 0)
    names = [name.upper() for name in croniter.ALPHACONV[index] if len(name) == 3]
    try:
        value = croniter.expand(" ".join(text if i == index else "*" for i in range(5)))[0][index]
    except CroniterBadCronError:
        value = None if not text.isdigit() else [int(text)]
    if not value or not isinstance(value[0], int):
        hint = f" or one of {', '.join(names)}" if names else ""
        raise CronError(f"cron {field}: {text!r} is not a number from {low} to {high}{hint}")
    if text.isdigit() and not low <= int(text) <= high:
        hint = " (use 0 for Sunday)" if index == 4 and int(text) == 7 else ""
        raise CronError(f"cron {field}: {int(text)} is outside {low}-{high}{hint}")
    return value[0]


def validate_cron(expression: str) -> str:
    """Checks a five-field cron expression and returns it with single spaces.

    Accepted per field: ``*``, ``*/N``, ``A``, ``A-B``, ``A-B/N`` and lists of
    those separated by commas; months and weekdays may be names (JAN, MON).

    Raises:
        CronError: naming the field and the part that is wrong.
    """
    if not expression or not expression.strip():
        raise CronError("--cron is required, e.g. '0 3 * * 1' (03:00 every Monday)")
    text = expression.strip()
    if text.startswith("@"):
        raise CronError(f"cron {text!r}: macros are not supported; write the five fields")
    if re.match(r"(CRON_)?TZ=", text):
        raise CronError(f"cron {text!r}: give the time zone with --time-zone, not in the cron")
    fields = text.split()
    if len(fields) != len(_CRON_FIELDS):
        raise CronError(
            f"cron {text!r} has {len(fields)} fields; five are needed: "
            "minute hour day-of-month month day-of-week (e.g. '0 3 * * 1')"
        )
    for index, (part, field) in enumerate(zip(fields, _CRON_FIELDS, strict=True)):
        for item in part.split(","):
            match = _CRON_ITEM.fullmatch(item)
            if not match:
                raise CronError(f"cron {field}: {item!r} is not *, N, N-M or a /step of those")
            if match["step"] is not None and int(match["step"]) < 1:
                raise CronError(f"cron {field}: step in {item!r} must be at least 1")
            if match["range"] == "*":
                continue
            bounds = match["range"].split("-")
            values = [_cron_value(bound, index) for bound in bounds]
            if len(values) == 2 and values[0] > values[1]:
                raise CronError(f"cron {field}: range {item!r} runs backwards")
    return " ".join(fields)


def validate_time_zone(name: str | None) -> str:
    """Checks an IANA time zone name (Europe/Berlin) against the time zone database."""
    if not name:
        raise CloudInputError("--time-zone is empty; use an IANA name such as Europe/Berlin")
    if name in _UTC_NAMES:
        return name
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CloudInputError(
            f"--time-zone {name!r} is not an IANA time zone such as Europe/Berlin or UTC"
        ) from None
    return name


def vertex_cron(cron: str, time_zone: str) -> str:
    """Vertex AI's form: the time zone as a prefix of the five fields."""
    return f"TZ={validate_time_zone(time_zone)} {validate_cron(cron)}"


def kubeflow_cron(cron: str) -> str:
    """Kubeflow's form: six fields, seconds first (robfig/cron)."""
    return f"0 {validate_cron(cron)}"


@dataclass(frozen=True)
class ScheduleSettings:
    """When and how often scheduled retraining runs."""

    display_name: str
    cron: str
    time_zone: str = "UTC"
    max_concurrent_runs: int = 1
    catch_up: bool = False
    max_runs: int | None = None

    def problems(self) -> list[str]:
        found = []
        for check in (lambda: validate_cron(self.cron), lambda: validate_time_zone(self.time_zone)):
            try:
                check()
            except CloudInputError as error:
                found.append(str(error))
        if not self.display_name or len(self.display_name) > 128:
            found.append("--schedule-name must be 1-128 characters")
        if self.max_concurrent_runs < 1:
            found.append(f"--max-concurrent-runs {self.max_concurrent_runs} must be at least 1")
        if self.max_runs is not None and self.max_runs < 1:
            found.append(f"--max-runs {self.max_runs} must be at least 1")
        return found

    def validate(self) -> None:
        raise_problems(self.problems())


# --- Vertex AI ------------------------------------------------------------------------------


def create_vertex_schedule(
    template_path: str | Path,
    vertex: VertexSettings,
    schedule: ScheduleSettings,
    *,
    parameter_values: Mapping[str, Any] | None = None,
    credentials: Any = None,
    echo: Callable[[str], None] = print,
):
    """Creates a Vertex AI PipelineJobSchedule for a compiled (scheduled) pipeline.

    Catch-up is not part of a Vertex schedule: it is chosen when a paused
    schedule is resumed (``resume_vertex_schedule(catch_up=...)``).

    Returns:
        The created ``aiplatform.PipelineJobSchedule``.
    """
    problems = schedule.problems() + vertex.problems()
    if schedule.catch_up:
        problems.append(
            "--catch-up: a Vertex AI schedule catches up only when resumed; "
            "use 'schedule resume --catch-up'"
        )
    raise_problems(problems)
    job = build_pipeline_job(
        template_path,
        vertex,
        parameter_values=parameter_values,
        display_name=schedule.display_name,
        credentials=credentials,
    )

    from google.cloud import aiplatform

    created = aiplatform.PipelineJobSchedule(
        pipeline_job=job,
        display_name=schedule.display_name,
        credentials=credentials,
        project=vertex.project,
        location=vertex.region,
    )
    cron = vertex_cron(schedule.cron, schedule.time_zone)
    created.create(
        cron=cron,
        max_concurrent_run_count=schedule.max_concurrent_runs,
        max_run_count=schedule.max_runs,
        service_account=vertex.service_account,
        network=vertex.network,
    )
    echo(f"created Vertex AI schedule {created.resource_name}")
    echo(f"cron: {cron}")
    return created


def _check_vertex_location(project: str | None, region: str | None) -> None:
    raise_problems(check_project(project) + check_region(region))


def find_vertex_schedule(
    project: str, region: str, identifier: str, *, credentials: Any = None, by_name: bool = False
):
    """Finds one schedule by id, full resource name, or (``by_name``) display name."""
    _check_vertex_location(project, region)
    if not identifier:
        raise CloudInputError("give the schedule with --schedule-id or --schedule-name")
    from google.cloud import aiplatform

    if by_name:
        escaped = identifier.replace("\\", "\\\\").replace('"', '\\"')
        found = aiplatform.PipelineJobSchedule.list(
            filter=f'display_name="{escaped}"',
            project=project,
            location=region,
            credentials=credentials,
        )
        if len(found) != 1:
            raise CloudInputError(
                f"{len(found)} Vertex AI schedules are named {identifier!r} in "
                f"{project}/{region}; use --schedule-id"
                if found
                else f"no Vertex AI schedule is named {identifier!r} in {project}/{region}"
            )
        return found[0]
    prefix = f"projects/{project}/locations/{region}/schedules/"
    if identifier.startswith("projects/"):
        if not identifier.startswith(prefix):
            raise CloudInputError(
                f"schedule {identifier!r} is not in project {project!r}, region {region!r}"
            )
        identifier = identifier[len(prefix) :]
    if not identifier.isdigit():
        raise CloudInputError(
            f"--schedule-id {identifier!r} is not a Vertex AI schedule id (digits); "
            "use --schedule-name for a display name"
        )
    return aiplatform.PipelineJobSchedule.get(
        schedule_id=prefix + identifier, project=project, location=region, credentials=credentials
    )


def list_vertex_schedules(
    project: str, region: str, *, credentials: Any = None
) -> list[dict[str, Any]]:
    """The region's pipeline schedules, newest first, as plain dicts for printing."""
    _check_vertex_location(project, region)
    from google.cloud import aiplatform

    schedules = aiplatform.PipelineJobSchedule.list(
        order_by="create_time desc", project=project, location=region, credentials=credentials
    )
    rows = []
    for item in schedules:
        resource = item.gca_resource
        rows.append(
            {
                "id": resource.name.rsplit("/", 1)[-1],
                "name": resource.display_name,
                "state": resource.state.name,
                "cron": resource.cron,
                "max_concurrent_runs": resource.max_concurrent_run_count,
                "next_run": resource.next_run_time.isoformat() if resource.next_run_time else "",
            }
        )
    return rows


def pause_vertex_schedule(schedule) -> None:
    schedule.pause()


def resume_vertex_schedule(schedule, *, catch_up: bool = False) -> None:
    """Resumes a paused schedule; ``catch_up`` backfills the runs missed while paused."""
    # PipelineJobSchedule.resume() drops its catch_up argument; send it ourselves.
    schedule.api_client.resume_schedule(name=schedule.resource_name, catch_up=catch_up)


def delete_vertex_schedule(schedule) -> None:
    schedule.delete()


# --- Kubeflow --------------------------------------------------------------------------------


def create_kubeflow_recurring_run(
    template_path: str | Path,
    settings: KubeflowSettings,
    schedule: ScheduleSettings,
    *,
    parameter_values: Mapping[str, Any] | None = None,
    client=None,
    echo: Callable[[str], None] = print,
) -> str:
    """Creates a Kubeflow recurring run for a compiled (scheduled) pipeline.

    Kubeflow has no per-schedule time zone: its scheduler evaluates every cron
    in one zone (``CRON_SCHEDULE_TIMEZONE`` on ml-pipeline-scheduledworkflow,
    UTC unless changed). The zone given is recorded in the description and a
    note is printed when it is not UTC.

    Returns:
        The recurring run id.
    """
    problems = schedule.problems() + settings.problems()
    if schedule.max_runs is not None:
        problems.append("--max-runs: Kubeflow recurring runs have no run limit")
    raise_problems(problems)
    template = read_pipeline_template(template_path)
    parameters = resolve_parameters(template, parameter_values)
    cron = kubeflow_cron(schedule.cron)
    if schedule.time_zone not in _UTC_NAMES:
        echo(
            f"note: Kubeflow evaluates '{cron}' in its scheduler's time zone "
            f"(CRON_SCHEDULE_TIMEZONE, UTC by default), not in {schedule.time_zone}; "
            "make sure the cluster is set to it"
        )
    client = client or connect(settings)
    experiment = client.create_experiment(name=settings.experiment, namespace=settings.namespace)
    created = client.create_recurring_run(
        experiment_id=experiment.experiment_id,
        job_name=schedule.display_name,
        description=(
            f"petseg scheduled retraining: cron '{validate_cron(schedule.cron)}' "
            f"({schedule.time_zone})"
        ),
        cron_expression=cron,
        max_concurrency=schedule.max_concurrent_runs,
        no_catchup=not schedule.catch_up,
        params=parameters,
        pipeline_package_path=template.path,
        enabled=True,
        pipeline_root=settings.pipeline_root,
        enable_caching=settings.enable_caching,
        service_account=settings.service_account,
    )
    echo(f"created Kubeflow recurring run {created.recurring_run_id} ({cron})")
    return created.recurring_run_id


def _check_kubeflow_location(host: str | None, namespace: str | None) -> None:
    raise_problems(check_host(host) + check_namespace(namespace))


def _list_all_recurring_runs(client, namespace: str | None, **filters: Any) -> list:
    runs, page_token = [], ""
    while True:
        response = client.list_recurring_runs(
            page_token=page_token, page_size=100, namespace=namespace, **filters
        )
        runs.extend(response.recurring_runs or [])
        page_token = response.next_page_token or ""
        if not page_token:
            return runs


def find_kubeflow_recurring_run(
    client, identifier: str, *, namespace: str | None = None, by_name: bool = False
) -> str:
    """Returns a recurring run id from an id or (``by_name``) a display name."""
    if not identifier:
        raise CloudInputError("give the recurring run with --schedule-id or --schedule-name")
    if not by_name:
        if not _KUBEFLOW_ID.fullmatch(identifier):
            raise CloudInputError(
                f"--schedule-id {identifier!r} is not a Kubeflow recurring run id (a UUID); "
                "use --schedule-name for a display name"
            )
        return identifier
    # The same filter kfp.Client builds for experiments: operation 1 is EQUALS.
    name_filter = json.dumps(
        {"predicates": [{"operation": 1, "key": "display_name", "stringValue": identifier}]}
    )
    found = _list_all_recurring_runs(client, namespace, filter=name_filter)
    if len(found) != 1:
        raise CloudInputError(
            f"{len(found)} Kubeflow recurring runs are named {identifier!r}; use --schedule-id"
            if found
            else f"no Kubeflow recurring run is named {identifier!r}"
        )
    return found[0].recurring_run_id


def list_kubeflow_recurring_runs(
    client, *, namespace: str | None = None, experiment: str | None = None
) -> list[dict[str, Any]]:
    """Recurring runs in the namespace (or one experiment), as plain dicts for printing."""
    filters: dict[str, Any] = {}
    if experiment:
        try:
            found = client.get_experiment(experiment_name=experiment, namespace=namespace)
        except ValueError as error:  # kfp.Client: no (or several) experiments by that name
            raise CloudInputError(f"--experiment {experiment!r}: {error}") from None
        filters["experiment_id"] = found.experiment_id
    rows = []
    for run in _list_all_recurring_runs(client, namespace, **filters):
        cron = run.trigger.cron_schedule.cron if run.trigger and run.trigger.cron_schedule else ""
        rows.append(
            {
                "id": run.recurring_run_id,
                "name": run.display_name,
                "state": str(run.status or run.mode or ""),
                "cron": cron,
                "max_concurrent_runs": run.max_concurrency,
                "next_run": "",
            }
        )
    return rows


def connect_kubeflow(host: str | None, namespace: str | None):
    _check_kubeflow_location(host, namespace)
    return connect(KubeflowSettings(host=host, namespace=namespace))
