"""One small file layer over ``tf.io.gfile``: the same calls for local paths and ``gs://``.

Every write creates the parent folder and is atomic: a reader sees the old file or
the new one, never half of one. Locally the bytes go to a temporary name that is
renamed into place; on ``gs://`` one upload (the object appears when it completes)
is already atomic, and a rename there would be a copy and a delete.

Reads that fail say which file: a missing file is ``FileNotFoundError``, a JSON
file that is not a JSON object is ``FileFormatError`` (a ``ValueError``).
"""

from __future__ import annotations

import json
import posixpath
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import tensorflow as tf

join = posixpath.join


class FileFormatError(ValueError):
    """A file exists but does not hold what it should (not JSON, not an object)."""


def is_remote(path: str) -> bool:
    """True for an object-store URI (``gs://...``), where renames are copies."""
    return "://" in path


def exists(path: str) -> bool:
    return tf.io.gfile.exists(path)


def is_dir(path: str) -> bool:
    return tf.io.gfile.isdir(path)


def listdir(path: str) -> list[str]:
    """Entry names in a folder, sorted (sub-folders without a trailing slash)."""
    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(path))


def glob(pattern: str) -> list[str]:
    """Paths matching a pattern, sorted."""
    return sorted(tf.io.gfile.glob(pattern))


def makedirs(path: str) -> None:
    tf.io.gfile.makedirs(path)


def remove(path: str) -> None:
    """Removes a file, or a folder with everything under it; a missing path is fine."""
    if not tf.io.gfile.exists(path):
        return
    if tf.io.gfile.isdir(path):
        tf.io.gfile.rmtree(path)
    else:
        tf.io.gfile.remove(path)


def size(path: str) -> int:
    """The file's length in bytes."""
    return tf.io.gfile.stat(path).length


def read_bytes(path: str) -> bytes:
    """The whole file; ``FileNotFoundError`` naming it when it is not there."""
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found")
    with tf.io.gfile.GFile(path, "rb") as handle:
        return handle.read()


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def parse_json(data: bytes | str, where: str) -> dict[str, Any]:
    """A JSON object from bytes or text; ``FileFormatError`` naming ``where`` otherwise."""
    try:
        payload = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FileFormatError(f"{where}: not JSON ({error})") from None
    if not isinstance(payload, dict):
        raise FileFormatError(f"{where}: expected a JSON object, got {type(payload).__name__}")
    return payload


def read_json(path: str) -> dict[str, Any]:
    """A JSON object from a file (local or gs://)."""
    return parse_json(read_bytes(path), path)


def to_json(
    payload: Mapping[str, Any],
    *,
    allow_nan: bool = True,
    default: Callable[[Any], Any] | None = None,
) -> str:
    """The project's JSON layout: indented, keys sorted, a newline at the end.

    ``allow_nan=False`` refuses NaN and infinities, which strict JSON readers reject;
    ``default`` turns values JSON has no type for into JSON (``str``, say).
    """
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=allow_nan, default=default)
    return text + "\n"


def write_bytes(path: str, data: bytes) -> None:
    """Writes the file whole or not at all, creating its folder."""
    parent = posixpath.dirname(path)
    if parent:
        tf.io.gfile.makedirs(parent)
    if is_remote(path):
        with tf.io.gfile.GFile(path, "wb") as handle:  # one upload: all or nothing
            handle.write(data)
        return
    temporary = f"{path}.incomplete-{uuid.uuid4().hex[:8]}"
    try:
        with tf.io.gfile.GFile(temporary, "wb") as handle:
            handle.write(data)
        tf.io.gfile.rename(temporary, path, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.remove(temporary)
        raise


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(
    path: str,
    payload: Mapping[str, Any],
    *,
    allow_nan: bool = True,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Writes a JSON object atomically in the project's layout (see ``to_json``)."""
    write_text(path, to_json(payload, allow_nan=allow_nan, default=default))
