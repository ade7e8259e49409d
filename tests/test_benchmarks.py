"""Smoke tests of every benchmark script: tiny sizes, seconds, and the figures are printed."""

from __future__ import annotations

import re


def test_bench_bootstrap_prints_both_timings_the_speed_up_and_both_intervals(capsys):
    from benchmarks import bench_bootstrap

    bench_bootstrap.main(["--images", "60", "--samples", "40", "--naive-samples", "10"])
    printed = capsys.readouterr().out
    assert "40 resamples of 60 images, 3 classes" in printed
    assert re.search(r"vectorised: \d+\.\d{3} s", printed)
    assert re.search(r"naive loop: \d+\.\d{3} s \(timed on 10 resamples", printed)
    assert re.search(r"speed-up: +\d+\.\dx", printed)
    low, high = (
        float(value)
        for value in re.search(r"vectorised ([+-][\d.]+) to ([+-][\d.]+)", printed).groups()
    )
    assert low <= high
