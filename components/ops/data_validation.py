"""data_statistics: every split's statistics and the checks' verdicts; never fails on a check."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Output

from components.ops import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def data_statistics(
    dataset: Input[Dataset],
    checks_config: str,
    push_config: str,
    statistics: Output[Artifact],
    statistics_view: Output[Markdown],
    check_metrics: Output[Metrics],
):
    """One pass over every split's records; checks against production's statistics.

    Args:
        dataset: a Dataset written by ingest.
        checks_config: ChecksConfig as JSON: severity and threshold of each check.
        push_config: PushConfig as JSON; the statistics pushed with its destination's
            latest model are production's ('' destination or none pushed: absolute
            rules only).
        statistics: output directory: ``statistics.json`` (per split), ``checks.json``
            (the verdicts) and ``statistics.md``; its metadata: failed checks, baseline.
        statistics_view: the statistics and verdicts as Markdown, for the UI.
        check_metrics: each check's figure (``check/<name>``), error and warning counts.
    """
    from components.ops import start_task

    start_task()
    from components.data import data_validation as step

    inputs = step.ChecksInputs.of(checks_config, push_config, dataset, statistics, statistics_view)
    outcome = step.run(inputs)
    statistics.metadata.update(outcome.to_metadata())
    check_metrics.metadata.update(outcome.metrics())  # what log_metric does, for each
