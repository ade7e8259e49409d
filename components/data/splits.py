"""Stable split assignment and the dataset's content fingerprint (pure Python, no TF).

Splits: an example missing from the source's validation (or test) split is
placed by a hash of its key (a file's path relative to the dataset root, or
TFDS's ``file_name``), never by its position, so adding examples never moves
an existing one to another split. Validation takes the top
``validation_fraction`` of the hash range and test the bottom
``test_fraction``, so carving test or not never moves a validation example.

Fingerprint: each written record contributes sha256(key, sha256(image),
sha256(mask)); a split's fingerprint combines those as a sum modulo 2**256
(order-free, so parallel or re-ordered reads agree, and memory stays flat)
with its record count; the dataset's fingerprint hashes the class table and
every split's fingerprint. The same images, masks, keys, class table and split
rule give the same fingerprint wherever they are stored.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS: tuple[str, ...] = (TRAIN, VALIDATION, TEST)
_SPLIT_SALT = b"petseg-split-v1\0"
_MODULUS = 1 << 256


def split_position(key: str) -> float:
    """The example's place in [0, 1), a pure function of its key."""
    digest = hashlib.sha256(_SPLIT_SALT + key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / float(1 << 64)


def carve(key: str, *, validation_fraction: float, test_fraction: float, carve_test: bool) -> str:
    """The split of an example that the source put in train."""
    position = split_position(key)
    if position >= 1.0 - validation_fraction:
        return VALIDATION
    if carve_test and position < test_fraction:
        return TEST
    return TRAIN


class Fingerprint:
    """Order-free accumulator of record digests for one split."""

    def __init__(self) -> None:
        self.total = 0
        self.count = 0

    def add(self, digest: bytes) -> None:
        self.total = (self.total + int.from_bytes(digest, "big")) % _MODULUS
        self.count += 1

    def merge(self, other: Fingerprint) -> Fingerprint:
        """Adds another accumulator's digests (order-free, like add); returns self."""
        self.total = (self.total + other.total) % _MODULUS
        self.count += other.count
        return self

    def hexdigest(self, split: str) -> str:
        payload = f"petseg-split-fingerprint-v1\0{split}\0{self.count}\0{self.total:064x}"
        return hashlib.sha256(payload.encode("ascii")).hexdigest()


def compute_dataset_fingerprint(
    split_fingerprints: dict[str, str], class_table: dict[str, Any], mask_format: str
) -> str:
    """The whole dataset's fingerprint: its class table and each split's fingerprint."""
    payload = json.dumps(
        {
            "class_table": class_table,
            "mask_format": mask_format,
            "splits": dict(sorted(split_fingerprints.items())),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(b"petseg-dataset-fingerprint-v1\0" + payload.encode()).hexdigest()
