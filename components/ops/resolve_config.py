"""The first task: the compiled config plus the run's typed parameters → one valid config."""

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
    """Puts each run-time parameter (``config.RUNTIME_PARAMETERS``) on its field; validates."""
    values = {name: value for name, value in locals().items() if name != "compiled_config"}
    from components.ops import start_task

    start_task()
    from components.platform.contracts import ResolvedConfig, ResolveInputs

    inputs = ResolveInputs.of(compiled_config, values)
    return ResolvedConfig.run(inputs).outputs()
