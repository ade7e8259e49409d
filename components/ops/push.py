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
    from components.platform.config import PushConfig, section_from_json
    from components.platform.contracts import ArtifactRef
    from components.publish import push as step

    settings = section_from_json(PushConfig, push_config)
    candidate, evaluation = ArtifactRef.of(model), ArtifactRef.of(metrics)
    statistics = data_statistics.path if data_statistics is not None else None
    result = step.run(settings, candidate, evaluation, blessed, blessing_reason, statistics, run_id)
    if result.pushed:  # the artifact is the published version; nothing is written to its path
        pushed_model.uri = result.uri
    pushed_model.metadata.update(result.to_metadata())
