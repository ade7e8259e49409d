"""KFP wrapper of push: a blessed model → a new immutable version (+ optional Vertex registry)."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output

from components.ops import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def push(
    model: Input[Model],
    metrics: Input[Metrics],
    blessed: bool,
    push_config: str,
    pushed_model: Output[Artifact],
    blessing_reason: str = "",
    data_statistics: Input[Artifact] = None,
    run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER,
):
    """Publishes a blessed model as a new version under push.destination; LATEST moves to it.

    Always in the pipeline (TFX Pusher style): ``pushed_model``'s metadata says what was
    pushed, or why nothing was (``pushed`` false, ``skip_reason``).
    """
    from components.ops import start_task

    start_task()
    from components.publish import push as step

    inputs = step.PushInputs.of(
        push_config, model, metrics, blessed, blessing_reason, data_statistics, run_id
    )
    result = step.run(inputs)
    if result.pushed:  # the artifact is the published version; nothing is written to its path
        pushed_model.uri = result.uri
    pushed_model.metadata.update(result.to_metadata())
