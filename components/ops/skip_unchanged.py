"""The skip_unchanged component: skip training when production was trained on this very data."""

from kfp import dsl
from kfp.dsl import Dataset, Input

from components.ops import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def check_data_changed(dataset: Input[Dataset], push_config: str) -> str:
    """Compares the ingested data's fingerprint with the production model's.

    One output (``Output``), so the pipeline's ``dsl.If`` on it works in every runner.

    Args:
        dataset: ingest's Dataset directory (its dataset.json has the fingerprint).
        push_config: PushConfig as JSON; its destination's LATEST is production.

    Returns:
        'train' when the data differs from production's (or there is no production
        model); otherwise 'skip: ...' naming production's version and the fingerprint.
    """
    from components.ops import start_task

    start_task()
    from components.data import skip_unchanged as step

    return step.run(step.SkipInputs.of(push_config, dataset)).output
