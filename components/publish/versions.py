"""Operating a push destination: list, verify, roll back and clean its model versions.

Push (components/publish/push.py) writes versions that never change once their manifest is
written; this module reads them and moves only what an operator asks for, through
the same store and the same preconditions:

* ``list_versions``: every version, complete (has a manifest) or incomplete (a claim
  and some files: a push that was killed), and which one LATEST names.
* ``verify_version``: every file a manifest lists, present and with its sha256.
* ``rollback``: LATEST to an earlier complete version that verifies, by a
  compare-and-swap on the LATEST that was read (a GCS generation precondition), so a
  push racing the rollback is never overwritten silently.
* ``collect_garbage``: removes incomplete versions and stale staged files; a complete
  version only when ``keep`` asks for it, and LATEST never.
* ``resolve_production_model``: the baseline evaluate compares with, or one line that
  names the damaged version and the ways out.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import posixpath
import time
from dataclasses import dataclass, field
from typing import Any

from components.platform import files
from components.platform.contracts import CheckVerdicts, ContractError, LatestPointer, PushManifest
from components.platform.storage import Store, open_store
from components.publish import push

# An incomplete version whose claim is younger than this may belong to a push still running.
INCOMPLETE_AFTER_S = 3600.0
_SHOWN_METRICS = ("mean_iou", "pixel_accuracy")


class VersionError(RuntimeError):
    """A version cannot be used as asked; the message says which and what to do."""


class BaselineUnusableError(VersionError):
    """The production model (LATEST) is damaged or incomplete, so evaluate cannot compare."""


@dataclass
class VersionInfo:
    """One version of a push destination as ``petseg models list`` shows it."""

    version: str
    complete: bool
    created: str = ""
    run_id: str = ""
    digest: str = ""
    fingerprint: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    latest: bool = False

    def line(self) -> str:
        marks = "complete" if self.complete else "INCOMPLETE"
        if self.latest:
            marks += ", LATEST"
        figures = " ".join(f"{key} {value:.4f}" for key, value in self.metrics.items())
        fingerprint = f"data {self.fingerprint[:12]}" if self.fingerprint else "data ?"
        return "  ".join(
            part
            for part in (self.version, self.created or "?", marks, figures or "-", fingerprint)
            if part
        )


def _store(destination: str, store: Store | None) -> Store:
    store = store or open_store(destination)
    store.check_ready(for_write=False)
    return store


def _version_dir(version: str) -> str:
    return f"{push.VERSIONS_DIR}/{version}"


def latest_version(store: Store) -> str | None:
    """The version LATEST names, or None when nothing was pushed."""
    pointer = push.read_pointer(store)
    return None if pointer is None else pointer.version


def list_versions(destination: str, *, store: Store | None = None) -> list[VersionInfo]:
    """Every version under the destination, oldest first (reads manifests and claims only)."""
    store = _store(destination, store)
    latest = latest_version(store)
    found = []
    for _number, name in push._existing_versions(store):
        data = store.read_bytes(f"{_version_dir(name)}/{push.MANIFEST_FILE}")
        manifest = push.parsed(PushManifest, data)
        if manifest is not None:
            metrics = manifest.model_extra.get("metrics")
            info = VersionInfo(
                version=name,
                complete=True,
                created=manifest.created_at,
                run_id=manifest.run_id,
                digest=manifest.model_digest,
                fingerprint=manifest.dataset_fingerprint,
                metrics={
                    key: float(metrics[key])
                    for key in _SHOWN_METRICS
                    if isinstance(metrics, dict) and isinstance(metrics.get(key), int | float)
                },
            )
        else:  # a manifest this code cannot read (a newer format?) still makes it complete
            claim = push.read_claim(store, name)
            info = VersionInfo(
                version=name,
                complete=data is not None,
                created=claim.claimed_at,
                run_id=claim.run_id,
                digest=claim.model_digest,
            )
        info.latest = name == latest
        found.append(info)
    return found


def verify_version(
    destination: str, version: str | None = None, *, store: Store | None = None
) -> tuple[str, list[str]]:
    """Checks every file the version's manifest lists; default the version LATEST names.

    Returns:
        ``(version, problems)``: one line per missing or differing file (empty: intact).

    Raises:
        VersionError: no such version, or nothing pushed yet when no version is given.
    """
    store = _store(destination, store)
    if version is None:
        version = latest_version(store)
        if version is None:
            raise VersionError(f"nothing was pushed to {store.uri} yet (no LATEST)")
    if push.version_number(version) is None:
        raise VersionError(f"{version!r} is not a version name (like v000001)")
    manifest_key = f"{_version_dir(version)}/{push.MANIFEST_FILE}"
    manifest_bytes = store.read_bytes(manifest_key)
    if manifest_bytes is None:
        if version not in store.list_children(push.VERSIONS_DIR):
            raise VersionError(f"{store.key_uri(_version_dir(version))} does not exist")
        return version, [
            f"{store.key_uri(manifest_key)} is missing: the push of {version} is incomplete"
        ]
    problems = []
    pointer = push.read_pointer(store)
    recorded = pointer.manifest_sha256 if pointer and pointer.version == version else None
    if recorded not in (None, hashlib.sha256(manifest_bytes).hexdigest()):
        problems.append(f"{store.key_uri(manifest_key)} differs from the sha256 recorded in LATEST")
    try:
        manifest = PushManifest.from_bytes(manifest_bytes, store.key_uri(manifest_key))
    except ContractError as error:
        return version, [*problems, str(error)]
    for relative_path, expected in sorted(manifest.files.items()):
        key = f"{_version_dir(version)}/{relative_path}"
        actual = store.sha256(key)
        if actual is None:
            problems.append(f"{store.key_uri(key)} is listed in the manifest but missing")
        elif actual != expected.sha256:
            problems.append(f"{store.key_uri(key)}: sha256 differs from the manifest's")
    return version, problems


def rollback(destination: str, version: str, *, store: Store | None = None) -> tuple[str, str]:
    """Points LATEST at an earlier complete version that verifies.

    Returns:
        ``(version LATEST named before, version it names now)``.

    Raises:
        VersionError: the version is incomplete, damaged, not earlier than LATEST, or
            LATEST changed while rolling back (nothing was changed then).
    """
    store = store or open_store(destination)
    store.check_ready(for_write=True)
    current_bytes, token = store.read_versioned(push.LATEST_FILE)
    if current_bytes is None:
        raise VersionError(f"nothing was pushed to {store.uri} yet (no LATEST)")
    current = push.parse_pointer(store, current_bytes).version
    number = push.version_number(version)
    if number is None:
        raise VersionError(f"{version!r} is not a version name (like v000001)")
    if number >= push.version_number(current):
        raise VersionError(
            f"LATEST is {current}; rollback moves it to an earlier version, not {version}"
        )
    _, problems = verify_version(destination, version, store=store)
    if problems:
        raise VersionError(f"{version} cannot be rolled back to: {problems[0]}")
    manifest_bytes = store.read_bytes(f"{_version_dir(version)}/{push.MANIFEST_FILE}")
    pointer = LatestPointer(
        version=version,
        model_digest=PushManifest.from_bytes(manifest_bytes).model_digest,  # verified above
        manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
        updated_at=push._now(),
        rolled_back_from=current,
    )
    if not store.compare_and_swap(push.LATEST_FILE, pointer.to_bytes(), token):
        raise VersionError(
            f"{store.key_uri(push.LATEST_FILE)} changed while rolling back (a push?); "
            "nothing was changed: look at `petseg models list` and run the rollback again"
        )
    return current, version


def _claim_age_s(info: VersionInfo) -> float:
    try:
        claimed = datetime.datetime.fromisoformat(info.created)
    except ValueError:
        return float("inf")  # no readable claim: nobody is pushing it
    return time.time() - claimed.timestamp()


def collect_garbage(
    destination: str,
    *,
    keep: int | None = None,
    incomplete_after_s: float = INCOMPLETE_AFTER_S,
    dry_run: bool = False,
    store: Store | None = None,
) -> list[str]:
    """Removes incomplete versions, stale staged files and, with ``keep``, old versions.

    Args:
        destination: the push destination (local or gs://).
        keep: also remove complete versions beyond the newest ``keep`` (LATEST is always
            kept, and counts as one of them); None keeps every complete version.
        incomplete_after_s: an incomplete version is removed once its claim is this old
            (a younger one may be a push in progress).
        dry_run: only say what would be removed.
        store: the store to use; default ``open_store(destination)``.

    Returns:
        The URIs removed (or that would be).
    """
    if keep is not None and keep < 1:
        raise ValueError(f"--keep {keep}: keep at least 1 version (LATEST)")
    store = store or open_store(destination)
    store.check_ready(for_write=True)
    versions = list_versions(destination, store=store)
    doomed = [
        info.version
        for info in versions
        if not info.complete and not info.latest and _claim_age_s(info) >= incomplete_after_s
    ]
    if keep is not None:
        complete = [info for info in versions if info.complete]
        kept = {info.version for info in complete[-keep:]} | {
            info.version for info in complete if info.latest
        }
        doomed += [info.version for info in complete if info.version not in kept]
    removed = []
    for version in sorted(doomed):
        keys = store.list_keys(_version_dir(version))
        # The claim goes last, so an interrupted gc leaves an incomplete version, not a hole.
        keys.sort(key=lambda key: posixpath.basename(key) in (push.CLAIM_FILE, push.MANIFEST_FILE))
        if not dry_run:
            manifest_key = f"{_version_dir(version)}/{push.MANIFEST_FILE}"
            if manifest_key in keys:  # unpublish first: a half-removed version is incomplete
                store.delete(manifest_key)
            for key in keys:
                store.delete(key)
        removed.append(store.key_uri(_version_dir(version)))
    if dry_run:
        return removed
    return removed + store.remove_stale_staging(incomplete_after_s)


def _recovery_hint(destination: str) -> str:
    return (
        f"check it with `petseg models verify --destination {destination}`, roll back with "
        f"`petseg models rollback VERSION --destination {destination}`, or run without a "
        "baseline: --set evaluation.baseline=none"
    )


def resolve_production_model(
    destination: str, cache_dir: str, *, store: Store | None = None
) -> str | None:
    """The verified production model (LATEST) as a local directory, or None if none yet.

    Args:
        destination: the push destination (local or gs://).
        cache_dir: where a gs:// model is copied.
        store: the store to read; default ``open_store(destination)``, as push opens it.

    Raises:
        BaselineUnusableError: one line naming the damaged or incomplete version and the
            ways out (verify, rollback, evaluation.baseline=none).
    """
    store = store or open_store(destination)
    try:
        return push.resolve_latest_model(destination, cache_dir, store=store)
    except (ValueError, FileNotFoundError, push.ChecksumMismatchError) as error:
        try:
            version = latest_version(store) or "LATEST"
        except ValueError:
            version = "LATEST"
        raise BaselineUnusableError(
            f"the production model {version} at {destination} cannot be used as the "
            f"baseline: {error}; {_recovery_hint(destination)}"
        ) from None


def check_not_incomplete(model_dir: str) -> None:
    """Refuses a version directory of a push destination whose push never finished.

    Args:
        model_dir: a model directory, local or gs:// (through ``components.platform.files``,
            so inside the caller's ``files.gcs_client`` block); only
            ``<destination>/versions/vNNNNNN`` is checked.

    Raises:
        VersionError: naming the version and what to do instead.
    """
    path = model_dir.rstrip("/")
    version = posixpath.basename(path)
    parent = posixpath.dirname(path)
    if push.version_number(version) is None or posixpath.basename(parent) != push.VERSIONS_DIR:
        return
    destination = posixpath.dirname(parent) or "."
    if files.exists(files.join(path, push.MANIFEST_FILE)):
        return
    if not files.exists(files.join(path, push.CLAIM_FILE)):
        return
    raise VersionError(
        f"{model_dir}: incomplete push: version {version} has no {push.MANIFEST_FILE} (its "
        f"push was interrupted); use a complete version (`petseg models list --destination "
        f"{destination}`) or push the model again (`petseg push --model DIR --destination "
        f"{destination}`)"
    )


def run_outputs_of(model_dir: str) -> tuple[str | None, dict[str, Any]]:
    """The data statistics folder and evaluate's metrics of the run a model came from.

    Only for a model inside a local run folder (``<run>/train/model``); the pipeline's
    push publishes both, so pushing again with them gives the same digest.
    """
    run_dir = os.path.dirname(os.path.dirname(os.path.abspath(model_dir)))
    statistics = os.path.join(run_dir, "data-statistics", "statistics")
    if not os.path.isfile(os.path.join(statistics, CheckVerdicts.FILE_NAME)):
        statistics = None
    metrics: dict[str, Any] = {}
    try:
        with open(os.path.join(run_dir, "evaluate", "executor_output.json")) as handle:
            outputs = json.load(handle).get("artifacts", {})
        metrics = dict(outputs["metrics"]["artifacts"][0].get("metadata", {}))
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        pass
    return statistics, metrics


def push_existing_model(
    model_dir: str, destination: str, *, data_statistics: str | None = None, run_id: str = ""
) -> dict[str, Any]:
    """Pushes a Model artifact directory again, as the pipeline's push step would.

    With the same files (model and data statistics) the digest is the same, so an
    interrupted push of it resumes its version and a finished one is reused.
    """
    found_statistics, metrics = run_outputs_of(model_dir)
    data_statistics = data_statistics or found_statistics
    extra_manifest: dict[str, Any] = {"source_model_uri": os.path.abspath(model_dir)}
    if metrics:
        extra_manifest["metrics"] = metrics
    extra_files: dict[str, str] = {}
    if data_statistics:
        extra_files, extra_manifest["data_checks"] = push.files_to_push(data_statistics)
    if not run_id:
        run_id = "cli-" + hashlib.sha256(os.path.abspath(model_dir).encode()).hexdigest()[:16]
    return push.push_model(
        model_dir,
        destination,
        run_id=run_id,
        extra_manifest=extra_manifest,
        extra_files=extra_files,
    )
