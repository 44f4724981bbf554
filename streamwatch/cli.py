"""The ``streamwatch`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from streamwatch import __version__


def _check_config(args: argparse.Namespace) -> int:
    from streamwatch.config import ConfigError, load_config, masked_dump

    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"# {args.file}: valid, {len(config.enabled_cameras())} of {len(config.cameras)} cameras enabled")
    print(yaml.safe_dump(masked_dump(config), sort_keys=False, default_flow_style=False), end="")
    return 0


def _run(args: argparse.Namespace) -> int:
    from streamwatch.daemon import run

    return run(Path(args.config))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamwatch", description="Video quality diagnosis for surveillance cameras, alerts over MQTT."
    )
    parser.add_argument("--version", action="version", version=f"streamwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the monitoring daemon")
    run.add_argument("--config", "-c", required=True, help="YAML config file")
    run.set_defaults(func=_run)

    check = sub.add_parser("check-config", help="validate a config file and print the effective config")
    check.add_argument("file", help="YAML config file")
    check.set_defaults(func=_check_config)

    try:
        from streamwatch.train import commands
    except ImportError:  # the trainer is optional; the daemon never needs it
        commands = None
    if commands is not None:
        commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
