"""A multi-worker training job on one machine, over 127.0.0.1 (tests, benchmark, rehearsal).

Each worker is its own process with its own TF_CONFIG, as on a Vertex AI custom job with
several replicas, running the same ``components.model.train.train_model``. Ports are picked
free, every worker runs in its own process group, and ``LoopbackJob`` always kills and
reaps them, so a hung collective never outlives its caller.

Run one worker by hand (what the job starts)::

    TF_CONFIG=... python -m components.model.loopback --dataset D --model-dir M \
        --tensorboard-dir T --model-config '{...}' --training-config '{...}' --result R
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.platform.config import ModelConfig, TrainingConfig, section_from_json


def free_ports(count: int) -> list[int]:
    """Ports the OS says are free now (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_configs(ports: Sequence[int]) -> list[dict[str, Any]]:
    """One TF_CONFIG per worker: TensorFlow's layout, worker 0 is the chief."""
    workers = [f"127.0.0.1:{port}" for port in ports]
    return [
        {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        for index in range(len(ports))
    ]


class LoopbackJob:
    """Starts N worker processes of one training job; a context manager that reaps them.

    Args:
        num_workers: processes to start.
        worker_args: command-line arguments of ``python -m components.model.loopback``, the
            same for every worker (they differ only in TF_CONFIG and the result file).
        work_dir: where each worker's log and result file go.
        env: extra environment for the workers.
    """

    def __init__(
        self,
        num_workers: int,
        worker_args: Sequence[str],
        work_dir: str | Path,
        env: Mapping[str, str] | None = None,
    ):
        self.num_workers = num_workers
        self.worker_args = list(worker_args)
        self.work_dir = Path(work_dir)
        self.env = dict(env or {})
        self.processes: list[subprocess.Popen] = []
        self._logs: list[Any] = []

    def result_path(self, index: int) -> Path:
        return self.work_dir / f"worker-{index}.json"

    def log_path(self, index: int) -> Path:
        return self.work_dir / f"worker-{index}.log"

    def start(self) -> LoopbackJob:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        configs = tf_configs(free_ports(self.num_workers))
        for index, tf_config in enumerate(configs):
            env = {
                **os.environ,
                "TF_CPP_MIN_LOG_LEVEL": "2",
                "CUDA_VISIBLE_DEVICES": "",
                **self.env,
                "TF_CONFIG": json.dumps(tf_config),
            }
            env.pop("CLUSTER_SPEC", None)
            log = open(self.log_path(index), "w")  # noqa: SIM115 (closed in stop)
            self._logs.append(log)
            command = [sys.executable, "-m", "components.model.loopback", *self.worker_args]
            command += ["--result", str(self.result_path(index))]
            self.processes.append(
                subprocess.Popen(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
        return self

    def wait(self, timeout: float) -> list[int]:
        """Exit codes of every worker; kills them all when the timeout passes first."""
        deadline = time.monotonic() + timeout
        codes = []
        for process in self.processes:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                codes.append(process.wait(timeout=remaining))
            except subprocess.TimeoutExpired:
                self.stop()
                raise TimeoutError(
                    f"loopback workers still running after {timeout:.0f}s; logs:\n"
                    + self.tail_logs()
                ) from None
        return codes

    def kill(self, index: int) -> None:
        """SIGKILLs one worker's process group (a lost machine)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.processes[index].pid, signal.SIGKILL)
        self.processes[index].wait()

    def stop(self) -> None:
        """Kills every worker still running and reaps it."""
        for process in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        for log in self._logs:
            log.close()
        self._logs.clear()

    def results(self) -> list[dict[str, Any]]:
        return [json.loads(self.result_path(i).read_text()) for i in range(self.num_workers)]

    def tail_logs(self, lines: int = 15) -> str:
        parts = []
        for index in range(len(self.processes)):
            text = self.log_path(index).read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- worker {index}\n" + "\n".join(text))
        return "\n".join(parts)

    def __enter__(self) -> LoopbackJob:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def small_encoder(image_size: int, *unused: Any, **unused_named: Any):
    """A five-convolution stand-in for MobileNetV2 with the same skip strides (2 to 32).

    For the loopback tests only (``--small-encoder``): what they prove is the multi-worker
    machinery (strategy, sharding, chief-only writes, backups), which does not depend on
    the encoder, and tracing MobileNetV2's 150 layers cost each process over a minute.
    """
    import keras

    from components.model import model as model_lib

    inputs = keras.Input(shape=(image_size, image_size, 3))
    skips, x = [], inputs
    for index, filters in enumerate((8, 8, 16, 16, 32)):
        x = keras.layers.Conv2D(
            filters, 3, strides=2, padding="same", activation="relu", name=f"small_{index}"
        )(x)
        skips.append(x)
    return keras.Model(inputs=inputs, outputs=skips, name=model_lib.ENCODER_NAME)


def use_small_encoder() -> None:
    """Makes ``build_unet`` use ``small_encoder`` in this process."""
    from components.model import model as model_lib

    model_lib.build_encoder = small_encoder


def worker_arguments(
    dataset_dir: str,
    model_dir: str,
    tensorboard_dir: str,
    model_config: ModelConfig,
    training_config: TrainingConfig,
    *,
    small_encoder: bool = False,
    epoch_pause: float = 0.0,
) -> list[str]:
    """The command line of one worker for these settings (pydantic config sections).

    ``small_encoder`` and ``epoch_pause`` (seconds each worker waits after an epoch, a
    window to kill it in) are for tests.
    """
    return [
        *(["--small-encoder"] if small_encoder else []),
        "--epoch-pause",
        str(epoch_pause),
        "--dataset",
        dataset_dir,
        "--model-dir",
        model_dir,
        "--tensorboard-dir",
        tensorboard_dir,
        "--model-config",
        model_config.model_dump_json(),
        "--training-config",
        training_config.model_dump_json(),
    ]


def _run_worker(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m components.model.loopback")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--tensorboard-dir", required=True)
    parser.add_argument("--model-config", required=True)
    parser.add_argument("--training-config", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--small-encoder", action="store_true")
    parser.add_argument("--epoch-pause", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.small_encoder:
        use_small_encoder()

    import keras

    from components.model import distributed, train

    epochs_run: list[int] = []
    epoch_seconds: list[float] = []
    started = time.perf_counter()

    class RecordEpochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epochs_run.append(int(epoch))
            epoch_seconds.append(time.perf_counter() - self.epoch_started)
            time.sleep(args.epoch_pause)

    metrics = train.train_model(
        args.dataset,
        args.model_dir,
        args.tensorboard_dir,
        section_from_json(ModelConfig, args.model_config),
        section_from_json(TrainingConfig, args.training_config),
        None,
        callbacks=[RecordEpochs()],
    )
    cluster = distributed.cluster_from_env()
    result = {
        "metrics": metrics,
        "epochs_run": epochs_run,
        "epoch_seconds": epoch_seconds,
        "is_chief": cluster.is_chief,
        "seconds": time.perf_counter() - started,
    }
    Path(args.result).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_run_worker())
