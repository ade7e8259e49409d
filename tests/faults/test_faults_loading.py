"""Loading safety: a model artifact is data, never code, and a pushed baseline is verified first.

The hostile model here carries a Lambda layer whose Python code writes a marker file.
A control load with ``safe_mode=False`` shows the payload is live (the marker appears);
every petseg path must refuse it without the marker appearing.
"""

# No `from __future__ import annotations`: KFP reads the pipeline's output types at run time.
import ast
import re
import shutil
from pathlib import Path
from typing import NamedTuple

import faultkit
import keras
import pytest

from components.evaluation import evaluate
from components.model.model import load_model_dir
from components.platform.config import EvaluationConfig, ModelConfig, PushConfig
from components.publish.push import push_model

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning"),
]
ROOT = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 32
MODEL_CONFIG = ModelConfig(image_size=IMAGE_SIZE, encoder_weights="none", normalization="tutorial")


def hostile_model(model_dir: Path, marker: Path) -> Path:
    """A model whose Lambda layer runs Python (writes ``marker``) whenever it is rebuilt."""
    code = f"lambda x: (open({str(marker)!r}, 'w').write('payload ran'), x)[1]"
    payload = eval(code)  # a lambda with the marker path inside its code, as an attacker's
    faultkit.write_pixel_model(
        model_dir, IMAGE_SIZE, extra_layer=keras.layers.Lambda(payload, name="payload")
    )
    marker.unlink()  # building the model ran it once; only loading may run it again
    return model_dir


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "payload-ran"


@pytest.fixture
def hostile(tmp_path, marker):
    model_dir = hostile_model(tmp_path / "hostile", marker)
    keras.saving.load_model(model_dir / "model.keras", safe_mode=False)
    assert marker.exists(), "control: an unsafe load must run the payload"
    marker.unlink()
    return model_dir


def test_model_with_code_is_refused_as_a_candidate(hostile, marker, good_dataset, fault):
    fault(
        "candidate model.keras with a Lambda layer carrying Python code",
        expected="load and evaluation refuse it (Keras safe mode); the code never runs",
    )
    with pytest.raises(ValueError, match="Lambda") as loading:
        load_model_dir(str(hostile))
    with pytest.raises(ValueError, match="safe_mode") as evaluating:
        evaluate.evaluate_model(str(hostile), str(good_dataset), model_config=MODEL_CONFIG)

    fault.saw(str(evaluating.value).split(". ")[0])
    assert "arbitrary code execution" in str(loading.value)
    assert not marker.exists()


def test_pushed_baseline_with_code_is_refused_although_its_checksums_match(
    hostile, marker, good_dataset, tmp_path, fault
):
    fault(
        "the production (LATEST) model is a validly pushed model.keras carrying Python code",
        expected="checksums pass, then safe loading refuses it as the baseline; the code "
        "never runs and nothing is blessed",
    )
    destination = tmp_path / "models"
    push_model(str(hostile), str(destination), run_id="compromised")
    candidate = faultkit.write_pixel_model(tmp_path / "candidate", IMAGE_SIZE, seed=1)
    baseline_dir, note = evaluate.resolve_baseline("latest", str(destination), str(tmp_path))
    assert baseline_dir == str(destination / "versions" / "v000001")  # checksums verified

    with pytest.raises(ValueError, match="safe_mode") as failure:
        evaluate.run_evaluation(
            str(candidate),
            str(good_dataset),
            MODEL_CONFIG,
            EvaluationConfig(baseline="latest", min_mean_iou=0.0),
            baseline_dir,
            str(tmp_path / "report.html"),
            baseline_note=note,
        )

    fault.saw(str(failure.value).split(". ")[0])
    assert not marker.exists()
    assert not (tmp_path / "report.html").exists()


def test_tampered_pushed_model_is_refused_before_loading(
    kfp_local, hostile, marker, good_dataset, tmp_path, capfd, fault
):
    from kfp import dsl

    from components.ops.evaluate import evaluate as evaluate_component

    fault(
        "model.keras of the pushed LATEST replaced after push by one carrying code "
        "(evaluate component, baseline=latest)",
        expected="the evaluate task fails naming the file whose sha256 differs from the "
        "manifest, before loading anything; the code never runs",
    )
    destination = tmp_path / "models"
    production = faultkit.write_pixel_model(tmp_path / "production", IMAGE_SIZE, seed=2)
    push_model(str(production), str(destination), run_id="production")
    stored = destination / "versions" / "v000001" / "model.keras"
    shutil.copyfile(hostile / "model.keras", stored)
    candidate = faultkit.write_pixel_model(tmp_path / "candidate", IMAGE_SIZE, seed=3)

    class Outputs(NamedTuple):
        blessed: bool

    @dsl.pipeline(name="evaluate-tampered-baseline")
    def pipeline() -> Outputs:
        model = dsl.importer(artifact_uri=str(candidate), artifact_class=dsl.Model)
        dataset = dsl.importer(artifact_uri=str(good_dataset), artifact_class=dsl.Dataset)
        task = evaluate_component(
            model=model.output,
            dataset=dataset.output,
            model_config=MODEL_CONFIG.model_dump_json(),
            evaluation_config=EvaluationConfig(baseline="latest").model_dump_json(),
            push_config=PushConfig(destination=str(destination)).model_dump_json(),
        )
        return Outputs(task.outputs["blessed"])

    with pytest.raises(RuntimeError, match="FAILURE"):
        pipeline()

    output = capfd.readouterr()
    log = output.out + output.err
    line = next(line for line in log.splitlines() if "BaselineUnusableError: " in line)
    fault.saw(line.strip())
    assert f"{stored}: sha256" in line and "does not match the manifest's" in line
    assert "v000001" in line and "evaluation.baseline=none" in line
    assert not marker.exists()


# --- the code itself ------------------------------------------------------------------------

UNSAFE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
# The Beam engine hands its combined results from its own workers to its launcher through a
# private work folder that the same ingest creates and deletes; it never unpickles an artifact.
ALLOWED_SITES: set[str] = set()
MODEL_LOADERS = {"load_model"}


def _source_files() -> list[Path]:
    return sorted((ROOT / "components").rglob("*.py")) + sorted((ROOT / "pipelines").rglob("*.py"))


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def unsafe_loading_sites(path: Path, root: Path = ROOT) -> list[str]:
    """Every place a file in petseg's code could turn data into code, in line order."""
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = sorted(
        (node for node in ast.walk(tree) if hasattr(node, "lineno")),
        key=lambda node: (node.lineno, node.col_offset),
    )
    for node in nodes:
        where = f"{path.relative_to(root)}:{node.lineno}"
        if isinstance(node, ast.Import):
            found += [f"{where} imports {a.name}" for a in node.names if a.name in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "") in UNSAFE_MODULES:
            found.append(f"{where} imports from {node.module}")
        elif isinstance(node, ast.Call):
            name = _name(node.func)
            last = name.rsplit(".", 1)[-1]
            if name in ("eval", "exec"):
                found.append(f"{where} calls {name}")
            elif name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
                found.append(f"{where} calls {name} (only yaml.safe_load reads untrusted YAML)")
            elif name in ("np.load", "numpy.load"):
                allow = _keyword(node, "allow_pickle")
                if not (isinstance(allow, ast.Constant) and allow.value is False):
                    found.append(f"{where} calls {name} without allow_pickle=False")
            elif last in MODEL_LOADERS:
                safe = _keyword(node, "safe_mode")
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    found.append(f"{where} calls {name} without safe_mode=True")
    return found


def test_no_code_path_unpickles_or_loads_models_unsafely(fault):
    files = _source_files()
    fault(
        f"static scan of {len(files)} source files for pickle/marshal/dill/joblib, eval/exec, "
        "yaml.load, np.load with pickles, Keras load_model without safe_mode=True",
        expected="none: artifacts are read as data only",
    )
    found = [
        site
        for path in files
        for site in unsafe_loading_sites(path)
        if re.sub(r":\d+ ", " ", site, count=1) not in ALLOWED_SITES
    ]
    loaders = [
        f"{path.relative_to(ROOT)}"
        for path in files
        if any(f".{loader}(" in path.read_text() for loader in MODEL_LOADERS)
    ]
    fault.saw(f"unsafe sites: {found or 'none'}; Keras loads (all safe_mode=True) in {loaders}")
    assert found == []
    assert loaders, "the scan found no model loading at all; it is looking in the wrong place"


def test_the_scan_catches_what_it_looks_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import pickle\nimport yaml\nimport numpy as np\nimport keras\n"
        "yaml.load(text)\nnp.load(path)\nkeras.saving.load_model(path)\neval('1')\n"
        "np.load(path, allow_pickle=False)\nkeras.saving.load_model(path, safe_mode=True)\n"
    )
    found = unsafe_loading_sites(sample, root=tmp_path)
    assert [site.split(" ", 1)[1] for site in found] == [
        "imports pickle",
        "calls yaml.load (only yaml.safe_load reads untrusted YAML)",
        "calls np.load without allow_pickle=False",
        "calls keras.saving.load_model without safe_mode=True",
        "calls eval",
    ]
