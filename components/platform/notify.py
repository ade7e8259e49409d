"""The end-of-run report: what happened to a run, sent to a webhook whose URL is a secret.

The URL carries a token, so it is read only here, at run time, from where
``NotifyConfig`` says (an environment variable, or a Secret Manager version), and
never printed: errors name the source, the HTTP status or the network reason, not
the URL.
"""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel

from components.platform.config import NotifyConfig
from components.platform.contracts import NotifyOutcome, StepInputs

SECRET_MANAGER_API = "https://secretmanager.googleapis.com/v1"
MAX_ERROR_CHARS = 500
# A status message that lists the failed tasks ("... The failed tasks are: [train].").
_VERTEX_JOB = re.compile(r"projects/[^/]+/locations/([a-z0-9-]+)/pipelineJobs/[^/]+")
_FAILED_TASKS = re.compile(r"failed tasks are:\s*\[([^\]]*)\]", re.IGNORECASE)


class NotifyError(RuntimeError):
    """The report could not be sent; the message never contains the webhook URL."""


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


class RunStatus(BaseModel):
    """The exit handler's input: KFP's ``PipelineTaskFinalStatus`` and the run's name."""

    state: str  # SUCCEEDED, FAILED, CANCELLED
    pipeline_job: str  # the pipeline job's resource name
    task_name: str = ""  # the task (group) the status is about
    error_message: str = ""  # '' on success
    run_name: str = ""  # the run's display name, when known

    @classmethod
    def of(cls, status: Any, run_name: str) -> Self:
        """From the ``dsl.PipelineTaskFinalStatus`` KFP fills in."""
        return cls(
            state=status.state,
            pipeline_job=status.pipeline_job_resource_name,
            task_name=status.pipeline_task_name,
            error_message=status.error_message or "",
            run_name=run_name,
        )


def run_report(status: RunStatus, task_errors: list[dict[str, str]] | None = None) -> dict:
    """What the webhook receives: the run, its final state, the failed tasks, the error line.

    ``task_errors``: ``[{task, error}]`` of the failed tasks, when known
    (failed_task_errors); they name the failed tasks and give the error line.
    """
    state, job, run_name = status.state, status.pipeline_job, status.run_name
    error_line = _first_line(status.error_message)
    failed_tasks: list[str] = []
    task_errors = [dict(item) for item in task_errors or []]
    if state != "SUCCEEDED":
        listed = _FAILED_TASKS.search(status.error_message)
        if task_errors:
            failed_tasks = [item["task"] for item in task_errors]
            error_line = task_errors[0]["error"] or error_line
        elif listed:
            failed_tasks = [t.strip(" '\"") for t in listed.group(1).split(",") if t.strip()]
        elif status.task_name:
            failed_tasks = [status.task_name]
    return {
        "run": run_name if run_name and not run_name.startswith("{{") else job,
        "pipeline_job": job,
        "state": state,
        "succeeded": state == "SUCCEEDED",
        "failed_tasks": failed_tasks,
        "error": error_line[:MAX_ERROR_CHARS],
        "task_errors": task_errors,
        "text": summary_line(state, run_name or job, failed_tasks, error_line),
    }


def vertex_failed_tasks(pipeline_job: str, *, client: Any = None) -> list[dict[str, str]]:
    """``[{task, error}]`` of a Vertex AI pipeline job's failed tasks, from GetPipelineJob.

    Only tasks that ran a container count (the DAG and exit-handler groups that failed
    because of them have no executor); each error is the first line Vertex recorded.
    Returns [] for a job that is not a Vertex AI resource name (a local run).
    """
    match = _VERTEX_JOB.fullmatch(pipeline_job)
    if not match:
        return []
    from google.cloud import aiplatform_v1

    if client is None:
        client = aiplatform_v1.PipelineServiceClient(
            client_options={"api_endpoint": f"{match.group(1)}-aiplatform.googleapis.com"}
        )
    job = client.get_pipeline_job(request=aiplatform_v1.GetPipelineJobRequest(name=pipeline_job))
    failed = aiplatform_v1.PipelineTaskDetail.State.FAILED
    return [
        {"task": task.task_name, "error": _first_line(task.error.message)[:MAX_ERROR_CHARS]}
        for task in job.job_detail.task_details
        if task.state == failed and _ran_a_container(task)
    ]


def failed_task_errors(pipeline_job: str, *, task_folder: Any = None) -> list[dict[str, str]]:
    """``[{task, error}]`` of a failed run: from the Vertex AI job, else the tasks' records.

    Vertex AI's job names every failed task (``vertex_failed_tasks``). Elsewhere
    (kfp.local) the status names only the exit handler's group, so the failed tasks'
    own ``failure.json`` records next to the notify task's folder say it
    (``components.platform.failures``). A lookup that fails is printed by its type only and
    leaves the report to the status.

    Args:
        pipeline_job: the status's pipeline job resource name.
        task_folder: the notify task's own folder (default: from its executor input).
    """
    from components.platform import failures

    try:
        task_errors = vertex_failed_tasks(pipeline_job)
    except Exception as error:
        print(f"could not read the failed tasks from the job: {type(error).__name__}")
        task_errors = []
    if task_errors:
        return task_errors
    folder = failures.task_folder() if task_folder is None else task_folder
    return failures.run_failures(folder)


def _ran_a_container(task: Any) -> bool:
    detail = task.executor_detail
    return "container_detail" in detail or "custom_job_detail" in detail


def summary_line(state: str, run: str, failed_tasks: list[str], error_line: str) -> str:
    """One human line (chat webhooks such as Slack's show the ``text`` field)."""
    if state == "SUCCEEDED":
        return f"petseg run {run} succeeded"
    where = f" in {', '.join(failed_tasks)}" if failed_tasks else ""
    return f"petseg run {run} {state.lower()}{where}: {error_line[:MAX_ERROR_CHARS]}".rstrip(": ")


def should_send(settings: NotifyConfig, report: Mapping[str, Any]) -> bool:
    return settings.enabled and (settings.report == "always" or not report["succeeded"])


def webhook_url(
    settings: NotifyConfig, *, environ: Mapping[str, str] | None = None, session: Any = None
) -> str:
    """Reads the webhook URL from its configured source, at call time."""
    environ = os.environ if environ is None else environ
    if settings.webhook_url_env:
        url = environ.get(settings.webhook_url_env, "").strip()
        if not url:
            raise NotifyError(
                f"environment variable {settings.webhook_url_env} holding the webhook URL is "
                "unset or empty in the notify task"
            )
    elif settings.webhook_url_secret:
        url = _access_secret(settings.webhook_url_secret, session=session).strip()
    else:
        raise NotifyError("no webhook configured (notify.webhook_url_env or webhook_url_secret)")
    if not url.startswith(("https://", "http://")):
        raise NotifyError("the webhook URL read from its secret is not an http(s) URL")
    return url


def _access_secret(name: str, *, session: Any = None) -> str:
    """The secret version's payload, through Secret Manager's REST API with ADC."""
    if session is None:
        import google.auth
        from google.auth.transport.requests import AuthorizedSession

        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        session = AuthorizedSession(credentials)
    response = session.get(f"{SECRET_MANAGER_API}/{name}:access", timeout=30)
    if response.status_code != 200:
        raise NotifyError(
            f"Secret Manager refused {name} (HTTP {response.status_code}); the pipeline's "
            "service account needs roles/secretmanager.secretAccessor on it"
        )
    return base64.b64decode(response.json()["payload"]["data"]).decode("utf-8")


def post_report(url: str, report: Mapping[str, Any], *, timeout_s: float) -> int:
    """POSTs the report as JSON; returns the HTTP status. Errors never show the URL."""
    request = urllib.request.Request(
        url,
        data=json.dumps(report).encode("utf-8"),
        headers={"Content-Type": "application/json", "User-Agent": "petseg-notify"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        raise NotifyError(f"the webhook answered HTTP {error.code}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise NotifyError(f"the webhook could not be reached: {type(reason).__name__}") from None


def send(settings: NotifyConfig, report: Mapping[str, Any], **kwargs: Any) -> int:
    """Reads the URL and posts the report; returns the webhook's HTTP status."""
    return post_report(webhook_url(settings, **kwargs), report, timeout_s=settings.timeout_s)


class NotifyInputs(StepInputs):
    """Where the webhook URL is read and when to report; the run's final status."""

    notify: NotifyConfig
    status: RunStatus


def run(inputs: NotifyInputs) -> NotifyOutcome:
    """The exit handler's step: reports the run's end when the settings say so."""
    settings, status = inputs.notify, inputs.status
    task_errors = []
    if status.state != "SUCCEEDED":  # which tasks failed and their error lines
        task_errors = failed_task_errors(status.pipeline_job)
    report = run_report(status, task_errors)
    sent = should_send(settings, report)
    code = send(settings, report) if sent else 0
    return NotifyOutcome(state=status.state, sent=sent, policy=settings.report, http_status=code)
