"""Publishing a blessed model as an immutable version, and finding the latest one.

Destination layout (a ``gs://bucket/prefix`` or a local folder)::

    <dest>/versions/v000001/.claim          who took this version number (digest, run id)
    <dest>/versions/v000001/<model files>   model.keras, saved_model/..., metadata.json, ...
    <dest>/versions/v000001/manifest.json   written last: checksums, metrics, dataset, config
    <dest>/LATEST                           {"version", "model_digest", "manifest_sha256"}

The order of writes is what makes a push safe to interrupt, retry or race:

1. A version number is taken by creating its ``.claim`` only if absent (a GCS
   generation precondition, a local ``link``), so two pushes never share one.
2. Files are uploaded and each is verified against the local size and MD5.
3. ``manifest.json`` is created only if absent. A version without one is
   incomplete and invisible to readers; a version with one is never written again.
4. ``LATEST`` moves forward only (compare-and-swap on what was read), so racing
   pushes leave it at the highest complete version.

A retried push of the same model files (same content digest) finds its own
claim: it returns the complete version (``reused``) or resumes the incomplete
one, and never creates a second version. An abandoned claim of another model
keeps its number; the next push takes a higher one.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from components.platform import files, provenance
from components.platform.config import PushConfig
from components.platform.contracts import (
    VERSION_NAME_PATTERN,
    ArtifactRef,
    CheckVerdicts,
    ContractError,
    LatestPointer,
    ManifestFile,
    ModelMetadata,
    PushManifest,
    PushResult,
    Statistics,
    StepInputs,
    VersionClaim,
)
from components.platform.retry import retry_transient
from components.platform.storage import (
    GCS_FUSE_ROOT,
    GCS_SCHEME,
    LocalStore,
    Store,
    file_digests,
    is_safe_key,
    open_store,
)

VERSIONS_DIR = "versions"
LATEST_FILE = LatestPointer.FILE_NAME
MANIFEST_FILE = PushManifest.FILE_NAME
CLAIM_FILE = VersionClaim.FILE_NAME
_RESERVED_NAMES = (MANIFEST_FILE, CLAIM_FILE)
_MAX_CLAIM_ATTEMPTS = 50
_MAX_POINTER_ATTEMPTS = 50
# What push records in a manifest itself; extra_manifest may not replace it.
_MANIFEST_KEYS = {*PushManifest.model_fields, PushManifest.VERSION_FIELD}
_Stored = TypeVar("_Stored", LatestPointer, PushManifest, VersionClaim)


class PushError(RuntimeError):
    """A push could not complete; the destination's LATEST is unchanged by it."""


class ChecksumMismatchError(ValueError):
    """A stored file differs from what its manifest records."""


@dataclass(frozen=True)
class ModelFile:
    relative_path: str
    local_path: str
    sha256: str
    md5_base64: str
    size: int


def version_name(number: int) -> str:
    return f"v{number:06d}"


def version_number(name: str) -> int | None:
    match = VERSION_NAME_PATTERN.fullmatch(name)
    return int(match.group(1)) if match else None


def _version_key(version: str, relative_path: str) -> str:
    return f"{VERSIONS_DIR}/{version}/{relative_path}"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def scan_model_dir(model_dir: str) -> list[ModelFile]:
    """Lists and checksums every file of a model directory, in a stable order."""
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"model directory {model_dir!r} does not exist")
    scanned = []
    for relative in files.list_files(model_dir):
        local_path = os.path.join(model_dir, *relative.split("/"))
        scanned.append(ModelFile(relative, local_path, *file_digests(local_path)))
    if not scanned:
        raise ValueError(f"model directory {model_dir!r} is empty")
    names = {model_file.relative_path for model_file in scanned}
    if ModelMetadata.FILE_NAME not in names:
        raise ValueError(
            f"model directory {model_dir!r} has no {ModelMetadata.FILE_NAME}; "
            "it is not a model written by petseg's train step"
        )
    clashes = sorted(names.intersection(_RESERVED_NAMES))
    if clashes:
        raise ValueError(f"model directory {model_dir!r} holds reserved file names {clashes}")
    return scanned


def _scan_extra_files(extra_files: dict[str, str]) -> list[ModelFile]:
    scanned = []
    for relative_path, local_path in sorted(extra_files.items()):
        if not is_safe_key(relative_path):
            raise ValueError(f"extra_files: unsafe path {relative_path!r} in the version")
        if relative_path in _RESERVED_NAMES:
            raise ValueError(f"extra_files: {relative_path!r} is a reserved name")
        if not os.path.isfile(local_path):
            raise FileNotFoundError(f"extra_files: {local_path!r} ({relative_path}) is no file")
        sha256, md5_base64, size = file_digests(local_path)
        scanned.append(ModelFile(relative_path, local_path, sha256, md5_base64, size))
    return scanned


def read_latest_file(
    destination: str, relative_path: str, *, store: Store | None = None
) -> tuple[bytes, str] | None:
    """One file of the latest version, checked against its manifest, and the version's URI.

    Reads only LATEST, the manifest and that file (not the whole model).

    Returns:
        ``(content, version URI)``, or None when nothing was pushed yet or the latest
        version has no such file (pushed before the file existed).

    Raises:
        ChecksumMismatchError: the file or the manifest differs from what was recorded.
        ValueError: LATEST or the manifest it names is missing or malformed.
    """
    store = store or open_store(destination)
    store.check_ready(for_write=False)
    latest = _read_latest(store)
    if latest is None:
        return None
    manifest, _ = latest
    version, expected = manifest.version, manifest.files.get(relative_path)
    if expected is None:
        return None
    key = _version_key(version, relative_path)
    content = store.read_bytes(key)
    if content is None:
        raise FileNotFoundError(f"{store.key_uri(key)} is listed in the manifest but missing")
    if hashlib.sha256(content).hexdigest() != expected.sha256:
        raise ChecksumMismatchError(
            f"{store.key_uri(key)}: sha256 does not match the manifest's {expected.sha256}"
        )
    return content, store.key_uri(f"{VERSIONS_DIR}/{version}")


def model_digest(files: list[ModelFile]) -> str:
    """One sha256 over every file's path, checksum and size: the model's identity."""
    lines = sorted(f"{f.relative_path}\t{f.sha256}\t{f.size}\n" for f in files)
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


class PushInputs(StepInputs):
    """What push reads: its settings, the candidate, evaluate's verdict and the data checks.

    ``push``: destination and the Vertex registry settings. ``model``: train's Model
    artifact. ``metrics``: evaluate's Metrics artifact; its metadata goes into the
    manifest. ``blessed``: evaluate's decision, and ``blessing_reason`` its reason,
    repeated in an unblessed model's skip reason. ``statistics_dir``: data_statistics'
    output, published in the version (``data/``). ``run_id``: the pipeline job id; when
    unresolved, a digest of the model's URI.
    """

    push: PushConfig
    model: ArtifactRef
    metrics: ArtifactRef
    blessed: bool
    blessing_reason: str = ""
    statistics_dir: str | None = None
    run_id: str = ""


def run(inputs: PushInputs) -> PushResult:
    """The push step: a blessed model → a new version under push.destination, or why not.

    A model that is not blessed, or an empty destination, pushes nothing and says why
    (TFX Pusher style: the task always runs). With ``register_vertex`` the registry's
    preconditions are checked before anything is written, and the pushed version is
    registered (idempotent per model digest).
    """
    settings, model, run_id = inputs.push, inputs.model, inputs.run_id
    skip_reason = ""
    if not inputs.blessed:
        reason = inputs.blessing_reason
        skip_reason = "the model is not blessed" + (f": {reason}" if reason else "")
    elif not settings.destination:
        skip_reason = "push.destination is empty (set it, or --param push_destination=...)"
    if skip_reason:
        print(f"not pushed: {skip_reason}")
        return PushResult(pushed=False, skip_reason=skip_reason, destination=settings.destination)
    if settings.register_vertex:
        from components.publish import registry

        if not settings.destination.startswith((GCS_SCHEME, GCS_FUSE_ROOT)):
            raise ValueError(
                f"push.register_vertex needs a gs:// destination, not {settings.destination!r}"
            )
        project, location = registry.resolve_project_location(
            settings.vertex_project, settings.vertex_location
        )
    if not run_id or run_id.startswith("{{"):
        run_id = "model-" + hashlib.sha256(model.uri.encode("utf-8")).hexdigest()[:16]
    extra_manifest = {
        "source_model_uri": model.uri,
        "source_model_artifact_metadata": model.metadata,
        "metrics": inputs.metrics.metadata,
        "source_metrics_uri": inputs.metrics.uri,
        "push_config": settings.model_dump(),
    }
    extra_files = {}
    if inputs.statistics_dir is not None:
        extra_files, extra_manifest["data_checks"] = files_to_push(inputs.statistics_dir)
    # A repeated push resumes or reuses its version, so a dropped connection is retried here.
    pushed = retry_transient(
        lambda: push_model(
            model.path,
            settings.destination,
            run_id=run_id,
            extra_manifest=extra_manifest,
            extra_files=extra_files,
        ),
        what="push",
    )
    print(
        f"pushed {pushed['version']} to {pushed['uri']} "
        f"({push_state(pushed)}); LATEST = {pushed['latest']}"
    )
    registered: dict[str, Any] = {}
    if settings.register_vertex:
        registered = retry_transient(
            lambda: registry.register_pushed_model(
                settings,
                project=project,
                location=location,
                pushed=pushed,
                latest_digest=lambda: latest_model_digest(settings.destination),
            ),
            what="push: Vertex AI Model Registry",
        )
        print(
            f"Vertex AI model version: {registered['version']} "
            f"(reused: {registered['reused']}); {registered['alias'] or 'no alias'} -> "
            f"{registered['alias_version'] or 'unchanged'}"
        )
    return PushResult(
        pushed=True,
        skip_reason="",
        uri=pushed["uri"],
        version=pushed["version"],
        latest=pushed["latest"],
        digest=pushed["digest"],
        reused=pushed["reused"],
        destination=settings.destination,
        manifest=f"{pushed['uri']}/{MANIFEST_FILE}",
        vertex_model=registered.get("model", ""),
        vertex_model_version=registered.get("version", ""),
        vertex_alias_version=registered.get("alias_version") or "",
    )


def files_to_push(statistics_dir: str) -> tuple[dict[str, str], dict[str, Any]]:
    """What push publishes of a data_statistics output: files and a manifest summary.

    Returns:
        ``({path in the version: local file}, {compared_with, errors, warnings,
        figures, statistics})``: the statistics and verdicts travel with the model, and
        the manifest repeats the verdicts and each check's figure.
    """
    statistics_path = os.path.join(statistics_dir, Statistics.FILE_NAME)
    checks_path = os.path.join(statistics_dir, CheckVerdicts.FILE_NAME)
    verdicts = CheckVerdicts.read(checks_path)
    summary = {
        "compared_with": verdicts.compared_with,
        "errors": verdicts.errors,
        "warnings": verdicts.warnings,
        "checks": {
            check.name: check.model_dump(include={"status", "severity", "figure", "threshold"})
            for check in verdicts.checks
        },
        "statistics": Statistics.PUSHED_PATH,
    }
    paths = {Statistics.PUSHED_PATH: statistics_path, CheckVerdicts.PUSHED_PATH: checks_path}
    return paths, summary


def push_model(
    model_dir: str,
    destination: str,
    *,
    run_id: str,
    extra_manifest: dict[str, Any] | None = None,
    extra_files: dict[str, str] | None = None,
    store: Store | None = None,
) -> dict[str, Any]:
    """Publishes model_dir as a new immutable version under destination.

    Args:
        model_dir: Local directory of the model (``metadata.json`` required); on Vertex a
            ``/gcs/`` mount path.
        destination: ``gs://bucket/prefix`` or a local folder.
        run_id: The pipeline run that produced the model, recorded in the manifest.
        extra_manifest: JSON-serialisable facts to record in the manifest (metrics,
            config, source artifact URI); they may not replace the push's own keys.
        extra_files: ``{path in the version: local file}`` published beside the model
            files and checksummed with them (the data statistics the model learned
            from, so the next run can compare with them).
        store: The store to write to; default ``open_store(destination)``.

    Returns:
        ``{version, uri, latest, digest, reused, resumed}``: the version written or found, its
        full URI, the version LATEST names after this push (a racing push may have
        published a newer one), the model's content digest, and whether an earlier
        push of the same model already held that version complete.

    Raises:
        PushError: When a file could not be verified after upload, or a version number
            or the LATEST pointer stayed contended past a bounded number of attempts.
    """
    if not run_id:
        raise ValueError("run_id is empty; pass the pipeline job id or another identifier")
    extra_manifest = dict(extra_manifest or {})
    overridden = sorted(set(extra_manifest).intersection(_MANIFEST_KEYS))
    if overridden:
        raise ValueError(f"extra_manifest may not set the manifest's own keys {overridden}")
    try:
        json.dumps(extra_manifest)
    except (TypeError, ValueError) as error:
        raise ValueError(f"extra_manifest is not JSON-serialisable: {error}") from error

    model_files = scan_model_dir(model_dir) + _scan_extra_files(extra_files or {})
    names = [model_file.relative_path for model_file in model_files]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise ValueError(f"extra_files would replace files of the model: {clashes}")
    digest = model_digest(model_files)
    metadata = ModelMetadata.read(os.path.join(model_dir, ModelMetadata.FILE_NAME))

    store = store or open_store(destination)
    store.check_ready(for_write=True)
    version, manifest_bytes, resuming = _find_or_claim_version(store, digest, run_id)
    reused = manifest_bytes is not None
    if not reused:
        again = push_again_command(model_dir, store.uri, extra_files)
        _upload_and_verify(store, version, model_files, resuming=resuming, again=again)
        manifest_bytes = PushManifest(
            version=version,
            model_digest=digest,
            created_at=_now(),
            run_id=run_id,
            source_model_dir=os.path.abspath(model_dir),
            files={
                f.relative_path: ManifestFile(sha256=f.sha256, size=f.size) for f in model_files
            },
            model_metadata=metadata.to_dict(),
            classes=metadata.classes,
            dataset=metadata.dataset,
            pushed_by=provenance.provenance(),
            **extra_manifest,
        ).to_bytes()
        manifest_key = _version_key(version, MANIFEST_FILE)
        if not store.create_if_absent(manifest_key, manifest_bytes):
            # A concurrent push of the same model completed this version first.
            manifest_bytes = store.read_bytes(manifest_key)
            if _manifest_digest(manifest_bytes) != digest:
                raise PushError(
                    f"{store.key_uri(manifest_key)} appeared during this push "
                    "with another model's digest"
                )
    latest = _advance_latest(store, version, digest, hashlib.sha256(manifest_bytes).hexdigest())
    return {
        "version": version,
        "uri": store.key_uri(f"{VERSIONS_DIR}/{version}"),
        "latest": latest,
        "digest": digest,
        "reused": reused,
        "resumed": resuming and not reused,
    }


def push_state(pushed: dict[str, Any]) -> str:
    """How a push found its version: complete already, an interrupted one finished, or new."""
    if pushed["reused"]:
        return "already there"
    return "resumed an interrupted push" if pushed.get("resumed") else "new"


def _manifest_digest(manifest_bytes: bytes | None) -> str | None:
    manifest = parsed(PushManifest, manifest_bytes)
    return None if manifest is None else manifest.model_digest


def parsed(kind: type[_Stored], data: bytes | None) -> _Stored | None:
    """A stored file's content as ``kind``, or None when it is missing or unreadable."""
    try:
        return None if data is None else kind.from_bytes(data)
    except ContractError:
        return None


def read_claim(store: Store, version: str) -> VersionClaim:
    """The version's claim; an empty one when it is missing or unreadable."""
    data = store.read_bytes(_version_key(version, CLAIM_FILE))
    return parsed(VersionClaim, data) or VersionClaim()


def _existing_versions(store: Store) -> list[tuple[int, str]]:
    found = []
    for name in store.list_children(VERSIONS_DIR):
        number = version_number(name)
        if number is not None:
            found.append((number, name))
    return sorted(found)


def _find_or_claim_version(
    store: Store, digest: str, run_id: str
) -> tuple[str, bytes | None, bool]:
    """Returns (version, manifest bytes if already complete, whether resuming a claim)."""
    for _ in range(_MAX_CLAIM_ATTEMPTS):
        versions = _existing_versions(store)
        incomplete = None
        for _number, name in versions:
            if read_claim(store, name).model_digest != digest:
                continue
            manifest_bytes = store.read_bytes(_version_key(name, MANIFEST_FILE))
            if _manifest_digest(manifest_bytes) == digest:
                return name, manifest_bytes, False
            if manifest_bytes is None and incomplete is None:
                incomplete = name
        if incomplete is not None:
            return incomplete, None, True
        candidate = version_name((versions[-1][0] if versions else 0) + 1)
        claim = VersionClaim(
            version=candidate,
            model_digest=digest,
            run_id=run_id,
            claimed_at=_now(),
            nonce=uuid.uuid4().hex,
        )
        if store.create_if_absent(_version_key(candidate, CLAIM_FILE), claim.to_bytes()):
            return candidate, None, False
    raise PushError(
        f"could not claim a version under {store.uri} in {_MAX_CLAIM_ATTEMPTS} attempts; "
        "too many concurrent pushes"
    )


def push_again_command(
    model_dir: str, destination: str, extra_files: dict[str, str] | None = None
) -> str:
    """The command that pushes the same model (same digest) again, resuming its version."""
    command = f"petseg push --model {os.path.abspath(model_dir)} --destination {destination}"
    statistics_dirs = sorted({os.path.dirname(path) for path in (extra_files or {}).values()})
    for directory in statistics_dirs:
        command += f" --data-statistics {os.path.abspath(directory)}"
    return command


def _upload_and_verify(
    store: Store, version: str, files: list[ModelFile], *, resuming: bool, again: str = ""
) -> None:
    for model_file in files:
        key = _version_key(version, model_file.relative_path)
        # A resumed push skips what the interrupted one already stored intact.
        if resuming and _verified(store, key, model_file):
            continue
        try:
            store.upload_file(model_file.local_path, key)
        except Exception as error:
            raise PushError(
                f"uploading {model_file.local_path} to {store.key_uri(key)} failed: {error}. "
                f"LATEST is unchanged; pushing the same model again resumes {version}"
                + (f": {again}" if again else "")
            ) from error
        if not _verified(store, key, model_file):
            raise PushError(
                f"{store.key_uri(key)} does not match {model_file.local_path} after upload"
            )


def _verified(store: Store, key: str, model_file: ModelFile) -> bool:
    info = store.object_info(key)
    if info is None or info.size != model_file.size:
        return False
    if info.md5_base64 is not None:
        return info.md5_base64 == model_file.md5_base64
    # No MD5 on the server (a composite object): compare the bytes themselves.
    return store.sha256(key) == model_file.sha256


def parse_pointer(store: Store, data: bytes) -> LatestPointer:
    """LATEST's content; a ``ContractError`` (a ValueError) names the file otherwise."""
    return LatestPointer.from_bytes(data, store.key_uri(LATEST_FILE))


def _advance_latest(store: Store, version: str, digest: str, manifest_sha256: str) -> str:
    """Points LATEST at version unless it already names a version at least as new."""
    ours = version_number(version)
    pointer_bytes = LatestPointer(
        version=version, model_digest=digest, manifest_sha256=manifest_sha256, updated_at=_now()
    ).to_bytes()
    for _ in range(_MAX_POINTER_ATTEMPTS):
        current_bytes, token = store.read_versioned(LATEST_FILE)
        if current_bytes is not None:
            current = parse_pointer(store, current_bytes).version
            if version_number(current) >= ours:
                return current
        if store.compare_and_swap(LATEST_FILE, pointer_bytes, token):
            return version
    raise PushError(
        f"{store.key_uri(LATEST_FILE)} kept changing; {version} is complete but "
        f"LATEST was not updated after {_MAX_POINTER_ATTEMPTS} attempts"
    )


def read_pointer(store: Store) -> LatestPointer | None:
    """LATEST's pointer, None if nothing was pushed."""
    data = store.read_bytes(LATEST_FILE)
    return None if data is None else parse_pointer(store, data)


def latest_model_digest(destination: str, *, store: Store | None = None) -> str | None:
    """The model digest the destination's LATEST names now, or None if nothing is pushed."""
    pointer = read_pointer(store or open_store(destination))
    return None if pointer is None else pointer.model_digest


def _read_latest(store: Store) -> tuple[PushManifest, bytes] | None:
    """(the manifest LATEST names, its bytes checked against LATEST), or None."""
    pointer = read_pointer(store)
    if pointer is None:
        return None
    version = pointer.version
    manifest_key = _version_key(version, MANIFEST_FILE)
    manifest_bytes = store.read_bytes(manifest_key)
    if manifest_bytes is None:
        raise ValueError(f"{store.key_uri(LATEST_FILE)} names {version}, which has no manifest")
    actual = hashlib.sha256(manifest_bytes).hexdigest()
    if pointer.manifest_sha256 not in (None, actual):
        raise ChecksumMismatchError(
            f"{store.key_uri(manifest_key)}: sha256 {actual} differs from "
            f"{pointer.manifest_sha256} recorded in LATEST"
        )
    return PushManifest.from_bytes(manifest_bytes, store.key_uri(manifest_key)), manifest_bytes


def latest_manifest(
    destination: str, *, store: Store | None = None
) -> tuple[str, PushManifest] | None:
    """(version, manifest) that the destination's LATEST names, or None if nothing is pushed.

    Only the pointer and the manifest are read (no model file), and the manifest is
    checked against the sha256 LATEST records.

    Raises:
        ChecksumMismatchError: the manifest differs from the sha256 LATEST records.
        ValueError: LATEST names a version without a manifest, or either is malformed.
    """
    latest = _read_latest(store or open_store(destination))
    return None if latest is None else (latest[0].version, latest[0])


def resolve_latest_model(
    destination: str, local_cache_dir: str, *, store: Store | None = None
) -> str | None:
    """A local directory holding the verified latest model, or None if none was pushed.

    For a gs:// destination the version is downloaded into
    ``<local_cache_dir>/<version>-<digest prefix>`` (reused when it still verifies);
    for a local destination the version directory itself is verified and returned.

    Raises:
        ChecksumMismatchError: A file (or the manifest) differs from its recorded sha256;
            the message names the file.
        ValueError: LATEST or the manifest it names is missing or malformed.
    """
    store = store or open_store(destination)
    store.check_ready(for_write=False)
    latest = _read_latest(store)
    if latest is None:
        return None
    manifest, manifest_bytes = latest
    version, listed = manifest.version, manifest.files
    if isinstance(store, LocalStore):
        version_dir = os.path.join(store.root, VERSIONS_DIR, version)
        _verify_directory(
            version_dir, listed, lambda name: store.key_uri(_version_key(version, name))
        )
        return version_dir

    os.makedirs(local_cache_dir, exist_ok=True)
    target = os.path.join(local_cache_dir, f"{version}-{manifest.model_digest[:12]}")
    if os.path.isdir(target):
        try:
            _verify_directory(target, listed, lambda name: os.path.join(target, name))
            return target
        except (ChecksumMismatchError, FileNotFoundError):
            shutil.rmtree(target)  # a damaged cache copy: fetch it again
    staging = tempfile.mkdtemp(prefix=f".{version}-", dir=local_cache_dir)
    try:
        for relative_path in sorted(listed):
            local_path = os.path.join(staging, *relative_path.split("/"))
            os.makedirs(os.path.dirname(local_path), exist_ok=True)
            store.download_file(_version_key(version, relative_path), local_path)
        _verify_directory(staging, listed, lambda name: store.key_uri(_version_key(version, name)))
        with open(os.path.join(staging, MANIFEST_FILE), "wb") as handle:
            handle.write(manifest_bytes)
        try:
            os.rename(staging, target)
        except OSError:
            if not os.path.isdir(target):  # anything but a concurrent resolve finishing first
                raise
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)
    return target


def _verify_directory(directory: str, files: dict[str, ManifestFile], describe) -> None:
    for relative_path, expected in sorted(files.items()):
        local_path = os.path.join(directory, *relative_path.split("/"))
        if not os.path.isfile(local_path):
            raise FileNotFoundError(
                f"{describe(relative_path)} is listed in the manifest but missing"
            )
        sha256, _, _ = file_digests(local_path)
        if sha256 != expected.sha256:
            raise ChecksumMismatchError(
                f"{describe(relative_path)}: sha256 {sha256} does not match "
                f"the manifest's {expected.sha256}"
            )
