"""Retry what can succeed next time, and only that.

A deterministic failure (an invalid config, a bad record, data that is not
prepared, a model that does not match its dataset: the ``ValueError`` family)
fails the same way every time, so it fails once with its message. A transient
one (a dropped connection, a timeout, GCS or an API answering 429 or 5xx) is
retried in the process with exponential backoff (tenacity). Errors are classified by class
name and HTTP status, so this module imports neither TensorFlow nor Google's
client libraries.

Task-level retries (the orchestrator starting the task again) are kept for
what cannot be caught in the process: a preempted or evicted train pod. So a
deterministic error is not repeated there either, ``run_or_replay_failure``
records it in the task's output directory and a retried attempt re-raises it
at once without doing the work again.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import tenacity

from components.platform import files

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Classes (anywhere in the error's class hierarchy) that mean "try again later": builtins,
# requests/urllib3/http.client, google-auth, google-api-core, and tf.errors.
TRANSIENT_CLASS_NAMES = frozenset(
    {
        "ConnectionError",  # builtin (reset, refused, aborted, broken pipe) and requests'
        "TimeoutError",
        "Timeout",  # requests
        "ChunkedEncodingError",
        "ProtocolError",  # urllib3
        "RemoteDisconnected",
        "IncompleteRead",
        "TransportError",  # google.auth
        "RetryError",  # google.api_core: its own retries ran out on transient errors
        "TooManyRequests",
        "InternalServerError",
        "BadGateway",
        "ServiceUnavailable",
        "GatewayTimeout",
        "UnavailableError",  # tf.errors
        "DeadlineExceededError",
        "AbortedError",
    }
)
# Refusals the code raises on purpose: never transient, whatever caused them.
DETERMINISTIC_CLASSES: tuple[type[BaseException], ...] = (
    ValueError,  # ConfigError, bad records, mismatches, pydantic's ValidationError
    TypeError,
    LookupError,
    ArithmeticError,
    FileNotFoundError,
    PermissionError,
    NotImplementedError,
)
TRANSIENT_HTTP_STATUS = frozenset({408, 429, 500, 502, 503, 504})
TRANSIENT_ERRNO = frozenset(
    {
        errno.EIO,  # gcsfuse reports a failed GCS read as EIO
        errno.EAGAIN,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.ETIMEDOUT,
        errno.EPIPE,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
    }
)
FAILURE_RECORD = "deterministic_failure.json"


def _http_status(error: BaseException) -> int | None:
    for attribute in ("code", "status_code", "status"):
        value = getattr(error, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value < 600:
            return value
    return None


def is_transient(error: BaseException) -> bool:
    """Whether trying the same work again may succeed.

    A deliberate refusal (``DETERMINISTIC_CLASSES``) never is; otherwise the error,
    or what caused it, must be a known transient kind. Anything unknown counts as
    deterministic: repeating it would only delay the message.
    """
    if isinstance(error, DETERMINISTIC_CLASSES):
        return False
    if any(cls.__name__ in TRANSIENT_CLASS_NAMES for cls in type(error).__mro__):
        return True
    if _http_status(error) in TRANSIENT_HTTP_STATUS:
        return True
    if isinstance(error, OSError) and error.errno in TRANSIENT_ERRNO:
        return True
    cause = error.__cause__
    return cause is not None and cause is not error and is_transient(cause)


def retry_transient(
    work: Callable[[], T],
    *,
    what: str,
    attempts: int = 4,
    initial_delay: float = 2.0,
    factor: float = 2.0,
    max_delay: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Runs ``work``; a transient error is retried with exponential backoff.

    Only re-run work that is safe to repeat (petseg's steps write under temporary
    names and publish last, so a repeat overwrites or reuses, never doubles).

    Args:
        work: the step, without arguments.
        what: named in the log lines, e.g. 'ingest'.
        attempts: tries in all (at least 1).
        initial_delay: seconds before the second try; each next wait is ``factor``
            times longer, at most ``max_delay``, with up to 10 % random jitter.
        factor: backoff multiplier.
        max_delay: longest wait between tries.
        sleep: how to wait (tests pass a recorder).

    Raises:
        The first deterministic error at once; the last transient one when every
        attempt failed.
    """
    backoff = tenacity.wait_exponential(multiplier=initial_delay, exp_base=factor, max=max_delay)

    def log(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception()
        logger.warning(
            "%s: transient %s (%s); try %d of %d in %.0f s",
            what,
            type(error).__name__,
            error,
            state.attempt_number + 1,
            attempts,
            state.upcoming_sleep,
        )

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, attempts)),
        wait=lambda state: backoff(state) * (1 + random.uniform(0, 0.1)),
        retry=tenacity.retry_if_exception(is_transient),
        before_sleep=log,
        sleep=sleep,
        reraise=True,  # the error itself, not tenacity's RetryError
    )
    return retrying(work)


class RepeatedFailure(RuntimeError):
    """An earlier attempt of this task failed deterministically; it is not run again."""


def run_or_replay_failure(work: Callable[[], T], output_dir: str, *, what: str) -> T:
    """Runs a task that the orchestrator may retry, without repeating a deterministic failure.

    The orchestrator retries the whole task (e.g. after the train pod was preempted)
    and the retried attempt gets the same output directory. A deterministic error is
    recorded there before it propagates; a retried attempt finds the record and fails
    at once with the same message instead of doing the work again. Transient errors
    are not recorded, so their retry runs (and, for train, resumes from its checkpoint); nor
    is a full disk, which freeing space cures. The record is written whole or not at all.

    Args:
        work: the task's work, without arguments.
        output_dir: a local (or /gcs/ mounted) directory that survives task retries.
        what: the task's name, for the message.

    Raises:
        RepeatedFailure: a deterministic failure of an earlier attempt, with its message.
        Whatever ``work`` raises.
    """
    record = os.path.join(output_dir, FAILURE_RECORD)
    if os.path.exists(record):
        with open(record, encoding="utf-8") as handle:
            earlier: dict[str, Any] = json.load(handle)
        raise RepeatedFailure(
            f"{what} failed in an earlier attempt with an error that does not go away by "
            f"retrying, so it is not run again: {earlier['type']}: {earlier['message']}"
        )
    try:
        return work()
    except Exception as error:
        if not is_transient(error) and not is_out_of_space(error):
            try:  # whole or not at all: a truncated record would break every retry
                files.write_json(record, {"type": type(error).__name__, "message": str(error)})
            except OSError as record_error:  # never hide the task's own error behind ours
                logger.error("could not record the failure in %s: %s", record, record_error)
        raise


def is_out_of_space(error: BaseException) -> bool:
    """A full disk or quota (in the error or its cause): freeing space makes a retry work."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False
