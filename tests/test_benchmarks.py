"""Smoke tests of the benchmark scripts: tiny sizes, seconds, and the figures are printed."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_bench_ingest_beam_prints_images_per_second_for_both_engines():
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_ingest_beam.py"),
            "--generate",
            "6",
            "--image-size",
            "48",
            "--repeats",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    rows = {
        match[1].strip(): match.groups()[1:]
        for match in re.finditer(
            r"^(local \(threads\)|beam DirectRunner multi_threading)\s+(\d+)\s+([\d.]+)\s+"
            r"([\d.]+)\s+([\d.]+)x\s+(True|False)$",
            completed.stdout,
            re.MULTILINE,
        )
    }
    assert set(rows) == {"local (threads)", "beam DirectRunner multi_threading"}, completed.stdout
    for records, seconds, images_per_second, _, same in rows.values():
        assert int(records) > 0 and float(seconds) > 0 and float(images_per_second) > 0
        assert same == "True"
