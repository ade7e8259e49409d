"""Which devices, distribution strategy, precision and compiler a training run uses.

The decision is a pure function of the visible GPUs and the training config, so it
is tested on a CPU-only machine with fake device lists; only ``visible_gpus`` and
``make_strategy`` touch TensorFlow's runtime.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

StrategyKind = Literal["default", "one_device", "mirrored"]
PrecisionPolicy = Literal["float32", "mixed_float16"]

# float16 tensor cores start with Volta (7.0); older GPUs run mixed precision slower than float32.
MIN_MIXED_PRECISION_CAPABILITY: tuple[int, int] = (7, 0)


@dataclasses.dataclass(frozen=True)
class RuntimePlan:
    """How to run training: strategy, Keras dtype policy, XLA, and why."""

    strategy: StrategyKind
    precision_policy: PrecisionPolicy
    jit_compile: bool
    devices: tuple[str, ...]
    reasons: tuple[str, ...] = ()

    @property
    def num_replicas(self) -> int:
        return max(1, len(self.devices))

    def describe(self) -> str:
        devices = ", ".join(self.devices) or "CPU"
        return (
            f"strategy={self.strategy} devices=[{devices}] precision={self.precision_policy} "
            f"jit_compile={self.jit_compile}"
            + ("" if not self.reasons else " (" + "; ".join(self.reasons) + ")")
        )


def _device_name(device: Any) -> str:
    """Accepts tf.config.PhysicalDevice objects or plain names such as '/physical_device:GPU:0'."""
    return str(getattr(device, "name", device))


def _logical_gpu_name(physical_name: str, index: int) -> str:
    # PhysicalDevice names look like '/physical_device:GPU:3'; strategies want '/gpu:3'.
    suffix = physical_name.rsplit(":", 1)[-1]
    return f"/gpu:{suffix if suffix.isdigit() else index}"


def choose_runtime(
    gpus: Sequence[Any],
    training_config: Any,
    compute_capabilities: Sequence[tuple[int, int] | None] | None = None,
) -> RuntimePlan:
    """Decides strategy, precision and XLA from the visible GPUs and the config.

    Every visible GPU is used: one GPU runs on it directly, several run under
    MirroredStrategy. Mixed precision and XLA are GPU-only speedups that the config can
    turn off; on CPU the run stays float32 without XLA so it behaves like the tutorial.

    Args:
        gpus: the visible GPUs (tf.config.PhysicalDevice objects or their names).
        training_config: anything with boolean ``mixed_precision`` and ``xla`` attributes
            (a components.config.TrainingConfig).
        compute_capabilities: optional (major, minor) per GPU, as
            tf.config.experimental.get_device_details reports it; a GPU older than Volta
            gets float32 because float16 would be slower there.

    Returns:
        The RuntimePlan to build the model and compile it with.
    """
    names = tuple(_logical_gpu_name(_device_name(gpu), index) for index, gpu in enumerate(gpus))
    if not names:
        return RuntimePlan(
            strategy="default",
            precision_policy="float32",
            jit_compile=False,
            devices=(),
            reasons=("no GPU visible: float32 without XLA on CPU",),
        )
    reasons: list[str] = []
    strategy: StrategyKind = "mirrored" if len(names) > 1 else "one_device"
    precision: PrecisionPolicy = "float32"
    if not training_config.mixed_precision:
        reasons.append("mixed precision off in config")
    else:
        known = [cap for cap in (compute_capabilities or []) if cap is not None]
        old = [cap for cap in known if tuple(cap) < MIN_MIXED_PRECISION_CAPABILITY]
        if old:
            reasons.append(f"GPU compute capability {old[0]} < 7.0: float32 is faster")
        else:
            precision = "mixed_float16"
    jit_compile = bool(training_config.xla)
    if not jit_compile:
        reasons.append("XLA off in config")
    return RuntimePlan(
        strategy=strategy,
        precision_policy=precision,
        jit_compile=jit_compile,
        devices=names,
        reasons=tuple(reasons),
    )


def visible_gpus() -> tuple[list[Any], list[tuple[int, int] | None]]:
    """The GPUs TensorFlow sees and their compute capabilities (None where unknown)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    capabilities: list[tuple[int, int] | None] = []
    for gpu in gpus:
        try:
            capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        except (RuntimeError, ValueError):
            capability = None
        capabilities.append(tuple(capability) if capability else None)
    return gpus, capabilities


def make_strategy(plan: RuntimePlan) -> Any:
    """Builds the tf.distribute strategy a plan names."""
    import tensorflow as tf

    if plan.strategy == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(plan.devices))
    if plan.strategy == "one_device":
        return tf.distribute.OneDeviceStrategy(plan.devices[0])
    return tf.distribute.get_strategy()
