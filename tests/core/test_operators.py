"""The operator register: salted PIN hashes, badges, lock-out, a private file; and ``kiosk operator``."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from kiosk.errors import UsageError
from kiosk.operators import (LOCKOUT_SECONDS, MAX_FAILURES, FAILED, SIGNED_IN, LockedOut, OperatorEvent,
                             OperatorEvents, OperatorRegister, UnknownOperator, WrongPin)


class Clock:
    """Wall-clock seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def register(tmp_path, clock):
    return OperatorRegister(tmp_path / "data" / "operators.json", clock=clock)


def test_pin_is_stored_as_a_salted_hash_only(register):
    register.add("SMITH^Anna", "246813", badge="BADGE-0042")
    register.add("DOE^John", "246813")
    raw = register.path.read_text(encoding="utf-8")
    assert "246813" not in raw and "BADGE-0042" not in raw
    records = json.loads(raw)["operators"]
    assert [r["name"] for r in records] == ["SMITH^Anna", "DOE^John"]
    # The same PIN gives different hashes: a salt of each operator's own.
    assert records[0]["pin"]["salt"] != records[1]["pin"]["salt"]
    assert records[0]["pin"]["hash"] != records[1]["pin"]["hash"]
    assert records[0]["pin"]["scheme"] == "scrypt"


def test_verify_accepts_the_pin_and_refuses_others(register):
    register.add("SMITH^Anna", "2468")
    assert register.verify("SMITH^Anna", "2468").name == "SMITH^Anna"
    assert register.verify("smith^anna", "2468").name == "SMITH^Anna"  # names match whatever the case
    with pytest.raises(WrongPin) as wrong:
        register.verify("SMITH^Anna", "2469")
    assert wrong.value.left == MAX_FAILURES - 1
    with pytest.raises(UnknownOperator):
        register.verify("NOBODY^Here", "2468")


def test_lock_out_after_wrong_pins_in_a_row(register, clock):
    register.add("SMITH^Anna", "2468")
    register.add("DOE^John", "1357")
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(WrongPin):
            register.verify("SMITH^Anna", "0000")
    with pytest.raises(LockedOut):
        register.verify("SMITH^Anna", "0000")
    # Locked: even the right PIN is refused, by a fresh register too (the lock-out is in the file).
    clock.now += LOCKOUT_SECONDS - 1
    with pytest.raises(LockedOut) as locked:
        OperatorRegister(register.path, clock=clock).verify("SMITH^Anna", "2468")
    assert 0 < locked.value.seconds <= 1
    assert register.verify("DOE^John", "1357").name == "DOE^John"  # only that operator is locked
    clock.now += 2
    assert register.verify("SMITH^Anna", "2468").name == "SMITH^Anna"


def test_a_right_pin_resets_the_count(register):
    register.add("SMITH^Anna", "2468")
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(WrongPin):
            register.verify("SMITH^Anna", "0000")
    register.verify("SMITH^Anna", "2468")
    with pytest.raises(WrongPin) as wrong:
        register.verify("SMITH^Anna", "0000")
    assert wrong.value.left == MAX_FAILURES - 1


def test_badges_find_their_operator(register):
    register.add("SMITH^Anna", "2468", badge="BADGE-0042")
    register.add("DOE^John", "1357")
    assert register.by_badge("BADGE-0042").name == "SMITH^Anna"
    assert register.by_badge(" BADGE-0042 ").name == "SMITH^Anna"  # a wedge's trailing whitespace
    assert register.by_badge("BADGE-0043") is None
    assert register.by_badge("") is None  # operators without a badge are not found by an empty code
    assert [(o.name, o.has_badge) for o in register.list()] == [("DOE^John", False), ("SMITH^Anna", True)]
    with pytest.raises(UsageError, match="another operator"):
        register.add("ROE^Jane", "1111", badge="BADGE-0042")


def test_add_checks_name_pin_and_duplicates(register):
    register.add("SMITH^Anna", "2468")
    for name, pin in (("", "2468"), ("BAD\\NAME", "2468"), ("ROE^Jane", "12"), ("ROE^Jane", "12ab"),
                      ("ROE^Jane", "1234567890123"), ("smith^anna", "1357")):
        with pytest.raises(UsageError):
            register.add(name, pin)
    assert [o.name for o in register.list()] == ["SMITH^Anna"]


def test_remove(register):
    register.add("SMITH^Anna", "2468")
    register.remove("smith^ANNA")
    assert register.list() == []
    with pytest.raises(UnknownOperator):
        register.remove("SMITH^Anna")


def test_the_register_is_private(tmp_path):
    old = os.umask(0o022)  # the usual default: files 0644, folders 0755
    try:
        register = OperatorRegister(tmp_path / "data" / "kiosk" / "operators.json")
        register.add("SMITH^Anna", "2468")
    finally:
        os.umask(old)
    assert stat.S_IMODE(register.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(register.path.parent.stat().st_mode) == 0o700


def test_events_reach_subscribers_until_they_unsubscribe():
    events, seen = OperatorEvents(), []
    stop = events.subscribe(seen.append)
    events.subscribe(lambda _e: 1 / 0)  # a broken subscriber does not stop the others
    events.publish(OperatorEvent(SIGNED_IN, "SMITH^Anna", "badge"))
    stop()
    events.publish(OperatorEvent(FAILED, "SMITH^Anna", "wrong pin"))
    assert seen == [OperatorEvent(SIGNED_IN, "SMITH^Anna", "badge")]


# -- kiosk operator ---------------------------------------------------------------------------
def kiosk(env, *args, stdin=""):
    return subprocess.run([sys.executable, "-m", "kiosk", *args], capture_output=True, text=True, env=env,
                          input=stdin, timeout=60)


def test_cli_add_list_remove(tmp_path):
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_STATE_HOME": str(tmp_path / "state")}
    pin_file = tmp_path / "pin"
    pin_file.write_text("97531\n")
    pin_file.chmod(0o644)
    refused = kiosk(env, "operator", "add", "SMITH^Anna", "--pin-file", str(pin_file))
    assert refused.returncode == 2 and "can be read by others" in refused.stderr
    pin_file.chmod(0o600)
    added = kiosk(env, "operator", "add", "SMITH^Anna", "--badge", "BADGE-0042", "--pin-file", str(pin_file))
    assert added.returncode == 0, added.stderr
    assert kiosk(env, "operator", "add", "DOE^John", "--pin-file", str(pin_file)).returncode == 0
    again = kiosk(env, "operator", "add", "doe^john", "--pin-file", str(pin_file))
    assert again.returncode == 2 and "exists already" in again.stderr and "Traceback" not in again.stderr

    listed = kiosk(env, "operator", "list")
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == ["DOE^John    no badge", "SMITH^Anna  badge"]
    path = tmp_path / "data" / "kiosk" / "operators.json"
    register = OperatorRegister(path)
    assert register.verify("SMITH^Anna", "97531").name == "SMITH^Anna"
    everything = path.read_text() + listed.stdout + added.stdout + added.stderr
    everything += "".join(p.read_text() for p in (tmp_path / "state").rglob("*.log"))
    assert "97531" not in everything and "BADGE-0042" not in everything and "scrypt" not in listed.stdout

    assert kiosk(env, "operator", "remove", "DOE^John").returncode == 0
    assert [o.name for o in register.list()] == ["SMITH^Anna"]
    missing = kiosk(env, "operator", "remove", "DOE^John")
    assert missing.returncode == 1 and "no operator named DOE^John" in missing.stderr


def test_cli_asks_the_pin_twice(tmp_path, monkeypatch, capsys):
    from kiosk.cli import main

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    answers = iter(["8642", "8643"])
    monkeypatch.setattr("getpass.getpass", lambda _prompt: next(answers))
    assert main(["operator", "add", "SMITH^Anna"]) == 2
    assert "the two PINs differ" in capsys.readouterr().err
    answers = iter(["8642", "8642"])
    assert main(["operator", "add", "SMITH^Anna"]) == 0
    assert OperatorRegister(tmp_path / "data" / "kiosk" / "operators.json").verify("SMITH^Anna", "8642")
