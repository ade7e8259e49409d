"""The predict component through kfp.local: a pushed version over a folder, or nothing."""

import json
from pathlib import Path

import numpy as np
import pytest
from kfp import dsl
from kfp.dsl import Artifact
from PIL import Image

from components.model import model as model_lib
from components.ops.predict import predict
from components.platform.config import PredictConfig
from components.publish import push
from tests import tinymodels


def predict_pipeline_for(uri: str, metadata: dict, config: PredictConfig):
    @dsl.pipeline(name="predict-test")
    def predict_pipeline() -> Artifact:
        pushed = dsl.importer(
            artifact_uri=uri, artifact_class=Artifact, reimport=True, metadata=metadata
        )
        task = predict(pushed_model=pushed.output, predict_config=config.model_dump_json())
        return task.outputs["predictions"]

    return predict_pipeline


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(2)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (50, 20, 3), dtype=np.uint8)).save(folder / "b.jpg")
    (folder / "c.png").write_bytes(b"")
    return folder


def test_predict_component_runs_the_pushed_version_over_the_input(kfp_local, tmp_path, photos):
    model_dir = str(tmp_path / "model")
    model_lib.save_model_dir(tinymodels.pixel_classifier(32), model_dir, {})
    pushed = push.push_model(model_dir, str(tmp_path / "models"), run_id="run-1")
    config = PredictConfig(input=str(photos), batch_size=1)

    artifact = predict_pipeline_for(
        pushed["uri"], {"pushed": True, "version": pushed["version"]}, config
    )().output

    out = Path(artifact.path)
    assert artifact.metadata["predicted"] == 2 and artifact.metadata["unreadable"] == 1
    assert artifact.metadata["unreadable_files"] == [str(photos / "c.png")]
    assert artifact.metadata["version"] == "v000001" and artifact.metadata["skip_reason"] == ""
    assert np.asarray(Image.open(out / "masks" / "a.png")).shape == (30, 45)
    assert np.asarray(Image.open(out / "overlays" / "b.png")).shape == (50, 20, 3)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [Path(row["file"]).name for row in rows] == ["a.png", "b.jpg"]


def test_predict_component_says_why_when_nothing_was_pushed(kfp_local, tmp_path, photos):
    config = PredictConfig(input=str(photos))
    artifact = predict_pipeline_for(
        str(tmp_path / "nothing"),
        {"pushed": False, "skip_reason": "the model is not blessed"},
        config,
    )().output
    assert artifact.metadata["predicted"] == 0
    assert artifact.metadata["skip_reason"] == (
        "nothing was pushed (the model is not blessed), so there is no model to predict with"
    )
    assert not any(Path(artifact.path).rglob("*.png"))


def test_predict_step_is_compiled_in_only_when_an_input_is_configured(tmp_path):
    import yaml

    from components.platform.config import load_config
    from pipelines.segmentation import compile_pipeline

    def tasks(overrides):
        path = compile_pipeline(load_config("tutorial", overrides=overrides), tmp_path / "p.yaml")
        return yaml.safe_load(Path(path).read_text())["root"]["dag"]["tasks"]

    assert "predict" not in tasks([])
    step = tasks(["predict.input=gs://bucket/photos", "predict.batch_size=4"])["predict"]
    assert step["dependentTasks"] == ["push"]
    pushed = step["inputs"]["artifacts"]["pushed_model"]["taskOutputArtifact"]
    assert pushed == {"outputArtifactKey": "pushed_model", "producerTask": "push"}
    config = json.loads(step["inputs"]["parameters"]["predict_config"]["runtimeValue"]["constant"])
    assert config == {"input": "gs://bucket/photos", "batch_size": 4, "alpha": 0.5}
