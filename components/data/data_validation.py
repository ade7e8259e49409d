"""Data checks before training: absolute rules, and drift against production's statistics.

Each check turns two statistics records (components.data.statistics) into one figure
and fails when the figure exceeds its configured threshold (config ``checks``).
A failed ``error`` check stops the run before training (``enforce``); a failed
``warn`` check is recorded and the run goes on; ``off`` skips the check.

Absolute rules (every run):

- ``empty_splits``: number of splits without a record.
- ``classes_missing_in_train``: number of classes with no pixel in train.
- ``cross_split_duplicates``: number of images found, byte for byte, in more than
  one split; one in test or validation is leakage.
- ``duplicates_within_split``: extra copies of an image inside one split.
- ``single_class_masks``: largest fraction, over splits, of masks holding one class.
- ``skipped_records``: largest fraction, over splits, of source records ingest skipped.

Against the production model's statistics (pushed beside it), when there are any:

- ``class_frequency_distance``: Jensen-Shannon distance (base 2, 0 = same, 1 =
  disjoint) between per-class pixel frequencies, the largest over common splits.
- ``classes_appeared`` / ``classes_disappeared``: classes with pixels now and not
  in production's data, or the reverse.
- ``image_size_shift``: Jensen-Shannon distance between the image-size histograms
  (quarter-octave bins of height and width), the largest over common splits.
- ``split_shrink``: the largest relative drop in a split's record count
  (a split production had and this data lacks counts as 1.0).
"""

from __future__ import annotations

import logging
import math
import posixpath
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel

from components.data.splits import TRAIN
from components.platform import files
from components.platform.config import CheckRule, ChecksConfig, PushConfig
from components.platform.contracts import (
    CheckVerdicts,
    ContractVersionError,
    Statistics,
    StepInputs,
)

logger = logging.getLogger(__name__)

CHECKS_FORMAT = CheckVerdicts.VERSION
CHECKS_FILE = CheckVerdicts.FILE_NAME
# Where push publishes them in a model version, and where the next run looks.
PUSHED_STATISTICS = Statistics.PUSHED_PATH
PUSHED_CHECKS = CheckVerdicts.PUSHED_PATH
_LISTED = 5  # names quoted in a message


class DataCheckError(RuntimeError):
    """An ``error`` data check failed; the message names each check, figure and threshold."""


def js_distance(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two keyed histograms.

    Each histogram is normalised first; a key missing on one side counts 0 there.
    Two empty histograms are at distance 0.
    """
    keys = sorted(set(p) | set(q))
    a = np.array([float(p.get(key, 0.0)) for key in keys])
    b = np.array([float(q.get(key, 0.0)) for key in keys])
    if a.sum() <= 0 and b.sum() <= 0:
        return 0.0
    if a.sum() <= 0 or b.sum() <= 0:
        return 1.0
    a, b = a / a.sum(), b / b.sum()
    middle = (a + b) / 2

    def kl(x: np.ndarray) -> float:
        held = x > 0
        return float(np.sum(x[held] * np.log2(x[held] / middle[held])))

    return float(math.sqrt(max(0.0, (kl(a) + kl(b)) / 2)))


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def _present_classes(statistics: Mapping[str, Any]) -> set[str]:
    return {
        name
        for split in statistics["splits"].values()
        for name, pixels in split["class_pixels"].items()
        if pixels > 0
    }


def _largest_over_splits(
    current: Mapping[str, Any],
    production: Mapping[str, Any],
    measure: Callable[[Mapping[str, Any], Mapping[str, Any]], float],
) -> tuple[float, str]:
    figures = {
        split: measure(current["splits"][split], production["splits"][split])
        for split in sorted(set(current["splits"]) & set(production["splits"]))
        if current["splits"][split]["num_records"] and production["splits"][split]["num_records"]
    }
    if not figures:
        return 0.0, ""
    split = max(figures, key=lambda name: figures[name])
    return figures[split], split


# Each check: (statistics, production statistics or None) → (figure, detail message).


def _empty_splits(statistics, _production):
    empty = [name for name, split in statistics["splits"].items() if split["num_records"] == 0]
    return len(empty), (f"empty: {_names(empty)}" if empty else "every split has records")


def _classes_missing_in_train(statistics, _production):
    train = statistics["splits"].get(TRAIN)
    if train is None:
        return len(statistics["classes"]), "there is no train split"
    missing = [name for name, pixels in train["class_pixels"].items() if pixels == 0]
    return len(missing), (
        f"no pixels in train: {_names(missing)}" if missing else "every class is in train"
    )


def _cross_split_duplicates(statistics, _production):
    duplicates = statistics["duplicates"]
    examples = [
        # A folder source's names already start with their split ("test/images/x.jpg").
        " = ".join(
            files[0] if files[0].startswith(f"{split}/") else f"{split}/{files[0]}"
            for split, files in group["files"].items()
        )
        for group in duplicates["across"]
    ]
    detail = (
        f"{duplicates['num_leaked']} in test or validation (leakage): {_names(examples)}"
        if examples
        else "no image is in two splits"
    )
    return duplicates["num_across"], detail


def _duplicates_within_split(statistics, _production):
    counts = statistics["duplicates"]["num_within"]
    examples = [
        f"{split}: {' = '.join(group)}"
        for split, groups in statistics["duplicates"]["within"].items()
        for group in groups
    ]
    return sum(counts.values()), (_names(examples) if examples else "no duplicate images")


def _single_class_masks(statistics, _production):
    fractions = {
        name: split["single_class_masks"]["fraction"]
        for name, split in statistics["splits"].items()
    }
    if not fractions:
        return 0.0, "no splits"
    worst = max(fractions, key=lambda name: fractions[name])
    by_class = statistics["splits"][worst]["single_class_masks"]["by_class"]
    detail = f"{worst}: " + (
        ", ".join(f"{count} only {name}" for name, count in by_class.items()) or "none"
    )
    return fractions[worst], detail


def _skipped_records(statistics, _production):
    fractions = {}
    for name, split in statistics["splits"].items():
        total = split["num_records"] + split["num_skipped"]
        fractions[name] = split["num_skipped"] / total if total else 0.0
    if not fractions:
        return 0.0, "no splits"
    worst = max(fractions, key=lambda name: fractions[name])
    return fractions[worst], f"{worst}: {statistics['splits'][worst]['num_skipped']} skipped"


def _class_frequency_distance(statistics, production):
    figure, split = _largest_over_splits(
        statistics,
        production,
        lambda now, then: js_distance(now["class_frequency"], then["class_frequency"]),
    )
    if not split:
        return figure, "no split with records on both sides"
    now = statistics["splits"][split]["class_frequency"]
    then = production["splits"][split]["class_frequency"]
    names = list(statistics["classes"])
    names += [name for name in production["classes"] if name not in names]
    changes = ", ".join(
        f"{name} {then.get(name, 0.0):.3f}→{now.get(name, 0.0):.3f}" for name in names
    )
    return figure, f"{split}: {changes}"


def _classes_appeared(statistics, production):
    new = sorted(_present_classes(statistics) - _present_classes(production))
    return len(new), (f"new: {_names(new)}" if new else "no new class")


def _classes_disappeared(statistics, production):
    gone = sorted(_present_classes(production) - _present_classes(statistics))
    return len(gone), (f"gone: {_names(gone)}" if gone else "no class disappeared")


def _image_size_shift(statistics, production):
    figure, split = _largest_over_splits(
        statistics,
        production,
        lambda now, then: js_distance(now["size_histogram"], then["size_histogram"]),
    )
    if not split:
        return figure, "no split with records on both sides"
    now, then = statistics["splits"][split], production["splits"][split]
    return figure, (
        f"{split}: median {then['height']['median']}x{then['width']['median']}"
        f"→{now['height']['median']}x{now['width']['median']} (height x width)"
    )


def _split_shrink(statistics, production):
    drops = {}
    for name, then in production["splits"].items():
        before = then["num_records"]
        after = statistics["splits"].get(name, {}).get("num_records", 0)
        if before:
            drops[name] = max(0.0, (before - after) / before)
    if not drops:
        return 0.0, "production had no records"
    worst = max(drops, key=lambda name: drops[name])
    after = statistics["splits"].get(worst, {}).get("num_records", 0)
    return drops[worst], f"{worst}: {production['splits'][worst]['num_records']}→{after} records"


ABSOLUTE_CHECKS: dict[str, Callable] = {
    "empty_splits": _empty_splits,
    "classes_missing_in_train": _classes_missing_in_train,
    "cross_split_duplicates": _cross_split_duplicates,
    "duplicates_within_split": _duplicates_within_split,
    "single_class_masks": _single_class_masks,
    "skipped_records": _skipped_records,
}
PRODUCTION_CHECKS: dict[str, Callable] = {
    "class_frequency_distance": _class_frequency_distance,
    "classes_appeared": _classes_appeared,
    "classes_disappeared": _classes_disappeared,
    "image_size_shift": _image_size_shift,
    "split_shrink": _split_shrink,
}


def run_checks(
    statistics: Mapping[str, Any],
    config: ChecksConfig,
    production: Mapping[str, Any] | None = None,
    *,
    compared_with: str = "",
) -> dict[str, Any]:
    """Runs every configured check and returns the verdicts record.

    Args:
        statistics: this run's statistics (``compute_statistics``).
        config: severity and threshold per check.
        production: the statistics pushed beside the production model, or None
            (the first run): then only the absolute rules run.
        compared_with: where ``production`` came from, for the record (a version URI).

    Returns:
        ``{checks_format, compared_with, checks: [{name, severity, status, figure,
        threshold, message}], errors: [names], warnings: [names]}``; status is
        ``pass``, ``fail``, ``off`` or ``skipped`` (no production statistics).
    """
    checks = []
    for name, measure in {**ABSOLUTE_CHECKS, **PRODUCTION_CHECKS}.items():
        rule: CheckRule = getattr(config, name)
        entry = {
            "name": name,
            "severity": rule.severity,
            "threshold": rule.threshold,
            "figure": None,
        }
        if rule.severity == "off":
            entry.update(status="off", message="turned off in config")
        elif name in PRODUCTION_CHECKS and production is None:
            entry.update(status="skipped", message="no production statistics to compare with")
        else:
            figure, detail = measure(statistics, production)
            failed = figure > rule.threshold
            entry.update(
                figure=round(float(figure), 6), status="fail" if failed else "pass", message=detail
            )
        checks.append(entry)
    failed = [check for check in checks if check["status"] == "fail"]
    return {
        "checks_format": CHECKS_FORMAT,
        "compared_with": compared_with if production is not None else "",
        "checks": checks,
        "errors": [check["name"] for check in failed if check["severity"] == "error"],
        "warnings": [check["name"] for check in failed if check["severity"] == "warn"],
    }


def describe(check: Mapping[str, Any]) -> str:
    """One line: the check's name, its figure against the threshold, and the detail."""
    return (
        f"{check['name']} = {check['figure']:.4g} > threshold {check['threshold']:g} "
        f"({check['message']})"
    )


def enforce(verdicts: Mapping[str, Any]) -> None:
    """Raises DataCheckError when an ``error`` check failed; warnings pass.

    Raises:
        DataCheckError: naming each failed error check, its figure and threshold, and
            how to relax it.
    """
    failed = [
        check
        for check in verdicts["checks"]
        if check["status"] == "fail" and check["severity"] == "error"
    ]
    if failed:
        raise DataCheckError(
            "data checks failed, stopping before training: "
            + "; ".join(describe(check) for check in failed)
            + ". Fix the data, or change checks.<name>.threshold / .severity in the config"
        )


def summary_metrics(verdicts: Mapping[str, Any]) -> dict[str, float]:
    """Scalar figures for a KFP Metrics artifact: ``check/<name>`` and error/warning counts."""
    metrics = {
        f"check/{check['name']}": float(check["figure"])
        for check in verdicts["checks"]
        if check["figure"] is not None
    }
    metrics["check_errors"] = float(len(verdicts["errors"]))
    metrics["check_warnings"] = float(len(verdicts["warnings"]))
    return metrics


def production_statistics(destination: str) -> tuple[dict[str, Any] | None, str]:
    """The statistics pushed with the destination's latest model, and where they came from.

    Returns:
        ``(statistics, version URI)``; ``(None, "")`` when there is no destination,
        nothing was pushed, or the latest version predates statistics (the reason is
        logged): then only the absolute rules run.
    """
    if not destination:
        return None, ""
    from components.publish.push import read_latest_file

    found = read_latest_file(destination, PUSHED_STATISTICS)
    if found is None:
        logger.info("No statistics at %s's latest version: absolute rules only", destination)
        return None, ""
    content, uri = found
    where = f"{uri}/{PUSHED_STATISTICS}"
    try:
        production = Statistics.from_dict(files.parse_json(content, where), where)
    except ContractVersionError as error:
        logger.warning("%s: not compared", error)
        return None, ""
    return production.to_dict(), uri


class ChecksInputs(StepInputs):
    """The checks' rules; push's destination, whose latest statistics are production's.

    ``dataset_dir`` is ingest's Dataset; ``output_dir`` gets ``statistics.json``,
    ``checks.json`` and ``statistics.md``; ``view_path`` the Markdown view too.
    """

    checks: ChecksConfig
    push: PushConfig
    dataset_dir: str
    output_dir: str
    view_path: str


class DataChecks(BaseModel):
    """The data_statistics step's outcome: the dataset's statistics and the verdicts."""

    statistics: Statistics
    verdicts: CheckVerdicts

    def to_metadata(self) -> dict[str, Any]:
        """The failed checks, what was compared, and the records per split."""
        return {
            "compared_with": self.verdicts.compared_with,
            "errors": self.verdicts.errors,
            "warnings": self.verdicts.warnings,
            "num_records": {
                name: split["num_records"] for name, split in self.statistics.splits.items()
            },
            "cross_split_duplicates": self.statistics.duplicates["num_across"],
        }

    def metrics(self) -> dict[str, float]:
        return summary_metrics(self.verdicts.to_dict())


def run(inputs: ChecksInputs) -> DataChecks:
    """The data_statistics step: statistics of a dataset, checked against production's.

    Writes ``statistics.json``, ``checks.json`` and ``statistics.md`` into ``output_dir``
    and the Markdown view at ``view_path`` too. A failed check raises nothing here:
    ``enforce_saved`` is the gate.
    """
    from components.data import statistics as stats

    output_dir, view_path = inputs.output_dir, inputs.view_path
    statistics = stats.dataset_statistics(inputs.dataset_dir)
    production, uri = production_statistics(inputs.push.destination)
    verdicts = run_checks(statistics, inputs.checks, production, compared_with=uri)
    stats.write_statistics(statistics, posixpath.join(output_dir, stats.STATISTICS_FILE))
    CheckVerdicts.from_dict(verdicts).write(posixpath.join(output_dir, CHECKS_FILE))
    view = stats.render_markdown(statistics, verdicts)
    for path in (posixpath.join(output_dir, stats.STATISTICS_VIEW_FILE), view_path):
        files.write_text(path, view)
    for check in verdicts["checks"]:
        if check["status"] == "fail":
            log = logger.error if check["severity"] == "error" else logger.warning
            log("data check %s", describe(check))
    return DataChecks(
        statistics=Statistics.from_dict(dict(statistics)),
        verdicts=CheckVerdicts.from_dict(verdicts),
    )


class EnforceInputs(StepInputs):
    """data_statistics' output directory; its ``checks.json`` is read."""

    statistics_dir: str


def enforce_saved(inputs: EnforceInputs) -> CheckVerdicts:
    """The enforce_data_checks step: stops on a failed ``error`` check; prints the warnings."""
    outcome = CheckVerdicts.read(posixpath.join(inputs.statistics_dir, CHECKS_FILE))
    verdicts = outcome.to_dict()
    enforce(verdicts)
    for check in verdicts["checks"]:
        if check["status"] == "fail" and check["severity"] == "warn":
            print(f"data check warning: {describe(check)}")
    return outcome
