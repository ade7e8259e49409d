"""components.model.devices.choose_runtime with fake device lists (runs on CPU-only machines)."""

from __future__ import annotations

import pytest
import tensorflow as tf

from components.model import devices
from components.platform.config import TrainingConfig


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
    assert plan.precision_policy == "mixed_bfloat16"


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


@pytest.mark.parametrize(
    ("capabilities", "policy", "reason"),
    [
        ([(8, 0)], "mixed_bfloat16", "bfloat16, no loss scaling"),  # A100
        ([(8, 9)], "mixed_bfloat16", "bfloat16, no loss scaling"),  # L4
        ([(9, 0), (9, 0)], "mixed_bfloat16", "bfloat16, no loss scaling"),  # H100 x2
        ([(7, 5)], "mixed_float16", "(7, 5) < 8.0: float16 with loss scaling"),  # T4
        ([(7, 0)], "mixed_float16", "(7, 0) < 8.0"),  # V100
        ([(8, 0), (7, 5)], "mixed_float16", "(7, 5) < 8.0"),  # the oldest GPU decides
        ([None], "mixed_float16", "unknown: float16"),
        (None, "mixed_float16", "unknown: float16"),
    ],
)
def test_precision_follows_the_gpus_compute_capability(capabilities, policy, reason):
    gpus = [FakeGpu(index) for index in range(len(capabilities or [None]))]
    plan = devices.choose_runtime(gpus, TrainingConfig(), compute_capabilities=capabilities)
    assert plan.precision_policy == policy
    assert any(reason in text for text in plan.reasons), plan.reasons
    assert reason in plan.describe()


def test_bfloat16_off_in_config_stays_float32():
    plan = devices.choose_runtime(
        [FakeGpu(0)], TrainingConfig(mixed_precision=False), compute_capabilities=[(9, 0)]
    )
    assert plan.precision_policy == "float32"


@pytest.mark.parametrize(("gpus", "precision"), [(0, "float32"), (1, "mixed_bfloat16")])
def test_several_workers_pick_multi_worker_mirrored_strategy(gpus, precision):
    plan = devices.choose_runtime(
        [FakeGpu(index) for index in range(gpus)],
        TrainingConfig(),
        compute_capabilities=[(8, 0)] * gpus,
        num_workers=2,
    )
    assert plan.strategy == "multi_worker_mirrored" and plan.num_workers == 2
    assert plan.precision_policy == precision
    assert "workers=2" in plan.describe() and "2 workers in TF_CONFIG" in plan.describe()


def test_one_worker_keeps_the_single_machine_strategies():
    assert devices.choose_runtime([], TrainingConfig(), num_workers=1).strategy == "default"
    with pytest.raises(ValueError, match="num_workers"):
        devices.choose_runtime([], TrainingConfig(), num_workers=0)
