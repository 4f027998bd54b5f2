"""``kiosk operator add|remove|list``: who may sign in on the touch UI (``[ui] sign_in``)."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from kiosk.config import Config
from kiosk.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("operator", help="add, remove or list the operators who sign in on the touch UI")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    add = actions.add_parser("add", help="add an operator; the personal PIN (4-12 digits) is asked twice")
    add.add_argument("name", metavar="NAME", help="the name written into Operators' Name, as Family^Given")
    add.add_argument("--badge", metavar="CODE", help="the code the operator's badge scans as")
    add.add_argument("--pin-file", metavar="FILE", help="read the PIN from the first line of FILE (owner-only) "
                     "instead of asking, for scripts")
    add.set_defaults(run=run_add, needs_config=False)

    remove = actions.add_parser("remove", help="remove an operator")
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(run=run_remove, needs_config=False)

    listing = actions.add_parser("list", help="the operators, and whether each has a badge")
    listing.set_defaults(run=run_list, needs_config=False)


def _pin_from_file(value: str) -> str:
    path = Path(value).expanduser()
    try:
        if path.stat().st_mode & 0o077:
            raise UsageError(f"{value} can be read by others", f"chmod 600 {value}")
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read the PIN file {value} ({exc.strerror})") from None
    return lines[0].strip() if lines else ""


def _pin_asked() -> str:
    pin = getpass.getpass("PIN (4 to 12 digits): ")
    if getpass.getpass("the same PIN again: ") != pin:
        raise UsageError("the two PINs differ", "run the command again")
    return pin


def run_add(args: argparse.Namespace, _config: Config | None) -> int:
    from kiosk.operators import OperatorRegister, check_pin

    pin = _pin_from_file(args.pin_file) if args.pin_file else _pin_asked()
    check_pin(pin)  # before the name checks' file lock: a typo in the PIN is the likelier mistake
    register = OperatorRegister()
    operator = register.add(args.name, pin, args.badge)
    print(f"added {operator.name}" + (" with a badge" if operator.has_badge else "") + f" ({register.path})")
    return 0


def run_remove(args: argparse.Namespace, _config: Config | None) -> int:
    from kiosk.operators import OperatorRegister

    OperatorRegister().remove(args.name)
    print(f"removed {args.name.strip()}")
    return 0


def run_list(_args: argparse.Namespace, _config: Config | None) -> int:
    from kiosk.operators import OperatorRegister

    operators = OperatorRegister().list()
    if not operators:
        print("no operators; add one with: kiosk operator add FAMILY^Given", file=sys.stderr)
        return 0
    width = max(len(o.name) for o in operators)
    for operator in operators:
        print(f"{operator.name:<{width}}  {'badge' if operator.has_badge else 'no badge'}")
    return 0
