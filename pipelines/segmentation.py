"""The petseg pipeline: ingest → class weights → train → evaluate → [blessed] → push.

``create_pipeline`` takes every setting from a ``PipelineConfig`` (TFX's
``create_pipeline`` style): the run-time parameters are the config's sections
as JSON, with the config's values as defaults, so no default is typed twice;
task settings (images, resources, accelerator, retries, caching) are fixed at
compile time from ``config.runtime``.
"""

from pathlib import Path
from typing import Literal, get_args

from kfp import compiler, dsl

from components.config import PipelineConfig

Target = Literal["vertex", "kubeflow", "local"]
TARGETS: tuple[str, ...] = get_args(Target)

# Display names shown in the KFP / Vertex UI, one per task.
DISPLAY_NAMES = {
    "ingest": "Ingest TFDS to TFRecords",
    "class-weights": "Class weights",
    "train": "Train U-Net",
    "evaluate": "Evaluate and bless",
    "push": "Push blessed model",
}


def _resources(task: dsl.PipelineTask, cpu: str, memory: str) -> dsl.PipelineTask:
    return task.set_cpu_limit(cpu).set_memory_limit(memory)


def create_pipeline(
    config: PipelineConfig,
    *,
    target: Target = "vertex",
    scheduled: bool = False,
):
    """Builds the pipeline function for one config.

    Args:
        config: every setting; its sections become the pipeline's parameters.
        target: 'kubeflow' adds Kubernetes GPU scheduling (node selector,
            tolerations) that Vertex AI would reject; 'local' and 'vertex' do not.
        scheduled: a recurring run: re-ingest and retrain (no cache) unless
            ``runtime.cache_training_on_schedule`` asks otherwise, and bless only a
            model better than production (``evaluation.require_improvement``).

    Returns:
        The ``@dsl.pipeline`` function, ready to compile or run with kfp.local.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")

    from components.ops.class_weights import compute_class_weights
    from components.ops.evaluate import evaluate
    from components.ops.ingest import ingest
    from components.ops.push import push
    from components.ops.train import train

    runtime = config.runtime
    cache_data = runtime.enable_caching and not scheduled
    cache_training = runtime.enable_caching and (
        runtime.cache_training_on_schedule if scheduled else True
    )
    has_accelerator = bool(runtime.accelerator_type) and runtime.accelerator_count > 0
    # A schedule exists to replace production with a better model, not an equal one.
    evaluation_defaults = (
        config.evaluation.model_copy(update={"require_improvement": True})
        if scheduled
        else config.evaluation
    )

    def configure(task: dsl.PipelineTask, key: str, *, cache: bool, gpu: bool = False):
        task.set_display_name(DISPLAY_NAMES[key])
        task.set_caching_options(cache)
        task.set_retry(num_retries=runtime.retries, backoff_duration="30s", backoff_factor=2.0)
        if gpu:
            task.set_container_image(runtime.gpu_image)
            _resources(task, runtime.train_resources.cpu, runtime.train_resources.memory)
        else:
            task.set_container_image(runtime.cpu_image)
            _resources(task, runtime.default_resources.cpu, runtime.default_resources.memory)
        return task

    @dsl.pipeline(
        name=config.name,
        description="Oxford-IIIT Pet segmentation: ingest, class weights, train, evaluate, push.",
    )
    def segmentation_pipeline(
        data_config: str = config.data.model_dump_json(),
        model_config: str = config.model.model_dump_json(),
        training_config: str = config.training.model_dump_json(),
        evaluation_config: str = evaluation_defaults.model_dump_json(),
        push_config: str = config.push.model_dump_json(),
    ):
        ingest_task = configure(ingest(data_config=data_config), "ingest", cache=cache_data)

        weights_task = configure(
            compute_class_weights(
                dataset=ingest_task.outputs["dataset"],
                model_config=model_config,
                training_config=training_config,
            ),
            "class-weights",
            cache=cache_data,
        )

        train_task = configure(
            train(
                dataset=ingest_task.outputs["dataset"],
                class_weights=weights_task.outputs["class_weights"],
                model_config=model_config,
                training_config=training_config,
            ),
            "train",
            cache=cache_training,
            gpu=True,
        )
        if has_accelerator:
            train_task.set_accelerator_type(runtime.accelerator_type)
            train_task.set_accelerator_limit(runtime.accelerator_count)
            if target == "kubeflow":
                from pipelines.kubeflow import apply_kubernetes_gpu_scheduling

                apply_kubernetes_gpu_scheduling(train_task, runtime)

        # Never cached: the baseline it compares against (production's latest) changes.
        evaluate_task = configure(
            evaluate(
                model=train_task.outputs["model"],
                dataset=ingest_task.outputs["dataset"],
                model_config=model_config,
                evaluation_config=evaluation_config,
                push_config=push_config,
            ),
            "evaluate",
            cache=False,
        )

        if config.push.destination:
            with dsl.If(evaluate_task.outputs["blessed"] == True, name="blessed"):  # noqa: E712
                configure(
                    push(
                        model=train_task.outputs["model"],
                        metrics=evaluate_task.outputs["metrics"],
                        push_config=push_config,
                        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                    ),
                    "push",
                    cache=False,
                )

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
