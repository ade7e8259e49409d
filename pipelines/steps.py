"""The pipeline's steps in one table: task name, display name, order, cache policy, image.

The pipeline (``pipelines.segmentation``) configures each task from its row, the
local runner (``pipelines.local``) orders its summary by it, and the log reader
names steps by it, so a step is named once. A task's name is the one KFP gives it:
its component function's name with dashes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# When a task's cached result may be reused (resolved per run by the pipeline):
#   never     inputs outside the run change it (production's model or data, the clock)
#   config    runtime.enable_caching
#   ingest    enable_caching, not on a schedule, and only for a TFDS source (a folder or
#             manifest can change under the same config)
#   data      enable_caching and not on a schedule
#   training  enable_caching; on a schedule only with runtime.cache_training_on_schedule
CachePolicy = Literal["never", "config", "ingest", "data", "training"]


@dataclass(frozen=True)
class Step:
    name: str
    display_name: str
    cache: CachePolicy = "never"
    image: Literal["cpu", "gpu"] = "cpu"


# In pipeline order (the order the local summary lists them in).
STEPS: tuple[Step, ...] = (
    Step("resolve-config", "Validate config", cache="config"),
    Step("ingest", "Ingest data to TFRecords", cache="ingest"),
    Step("data-statistics", "Data statistics and checks"),
    Step("check-data-changed", "Skip if data unchanged"),
    Step("compute-class-weights", "Class weights", cache="data"),
    Step("enforce-data-checks", "Stop on failed data checks"),
    Step("train", "Train U-Net", cache="training", image="gpu"),
    Step("evaluate", "Evaluate and bless"),
    Step("push", "Push blessed model"),
    Step("predict", "Predict with the pushed model"),
    Step("notify-run-end", "Report the run's end"),
    Step("vertex-pipelines-notification-email", "Email the run's end"),
)
STEP_BY_NAME: dict[str, Step] = {step.name: step for step in STEPS}
PIPELINE_ORDER: tuple[str, ...] = tuple(step.name for step in STEPS)


def step_of(task_name: str) -> Step | None:
    """The step a task (or its folder, ``<name>`` or ``<name>-<n>``) belongs to."""
    for step in STEPS:
        if task_name == step.name or task_name.startswith(step.name + "-"):
            return step
    return None


def position(task_name: str) -> int:
    """Where a task comes in pipeline order; unknown tasks last."""
    step = step_of(task_name)
    return PIPELINE_ORDER.index(step.name) if step else len(PIPELINE_ORDER)
