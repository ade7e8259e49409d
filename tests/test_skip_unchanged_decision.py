"""skip_unchanged.run: skip only when production was trained on this very data."""

import json
from pathlib import Path

from components.data import dataset_info, schema, skip_unchanged
from components.platform.config import PushConfig
from components.publish.push import push_model


def _dataset(path: Path, fingerprint: str) -> str:
    dataset_info.write_dataset_info(
        str(path),
        {
            "schema_version": schema.SCHEMA_VERSION,
            "classes": ["pet", "background", "border"],
            "splits": {},
            "fingerprint": {"dataset": fingerprint, "splits": {}},
        },
    )
    return str(path)


def _model(path: Path, fingerprint: str | None) -> str:
    path.mkdir(parents=True)
    (path / "model.keras").write_bytes(b"weights " + (fingerprint or "none").encode())
    dataset = {"uri": "/data", "source": "folder"}
    if fingerprint is not None:
        dataset["fingerprint"] = fingerprint
    (path / "metadata.json").write_text(json.dumps({"image_size": 32, "dataset": dataset}))
    return str(path)


def test_decide_skips_only_when_production_was_trained_on_the_same_data(tmp_path):
    same = _dataset(tmp_path / "same", "a" * 64)
    other = _dataset(tmp_path / "other", "b" * 64)
    destination = str(tmp_path / "models")

    def run(settings, dataset):
        return skip_unchanged.run(skip_unchanged.SkipInputs(push=settings, dataset_dir=dataset))

    def output(settings, dataset):
        return run(settings, dataset).output

    assert output(PushConfig(destination=""), same) == "train"  # no destination
    production = PushConfig(destination=destination)
    assert output(production, same) == "train"  # nothing pushed yet

    push_model(_model(tmp_path / "old", None), destination, run_id="r0")
    first = run(production, same)  # production has no fingerprint
    assert (first.train, first.production_version) == (True, "v000001")

    push_model(_model(tmp_path / "current", "a" * 64), destination, run_id="r1")
    decision = run(production, same)
    assert (decision.train, decision.production_version) == (False, "v000002")
    assert decision.fingerprint == "a" * 64
    assert decision.output == (
        f"skip: data unchanged since production v000002 at {destination} was trained "
        f"(fingerprint {'a' * 64}); train, evaluate and push skipped"
    )
    changed = run(production, other)
    assert changed.output == "train" and changed.reason.startswith("data changed (fingerprint bbb")
