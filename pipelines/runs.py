"""Local run folders: marking a partial one failed, and pruning old ones.

kfp.local names a run folder ``<pipeline>-<YYYY-MM-DD-HH-MM-SS-ffffff>`` under the
pipeline root; each holds every artifact of the run (~130 MB for the demo), and nothing
else removes them.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path

FAILED_MARKER = "RUN_FAILED"
_RUN_FOLDER = re.compile(r".+-(\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d-\d{6})")


def run_folders(pipeline_root: Path) -> list[Path]:
    """The run folders under a pipeline root, oldest first (by the stamp in their name)."""
    if not pipeline_root.is_dir():
        return []
    found = []
    for path in pipeline_root.iterdir():
        match = _RUN_FOLDER.fullmatch(path.name)
        if match and path.is_dir():
            found.append((match.group(1), path.name, path))
    return [path for _, _, path in sorted(found)]


def mark_failed(run_dir: Path | None, reason: str) -> Path | None:
    """Leaves ``RUN_FAILED`` (the reason, or empty when even that does not fit) in a run folder.

    Best effort: on a full disk the reason may not fit, and the marker then is empty.
    """
    if run_dir is None or not run_dir.is_dir():
        return None
    marker = run_dir / FAILED_MARKER
    try:
        marker.write_text(reason + "\n", encoding="utf-8")
    except OSError:
        with contextlib.suppress(OSError):
            marker.touch()
    return marker if marker.exists() else None


def prune_runs(pipeline_root: Path, *, keep: int, dry_run: bool = False) -> list[Path]:
    """Removes all but the newest ``keep`` run folders; returns the ones removed."""
    if keep < 1:
        raise ValueError(f"--keep {keep}: keep at least 1 run folder (a run may be in progress)")
    doomed = run_folders(pipeline_root)[:-keep]
    if not dry_run:
        for path in doomed:
            shutil.rmtree(path)
    return doomed
