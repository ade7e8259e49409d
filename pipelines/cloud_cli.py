"""``petseg submit`` and ``petseg schedule``: argparse wiring over vertex, kubeflow, schedules.

The main CLI passes its config parent parser (--preset/--config/--set), a
``config_loader(args) -> PipelineConfig`` and a ``compile_fn(config, path, *,
target, scheduled) -> str``, so this module does not depend on it. Every
option is checked before the pipeline is compiled or anything is sent; a bad
option exits with status 2 and a message naming it, a failed run (--wait) 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from components.platform.config import (
    ConfigError,
    PipelineConfig,
    apply_runtime_parameters,
    build_config,
    parse_parameter_arguments,
    parse_runtime_parameter,
)
from pipelines.kubeflow import DEFAULT_EXPERIMENT, KubeflowSettings
from pipelines.vertex import (
    CloudInputError,
    VertexSettings,
    parse_key_values,
    raise_problems,
)

TARGETS = ("vertex", "kubeflow")
ConfigLoader = Callable[[argparse.Namespace], Any]
CompileFn = Callable[..., str]

# Options that only one target understands: giving them to the other is a mistake, not a no-op.
_VERTEX_ONLY = {
    "project": "--project",
    "region": "--region",
    "labels": "--labels",
    "encryption_key": "--encryption-key",
    "network": "--network",
}
_KUBEFLOW_ONLY = {"host": "--host", "namespace": "--namespace", "experiment": "--experiment"}
# The main CLI's configuration options (its parent parser's destinations).
_CONFIG_OPTIONS = {"preset": "--preset", "config": "--config", "overrides": "--set"}


def _target_parent(*, vertex_run: bool, kubeflow_run: bool) -> argparse.ArgumentParser:
    """Target and location options; ``*_run`` adds what a run (not a lookup) needs."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--target", choices=TARGETS, required=True, help="where the run goes")
    vertex = parent.add_argument_group("Vertex AI")
    vertex.add_argument("--project", help="Google Cloud project id")
    vertex.add_argument("--region", help="Vertex AI region, e.g. us-central1")
    kubeflow = parent.add_argument_group("Kubeflow")
    kubeflow.add_argument("--host", help="KFP API endpoint, e.g. http://localhost:8080")
    kubeflow.add_argument("--namespace", help="Kubernetes namespace (multi-user clusters)")
    kubeflow.add_argument(
        "--experiment", help=f"KFP experiment (default {DEFAULT_EXPERIMENT} when creating)"
    )
    if vertex_run:
        vertex.add_argument("--labels", metavar="K=V,...", help="labels on the run")
        vertex.add_argument("--encryption-key", help="Cloud KMS key name (CMEK) for the run")
        vertex.add_argument("--network", help="VPC network: projects/NUMBER/global/networks/NAME")
    if vertex_run or kubeflow_run:
        run = parent.add_argument_group("run")
        run.add_argument(
            "--pipeline-root",
            help="where artifacts go: gs:// on Vertex AI; gs://, s3:// or minio:// on Kubeflow",
        )
        run.add_argument(
            "--service-account",
            help="runs as this account (Vertex: e-mail; Kubeflow: Kubernetes service account)",
        )
        caching = run.add_mutually_exclusive_group()
        caching.add_argument(
            "--no-cache",
            dest="enable_caching",
            action="store_false",
            default=None,
            help="turn caching off for every task of this run",
        )
        caching.add_argument(
            "--enable-caching",
            dest="enable_caching",
            action="store_true",
            help="turn caching on for every task (default: as compiled)",
        )
        run.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="run-time parameter, e.g. --param epochs=30 (repeatable; default: the "
            "compiled value); see 'Configuration' in the README for the names",
        )
        run.add_argument(
            "--template",
            type=Path,
            help="send this compiled pipeline instead of compiling the configuration "
            "(for schedules: 'petseg compile --scheduled')",
        )
    return parent


def _check_target_options(args: argparse.Namespace) -> None:
    wrong = _KUBEFLOW_ONLY if args.target == "vertex" else _VERTEX_ONLY
    given = [flag for dest, flag in wrong.items() if getattr(args, dest, None)]
    if given:
        raise CloudInputError(
            f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to "
            f"--target {args.target}"
        )


def _vertex_settings(args: argparse.Namespace) -> VertexSettings:
    return VertexSettings(
        project=args.project,
        region=args.region,
        pipeline_root=args.pipeline_root,
        service_account=args.service_account,
        labels=parse_key_values(args.labels, "--labels"),
        enable_caching=args.enable_caching,
        encryption_key=args.encryption_key,
        network=args.network,
    )


def _kubeflow_settings(args: argparse.Namespace) -> KubeflowSettings:
    return KubeflowSettings(
        host=args.host,
        namespace=args.namespace,
        experiment=args.experiment or DEFAULT_EXPERIMENT,
        pipeline_root=args.pipeline_root,
        service_account=args.service_account,
        enable_caching=args.enable_caching,
    )


def _settings(args: argparse.Namespace) -> VertexSettings | KubeflowSettings:
    _check_target_options(args)
    settings = _vertex_settings(args) if args.target == "vertex" else _kubeflow_settings(args)
    settings.validate()
    return settings


# The first task of a compiled petseg pipeline carries the whole config as a constant.
_RESOLVE_TASK = "resolve-config"


def compiled_config_of(template_path: str | Path) -> PipelineConfig | None:
    """The config compiled into a petseg template (None for another pipeline)."""
    try:
        documents = list(yaml.safe_load_all(Path(template_path).read_text()))
        task = documents[0]["root"]["dag"]["tasks"][_RESOLVE_TASK]
        payload = task["inputs"]["parameters"]["compiled_config"]["runtimeValue"]["constant"]
    except (OSError, yaml.YAMLError, KeyError, TypeError, IndexError):
        return None
    return build_config(json.loads(payload), source=f"config compiled into {template_path}")


def _runtime_values(
    config: PipelineConfig, parameters: dict[str, str]
) -> tuple[PipelineConfig, dict]:
    """Typed run-time values and the config they make, refused by name before sending."""
    values = {name: parse_runtime_parameter(name, text) for name, text in parameters.items()}
    return apply_runtime_parameters(config, values), values


def _template(
    args: argparse.Namespace,
    workdir: str,
    config_loader: ConfigLoader,
    compile_fn: CompileFn,
    *,
    scheduled: bool,
    parameters: dict[str, str],
) -> tuple[str, Any, dict[str, Any]]:
    """The template to send, its config, and the typed run-time values.

    The template is --template as given, else the configuration compiled now. The run-time
    values are applied to the compiled config and the result is checked as the first task
    would check it, plus the cloud checks, so a bad value is refused before anything is sent.
    """
    if args.template is not None:
        given = [flag for dest, flag in _CONFIG_OPTIONS.items() if getattr(args, dest, None)]
        if given:
            raise CloudInputError(
                f"--template is already compiled; {', '.join(given)} would be ignored"
            )
        config = compiled_config_of(args.template)
        if config is None:  # another pipeline: its own parameter names and types are checked
            return str(args.template), None, dict(parameters)
        _, values = _runtime_values(config, parameters)
        _warn_on_image_tags(config)
        return str(args.template), config, values
    config = config_loader(args)
    effective, values = _runtime_values(config, parameters)
    _check_cloud_config(effective, args.target)
    _warn_on_image_tags(config)
    if scheduled:
        _check_scheduled_config(effective)
    output = Path(workdir) / f"{config.name}.yaml"
    if scheduled:
        path = compile_fn(config, output, target=args.target, scheduled=True)
    else:
        path = compile_fn(config, output, target=args.target)
    return str(path), config, values


# The unbuilt default image names in RuntimeConfig carry this project placeholder.
_IMAGE_PLACEHOLDER = "/PROJECT/"


def cloud_config_problems(config: PipelineConfig, target: str) -> list[str]:
    """What would make a run fail or lose its output once it is in the cloud.

    Tasks run in containers there: a relative or container-local path is gone
    when the task ends, and a placeholder image cannot be pulled.
    """
    found = []
    for field in ("cpu_image", "gpu_image"):
        image = getattr(config.runtime, field)
        if _IMAGE_PLACEHOLDER in image:
            found.append(
                f"runtime.{field} {image!r} is the unbuilt placeholder; build and push the "
                f"images (containers/build.sh) and --set runtime.{field}=REGISTRY/IMAGE:TAG"
            )
    paths = {
        "push.destination": config.push.destination,
        "data.data_dir": config.data.data_dir,
        "data.manual_dir": config.data.manual_dir,
        "data.path": config.data.path,
    }
    for field, path in paths.items():
        if not path or path.startswith("gs://"):
            continue
        if not path.startswith("/"):
            found.append(
                f"{field} {path!r} is a relative local path, which does not exist in the "
                "task's container; use gs://bucket/prefix"
            )
        elif target == "vertex" and not path.startswith("/gcs/"):
            found.append(
                f"{field} {path!r} is inside the Vertex AI task's container and is lost when "
                "it ends; use gs://bucket/prefix"
            )
    return found


def _image_tag(image: str) -> str | None:
    """The tag of an image reference; None for a digest reference or an untagged name."""
    if "@" in image:
        return None
    name, _, tag = image.rpartition(":")
    return tag if name and "/" not in tag else None


def _same_commit(tag: str, commit: str) -> bool:
    """Whether a tag names the commit (short or full hashes, at least 7 digits)."""
    return min(len(tag), len(commit)) >= 7 and (tag.startswith(commit) or commit.startswith(tag))


def image_tag_mismatch(config: PipelineConfig) -> str:
    """One line naming the task images whose tag is neither this petseg's version nor commit.

    The components run the package installed in their image, not this checkout, so an
    image of another version runs other code than the pipeline was compiled from. A
    digest reference (``image@sha256:...``) is taken as deliberate and not compared.
    """
    from components.platform import provenance

    version = provenance.package_version()
    commit = provenance.git_commit().removesuffix("-dirty")
    differing = [
        f"runtime.{field} tag {tag!r}"
        for field in ("cpu_image", "gpu_image")
        if (tag := _image_tag(getattr(config.runtime, field))) is not None
        and tag != version
        and not _same_commit(tag.removesuffix("-dirty"), commit)
    ]
    if not differing:
        return ""
    return (
        f"{' and '.join(differing)} {'differs' if len(differing) == 1 else 'differ'} from "
        f"petseg {version}; the tasks run the petseg "
        f"in the images (build them with containers/build.sh)"
    )


def _warn_on_image_tags(config: PipelineConfig) -> None:
    mismatch = image_tag_mismatch(config)
    if mismatch:
        print(f"warning: {mismatch}", file=sys.stderr)


def _check_cloud_config(config: PipelineConfig, target: str) -> None:
    problems = cloud_config_problems(config, target)
    if problems:
        raise CloudInputError(
            "the configuration cannot run in the cloud:\n  " + "\n  ".join(problems)
        )


def _check_scheduled_config(config: PipelineConfig) -> None:
    """Scheduled retraining exists to replace production only with a better model."""
    if config.evaluation.baseline == "none":
        raise CloudInputError(
            "a scheduled retraining compares each new model with production, but "
            "evaluation.baseline is 'none'; use --set evaluation.baseline=latest"
        )
    if not config.push.destination:
        _note(
            "push.destination is empty: scheduled runs will evaluate but never push a model "
            "(set it, or --param push_destination=gs://...)"
        )


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _is_api_error(error: Exception) -> bool:
    """Errors the Vertex AI or KFP API answered with (checked by module: no import needed)."""
    return any(
        cls.__module__.startswith(("google.api_core.exceptions", "kfp_server_api"))
        for cls in type(error).__mro__
    )


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad input exits 2 with its message; an API refusal exits 1 with the API's message."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except (CloudInputError, ConfigError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except Exception as error:
            if not _is_api_error(error):
                raise
            print(f"error: the {args.target} API refused the request: {error}", file=sys.stderr)
            return 1

    return run


def _cmd_submit(
    args: argparse.Namespace, *, config_loader: ConfigLoader, compile_fn: CompileFn
) -> int:
    settings = _settings(args)
    parameters = parse_parameter_arguments(args.param)
    if args.poll_seconds <= 0:
        raise CloudInputError("--poll-seconds must be positive")
    with tempfile.TemporaryDirectory(prefix="petseg-submit-") as workdir:
        template, _, parameters = _template(
            args, workdir, config_loader, compile_fn, scheduled=False, parameters=parameters
        )
        if args.target == "vertex":
            from pipelines.vertex import submit_pipeline_job, wait_for_pipeline_job

            job = submit_pipeline_job(
                template, settings, parameter_values=parameters, display_name=args.display_name
            )
            if not args.wait:
                return 0
            state = wait_for_pipeline_job(job, poll_seconds=args.poll_seconds)
            return 0 if state == "PIPELINE_STATE_SUCCEEDED" else 1

        from pipelines.kubeflow import connect, submit_run, wait_for_run

        client = connect(settings)
        run_id = submit_run(
            template,
            settings,
            parameter_values=parameters,
            run_name=args.display_name,
            client=client,
        )
        if not args.wait:
            return 0
        state = wait_for_run(client, run_id, poll_seconds=args.poll_seconds)
        return 0 if state == "SUCCEEDED" else 1


def _cmd_schedule_create(
    args: argparse.Namespace, *, config_loader: ConfigLoader, compile_fn: CompileFn
) -> int:
    from pipelines.schedules import (
        ScheduleSettings,
        create_kubeflow_recurring_run,
        create_vertex_schedule,
    )

    settings = _settings(args)
    parameters = parse_parameter_arguments(args.param)
    # Checked before compiling; the name default needs the config, so it is filled in below.
    probe = ScheduleSettings(
        display_name=args.schedule_name or "petseg-retrain",
        cron=args.cron,
        time_zone=args.time_zone,
        max_concurrent_runs=args.max_concurrent_runs,
        catch_up=args.catch_up,
        max_runs=args.max_runs,
    )
    raise_problems(probe.problems())
    with tempfile.TemporaryDirectory(prefix="petseg-schedule-") as workdir:
        template, config, parameters = _template(
            args, workdir, config_loader, compile_fn, scheduled=True, parameters=parameters
        )
        name = args.schedule_name or f"{config.name if config else 'petseg'}-retrain"
        schedule = dataclasses.replace(probe, display_name=name)
        if args.target == "vertex":
            create_vertex_schedule(template, settings, schedule, parameter_values=parameters)
        else:
            create_kubeflow_recurring_run(template, settings, schedule, parameter_values=parameters)
    return 0


def _identity(args: argparse.Namespace) -> tuple[str, bool]:
    """(identifier, by_name) from --schedule-name or --schedule-id."""
    if args.schedule_name is not None:
        return args.schedule_name, True
    return args.schedule_id, False


def _cmd_schedule_list(args: argparse.Namespace) -> int:
    from pipelines.schedules import (
        connect_kubeflow,
        list_kubeflow_recurring_runs,
        list_vertex_schedules,
    )

    _check_target_options(args)
    if args.target == "vertex":
        rows = list_vertex_schedules(args.project, args.region)
    else:
        client = connect_kubeflow(args.host, args.namespace)
        rows = list_kubeflow_recurring_runs(
            client, namespace=args.namespace, experiment=args.experiment
        )
    columns = ("id", "name", "state", "cron", "max_concurrent_runs", "next_run")
    print("\t".join(columns))
    for row in rows:
        print("\t".join(str(row[column]) for column in columns))
    return 0


def _cmd_schedule_change(args: argparse.Namespace, *, action: str) -> int:
    from pipelines import schedules

    _check_target_options(args)
    if args.target == "kubeflow" and getattr(args, "catch_up", False):
        raise CloudInputError(
            "--catch-up: a Kubeflow recurring run's catch-up is set when it is created"
        )
    identifier, by_name = _identity(args)
    if args.target == "vertex":
        schedule = schedules.find_vertex_schedule(
            args.project, args.region, identifier, by_name=by_name
        )
        if action == "pause":
            schedules.pause_vertex_schedule(schedule)
        elif action == "resume":
            schedules.resume_vertex_schedule(schedule, catch_up=args.catch_up)
        else:
            schedules.delete_vertex_schedule(schedule)
        print(f"{action}d Vertex AI schedule {schedule.resource_name}")
        return 0
    if not by_name:  # an id's form is checked before connecting
        schedules.find_kubeflow_recurring_run(None, identifier)
    client = schedules.connect_kubeflow(args.host, args.namespace)
    run_id = schedules.find_kubeflow_recurring_run(
        client, identifier, namespace=args.namespace, by_name=by_name
    )
    if action == "pause":
        client.disable_recurring_run(run_id)
    elif action == "resume":
        client.enable_recurring_run(run_id)
    else:
        client.delete_recurring_run(run_id)
    print(f"{action}d Kubeflow recurring run {run_id}")
    return 0


def _add_schedule_identity(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--schedule-id", help="Vertex schedule id / Kubeflow recurring run id")
    which.add_argument("--schedule-name", help="the schedule's display name (must be unique)")


def add_cloud_commands(
    subparsers: argparse._SubParsersAction,
    *,
    config_loader: ConfigLoader,
    compile_fn: CompileFn,
    parent: argparse.ArgumentParser | None = None,
) -> None:
    """Adds ``submit`` and ``schedule create|list|pause|resume|delete`` to a CLI.

    Args:
        subparsers: the main parser's subcommands.
        config_loader: turns parsed arguments (--preset/--config/--set) into a config.
        compile_fn: ``compile_fn(config, output_path, *, target, scheduled)`` → path.
        parent: the parser holding the configuration options, shared with other commands.

    Each command sets ``handler`` (args → exit status).
    """
    config_parents = [parent] if parent is not None else []
    run_parent = _target_parent(vertex_run=True, kubeflow_run=True)

    submit = subparsers.add_parser(
        "submit",
        parents=[*config_parents, run_parent],
        help="compile the pipeline and run it on Vertex AI Pipelines or Kubeflow",
    )
    submit.add_argument("--display-name", help="the run's name (default: pipeline name + time)")
    submit.add_argument("--wait", action="store_true", help="follow the run until it ends")
    submit.add_argument(
        "--poll-seconds", type=float, default=30.0, help="how often --wait checks the run"
    )
    submit.set_defaults(
        handler=_guarded(partial(_cmd_submit, config_loader=config_loader, compile_fn=compile_fn))
    )

    schedule = subparsers.add_parser(
        "schedule", help="scheduled retraining on Vertex AI or Kubeflow"
    )
    actions = schedule.add_subparsers(dest="schedule_action", required=True)

    create = actions.add_parser(
        "create",
        parents=[*config_parents, run_parent],
        help="create a schedule that re-ingests, retrains and compares with production",
    )
    create.add_argument(
        "--cron", required=True, help="five-field cron, e.g. '0 3 * * 1' (Mondays 03:00)"
    )
    create.add_argument("--time-zone", default="UTC", help="IANA time zone, e.g. Europe/Berlin")
    create.add_argument("--schedule-name", help="display name (default <config name>-retrain)")
    create.add_argument(
        "--max-concurrent-runs", type=int, default=1, help="runs allowed at once (default 1)"
    )
    create.add_argument(
        "--catch-up",
        action="store_true",
        help="Kubeflow: backfill runs missed while paused (off by default)",
    )
    create.add_argument("--max-runs", type=int, help="Vertex AI: stop after this many runs")
    create.set_defaults(
        handler=_guarded(
            partial(_cmd_schedule_create, config_loader=config_loader, compile_fn=compile_fn)
        )
    )

    lookup_parent = _target_parent(vertex_run=False, kubeflow_run=False)
    listing = actions.add_parser("list", parents=[lookup_parent], help="list schedules")
    listing.set_defaults(handler=_guarded(_cmd_schedule_list))

    for action, text in (
        ("pause", "pause a schedule"),
        ("resume", "resume a paused schedule"),
        ("delete", "delete a schedule"),
    ):
        command = actions.add_parser(action, parents=[lookup_parent], help=text)
        _add_schedule_identity(command)
        if action == "resume":
            command.add_argument(
                "--catch-up",
                action="store_true",
                help="Vertex AI: backfill the runs missed while paused (off by default)",
            )
        command.set_defaults(handler=_guarded(partial(_cmd_schedule_change, action=action)))
