"""KFP wrapper of push: a blessed model → a new immutable version (+ optional Vertex registry).

The task is always in the pipeline (TFX Pusher style) and decides itself whether to
push, so a destination given only at run time pushes and every kfp.local runner
behaves like Vertex AI and Kubeflow.
"""

from kfp import dsl
from kfp.dsl import Artifact, Input, Metrics, Model, Output

from components.ops import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def push(
    model: Input[Model],
    metrics: Input[Metrics],
    blessed: bool,
    push_config: str,
    pushed_model: Output[Artifact],
    blessing_reason: str = "",
    data_statistics: Input[Artifact] = None,
    run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER,
):
    """Publishes a blessed model as a new version under push.destination; LATEST moves to it.

    A model that is not blessed, or an empty destination, pushes nothing: the task
    succeeds, prints why, and records it in ``pushed_model``'s metadata
    (``pushed`` false, ``skip_reason``).

    Args:
        model: the candidate Model artifact directory (train's output); on Vertex a /gcs/ path.
        metrics: evaluate's Metrics; its metadata is recorded in the version's manifest.
        blessed: evaluate's decision; only a blessed model is pushed.
        push_config: PushConfig JSON: destination, and the Vertex registry settings.
        pushed_model: records the outcome: when pushed, its uri is the version directory and
            its metadata holds pushed, version, latest, digest, reused, manifest and any
            registry name; otherwise pushed is false and skip_reason says why.
        blessing_reason: evaluate's reason, repeated in the skip reason of an unblessed model.
        data_statistics: data_statistics' output: its statistics.json and checks.json go
            into the version (``data/``), where the next run's data checks find them, and
            the checks' figures and verdicts into the manifest (``data_checks``).
        run_id: the pipeline job id recorded in the manifest; when the placeholder is not
            resolved (an ad-hoc run), a digest of the model's URI stands in.
    """
    from components.platform.failures import record_failures

    record_failures()  # an uncaught error names this task in the run-end report

    import hashlib

    from components.platform.config import PushConfig, section_from_json
    from components.platform.retry import retry_transient
    from components.publish import push as core

    settings = section_from_json(PushConfig, push_config)
    skip_reason = ""
    if not blessed:
        skip_reason = "the model is not blessed"
        if blessing_reason:
            skip_reason += f": {blessing_reason}"
    elif not settings.destination:
        skip_reason = "push.destination is empty (set it, or --param push_destination=...)"
    if skip_reason:
        print(f"not pushed: {skip_reason}")
        pushed_model.metadata.update(
            {"pushed": False, "skip_reason": skip_reason, "destination": settings.destination}
        )
        return
    if settings.register_vertex:
        from components.platform.storage import GCS_FUSE_ROOT, GCS_SCHEME
        from components.publish import registry

        # Checked before anything is written, so a misconfiguration pushes nothing.
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
        "source_model_artifact_metadata": dict(model.metadata),
        "metrics": dict(metrics.metadata),
        "source_metrics_uri": metrics.uri,
        "push_config": settings.model_dump(),
    }
    extra_files = {}
    if data_statistics is not None:
        from components.data import data_validation

        extra_files, extra_manifest["data_checks"] = data_validation.files_to_push(
            data_statistics.path
        )
    # A repeated push resumes or reuses its version, so a dropped connection is retried here.
    result = retry_transient(
        lambda: core.push_model(
            model.path,
            settings.destination,
            run_id=run_id,
            extra_manifest=extra_manifest,
            extra_files=extra_files,
        ),
        what="push",
    )
    print(
        f"pushed {result['version']} to {result['uri']} "
        f"({'already there' if result['reused'] else 'new'}); LATEST = {result['latest']}"
    )

    registered: dict = {}
    if settings.register_vertex:
        # Registration is idempotent per model digest.
        registered = retry_transient(
            lambda: registry.register_pushed_model(
                settings,
                project=project,
                location=location,
                pushed=result,
                latest_digest=lambda: core.latest_model_digest(settings.destination),
            ),
            what="push: Vertex AI Model Registry",
        )
        print(
            f"Vertex AI model version: {registered['version']} "
            f"(reused: {registered['reused']}); {registered['alias'] or 'no alias'} -> "
            f"{registered['alias_version'] or 'unchanged'}"
        )

    # The artifact points at the published version itself; nothing is written to its path.
    pushed_model.uri = result["uri"]
    pushed_model.metadata.update(
        {
            "pushed": True,
            "skip_reason": "",
            "version": result["version"],
            "latest": result["latest"],
            "digest": result["digest"],
            "reused": result["reused"],
            "destination": settings.destination,
            "manifest": f"{result['uri']}/{core.MANIFEST_FILE}",
            "vertex_model": registered.get("model", ""),
            "vertex_model_version": registered.get("version", ""),
            "vertex_alias_version": registered.get("alias_version") or "",
        }
    )
