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

import contextlib
import inspect
from pathlib import Path
from typing import Literal, get_args

from kfp import compiler, dsl

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
from components.platform.config import (
    RUNTIME_PARAMETERS,
    NotifyConfig,
    PipelineConfig,
    RuntimeConfig,
    runtime_parameter_defaults,
    runtime_parameter_types,
)
from components.platform.contracts import DataChange
from pipelines.kubeflow import (
    apply_kubernetes_gpu_scheduling,
    kubernetes_accelerator,
    mount_notify_secret,
    refuse_replicas,
)
from pipelines.steps import STEP_BY_NAME, CachePolicy
from pipelines.vertex import multi_replica_train

Target = Literal["vertex", "kubeflow", "local"]
TARGETS: tuple[str, ...] = get_args(Target)
POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD
DESCRIPTION = (
    "Oxford-IIIT Pet segmentation: validate config, ingest, class weights, train, evaluate, push."
)


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


def cache_policies(config: PipelineConfig, scheduled: bool) -> dict[CachePolicy, bool]:
    """Whether each cache policy of the step table reuses a cached result in this pipeline."""
    runtime = config.runtime
    cache_data = runtime.enable_caching and not scheduled
    return {
        "never": False,
        "config": runtime.enable_caching,
        # A folder or manifest can change under the same config: never reuse its ingest.
        "ingest": cache_data and config.data.source == "tfds",
        "data": cache_data,
        "training": runtime.enable_caching
        and (runtime.cache_training_on_schedule if scheduled else True),
    }


def configure(
    task: dsl.PipelineTask,
    config: PipelineConfig,
    caching: dict[CachePolicy, bool],
    *,
    retries: int = 0,
    launcher: bool = False,
) -> dsl.PipelineTask:
    """Display name, caching, image and resources of a task, from its row in the step table.

    A launcher (a Google Cloud custom-job task running train on several replicas) keeps
    the image and machines its job spec names.
    """
    runtime = config.runtime
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


def has_accelerator(runtime: RuntimeConfig) -> bool:
    return bool(runtime.accelerator_type) and runtime.accelerator_count > 0


def set_accelerator(task: dsl.PipelineTask, runtime: RuntimeConfig, target: str) -> None:
    """The train task's accelerator; Kubernetes wants a resource name and a node selector."""
    if not has_accelerator(runtime):
        return
    accelerator, node_selector = runtime.accelerator_type, None
    if target == "kubeflow":
        accelerator, node_selector = kubernetes_accelerator(runtime)
    task.set_accelerator_type(accelerator)
    task.set_accelerator_limit(runtime.accelerator_count)
    if target == "kubeflow":
        apply_kubernetes_gpu_scheduling(task, runtime, node_selector=node_selector)


def exit_task(config: PipelineConfig, target: str, caching: dict[CachePolicy, bool]):
    """The exit handler's task: Vertex AI's email, the webhook report, or None."""
    settings = config.notify
    if settings.emails:
        from google_cloud_pipeline_components.v1.vertex_notification_email import (
            VertexNotificationEmailOp,
        )

        task = VertexNotificationEmailOp(recipients=list(settings.emails))
        return task.set_display_name(STEP_BY_NAME[task.name].display_name)
    if not settings.enabled:
        return None
    # It reads the webhook URL at run time; its config says where, never the URL itself.
    task = configure(notify_run_end(notify_config=settings.model_dump_json()), config, caching)
    if target == "kubeflow" and settings.kubernetes_secret:
        mount_notify_secret(task, settings)
    return task


def create_pipeline(config: PipelineConfig, *, target: Target = "vertex", scheduled: bool = False):
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
    # Refused here, before anything is compiled, when the target cannot run them.
    refuse_replicas(config.training, target)
    if target == "kubeflow" and has_accelerator(config.runtime):
        kubernetes_accelerator(config.runtime)
    if config.notify.enabled or config.notify.emails:
        check_notify_target(config.notify, target)
    if scheduled:  # a schedule exists to replace production with a better model
        config = config.model_copy(deep=True)
        config.evaluation.require_improvement = True
    caching = cache_policies(config, scheduled)
    skip_unchanged = scheduled if config.data.skip_unchanged is None else config.data.skip_unchanged
    compiled_config = config.to_json()
    # Several training machines: a Vertex AI custom job of replicas.
    multi_replica = config.training.replica_count > 1
    train_op = (
        multi_replica_train(train, config.runtime, config.training) if multi_replica else train
    )

    def segmentation_pipeline(*values):
        # No task-level retries but train's: the other tasks retry transient errors in their
        # process, and a deterministic failure would only fail again (components/platform/retry.py).
        with contextlib.ExitStack() as scope:
            handler = exit_task(config, target, caching)
            if handler is not None:  # it runs after the others whatever happened to them
                scope.enter_context(dsl.ExitHandler(handler, name="petseg-run"))
            parameters = dict(zip(RUNTIME_PARAMETERS, values, strict=True))
            resolve_task = resolve_config(compiled_config=compiled_config, **parameters)
            resolved = configure(resolve_task, config, caching).outputs
            dataset = configure(ingest(data_config=resolved["data_config"]), config, caching)
            dataset = dataset.outputs["dataset"]
            # Never cached: it compares with the statistics pushed with production's model.
            statistics_task = data_statistics(
                dataset=dataset,
                checks_config=config.checks.model_dump_json(),
                push_config=resolved["push_config"],
            )
            statistics = configure(statistics_task, config, caching).outputs["statistics"]
            # A failed `error` check stops the run here, before training.
            checks_task = configure(enforce_data_checks(statistics=statistics), config, caching)
            if skip_unchanged:  # one output ('Output'), so dsl.If works in every runner
                changed = check_data_changed(dataset=dataset, push_config=resolved["push_config"])
                changed = configure(changed, config, caching).output
                scope.enter_context(dsl.If(changed == DataChange.TRAIN, name="data-changed"))
            weights = compute_class_weights(
                dataset=dataset,
                model_config=resolved["model_config"],
                training_config=resolved["training_config"],
            )
            weights = configure(weights, config, caching).outputs["class_weights"]
            train_task = train_op(
                dataset=dataset,
                class_weights=weights,
                model_config=resolved["model_config"],
                training_config=resolved["training_config"],
            )
            # A preempted or evicted pod is started again and resumes from its checkpoint;
            # the retried attempt re-raises a recorded deterministic failure at once.
            retries, launcher = config.runtime.retries, multi_replica
            configure(train_task, config, caching, retries=retries, launcher=launcher)
            train_task.after(checks_task)
            if not multi_replica:  # a custom job's worker pools carry their accelerators
                set_accelerator(train_task, config.runtime, target)
            model = train_task.outputs["model"]
            # Never cached: the baseline it compares against (production's latest) changes.
            evaluate_task = evaluate(
                model=model,
                dataset=dataset,
                model_config=resolved["model_config"],
                evaluation_config=resolved["evaluation_config"],
                push_config=resolved["push_config"],
                data_statistics=statistics,
            )
            configure(evaluate_task, config, caching)
            # Always present; it pushes only a blessed model to a non-empty destination.
            push_task = push(
                model=model,
                metrics=evaluate_task.outputs["metrics"],
                blessed=evaluate_task.outputs["blessed"],
                blessing_reason=evaluate_task.outputs["reason"],
                data_statistics=statistics,
                push_config=resolved["push_config"],
                run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            )
            configure(push_task, config, caching)
            if config.predict.input:  # without a push it predicts nothing, and says why
                pushed = push_task.outputs["pushed_model"]
                predict_config = config.predict.model_dump_json()
                configure(
                    predict(pushed_model=pushed, predict_config=predict_config), config, caching
                )

    # The parameters are typed from the config's fields and default to the compiled values.
    types, defaults = runtime_parameter_types(), runtime_parameter_defaults(config)
    segmentation_pipeline.__signature__ = inspect.Signature(
        [
            inspect.Parameter(name, POSITIONAL, default=defaults[name], annotation=types[name])
            for name in RUNTIME_PARAMETERS
        ]
    )
    return dsl.pipeline(name=config.name, description=DESCRIPTION)(segmentation_pipeline)


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
