"""``petseg``: show config, compile, run locally, submit and schedule.

Thin entry point (TFX runner style): it only reads config and picks the
orchestrator; everything it does is a plain function elsewhere.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from components.config import PRESETS, ConfigError, PipelineConfig, load_config
from pipelines.segmentation import TARGETS, compile_pipeline


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
    from pipelines.local import format_summary, prepare_pipeline_root, run_local

    config = config_from_args(args)
    try:
        prepare_pipeline_root(args.pipeline_root, Path.cwd())
    except PermissionError as error:
        print(f"error: --pipeline-root: {error}", file=sys.stderr)
        return 2
    summary = run_local(config, pipeline_root=args.pipeline_root)
    print(format_summary(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="petseg",
        description="Oxford-IIIT Pet segmentation pipeline (Kubeflow Pipelines).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
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
        "run", parents=[parent], help="run the whole pipeline here with kfp.local"
    )
    run.add_argument("--local", action="store_true", help="run with kfp.local (required)")
    run.add_argument(
        "--pipeline-root",
        type=Path,
        help="where artifacts go (default ./petseg-local/pipeline_root)",
    )
    run.set_defaults(handler=_cmd_run)

    try:
        from pipelines.cloud_cli import add_cloud_commands
    except ImportError:  # cloud extras not installed: local commands still work
        add_cloud_commands = None
    if add_cloud_commands is not None:
        add_cloud_commands(
            commands,
            parent=parent,
            config_loader=config_from_args,
            compile_fn=compile_pipeline,
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
