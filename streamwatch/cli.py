"""The ``streamwatch`` command line."""

from __future__ import annotations

import argparse
import importlib
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


def _registry(args: argparse.Namespace):
    from streamwatch.config import load_config
    from streamwatch.model.loader import registry_for

    return registry_for(load_config(args.config))


def _model_list(args: argparse.Namespace) -> int:
    from streamwatch.config import ConfigError
    from streamwatch.model.loader import choose_model
    from streamwatch.model.registry import RegistryError

    try:
        registry = _registry(args)
        entries = registry.entries()
        current = registry.current()
    except (ConfigError, RegistryError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        import json
        from dataclasses import asdict

        print(json.dumps({"current": current.version if current else None,
                          "versions": [asdict(e) for e in entries]}, indent=1))
        return 0
    if not entries:
        print(f"no promoted models in {registry.root}; the daemon runs {choose_model(_cfg(args)).path}")
        return 0
    for entry in entries:
        mark = "*" if current and entry.version == current.version else " "
        acc = entry.metrics.get("base", {}).get("accuracy") if isinstance(entry.metrics.get("base"), dict) else None
        acc_text = f"  base accuracy {acc:.4f}" if isinstance(acc, (int, float)) else ""
        print(f"{mark} {entry.version}  {entry.created}  sha256 {entry.sha256[:12]}{acc_text}  {entry.note}")
    return 0


def _cfg(args: argparse.Namespace):
    from streamwatch.config import load_config

    return load_config(args.config)


def _model_rollback(args: argparse.Namespace) -> int:
    from streamwatch.config import ConfigError
    from streamwatch.model.registry import RegistryError

    try:
        entry = _registry(args).rollback(args.version)
    except (ConfigError, RegistryError) as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"current model is now {entry.version}; a running daemon switches within seconds")
    return 0


def _label(args: argparse.Namespace) -> int:
    from streamwatch.config import ConfigError, load_config
    from streamwatch.labels import LabelError, label_camera, label_from_file

    try:
        config = load_config(args.config)
        if args.file:
            saved = label_from_file(config, args.camera, Path(args.file), args.label)
        elif args.label:
            saved = label_camera(config, args.camera, args.label, args.frames, args.interval)
        else:
            raise LabelError("give --as CLASS (frames are taken from the camera) or --file LIST")
    except (ConfigError, LabelError, OSError) as exc:
        print(f"label: {exc}", file=sys.stderr)
        return 2
    print(f"saved {len(saved)} labelled frame(s) under {saved[0].parent.parent if saved else '-'}; "
          "they are used by the next 'streamwatch trainer' run")
    return 0


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

    label = sub.add_parser("label", help="label frames of a camera for the next site refresh")
    label.add_argument("camera", help="camera id from the config")
    label.add_argument("--as", dest="label", help="class name (normal, frozen, ..., monochrome)")
    label.add_argument("--file", help="CSV list of images: path[,class] per line")
    label.add_argument("--frames", type=int, default=5, help="frames to take from the camera (default 5)")
    label.add_argument("--interval", type=float, default=2.0, help="seconds between them (default 2)")
    label.add_argument("--config", "-c", required=True, help="daemon config")
    label.set_defaults(func=_label)

    model = sub.add_parser("model", help="list promoted model versions or roll back")
    model_sub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    listing = model_sub.add_parser("list", help="list model versions (* = current)")
    listing.add_argument("--config", "-c", required=True, help="daemon config (for state_dir)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=_model_list)
    rollback = model_sub.add_parser("rollback", help="make an earlier version current again")
    rollback.add_argument("version", nargs="?", help="version to restore (default: the previous one)")
    rollback.add_argument("--config", "-c", required=True, help="daemon config (for state_dir)")
    rollback.set_defaults(func=_model_rollback)

    # The trainer's commands are optional (the daemon never needs them); none imports torch here.
    for module in ("streamwatch.train.commands", "streamwatch.train.site_commands"):
        try:
            commands = importlib.import_module(module)
        except ImportError:
            continue
        commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
