"""Which petseg made an artifact: the package version and, when known, the git commit.

Images get the commit at build time (``containers/build.sh`` passes it as the
``PETSEG_GIT_COMMIT`` build argument, which the Dockerfiles turn into an environment
variable); a run from a source checkout asks git; a wheel built from a checkout carries it in
``components/platform/BUILD_COMMIT`` (setup.py writes it). All are read when called, never
at import.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
from pathlib import Path

GIT_COMMIT_ENV = "PETSEG_GIT_COMMIT"
PACKAGE = "petseg"
_GIT_TIMEOUT_S = 5.0
_SOURCE_ROOT = Path(__file__).resolve().parents[2]
_BUILD_COMMIT_FILE = Path(__file__).resolve().parent / "BUILD_COMMIT"


def package_version() -> str:
    """The installed petseg version ('unknown' when run from sources that are not installed)."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def git_commit() -> str:
    """The commit petseg was built from: the image's, the checkout's or the wheel's; '' if unknown.

    A checkout with uncommitted changes gets a ``-dirty`` suffix, as the image tags do.
    """
    from_build = os.environ.get(GIT_COMMIT_ENV, "").strip()
    if from_build:
        return from_build
    if not (_SOURCE_ROOT / ".git").exists():  # an installed wheel: no checkout around it
        try:
            return _BUILD_COMMIT_FILE.read_text().strip()
        except OSError:
            return ""
    try:
        commit = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain")
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{commit}-dirty" if dirty else commit


def _git(*arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(_SOURCE_ROOT), *arguments],
        capture_output=True,
        text=True,
        check=True,
        timeout=_GIT_TIMEOUT_S,
    ).stdout.strip()


def provenance() -> dict[str, str]:
    """``{petseg_version, git_commit}`` for a Model's metadata or a push manifest."""
    return {"petseg_version": package_version(), "git_commit": git_commit()}
