"""Deterministic failures fail once; transient ones are retried with backoff."""

import errno
import json

import pytest
from google.api_core import exceptions as api_exceptions

from components.platform.config import ConfigError
from components.platform.retry import (
    FAILURE_RECORD,
    RepeatedFailure,
    is_transient,
    retry_transient,
    run_or_replay_failure,
)


def _chained(error: Exception, cause: Exception) -> Exception:
    error.__cause__ = cause
    return error


TRANSIENT = [
    ConnectionResetError("connection reset by peer"),
    ConnectionRefusedError("refused"),
    TimeoutError("read timed out"),
    ConnectionAbortedError("software caused connection abort"),
    OSError(errno.EIO, "Input/output error"),  # gcsfuse's failed read
    OSError(errno.ETIMEDOUT, "Connection timed out"),
    api_exceptions.ServiceUnavailable("503 backend error"),
    api_exceptions.TooManyRequests("429 rate limit"),
    api_exceptions.InternalServerError("500"),
    api_exceptions.GatewayTimeout("504"),
    api_exceptions.RetryError("deadline exceeded while retrying", cause=None),
    _chained(RuntimeError("download failed"), ConnectionResetError("reset")),
]
DETERMINISTIC = [
    ValueError("dataset image_size 64 does not match model 128"),
    ConfigError("training.epochs: Input should be greater than or equal to 1 (got 0)"),
    KeyError("segmentation_mask"),
    FileNotFoundError("dataset.json"),
    PermissionError("read-only"),
    OSError(errno.ENOSPC, "No space left on device"),
    api_exceptions.NotFound("404 bucket"),
    api_exceptions.Forbidden("403"),
    api_exceptions.BadRequest("400"),
    FloatingPointError("training diverged"),
    RuntimeError("something unknown"),
    # A refusal stays a refusal even when a network error led to it.
    _chained(ValueError("data not prepared"), ConnectionResetError("reset")),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: type(e).__name__)
def test_transient_errors_are_recognised(error):
    assert is_transient(error)


@pytest.mark.parametrize("error", DETERMINISTIC, ids=lambda e: type(e).__name__)
def test_deterministic_errors_are_not_retried(error):
    assert not is_transient(error)


def test_tensorflow_errors_by_kind():
    import tensorflow as tf

    assert is_transient(tf.errors.UnavailableError(None, None, "socket closed"))
    assert is_transient(tf.errors.DeadlineExceededError(None, None, "deadline"))
    assert not is_transient(tf.errors.DataLossError(None, None, "corrupted record"))
    assert not is_transient(tf.errors.InvalidArgumentError(None, None, "bad shape"))
    assert not is_transient(tf.errors.NotFoundError(None, None, "no such file"))
    assert not is_transient(tf.errors.ResourceExhaustedError(None, None, "OOM"))


class Flaky:
    """Fails with the given errors in turn, then returns 'done'."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_a_deterministic_failure_runs_once_and_keeps_its_message():
    work, waits = Flaky(ValueError("record 7 of train-00001: mask value 9")), []
    with pytest.raises(ValueError, match="record 7 of train-00001: mask value 9"):
        retry_transient(work, what="ingest", sleep=waits.append)
    assert work.calls == 1 and waits == []


def test_a_transient_failure_is_retried_with_exponential_backoff():
    work, waits = Flaky(ConnectionResetError("reset"), api_exceptions.ServiceUnavailable("503")), []
    assert retry_transient(work, what="push", initial_delay=2, factor=3, sleep=waits.append) == (
        "done"
    )
    assert work.calls == 3
    assert len(waits) == 2
    assert 2 <= waits[0] <= 2.2 and 6 <= waits[1] <= 6.6  # 2 s, then 3 × 2 s, plus jitter


def test_backoff_stops_at_the_limit_and_the_last_transient_error_propagates():
    errors = [TimeoutError(f"timeout {n}") for n in range(4)]
    work, waits = Flaky(*errors), []
    with pytest.raises(TimeoutError, match="timeout 3"):
        retry_transient(work, what="ingest", attempts=4, max_delay=5, sleep=waits.append)
    assert work.calls == 4
    assert [round(wait) for wait in waits] == [2, 4, 5]


def test_a_deterministic_error_after_a_transient_one_stops_the_retries():
    work, waits = Flaky(ConnectionResetError("reset"), ValueError("bad record")), []
    with pytest.raises(ValueError, match="bad record"):
        retry_transient(work, what="ingest", sleep=waits.append)
    assert work.calls == 2 and len(waits) == 1


def test_a_retried_task_replays_a_deterministic_failure_without_repeating_the_work(tmp_path):
    work = Flaky(ValueError("dataset has 3 classes, the model 4"))
    with pytest.raises(ValueError, match="the model 4"):
        run_or_replay_failure(work, str(tmp_path), what="train")
    assert json.loads((tmp_path / FAILURE_RECORD).read_text()) == {
        "type": "ValueError",
        "message": "dataset has 3 classes, the model 4",
    }
    # The orchestrator's retry of the same task (same output directory): no second run.
    with pytest.raises(RepeatedFailure, match="ValueError: dataset has 3 classes, the model 4"):
        run_or_replay_failure(work, str(tmp_path), what="train")
    assert work.calls == 1


def test_a_retried_task_runs_again_after_a_transient_failure(tmp_path):
    work = Flaky(api_exceptions.ServiceUnavailable("503 reading a shard"))
    with pytest.raises(api_exceptions.ServiceUnavailable):
        run_or_replay_failure(work, str(tmp_path), what="train")
    assert not (tmp_path / FAILURE_RECORD).exists()
    assert run_or_replay_failure(work, str(tmp_path), what="train") == "done"
    assert work.calls == 2
