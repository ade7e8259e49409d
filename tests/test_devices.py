"""components.devices.choose_runtime with fake device lists (runs on CPU-only machines)."""

from __future__ import annotations

import pytest
import tensorflow as tf

from components import devices
from components.config import TrainingConfig


class FakeGpu:
    """Stands in for tf.config.PhysicalDevice, which only has a name and a device type."""

    def __init__(self, index: int):
        self.name = f"/physical_device:GPU:{index}"
        self.device_type = "GPU"


def test_cpu_only_runs_float32_without_xla_whatever_the_config_says():
    plan = devices.choose_runtime([], TrainingConfig(mixed_precision=True, xla=True))
    assert (plan.strategy, plan.precision_policy, plan.jit_compile) == ("default", "float32", False)
    assert plan.devices == () and plan.num_replicas == 1
    assert "no GPU" in plan.describe()


def test_one_gpu_uses_it_with_mixed_precision_and_xla():
    plan = devices.choose_runtime([FakeGpu(0)], TrainingConfig())
    assert plan.strategy == "one_device" and plan.devices == ("/gpu:0",)
    assert plan.precision_policy == "mixed_float16" and plan.jit_compile is True


def test_several_gpus_are_all_used_through_mirrored_strategy():
    gpus = [FakeGpu(index) for index in range(4)]
    plan = devices.choose_runtime(gpus, TrainingConfig(), compute_capabilities=[(8, 0)] * 4)
    assert plan.strategy == "mirrored"
    assert plan.devices == ("/gpu:0", "/gpu:1", "/gpu:2", "/gpu:3") and plan.num_replicas == 4
    assert plan.precision_policy == "mixed_float16"


def test_device_names_as_strings_are_accepted():
    plan = devices.choose_runtime(
        ["/physical_device:GPU:0", "/physical_device:GPU:1"], TrainingConfig()
    )
    assert plan.devices == ("/gpu:0", "/gpu:1")


@pytest.mark.parametrize(
    ("mixed_precision", "xla", "policy", "jit"),
    [
        (False, True, "float32", True),
        (True, False, "mixed_float16", False),
        (False, False, "float32", False),
    ],
)
def test_config_can_turn_off_mixed_precision_and_xla(mixed_precision, xla, policy, jit):
    config = TrainingConfig(mixed_precision=mixed_precision, xla=xla)
    plan = devices.choose_runtime([FakeGpu(0)], config)
    assert (plan.precision_policy, plan.jit_compile) == (policy, jit)
    assert plan.reasons, "a setting that differs from the GPU default should say why"


def test_pre_volta_gpu_keeps_float32():
    plan = devices.choose_runtime([FakeGpu(0)], TrainingConfig(), compute_capabilities=[(6, 0)])
    assert plan.precision_policy == "float32"
    assert any("7.0" in reason for reason in plan.reasons)


def test_default_plan_builds_the_default_strategy_on_this_machine():
    gpus, capabilities = devices.visible_gpus()
    assert len(gpus) == len(capabilities)
    plan = devices.choose_runtime([], TrainingConfig())
    strategy = devices.make_strategy(plan)
    assert strategy.num_replicas_in_sync == 1
    assert isinstance(strategy, type(tf.distribute.get_strategy()))
