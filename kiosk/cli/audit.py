"""``kiosk audit list|send``: the local copy of the audit trail, and delivering what waits."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re

from kiosk.config import Config
from kiosk.display import printable
from kiosk.errors import KioskError, UsageError

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
OUTCOMES = {0: "success", 4: "minor failure", 8: "serious failure", 12: "major failure"}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("audit", help="the audit trail (IHE ATNA): list the local copy, send what waits")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="audit messages: time, event, outcome, participants, sent or waiting")
    listing.add_argument("--since", metavar="WHEN", help="only messages since a date (2026-12-01, "
                         "2026-12-01T08:00) or for a duration back (30m, 2h, 7d)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(run=run_list, needs_config=True)
    send = actions.add_parser("send", help="send the waiting messages to [audit] repository now, then exit")
    send.set_defaults(run=run_send, needs_config=True)


def parse_since(text: str | None, now: dt.datetime | None = None) -> float:
    """A ``--since`` value as a POSIX time (0 for none)."""
    if not text:
        return 0.0
    now = now or dt.datetime.now().astimezone()
    if match := _DURATION.fullmatch(text.strip()):
        return now.timestamp() - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r} is neither a date nor a duration",
                         "write a date (2026-12-01 or 2026-12-01T08:00) or a duration (30m, 2h, 7d)") from None
    return (when if when.tzinfo else when.astimezone()).timestamp()


def run_list(args: argparse.Namespace, config: Config) -> int:
    from kiosk.audit import trail

    entries = trail.queue().entries(parse_since(args.since))
    if args.json:
        print(json.dumps([{"id": e.id, "time": dt.datetime.fromtimestamp(e.created).astimezone().isoformat(),
                           "event": e.event, "type": e.event_type, "outcome": e.outcome, "participants": e.summary,
                           "state": e.state, "attempts": e.attempts, "reason": e.reason} for e in entries], indent=2))
        return 0
    if not entries:
        print("no audit messages" + (f" since {args.since}" if args.since else ""))
        return 0
    for e in entries:
        when = dt.datetime.fromtimestamp(e.created).isoformat(sep=" ", timespec="seconds")
        event = e.event + (f" ({e.event_type})" if e.event_type else "")
        state = e.state + (f" ({e.reason})" if e.state != "sent" and e.reason else "")
        print(printable(f"{when}  {event}  {OUTCOMES.get(e.outcome, e.outcome)}  {e.summary}  [{state}]"))
    waiting = sum(e.state != "sent" for e in entries)
    if waiting:
        where = config.audit.repository or "nowhere: [audit] repository is empty, they are kept locally"
        print(f"{waiting} message(s) waiting for {where}")
    return 0


def run_send(args: argparse.Namespace, config: Config) -> int:
    from kiosk.audit import trail

    if not config.audit.repository:
        print("[audit] repository is empty: audit messages are kept locally only")
        return 0
    outcome = trail.sender().deliver_once()
    if outcome is None:
        print("another kiosk process (the touch UI or kiosk outbox run) is sending the audit messages")
        return 0
    sent, problem = outcome
    print(f"{sent} audit message(s) sent to {config.audit.repository}")
    if problem:
        waiting = len(trail.queue().waiting(1_000_000))
        raise KioskError(f"{waiting} audit message(s) wait: {problem}", "they are sent by the next 'kiosk audit send', "
                         "'kiosk outbox run' or the touch UI once the repository answers")
    return 0
