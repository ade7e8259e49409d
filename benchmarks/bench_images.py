"""Sizes of the built component images (containers/build-local.sh builds them).

Prints each image's size, its base image's size, and the largest installed distributions,
against the CPU image's goal of at most 1.5 GB. Every pipeline step pulls its image, so this
is the figure to watch when dependencies change.

    uv run python benchmarks/bench_images.py [--tag local]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

GOAL_MB = {"petseg-cpu": 1500}
LARGEST = (
    "du -sm /opt/venv/lib/python3*/site-packages/* 2>/dev/null | sort -rn | head -n 6; "
    "du -sm /opt/venv | cut -f1"
)


def docker(*arguments: str) -> str:
    result = subprocess.run(["docker", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"docker {' '.join(arguments[:2])} failed: {result.stderr.strip()}")
    return result.stdout


def size_mb(image: str) -> float:
    return int(docker("image", "inspect", "--format", "{{.Size}}", image)) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default="local")
    args = parser.parse_args()
    for name in ("petseg-cpu", "petseg-gpu"):
        image = f"{name}:{args.tag}"
        total = size_mb(image)
        out = docker("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", LARGEST)
        lines = out.strip().splitlines()
        venv_mb = int(lines[-1])
        goal = GOAL_MB.get(name)
        verdict = f" (goal <= {goal} MB: {'met' if total <= goal else 'NOT met'})" if goal else ""
        print(
            f"{image}: {total:.0f} MB{verdict}; /opt/venv {venv_mb} MB, "
            f"base and the rest {total - venv_mb:.0f} MB"
        )
        for line in lines[:-1]:
            megabytes, path = line.split(maxsplit=1)
            print(f"    {int(megabytes):6d} MB  {path.rsplit('/', 1)[-1]}")


if __name__ == "__main__":
    main()
