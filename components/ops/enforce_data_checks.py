"""The enforce_data_checks component: the gate that stops the run before training."""

from kfp import dsl
from kfp.dsl import Artifact, Input

from components.ops import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def enforce_data_checks(statistics: Input[Artifact]):
    """Fails the run before training when an ``error`` data check failed.

    Args:
        statistics: ``data_statistics``' output directory; its ``checks.json`` is read.
    """
    from components.ops import start_task

    start_task()
    # No TensorFlow here: the gate starts in seconds.
    from components.data import data_validation as step

    step.enforce_saved(step.EnforceInputs.of(statistics))
