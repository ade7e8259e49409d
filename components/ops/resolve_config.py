"""The first task: the compiled config plus the run's typed parameters → one valid config.

Each argument after ``compiled_config`` is a run-time parameter of the pipeline, named as
in ``components.platform.config.RUNTIME_PARAMETERS`` (a test checks both lists agree).
"""

from typing import NamedTuple

from kfp import dsl

from components.ops import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def resolve_config(
    compiled_config: str,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    min_mean_iou: float,
    max_regression: float,
    data_dir: str,
    data_version: str,
    data_path: str,
    push_destination: str,
) -> NamedTuple(
    "ResolvedConfig",
    [
        ("data_config", str),
        ("model_config", str),
        ("training_config", str),
        ("evaluation_config", str),
        ("push_config", str),
    ],
):
    """Applies each run-time value to the one field it names and validates the whole config.

    An invalid value fails here, once, before any data is read, with a message naming the
    field and the value. Each later task gets only its sections, so changing epochs leaves
    ingest's input (and its cache entry) unchanged.

    Args:
        compiled_config: the whole PipelineConfig JSON the pipeline was compiled with.
        epochs: training.epochs.
        batch_size: training.batch_size.
        learning_rate: training.learning_rate.
        min_mean_iou: evaluation.min_mean_iou.
        max_regression: evaluation.max_regression.
        data_dir: data.data_dir ('' = TFDS's default folder).
        data_version: data.version ('' = the latest version).
        data_path: data.path, the folder or manifest of the 'folder'/'manifest' sources.
        push_destination: push.destination ('' = no push).

    Returns:
        data_config, model_config, training_config, evaluation_config, push_config: the
        resolved sections as JSON, one per downstream input.
    """
    # Every argument but the compiled config is a run-time parameter, by the same name.
    values = dict(locals())
    compiled = values.pop("compiled_config")
    from components.platform.failures import record_failures

    record_failures()  # an invalid value names this task in the run-end report

    from collections import namedtuple

    from components.platform.config import apply_runtime_parameters

    config = apply_runtime_parameters(compiled, values)
    sections = namedtuple(
        "ResolvedConfig",
        ["data_config", "model_config", "training_config", "evaluation_config", "push_config"],
    )
    return sections(
        config.data.model_dump_json(),
        config.model.model_dump_json(),
        config.training.model_dump_json(),
        config.evaluation.model_dump_json(),
        config.push.model_dump_json(),
    )
