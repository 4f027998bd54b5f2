"""The operator register: who may sign in on the touch UI, with a personal PIN and an optional badge.

One JSON file, ``<user data dir>/operators.json`` (0600 in a 0700 folder),
holds per operator the name (a DICOM Person Name, Family^Given), the PIN as
a salted scrypt hash (a random salt per operator; the PIN itself is never
stored, logged or returned), the SHA-256 of the badge code (a badge only
identifies someone: the PIN is still asked), and the count of wrong PINs in
a row. ``MAX_FAILURES`` wrong PINs lock that operator out for
``LOCKOUT_SECONDS``; the count is kept in the file, so restarting the kiosk
does not lift a lock-out. Every change is a locked read-modify-write, so the
``kiosk operator`` command and a running kiosk can share the file.

Checking a PIN costs tens of milliseconds of CPU on purpose: call ``verify``
off the UI thread.

``OperatorEvents`` is the hook for the audit trail: the touch UI publishes
an ``OperatorEvent`` on every sign-in, sign-out and refused PIN.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import json
import logging
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from kiosk.errors import KioskError, UsageError
from kiosk.outbox.events import EventBus
from kiosk.private import private_dir, private_opener, write_private
from kiosk.study import check_person_name

log = logging.getLogger(__name__)

FILENAME = "operators.json"
MAX_FAILURES = 5  # wrong PINs in a row before a lock-out
LOCKOUT_SECONDS = 120.0
PIN_LENGTHS = range(4, 13)  # digits: what the touch keypad types
# scrypt cost: 16 MiB and ~50 ms per check on the kiosk's CPU. Stored with each hash so it can be raised later.
SCRYPT = {"n": 2**14, "r": 8, "p": 1}
SALT_BYTES = 16


def default_path() -> Path:
    """``operators.json`` in the kiosk's user data directory."""
    import platformdirs

    return Path(platformdirs.user_data_dir("kiosk", appauthor=False)) / FILENAME


@dataclass(frozen=True)
class Operator:
    """What the register tells about an operator: never the PIN hash or the badge code."""

    name: str  # DICOM PN, Family^Given
    has_badge: bool


class UnknownOperator(KioskError):
    """No operator of that name (or badge)."""


class WrongPin(KioskError):
    """The PIN was wrong; ``left`` more tries before a lock-out."""

    def __init__(self, name: str, left: int) -> None:
        super().__init__(f"wrong PIN for {name}; {left} more tries before a lock-out")
        self.name, self.left = name, left


class LockedOut(KioskError):
    """Too many wrong PINs in a row: ``seconds`` until this operator may try again."""

    def __init__(self, name: str, seconds: float) -> None:
        super().__init__(f"{name} is locked out after {MAX_FAILURES} wrong PINs; try again in {int(seconds) + 1} s")
        self.name, self.seconds = name, seconds


def check_pin(pin: str) -> None:
    """Raise a ``UsageError`` unless ``pin`` is 4 to 12 digits."""
    if not (pin.isascii() and pin.isdigit() and len(pin) in PIN_LENGTHS):
        raise UsageError("a PIN must be 4 to 12 digits", "choose another PIN")


def _hash_pin(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(pin.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def _badge_digest(code: str) -> str:
    return hashlib.sha256(code.strip().encode()).hexdigest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class OperatorRegister:
    """The operators in ``path`` (default: ``default_path()``). ``clock`` gives wall-clock seconds
    (lock-outs are stored, so they must survive a restart)."""

    def __init__(self, path: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = path or default_path()
        self.clock = clock

    # -- reading and writing the file ---------------------------------------------
    def _read(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise KioskError(f"the operator register {self.path} cannot be read ({exc})",
                             "fix or remove the file, then add the operators again (kiosk operator add)") from None
        return list(data.get("operators", []))

    @contextmanager
    def _editing(self) -> Iterator[list[dict[str, Any]]]:
        """The records, locked against other processes; written back when the block ends without error."""
        private_dir(self.path.parent)
        with open(self.path.with_name(self.path.name + ".lock"), "a", opener=private_opener) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = self._read()
            yield records
            data = json.dumps({"version": 1, "operators": records}, ensure_ascii=False, indent=1)
            write_private(self.path, data.encode("utf-8"))

    @staticmethod
    def _find(records: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
        wanted = name.strip().casefold()
        return next((r for r in records if r["name"].casefold() == wanted), None)

    @staticmethod
    def _public(record: dict[str, Any]) -> Operator:
        return Operator(name=record["name"], has_badge=bool(record.get("badge_sha256")))

    # -- the API ---------------------------------------------------------------------
    def add(self, name: str, pin: str, badge: str | None = None) -> Operator:
        """Add an operator; the name (Family^Given) and the badge must not be taken already."""
        name = name.strip()
        problems = ["operator: is empty"] if not name else check_person_name("operator", name)
        if problems:
            raise UsageError(problems[0], "give the operator's name as Family^Given, e.g. SMITH^Anna")
        check_pin(pin)
        if badge is not None and not badge.strip():
            raise UsageError("the badge code is empty", "scan or type the code printed on the badge")
        salt = secrets.token_bytes(SALT_BYTES)
        record: dict[str, Any] = {"name": name, "pin": {"scheme": "scrypt", **SCRYPT, "salt": _b64(salt),
                                                         "hash": _b64(_hash_pin(pin, salt, **SCRYPT))},
                                  "badge_sha256": _badge_digest(badge) if badge else "", "failures": 0,
                                  "locked_until": 0.0}
        with self._editing() as records:
            if self._find(records, name):
                raise UsageError(f"an operator named {name} exists already",
                                 "remove them first (kiosk operator remove) to change the PIN or badge")
            if badge and any(r.get("badge_sha256") == record["badge_sha256"] for r in records):
                raise UsageError("that badge belongs to another operator", "use another badge")
            records.append(record)
        log.info("operator added (badge: %s)", "yes" if badge else "no")
        return self._public(record)

    def remove(self, name: str) -> None:
        with self._editing() as records:
            record = self._find(records, name)
            if record is None:
                raise UnknownOperator(f"no operator named {name.strip()}", "kiosk operator list shows who is registered")
            records.remove(record)
        log.info("operator removed")

    def list(self) -> list[Operator]:
        """Everyone in the register, sorted by name."""
        return sorted((self._public(r) for r in self._read()), key=lambda o: o.name.casefold())

    def by_badge(self, code: str) -> Operator | None:
        """The operator whose badge has this code, or None."""
        digest = _badge_digest(code)
        record = next((r for r in self._read() if r.get("badge_sha256") and
                       hmac.compare_digest(r["badge_sha256"], digest)), None)
        return self._public(record) if record else None

    def verify(self, name: str, pin: str) -> Operator:
        """The operator, when ``pin`` is theirs; otherwise raise ``UnknownOperator``, ``WrongPin`` or
        ``LockedOut`` (also while a lock-out lasts, whatever the PIN)."""
        with self._editing() as records:
            record = self._find(records, name)
            if record is None:
                raise UnknownOperator(f"no operator named {name.strip()}")
            now = self.clock()
            if record.get("locked_until", 0.0) > now:
                raise LockedOut(record["name"], record["locked_until"] - now)
            stored = record["pin"]
            salt = base64.b64decode(stored["salt"])
            typed = _hash_pin(pin, salt, stored["n"], stored["r"], stored["p"])
            if hmac.compare_digest(typed, base64.b64decode(stored["hash"])):
                record["failures"], record["locked_until"] = 0, 0.0
                return self._public(record)
            record["failures"] = record.get("failures", 0) + 1
            if record["failures"] >= MAX_FAILURES:
                record["failures"], record["locked_until"] = 0, now + LOCKOUT_SECONDS
                log.warning("an operator is locked out for %d s after %d wrong PINs", LOCKOUT_SECONDS, MAX_FAILURES)
                error: KioskError = LockedOut(record["name"], LOCKOUT_SECONDS)
            else:
                error = WrongPin(record["name"], MAX_FAILURES - record["failures"])
        raise error  # after the block: the count is written first


# -- the hook for the audit trail -------------------------------------------------------
SIGNED_IN, SIGNED_OUT, FAILED = "signed in", "signed out", "failed"


@dataclass(frozen=True)
class OperatorEvent:
    """One sign-in event of the touch UI.

    ``kind``: ``SIGNED_IN``, ``SIGNED_OUT`` or ``FAILED``. ``name``: the
    operator's name (Family^Given); "" when an unknown badge was scanned.
    ``detail``: how (sign-in: "badge" or "name"), why (sign-out: "finish",
    "idle", "tap" or "settings") or what failed ("wrong pin", "locked out",
    "unknown badge"). Never a PIN or a badge code.
    """

    kind: str
    name: str
    detail: str


class OperatorEvents(EventBus):
    """Subscribers of ``OperatorEvent``s, called on the thread that publishes (the UI thread); a
    subscriber that raises is logged and does not stop a sign-in or sign-out."""
