"""The petseg pipeline: validate config → ingest → class weights → train → evaluate → push.

``create_pipeline`` takes every setting from a ``PipelineConfig`` (TFX's
``create_pipeline`` style). The whole config is compiled in; the pipeline's
parameters are typed scalars for what people change per run
(``components.platform.config.RUNTIME_PARAMETERS``), each defaulting to the compiled
value. The first task puts the run's values on the fields they name,
validates the whole config and hands each task its sections, so a run-time
value changes only what it names. Task settings (images, resources,
accelerator, retries, caching) are fixed at compile time from ``config.runtime``.
"""

import inspect
from pathlib import Path
from typing import Literal, get_args

from kfp import compiler, dsl

from components.platform.config import (
    RUNTIME_PARAMETERS,
    NotifyConfig,
    PipelineConfig,
    RuntimeConfig,
    runtime_parameter_defaults,
    runtime_parameter_types,
)
from pipelines.steps import STEP_BY_NAME, CachePolicy

Target = Literal["vertex", "kubeflow", "local"]
TARGETS: tuple[str, ...] = get_args(Target)


def check_notify_target(settings: NotifyConfig, target: str) -> None:
    """Refuses, before compiling, a webhook URL source the target's notify task cannot read."""
    if settings.emails and target != "vertex":
        raise ValueError(
            f"notify.emails is Vertex AI's notification email; the {target} target cannot "
            "send it (use the webhook, or --set notify.emails=[])"
        )
    if settings.emails and settings.enabled:
        raise ValueError(
            "notify: a pipeline has one exit handler (KFP does not nest them), so it runs "
            "either Vertex AI's email (notify.emails) or the webhook; set one of them"
        )
    if not settings.enabled:
        return
    if target == "vertex" and not settings.webhook_url_secret:
        raise ValueError(
            "notify: a Vertex AI task has no environment of yours to read "
            f"{settings.webhook_url_env} from; set notify.webhook_url_secret (Secret Manager)"
        )
    if target == "kubeflow" and not (settings.kubernetes_secret or settings.webhook_url_secret):
        raise ValueError(
            "notify: a Kubeflow task cannot read the webhook URL from your environment; set "
            "notify.kubernetes_secret (mounted as notify.webhook_url_env) or "
            "notify.webhook_url_secret"
        )


def configure(
    task: dsl.PipelineTask,
    runtime: RuntimeConfig,
    caching: dict[CachePolicy, bool],
    *,
    retries: int = 0,
    launcher: bool = False,
) -> dsl.PipelineTask:
    """Display name, caching, image and resources of a task, from its row in the step table.

    A launcher (a Google Cloud custom-job task running train on several replicas) keeps
    the image and machines its job spec names.
    """
    step = STEP_BY_NAME["train" if launcher else task.name]
    task.set_display_name(step.display_name)
    task.set_caching_options(caching[step.cache])
    if retries:
        task.set_retry(num_retries=retries, backoff_duration="60s", backoff_factor=2.0)
    if launcher:
        return task
    gpu = step.image == "gpu"
    resources = runtime.train_resources if gpu else runtime.default_resources
    task.set_container_image(runtime.gpu_image if gpu else runtime.cpu_image)
    return task.set_cpu_limit(resources.cpu).set_memory_limit(resources.memory)


def create_pipeline(
    config: PipelineConfig,
    *,
    target: Target = "vertex",
    scheduled: bool = False,
):
    """Builds the pipeline function for one config.

    Args:
        config: every setting, compiled in; the run-time parameters default to its values.
        target: 'kubeflow' adds Kubernetes GPU scheduling (node selector,
            tolerations) that Vertex AI would reject; 'local' and 'vertex' do not.
        scheduled: a recurring run: re-ingest and retrain (no cache) unless
            ``runtime.cache_training_on_schedule`` asks otherwise, bless only a
            model better than production (``evaluation.require_improvement``), and
            skip training when the data is what production was trained on
            (``data.skip_unchanged``, unless the config turns it off).

    Returns:
        The ``@dsl.pipeline`` function, ready to compile or run with kfp.local.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")

    from components.data.skip_unchanged import TRAIN as DATA_CHANGED
    from components.ops.class_weights import compute_class_weights
    from components.ops.data_validation import data_statistics
    from components.ops.enforce_data_checks import enforce_data_checks
    from components.ops.evaluate import evaluate
    from components.ops.ingest import ingest
    from components.ops.notify import notify_run_end
    from components.ops.predict import predict
    from components.ops.push import push
    from components.ops.resolve_config import resolve_config
    from components.ops.skip_unchanged import check_data_changed
    from components.ops.train import train

    runtime = config.runtime
    cache_data = runtime.enable_caching and not scheduled
    # A folder or manifest can change under the same config: never reuse a cached ingest
    # of it (the Dataset it writes is new each run, so later steps' cache keys change too).
    caching: dict[CachePolicy, bool] = {
        "never": False,
        "config": runtime.enable_caching,
        "ingest": cache_data and config.data.source == "tfds",
        "data": cache_data,
        "training": runtime.enable_caching
        and (runtime.cache_training_on_schedule if scheduled else True),
    }
    has_accelerator = bool(runtime.accelerator_type) and runtime.accelerator_count > 0
    # Several training machines: a Vertex AI custom job of replicas (refused elsewhere).
    from pipelines.kubeflow import refuse_replicas

    refuse_replicas(config.training, target)
    multi_replica = config.training.replica_count > 1
    if has_accelerator and target == "kubeflow":
        # Refused here, before anything is compiled, when it cannot be requested.
        from pipelines.kubeflow import apply_kubernetes_gpu_scheduling, kubernetes_accelerator

        kubeflow_gpu = kubernetes_accelerator(runtime)
    # A schedule exists to replace production with a better model, not an equal one.
    if scheduled:
        config = config.model_copy(deep=True)
        config.evaluation.require_improvement = True
    # Unchanged data has nothing new to teach production's model (on for schedules).
    skip_unchanged = scheduled if config.data.skip_unchanged is None else config.data.skip_unchanged
    compiled_config = config.to_json()

    def step(task: dsl.PipelineTask, retries: int = 0, launcher: bool = False):
        return configure(task, runtime, caching, retries=retries, launcher=launcher)

    def run_tasks(parameters: dict):
        # No task-level retries but train's: the other tasks retry transient errors
        # (network, GCS 429/5xx) in their process, and a deterministic failure (an invalid
        # config, a bad record, a mismatch) would only fail again (components/platform/retry.py).
        resolved = step(resolve_config(compiled_config=compiled_config, **parameters)).outputs
        ingest_task = step(ingest(data_config=resolved["data_config"]))
        # Never cached: it compares with the statistics pushed with production's latest model.
        statistics_task = step(
            data_statistics(
                dataset=ingest_task.outputs["dataset"],
                checks_config=config.checks.model_dump_json(),
                push_config=resolved["push_config"],
            )
        )
        # A failed `error` check stops the run here, before training.
        checks_task = step(enforce_data_checks(statistics=statistics_task.outputs["statistics"]))

        if not skip_unchanged:
            train_tasks(resolved, ingest_task, statistics_task, checks_task)
            return
        # One output (its 'Output'), so dsl.If works in every runner, kfp.local included.
        check_task = step(
            check_data_changed(
                dataset=ingest_task.outputs["dataset"], push_config=resolved["push_config"]
            )
        )
        with dsl.If(check_task.output == DATA_CHANGED, name="data-changed"):
            train_tasks(resolved, ingest_task, statistics_task, checks_task)

    def train_tasks(resolved, ingest_task, statistics_task, checks_task):
        weights_task = step(
            compute_class_weights(
                dataset=ingest_task.outputs["dataset"],
                model_config=resolved["model_config"],
                training_config=resolved["training_config"],
            )
        )

        train_op = train
        if multi_replica:
            from pipelines.vertex import multi_replica_train

            train_op = multi_replica_train(train, runtime, config.training)
        train_task = step(
            train_op(
                dataset=ingest_task.outputs["dataset"],
                class_weights=weights_task.outputs["class_weights"],
                model_config=resolved["model_config"],
                training_config=resolved["training_config"],
            ),
            # A preempted or evicted pod is started again and resumes from its checkpoint;
            # the retried attempt re-raises a recorded deterministic failure at once.
            retries=runtime.retries,
            launcher=multi_replica,
        ).after(checks_task)
        if multi_replica:
            pass  # the custom job's worker pools carry the machine type and accelerator
        elif has_accelerator and target == "kubeflow":
            # Kubernetes wants a resource name (nvidia.com/gpu) and a node selector.
            train_task.set_accelerator_type(kubeflow_gpu[0])
            train_task.set_accelerator_limit(runtime.accelerator_count)
            apply_kubernetes_gpu_scheduling(train_task, runtime, node_selector=kubeflow_gpu[1])
        elif has_accelerator:
            train_task.set_accelerator_type(runtime.accelerator_type)
            train_task.set_accelerator_limit(runtime.accelerator_count)

        # Never cached: the baseline it compares against (production's latest) changes.
        evaluate_task = step(
            evaluate(
                model=train_task.outputs["model"],
                dataset=ingest_task.outputs["dataset"],
                model_config=resolved["model_config"],
                evaluation_config=resolved["evaluation_config"],
                push_config=resolved["push_config"],
                data_statistics=statistics_task.outputs["statistics"],
            )
        )

        # Always present; it pushes only a blessed model to a non-empty destination.
        push_task = step(
            push(
                model=train_task.outputs["model"],
                metrics=evaluate_task.outputs["metrics"],
                blessed=evaluate_task.outputs["blessed"],
                blessing_reason=evaluate_task.outputs["reason"],
                data_statistics=statistics_task.outputs["statistics"],
                push_config=resolved["push_config"],
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            )
        )

        # Only when an input is configured; it predicts nothing (and says why) without a push.
        # Never cached: the input folder's images and the pushed version change between runs.
        if config.predict.input:
            step(
                predict(
                    pushed_model=push_task.outputs["pushed_model"],
                    predict_config=config.predict.model_dump_json(),
                )
            )

    notify_settings = config.notify
    if notify_settings.enabled or notify_settings.emails:
        check_notify_target(notify_settings, target)

    def segmentation_pipeline(*values):
        parameters = dict(zip(RUNTIME_PARAMETERS, values, strict=True))
        if notify_settings.emails:
            # Vertex AI's own run-end email is the exit handler's task.
            from google_cloud_pipeline_components.v1.vertex_notification_email import (
                VertexNotificationEmailOp,
            )

            email_task = VertexNotificationEmailOp(recipients=list(notify_settings.emails))
            email_task.set_display_name(STEP_BY_NAME[email_task.name].display_name)
            with dsl.ExitHandler(email_task, name="petseg-run"):
                run_tasks(parameters)
            return
        if not notify_settings.enabled:
            run_tasks(parameters)
            return
        # The exit handler's task runs after the others whatever happened to them and
        # reports the run's end. Its config says where to read the webhook URL, never the URL.
        notify_task = step(notify_run_end(notify_config=notify_settings.model_dump_json()))
        if target == "kubeflow" and notify_settings.kubernetes_secret:
            from pipelines.kubeflow import mount_notify_secret

            mount_notify_secret(notify_task, notify_settings)
        with dsl.ExitHandler(notify_task, name="petseg-run"):
            run_tasks(parameters)

    # The parameters are typed from the config's fields and default to the compiled values.
    types = runtime_parameter_types()
    defaults = runtime_parameter_defaults(config)
    segmentation_pipeline.__signature__ = inspect.Signature(
        [
            inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=defaults[name],
                annotation=types[name],
            )
            for name in RUNTIME_PARAMETERS
        ]
    )
    segmentation_pipeline = dsl.pipeline(
        name=config.name,
        description=(
            "Oxford-IIIT Pet segmentation: validate config, ingest, class weights, train, "
            "evaluate, push."
        ),
    )(segmentation_pipeline)
    return segmentation_pipeline


def compile_pipeline(
    config: PipelineConfig,
    output_path: str | Path,
    *,
    target: Target = "vertex",
    scheduled: bool = False,
) -> str:
    """Compiles the pipeline for ``config`` to IR YAML at ``output_path``."""
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(
        pipeline_func=create_pipeline(config, target=target, scheduled=scheduled),
        package_path=str(output_path),
    )
    return str(output_path)
