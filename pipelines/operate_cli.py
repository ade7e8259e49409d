"""``petseg models``, ``petseg push`` and ``petseg runs``: operating what runs leave behind.

Thin handlers over components/publish/versions.py (push destinations) and pipelines/runs.py
(local run folders); each failure is one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def _destination(args: argparse.Namespace, config_loader: Callable[[Any], Any]) -> str:
    if args.destination:
        return args.destination
    destination = config_loader(args).push.destination
    if not destination:
        raise SystemExit(_usage_error("--destination is required (push.destination is empty)"))
    return destination


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def number_argument(
    kind: type, accept: Callable[[Any], bool], what: str, refusal: str
) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` that ``accept`` takes, else a message naming the text.

    A bad value exits 2, as every bad argument does: "'x' is not {what}" or "x {refusal}".
    """

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{text} {refusal}")
        return value

    return parse


_at_least_one = number_argument(
    int, lambda value: value >= 1, "a whole number", "keeps nothing; keep at least 1"
)
_seconds = number_argument(float, lambda value: value >= 0, "a number of seconds", "is not >= 0")


def _fail(error: BaseException) -> int:
    print(f"error: {error}", file=sys.stderr)
    return 1


def _cmd_models(args: argparse.Namespace, config_loader: Callable[[Any], Any]) -> int:
    from components.platform.storage import DestinationError
    from components.publish import versions

    destination = _destination(args, config_loader)
    try:
        if args.models_command == "list":
            found = versions.list_versions(destination)
            if not found:
                print(f"no versions under {destination}")
            for info in found:
                print(info.line())
            return 0
        if args.models_command == "verify":
            version, problems = versions.verify_version(destination, args.version)
            for problem in problems:
                print(f"damaged: {problem}", file=sys.stderr)
            if problems:
                print(f"{version}: {len(problems)} problem(s)", file=sys.stderr)
                return 1
            print(f"{version}: every file matches its manifest")
            return 0
        if args.models_command == "rollback":
            before, after = versions.rollback(destination, args.version)
            print(f"LATEST: {before} -> {after}")
            return 0
        removed = versions.collect_garbage(
            destination, keep=args.keep, incomplete_after_s=args.older_than, dry_run=args.dry_run
        )
        verb = "would remove" if args.dry_run else "removed"
        for uri in removed:
            print(f"{verb} {uri}")
        print(f"{verb} {len(removed)} item(s) under {destination}")
        return 0
    except (versions.VersionError, DestinationError, ValueError, OSError) as error:
        return _fail(error)


def _cmd_push(args: argparse.Namespace, config_loader: Callable[[Any], Any]) -> int:
    from components.platform.storage import DestinationError
    from components.publish import push, versions
    from components.publish.push import PushError

    destination = _destination(args, config_loader)
    try:
        result = versions.push_existing_model(
            args.model, destination, data_statistics=args.data_statistics
        )
    except (PushError, DestinationError, ValueError, OSError) as error:
        return _fail(error)
    state = push.push_state(result)
    print(f"pushed {result['version']} to {result['uri']} ({state}); LATEST = {result['latest']}")
    return 0


def _cmd_runs(args: argparse.Namespace, config_loader: Callable[[Any], Any]) -> int:
    from pathlib import Path

    from pipelines.local import default_pipeline_root
    from pipelines.runs import prune_runs

    del config_loader
    root = args.pipeline_root or default_pipeline_root(args.runner, Path.cwd())
    try:
        removed = prune_runs(Path(root), keep=args.keep, dry_run=args.dry_run)
    except (ValueError, OSError) as error:
        return _fail(error)
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(removed)} run folder(s) under {root}")
    return 0


def add_operate_commands(
    commands: Any, *, parent: argparse.ArgumentParser, config_loader: Callable[[Any], Any]
) -> None:
    """Adds ``models``, ``push`` and ``runs`` to the CLI's subcommands."""
    from pathlib import Path

    def destination_option(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--destination",
            help="push destination, a folder or gs://bucket/prefix (default push.destination)",
        )

    models = commands.add_parser(
        "models", help="list, verify, roll back and clean the versions of a push destination"
    )
    verbs = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    listing = verbs.add_parser(
        "list",
        parents=[parent],
        help="every version: created, metrics, data fingerprint, complete, LATEST",
    )
    verify = verbs.add_parser(
        "verify", parents=[parent], help="check every file of a version against its manifest"
    )
    verify.add_argument("version", nargs="?", help="a version like v000002 (default LATEST)")
    rollback = verbs.add_parser(
        "rollback",
        parents=[parent],
        help="point LATEST at an earlier complete version that verifies",
    )
    rollback.add_argument("version", help="the version LATEST should name, like v000001")
    gc = verbs.add_parser(
        "gc",
        parents=[parent],
        help="remove incomplete versions and stale staged files (complete ones only with --keep)",
    )
    gc.add_argument(
        "--keep",
        type=_at_least_one,
        help="also remove complete versions beyond the newest N (LATEST is always kept)",
    )
    gc.add_argument(
        "--older-than",
        type=_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="remove an incomplete version only once its claim is this old (default 3600: "
        "a younger one may be a push in progress)",
    )
    gc.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    for parser in (listing, verify, rollback, gc):
        destination_option(parser)
    models.set_defaults(handler=lambda args: _cmd_models(args, config_loader))

    push = commands.add_parser(
        "push",
        parents=[parent],
        help="push an existing Model artifact (resumes an interrupted push of it)",
        description=(
            "Publishes a model directory (a run's train/model) as the pipeline's push does. "
            "The same files give the same version: an interrupted push resumes, a finished "
            "one is reused. A model inside a local run folder takes that run's data "
            "statistics and evaluation metrics along."
        ),
    )
    push.add_argument("--model", required=True, help="the Model artifact directory")
    destination_option(push)
    push.add_argument(
        "--data-statistics",
        help="data_statistics output directory to publish with the model (default: the "
        "run folder's, when the model is in one)",
    )
    push.set_defaults(handler=lambda args: _cmd_push(args, config_loader))

    runs = commands.add_parser("runs", help="manage local run folders")
    runs_verbs = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)
    prune = runs_verbs.add_parser("gc", help="remove old local run folders, keeping the newest N")
    prune.add_argument(
        "--keep", type=_at_least_one, required=True, help="run folders to keep (newest)"
    )
    prune.add_argument(
        "--pipeline-root",
        type=Path,
        help="the pipeline root (default ./petseg-local/pipeline_root)",
    )
    prune.add_argument("--runner", choices=("subprocess", "docker"), default="subprocess")
    prune.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    runs.set_defaults(handler=lambda args: _cmd_runs(args, config_loader))
