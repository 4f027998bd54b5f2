"""``kiosk config check|show|path``."""

from __future__ import annotations

import argparse

from kiosk.config import Config, find_config_path, load_config, to_toml


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="check, show or locate the configuration")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="validate a configuration file (default: the one in use)")
    check.add_argument("file", nargs="?", help="file to check")
    check.set_defaults(run=run_check, needs_config=False)
    show = actions.add_parser("show", help="print the effective configuration as TOML")
    show.set_defaults(run=run_show, needs_config=True)
    path = actions.add_parser("path", help="print which configuration file is used")
    path.set_defaults(run=run_path, needs_config=False)


def run_check(args: argparse.Namespace, _config: Config | None) -> int:
    config = load_config(args.file or args.config)
    where = config.path or "built-in defaults (no configuration file found)"
    print(f"OK: {where}: {len(config.destinations)} destination(s)"
          f"{', worklist' if config.worklist else ''}{', query' if config.query else ''}")
    return 0


def run_show(_args: argparse.Namespace, config: Config) -> int:
    print(f"# effective configuration from {config.path or 'built-in defaults'}")
    print(to_toml(config), end="")
    return 0


def run_path(args: argparse.Namespace, _config: Config | None) -> int:
    path, _named = find_config_path(args.config)
    state = "exists" if path.exists() else "does not exist; built-in defaults apply" if not _named else "does not exist"
    print(path)
    print(f"# {state}")
    return 0
