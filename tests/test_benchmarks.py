"""Smoke tests of every script in benchmarks/: each runs at tiny sizes and prints its figures.

Nothing else runs the benchmarks, so without these they drift from the code they measure
(bench_train.py crashed for weeks on a changed signature). Each test runs the script as a
user would (``python benchmarks/<script>.py`` with small-size flags) in a subprocess and
checks the lines that carry its figures, with numbers in them. The figures themselves are
not judged here: at these sizes they mean nothing.

Adding a benchmark? Append a test function below.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
NUMBER = r"[0-9]+(?:\.[0-9]+)?"

pytestmark = pytest.mark.timeout(600)


def run_benchmark(script: str, *arguments: str, env: dict[str, str] | None = None) -> str:
    """Runs benchmarks/<script> like a user and returns its stdout; fails with its stderr."""
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        timeout=540,
    )
    assert completed.returncode == 0, (
        f"{script} exited {completed.returncode}\n{completed.stdout[-3000:]}\n"
        f"{completed.stderr[-3000:]}"
    )
    return completed.stdout


def test_every_benchmark_script_has_a_smoke_test():
    source = Path(__file__).read_text()
    scripts = sorted(path.name for path in BENCHMARKS.glob("*.py"))
    missing = [name for name in scripts if f'"{name}"' not in source]
    assert scripts and not missing, f"benchmarks without a smoke test here: {missing}"


@pytest.mark.slow  # trains the U-Net for two tiny epochs
def test_bench_train_prints_input_and_training_rates(tmp_path):
    out = run_benchmark(
        "bench_train.py",
        "--train-size=16",
        "--source-size=64",
        "--image-size=32",
        "--batch-size=8",
        "--epochs=1",
        f"--data-dir={tmp_path}",
    )
    for name in ("tutorial (tfds.load + map)", "petseg make_dataset", "petseg, production augment"):
        assert re.search(rf"{re.escape(name)}\s+{NUMBER}\s+{NUMBER}", out), out
    assert re.search(rf"tutorial model\.fit .*\s{NUMBER}\n", out), out
    assert re.search(rf"petseg train step .*\s{NUMBER}\s+speed-up {NUMBER}x", out), out


def test_bench_ingest_prints_rates_memory_and_weights(tmp_path):
    out = run_benchmark(
        "bench_ingest.py",
        "--n=16",  # fewer leave the carved validation split empty
        "--image-size=48",
        "--weights-size=32",
        "--parallel-n=16",
        "--parallel-image-size=48",
        f"--workdir={tmp_path}",
    )
    assert re.search(rf"^\s+tfds\s+20\s+{NUMBER}\s+\d+\s+{NUMBER}\s+{NUMBER}x\s+True$", out, re.M)
    assert re.search(rf"^\s+folder\s+16\s+{NUMBER}\s+\d+\s+{NUMBER}\s+{NUMBER}x\s+True$", out, re.M)
    # The ingest, class-weights and statistics tables: one row each for N=16 and 4N=64.
    for n in (16, 64):
        rows = re.findall(rf"^\s+{n}\s+{NUMBER}\s.*$", out, flags=re.MULTILINE)
        assert len(rows) >= 3, out
    assert re.search(rf"ingest memory growth: -?{NUMBER} MB at N, -?{NUMBER} MB at 4N", out), out
    assert "True" in out  # the tf.data and NumPy class-weight counts agree


def test_bench_images_prints_sizes_from_docker(tmp_path):
    """Docker is faked (a script answering `image inspect` and `run`): the test checks the
    script's parsing and report, not the images, which tests/test_images.py builds."""
    fake_docker = tmp_path / "docker"
    fake_docker.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = image ]; then echo 1234000000; exit 0; fi\n'
        "printf '300\\t/opt/venv/lib/python3.11/site-packages/tensorflow\\n"
        "40\\t/opt/venv/lib/python3.11/site-packages/keras\\n900\\n'\n"
    )
    fake_docker.chmod(fake_docker.stat().st_mode | stat.S_IEXEC)
    out = run_benchmark(
        "bench_images.py", "--tag=smoke", env={"PATH": f"{tmp_path}:{os.environ['PATH']}"}
    )
    assert "petseg-cpu:smoke: 1234 MB (goal <= 1500 MB: met); /opt/venv 900 MB" in out, out
    assert "petseg-gpu:smoke: 1234 MB; /opt/venv 900 MB, base and the rest 334 MB" in out, out
    assert re.search(r"^\s+300 MB\s+tensorflow$", out, flags=re.MULTILINE), out


@pytest.mark.slow  # trains both recipes for a step or two on real photos
def test_bench_quality_prints_both_recipes_and_the_last_line(tmp_path):
    shared = Path(os.environ.get("PETSEG_SHARED_DATA") or REPO.parent / "shared" / "data")
    if not shared.is_dir():
        shared = REPO.parent.parent / "shared" / "data"  # a git worktree beside the others
    out = run_benchmark(
        "bench_quality.py",
        f"--shared-data={shared}",
        "--limit=40",
        "--holdout-limit=4",
        "--image-size=32",
        "--epochs=1",
        "--fine-tune-epochs=1",
        "--batch-size=8",
        f"--workdir={tmp_path}",
    )
    assert re.search(r"oxford_real 40 photos -> train \d+, validation \d+, test \d+", out), out
    for recipe in ("tutorial", "production"):
        for part, photos in (("combined", r"\d+"), ("carved test", r"\d+"), ("holdout", "4")):
            row = rf"^{recipe}\s+{part}\s+{photos}\s+{NUMBER}\s+{NUMBER}(\s+{NUMBER}){{3}}"
            assert re.search(row, out, flags=re.MULTILINE), (recipe, part, out)
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"quality: production mean_iou={NUMBER} pixel_accuracy={NUMBER} \| "
        rf"tutorial mean_iou={NUMBER} pixel_accuracy={NUMBER}",
        last,
    ), last


def test_bench_ingest_beam_prints_images_per_second_for_both_engines():
    out = run_benchmark(
        "bench_ingest_beam.py", "--generate", "6", "--image-size", "48", "--repeats", "1"
    )
    rows = {
        match[1]: match.groups()[1:]
        for match in re.finditer(
            r"^(local \(threads\)|beam DirectRunner multi_threading)\s+(\d+)\s+([\d.]+)\s+"
            r"([\d.]+)\s+([\d.]+)x\s+(True|False)$",
            out,
            re.MULTILINE,
        )
    }
    assert set(rows) == {"local (threads)", "beam DirectRunner multi_threading"}, out
    for records, seconds, images_per_second, _, same in rows.values():
        assert int(records) == 6 and float(seconds) > 0 and float(images_per_second) > 0
        assert same == "True"


def test_bench_bootstrap_prints_both_timings_the_speed_up_and_both_intervals():
    out = run_benchmark(
        "bench_bootstrap.py", "--images", "60", "--samples", "40", "--naive-samples", "10"
    )
    assert "40 resamples of 60 images, 3 classes" in out, out
    assert re.search(rf"vectorised: {NUMBER} s", out), out
    assert re.search(rf"naive loop: {NUMBER} s \(timed on 10 resamples", out), out
    assert re.search(rf"speed-up: +{NUMBER}x", out), out
    low, high = (
        float(value)
        for value in re.search(r"vectorised ([+-][\d.]+) to ([+-][\d.]+)", out).groups()
    )
    assert low <= high


@pytest.mark.slow  # two loopback training jobs: one worker, then two
def test_bench_multiworker_prints_per_worker_rates_for_one_and_two_workers(tmp_path):
    out = run_benchmark(
        "bench_multiworker.py",
        "--train-size=16",  # fewer leave the carved validation split empty
        "--source-size=40",
        "--image-size=32",
        "--batch-size=2",
        "--epochs=2",
        "--small-encoder",
        f"--data-dir={tmp_path}",
    )
    assert re.search(rf"baseline, 1 worker : {NUMBER} images/s per worker, {NUMBER}", out), out
    assert re.search(rf"2 loopback workers: {NUMBER} images/s per worker, {NUMBER}", out), out
    assert re.search(r"global batch 4\)", out), out
    assert re.search(rf"per-worker rate, 2 workers / 1: {NUMBER}", out), out
