"""``petseg``: show config, compile, run locally, submit and schedule.

Thin entry point (TFX runner style): it only reads config and picks the
orchestrator; everything it does is a plain function elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from components.platform.config import (
    PRESETS,
    ConfigError,
    PipelineConfig,
    apply_runtime_parameters,
    load_config,
    parse_parameter_arguments,
    parse_runtime_parameter,
)
from pipelines.operate_cli import number_argument
from pipelines.segmentation import TARGETS, compile_pipeline

# Unreadable images named on stderr; all of them are in failed.jsonl.
_MAX_LISTED_FAILURES = 20


def _config_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("configuration")
    group.add_argument("--preset", choices=sorted(PRESETS), help="start from a preset")
    group.add_argument("--config", metavar="FILE", help="YAML file layered over the preset")
    group.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one field, e.g. --set training.epochs=3 (repeatable)",
    )
    return parent


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    return load_config(args.preset, args.config, args.overrides)


def runtime_values(items: list[str] | None) -> dict[str, Any]:
    """Typed run-time values from repeated ``--param NAME=VALUE`` options.

    Raises:
        ConfigError: naming an item that is not NAME=VALUE, an unknown name or a bad value.
    """
    parameters = parse_parameter_arguments(items)
    return {name: parse_runtime_parameter(name, text) for name, text in parameters.items()}


def _cmd_config(args: argparse.Namespace) -> int:
    import yaml

    config = config_from_args(args)
    print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    output = args.output or f"{config.name}.pipeline.yaml"
    path = compile_pipeline(config, output, target=args.target, scheduled=args.scheduled)
    print(f"compiled {config.name} for {args.target} to {path}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    if not args.local:
        print(
            "petseg run executes on this machine and needs --local; "
            "use 'petseg submit' for Vertex AI or Kubeflow",
            file=sys.stderr,
        )
        return 2
    from pipelines.local import (
        LocalRunError,
        LocalRunInterrupted,
        default_pipeline_root,
        format_summary,
        prepare_pipeline_root,
        run_local,
    )

    config = config_from_args(args)
    parameters = runtime_values(args.param)
    apply_runtime_parameters(config, parameters)  # refused here, before any task runs
    try:
        prepare_pipeline_root(
            args.pipeline_root or default_pipeline_root(args.runner, Path.cwd()), Path.cwd()
        )
    except PermissionError as error:
        print(f"error: --pipeline-root: {error}", file=sys.stderr)
        return 2
    try:
        summary = run_local(
            config,
            pipeline_root=args.pipeline_root,
            parameters=parameters,
            runner=args.runner,
            verbose=args.verbose,
        )
    except ValueError as error:  # a docker run that cannot work, refused before any task
        print(f"error: {error}", file=sys.stderr)
        return 2
    except LocalRunInterrupted as error:
        print(f"error: {error}", file=sys.stderr)
        return 130
    except LocalRunError as error:
        print(f"error: {error}", file=sys.stderr)
        if error.log_path is not None:
            print(f"log: {error.log_path}", file=sys.stderr)
        return 1
    print(format_summary(summary))
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _native_stderr_silenced(not args.verbose) as console:
        import logging

        from components.data import dataset_info
        from components.data.beam_ingest import ingest_with_engine
        from components.data.ingest import BadRecordError
        from components.data.sources import DatasetNotPreparedError, SourceError

        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.ERROR,
            format="%(levelname)s %(name)s: %(message)s",
            stream=console,
        )
        output = str(args.output)
        try:
            info = ingest_with_engine(config.data, output)
        except (
            BadRecordError,
            SourceError,
            DatasetNotPreparedError,
            FileNotFoundError,
            ImportError,  # data.engine=beam without the beam extra: the message says so
        ) as error:
            print(f"error: {error}", file=console)
            return 1
    print(dataset_info.describe(dataset_info.DatasetInfo.from_dict(info), output))
    return 0


@contextlib.contextmanager
def _native_stderr_silenced(enabled: bool):
    """Sends file descriptor 2 to /dev/null; yields a stream to the real stderr.

    TensorFlow's C++ start-up lines (CPU features, CUDA probing, absl's pre-init notice)
    bypass Python and TF_CPP_MIN_LOG_LEVEL, and are not this command's output. Python's
    own exceptions are reported after the block, on the restored stderr.
    """
    if not enabled:
        yield sys.stderr
        return
    sys.stderr.flush()
    saved = os.dup(2)
    console = os.fdopen(os.dup(saved), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield console
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        console.close()


def _cmd_predict(args: argparse.Namespace) -> int:
    if not args.verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    interactive = sys.stderr.isatty()
    with _native_stderr_silenced(not args.verbose) as console:
        from components.publish.predict import (
            EXIT_FAILED,
            FAILED_FILE,
            SKIPPED_FILE,
            PredictError,
            exit_code,
            listed,
            predict,
            summary_line,
        )

        def progress(done: int, total: int) -> None:
            if interactive:
                end = "\n" if done >= total else ""
                print(f"\rpredict: {done}/{total} images", end=end, file=console, flush=True)

        try:
            summary = predict(
                args.model,
                args.input,
                args.output,
                batch_size=args.batch_size,
                alpha=args.alpha,
                progress=progress,
            )
        except PredictError as error:
            print(f"error: {error}", file=console)
            return EXIT_FAILED
        except Exception as error:  # storage, permissions, a damaged model: one line
            if args.verbose:
                raise
            print(f"error: {type(error).__name__}: {error} (--verbose for details)", file=console)
            return EXIT_FAILED
        failed = listed(args.output, FAILED_FILE) if summary.unreadable else []
        for failure in failed[:_MAX_LISTED_FAILURES]:
            print(f"unreadable: {failure['file']}: {failure['error']}", file=console)
        if len(failed) > _MAX_LISTED_FAILURES:
            print(f"... and {len(failed) - _MAX_LISTED_FAILURES} more", file=console)
        skipped = listed(args.output, SKIPPED_FILE) if summary.skipped else []
        for other in skipped[:_MAX_LISTED_FAILURES]:
            print(f"not read: {other['file']}: {other['reason']}", file=console)
        if len(skipped) > _MAX_LISTED_FAILURES:
            print(f"... and {len(skipped) - _MAX_LISTED_FAILURES} more", file=console)
    print(summary_line(summary, args.output))
    return exit_code(summary)


_fraction = number_argument(
    float, lambda value: 0.0 <= value <= 1.0, "a number", "is not in [0, 1]"
)
_positive_int = number_argument(int, lambda value: value >= 1, "a whole number", "is not >= 1")


class _VersionAction(argparse.Action):
    """``--version``: version and commit, looked up only when asked (no git call otherwise)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any):
        super().__init__(option_strings, dest, nargs=0, help="print version and commit, exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from components.platform import provenance

        commit = provenance.git_commit() or "unknown"
        print(f"petseg {provenance.package_version()} (commit {commit})")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petseg", description="Oxford-IIIT Pet segmentation pipeline (Kubeflow Pipelines)."
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parent = _config_parent()

    show = commands.add_parser(
        "config", parents=[parent], help="print the resolved configuration as YAML"
    )
    show.set_defaults(handler=_cmd_config)

    compile_cmd = commands.add_parser(
        "compile", parents=[parent], help="compile the pipeline to KFP IR YAML"
    )
    compile_cmd.add_argument("--output", "-o", help="output file (default <name>.pipeline.yaml)")
    compile_cmd.add_argument("--target", choices=TARGETS, default="vertex")
    compile_cmd.add_argument(
        "--scheduled", action="store_true", help="compile for recurring runs (no data cache)"
    )
    compile_cmd.set_defaults(handler=_cmd_compile)

    run = commands.add_parser(
        "run",
        parents=[parent],
        help="run the whole pipeline here with kfp.local",
        usage="petseg run --local [options]",
    )
    run.add_argument(
        "--local",
        action="store_true",
        help="run on this machine with kfp.local (cloud runs: petseg submit)",
    )
    run.add_argument(
        "--pipeline-root",
        type=Path,
        help="where artifacts go (default ./petseg-local/pipeline_root; with --runner docker,"
        " ./petseg-local)",
    )
    run.add_argument(
        "--runner",
        choices=("subprocess", "docker"),
        default="subprocess",
        help="subprocess: every task in this environment (default); docker: every task in the"
        " petseg-cpu/petseg-gpu images (containers/build-local.sh), each with no network",
    )
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="run-time parameter, as a cloud run takes it, e.g. --param epochs=3 (repeatable)",
    )
    run.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="also show what the steps print (TensorFlow, TFDS, kfp); always in <run>/logs/",
    )
    run.set_defaults(handler=_cmd_run)

    ingest_cmd = commands.add_parser(
        "ingest",
        parents=[parent],
        help="run ingest alone and print what the dataset holds",
        description=(
            "Reads the configured source (data.*) into TFRecords and prints the counts per "
            "split, the class table, pixel frequencies, skipped records and the fingerprint, "
            "so a dataset can be checked before running the pipeline. Exit code 1 when ingest "
            "refuses the data (the error names the file and the value)."
        ),
    )
    ingest_cmd.add_argument(
        "--output",
        "-o",
        type=Path,
        default=Path("petseg-local") / "ingest",
        help="dataset folder to write (default ./petseg-local/ingest; replaced)",
    )
    ingest_cmd.add_argument(
        "--verbose", action="store_true", help="show progress and TensorFlow's own log lines"
    )
    ingest_cmd.set_defaults(handler=_cmd_ingest)

    predict_cmd = commands.add_parser(
        "predict",
        help="segment images with a trained or pushed model",
        description=(
            "Writes, per image, a class-id mask PNG at the image's resolution (masks/), a "
            "colour overlay (overlays/) and a line of predictions.jsonl; unreadable images "
            "are skipped and listed in failed.jsonl, a folder's other files in skipped.jsonl. "
            "Reads JPEG, PNG, GIF, BMP, WebP and TIFF, any case of extension. Exit codes: 0 all "
            "predicted, 1 nothing predicted (bad model or input), 2 bad command line, 3 some "
            "images unreadable."
        ),
    )
    predict_cmd.add_argument(
        "--model",
        required=True,
        help="a model directory or a push destination (its LATEST), local or gs://",
    )
    predict_cmd.add_argument(
        "--input", required=True, help="an image file, a folder, a glob or a gs:// prefix"
    )
    predict_cmd.add_argument(
        "--output", "-o", required=True, help="folder (or gs:// prefix) for the outputs"
    )
    predict_cmd.add_argument(
        "--batch-size", type=_positive_int, default=16, help="images per model call"
    )
    predict_cmd.add_argument(
        "--alpha", type=_fraction, default=0.5, help="overlay colour weight, 0..1 (default 0.5)"
    )
    predict_cmd.add_argument(
        "--verbose", action="store_true", help="show TensorFlow's own log lines"
    )
    predict_cmd.set_defaults(handler=_cmd_predict)

    from pipelines.operate_cli import add_operate_commands

    add_operate_commands(commands, parent=parent, config_loader=config_from_args)
    try:
        from pipelines.cloud_cli import add_cloud_commands
    except ImportError:  # cloud extras not installed: local commands still work
        add_cloud_commands = None
    if add_cloud_commands is not None:
        add_cloud_commands(
            commands, parent=parent, config_loader=config_from_args, compile_fn=compile_pipeline
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `petseg` alone: what it can do, not a usage error
        parser.print_help()
        return 0
    try:
        return int(args.handler(args) or 0)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
