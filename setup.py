"""Setuptools hook: a built wheel records the git commit it was built from.

``petseg --version`` and the provenance in models and push manifests read the commit from git
in a checkout and from ``PETSEG_GIT_COMMIT`` in the images; an installed wheel has neither,
so the build writes ``components/platform/BUILD_COMMIT`` into it (and into an sdist, whose own wheel
build has no git). Everything else is in pyproject.toml.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
COMMIT_FILE = ("components", "platform", "BUILD_COMMIT")


def _git(*arguments: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *arguments], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()


def _commit() -> str:
    """The checkout's commit (``-dirty`` when modified), else an sdist's file, else ''."""
    if (ROOT / ".git").exists():  # not git's answer for a folder an sdist was unpacked in
        try:
            commit = _git("rev-parse", "--short=12", "HEAD")
            return f"{commit}-dirty" if _git("status", "--porcelain") else commit
        except (OSError, subprocess.SubprocessError):
            pass
    recorded = ROOT.joinpath(*COMMIT_FILE)
    return recorded.read_text().strip() if recorded.is_file() else ""


def _write_commit(base: str) -> None:
    commit = _commit()
    if commit:
        Path(base, *COMMIT_FILE).write_text(commit + "\n")


class BuildPyWithCommit(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:  # an editable install asks git itself
            _write_commit(self.build_lib)


class SdistWithCommit(sdist):
    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        _write_commit(base_dir)


setup(cmdclass={"build_py": BuildPyWithCommit, "sdist": SdistWithCommit})
