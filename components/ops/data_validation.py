"""The data-check components: statistics and verdicts, then a gate that stops the run on errors.

Two tasks, so the statistics, the view and the verdicts are recorded as the run's
outputs even when a check stops the run: ``data_statistics`` never fails on a check,
and ``enforce_data_checks`` fails (before training) when an ``error`` check failed.
"""

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
        statistics: output directory: ``statistics.json`` (per split: counts, sizes,
            encodings, class pixels, single-class masks, bytes; duplicates),
            ``checks.json`` (the verdicts) and ``statistics.md``. Its metadata holds
            the failed checks and what was compared.
        statistics_view: the statistics and verdicts as Markdown, for the UI.
        check_metrics: each check's figure (``check/<name>``) and the error and
            warning counts.
    """
    from components.platform.failures import record_failures

    record_failures()  # an uncaught error names this task in the run-end report

    import logging
    import shutil

    from components.data import data_validation
    from components.platform.config import ChecksConfig, PushConfig, section_from_json

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = section_from_json(ChecksConfig, checks_config)
    destination = section_from_json(PushConfig, push_config).destination
    stats, verdicts = data_validation.check_dataset(
        dataset.path, statistics.path, config, destination
    )
    shutil.copyfile(f"{statistics.path}/statistics.md", statistics_view.path)

    statistics.metadata.update(
        {
            "compared_with": verdicts["compared_with"],
            "errors": verdicts["errors"],
            "warnings": verdicts["warnings"],
            "num_records": {name: split["num_records"] for name, split in stats["splits"].items()},
            "cross_split_duplicates": stats["duplicates"]["num_across"],
        }
    )
    for name, value in data_validation.summary_metrics(verdicts).items():
        check_metrics.log_metric(name, value)


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def enforce_data_checks(statistics: Input[Artifact]):
    """Fails the run before training when an ``error`` data check failed.

    Args:
        statistics: ``data_statistics``' output directory; its ``checks.json`` is read.
    """
    from components.platform.failures import record_failures

    record_failures()  # an uncaught error names this task in the run-end report

    # No TensorFlow here: the gate starts in seconds.
    from components.data import data_validation
    from components.platform.contracts import CheckVerdicts

    verdicts = CheckVerdicts.read(f"{statistics.path}/{CheckVerdicts.FILE_NAME}").to_dict()
    data_validation.enforce(verdicts)
    for check in verdicts["checks"]:
        if check["status"] == "fail" and check["severity"] == "warn":
            print(f"data check warning: {data_validation.describe(check)}")
