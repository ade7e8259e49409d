"""Which devices, distribution strategy, precision and compiler a training run uses.

The decision is a pure function of the visible GPUs, the training config and the
number of workers in the job (components.model.distributed reads it from TF_CONFIG or
Vertex AI's CLUSTER_SPEC), so it is tested on a CPU-only machine with fake device
lists; only ``visible_gpus`` and ``make_strategy`` touch TensorFlow's runtime.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

from components.platform.config import TrainingConfig

StrategyKind = Literal["default", "one_device", "mirrored", "multi_worker_mirrored"]
PrecisionPolicy = Literal["float32", "mixed_float16", "mixed_bfloat16"]

# float16 tensor cores start with Volta (7.0); older GPUs run mixed precision slower than float32.
MIN_MIXED_PRECISION_CAPABILITY: tuple[int, int] = (7, 0)
# bfloat16 tensor cores start with Ampere (8.0: A100, L4, H100). bfloat16 has float32's
# exponent range, so it needs no loss scaling; on 7.x (V100, T4) float16 stays right.
MIN_BFLOAT16_CAPABILITY: tuple[int, int] = (8, 0)


@dataclasses.dataclass(frozen=True)
class RuntimePlan:
    """How to run training: strategy, Keras dtype policy, XLA, and why."""

    strategy: StrategyKind
    precision_policy: PrecisionPolicy
    jit_compile: bool
    devices: tuple[str, ...]
    reasons: tuple[str, ...] = ()
    num_workers: int = 1

    @property
    def num_replicas(self) -> int:
        """Replicas on this machine (one per GPU, one on CPU)."""
        return max(1, len(self.devices))

    def describe(self) -> str:
        devices = ", ".join(self.devices) or "CPU"
        workers = f" workers={self.num_workers}" if self.num_workers > 1 else ""
        return (
            f"strategy={self.strategy}{workers} devices=[{devices}] "
            f"precision={self.precision_policy} "
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
    training_config: TrainingConfig,
    compute_capabilities: Sequence[tuple[int, int] | None] | None = None,
    num_workers: int = 1,
) -> RuntimePlan:
    """Decides strategy, precision and XLA from the visible GPUs, the config and the job.

    Every visible GPU is used: one GPU runs on it directly, several run under
    MirroredStrategy, and a job of several workers runs under MultiWorkerMirroredStrategy
    (all GPUs of all workers, or each worker's CPU). Mixed precision and XLA are GPU-only
    speedups that the config can turn off: bfloat16 when every GPU has compute capability
    8.0 or more, else float16 (with Keras' loss scaling). On CPU the run stays float32
    without XLA so it behaves like the tutorial.

    Args:
        gpus: the visible GPUs (tf.config.PhysicalDevice objects or their names).
        training_config: anything with boolean ``mixed_precision`` and ``xla`` attributes
            (a components.platform.config.TrainingConfig).
        compute_capabilities: optional (major, minor) per GPU, as
            tf.config.experimental.get_device_details reports it; a GPU older than Volta
            gets float32 because float16 would be slower there, and bfloat16 needs all
            of them known and at least 8.0.
        num_workers: machines in the job (components.model.distributed.Cluster.num_workers).

    Returns:
        The RuntimePlan to build the model and compile it with.
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be at least 1, got {num_workers}")
    names = tuple(_logical_gpu_name(_device_name(gpu), index) for index, gpu in enumerate(gpus))
    multi_worker = num_workers > 1
    if not names:
        reasons = ["no GPU visible: float32 without XLA on CPU"]
        if multi_worker:
            reasons.append(f"{num_workers} workers in TF_CONFIG")
        return RuntimePlan(
            strategy="multi_worker_mirrored" if multi_worker else "default",
            precision_policy="float32",
            jit_compile=False,
            devices=(),
            reasons=tuple(reasons),
            num_workers=num_workers,
        )
    reasons = [f"{num_workers} workers in TF_CONFIG"] if multi_worker else []
    strategy: StrategyKind = (
        "multi_worker_mirrored" if multi_worker else "mirrored" if len(names) > 1 else "one_device"
    )
    precision: PrecisionPolicy = "float32"
    if not training_config.mixed_precision:
        reasons.append("mixed precision off in config")
    else:
        capabilities = [None if cap is None else tuple(cap) for cap in compute_capabilities or []]
        known = [cap for cap in capabilities if cap is not None]
        old = [cap for cap in known if cap < MIN_MIXED_PRECISION_CAPABILITY]
        all_known = len(known) == len(names)
        if old:
            reasons.append(f"GPU compute capability {old[0]} < 7.0: float32 is faster")
        elif all_known and all(cap >= MIN_BFLOAT16_CAPABILITY for cap in known):
            precision = "mixed_bfloat16"
            reasons.append(f"GPU compute capability {min(known)} >= 8.0: bfloat16, no loss scaling")
        else:
            precision = "mixed_float16"
            below = [cap for cap in known if cap < MIN_BFLOAT16_CAPABILITY]
            reasons.append(
                f"GPU compute capability {below[0]} < 8.0: float16 with loss scaling"
                if below
                else "GPU compute capability unknown: float16 with loss scaling"
            )
    jit_compile = bool(training_config.xla)
    if not jit_compile:
        reasons.append("XLA off in config")
    return RuntimePlan(
        strategy=strategy,
        precision_policy=precision,
        jit_compile=jit_compile,
        devices=names,
        reasons=tuple(reasons),
        num_workers=num_workers,
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
    """Builds the tf.distribute strategy a plan names.

    MultiWorkerMirroredStrategy reads the cluster from TF_CONFIG and must be built before
    any other TensorFlow op runs in the process; every worker blocks here until all of
    them have started.
    """
    import tensorflow as tf

    if plan.strategy == "multi_worker_mirrored":
        return _multi_worker_strategy_class()()
    if plan.strategy == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(plan.devices))
    if plan.strategy == "one_device":
        return tf.distribute.OneDeviceStrategy(plan.devices[0])
    return tf.distribute.get_strategy()


def _multi_worker_strategy_class() -> type:
    """MultiWorkerMirroredStrategy that lets Keras 3's ``fit`` build the model.

    Before training, ``fit`` reduces the first (image, mask) batch as one structure only to
    learn its shapes and dtypes, which MultiWorkerMirroredStrategy refuses ("Attempt to
    convert a value (PerReplica...)", keras-team/keras#20585, tensorflow/tensorflow#72388)
    and could not do for a uint8 mask anyway. A structure gets this worker's first replica's
    values, which have the shapes and dtypes asked for. Keras then averages each scalar
    log (loss, metrics) over axis 0, which a scalar does not have: it gets the mean over
    replicas, across workers, which is what ``reduce`` does without an axis.
    """
    import tensorflow as tf

    class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            if not tf.nest.is_nested(value):
                local = self.experimental_local_results(value)[0]
                if (
                    axis is not None
                    and getattr(local, "shape", None) is not None
                    and (local.shape.rank == 0)
                ):
                    axis = None  # a scalar log: the mean over replicas
                return super().reduce(reduce_op, value, axis)
            return tf.nest.map_structure(
                lambda item: self.experimental_local_results(item)[0], value
            )

    return KerasMultiWorkerMirroredStrategy
