"""Touch UI: operator sign-in ([ui] sign_in), by badge or name and PIN; Operators' Name; sign-out."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from kiosk.operators import FAILED, SIGNED_IN, SIGNED_OUT, OperatorEvent, OperatorRegister, default_path
from kiosk.study import StudyContext
from kiosk.ui.strings import T
from tests.ui.test_ui_flow import demo, send_one_page, start_session_by_barcode, tap_text  # noqa: F401 (fixture)

PIN, BADGE = "2468", "OP-0042"


@pytest.fixture
def operators(tmp_path, monkeypatch):
    """A register of this test's own (the UI finds it in the user data dir) with two operators."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    register = OperatorRegister(default_path())
    register.add("SMITH^Anna", PIN, badge=BADGE)
    register.add("DOE^John", "1357")
    return register


def start(kiosk_ui, demo, mode, **ui):  # noqa: F811 - demo is the fixture's value
    peers, config = demo
    app_ui = kiosk_ui(replace(config, ui=replace(config.ui, sign_in=mode, **ui)), demo=peers)
    events = []
    app_ui.app.operator_events.subscribe(events.append)
    return app_ui, events


def names_listed(ui):
    screen = ui.screen("signin")
    ui.wait(lambda: len(screen.ids.names.children) == 2, what="the operators' names")
    return screen


def type_pin(ui, screen, digits):
    keys = {k.text: k for k in screen.ids.digits.children}
    ui.wait(lambda: not screen.ids.digits.disabled, what="the PIN keypad")
    for digit in digits:
        ui.tap(keys[digit])
    ui.tap(keys[T["ok"]])


def sign_in_by_name(ui, name="SMITH", pin=PIN):
    screen = names_listed(ui)
    tap_text(ui, screen.ids.names, name)
    type_pin(ui, screen, pin)
    return screen


def banner(ui):
    return ui.app.root.ids.banner.ids


def test_required_sign_in_blocks_sessions_until_a_name_and_pin(kiosk_ui, demo, operators):
    ui, events = start(kiosk_ui, demo, "required")
    assert ui.app.manager.current == "signin"
    screen = names_listed(ui)
    assert banner(ui).operator.text == T["sign_in"]
    ui.screenshot("signin")
    # Nothing reaches the Patient screen or starts a session without a sign-in.
    ui.tap(banner(ui).outbox)
    ui.tap(ui.screen("outbox").ids.back)
    assert ui.app.manager.current == "signin"
    ui.app.start_session(StudyContext(patient_name="NOT^STARTED", patient_id="X1"))
    assert ui.app.session is None and ui.app.manager.current == "signin"
    assert screen.ids.back.disabled  # no way around it

    tap_text(ui, screen.ids.names, "SMITH")
    assert "SMITH, Anna" in screen.ids.chosen.text
    type_pin(ui, screen, PIN)
    ui.wait(lambda: ui.app.operator is not None, what="the sign-in")
    assert ui.app.manager.current == "patient"
    assert ui.app.operator.name == "SMITH^Anna" and "SMITH, Anna" in banner(ui).operator.text
    assert events == [OperatorEvent(SIGNED_IN, "SMITH^Anna", "name")]
    ui.tap(start_session_by_barcode(ui, "A1004").ids.yes)
    ui.wait(lambda: ui.app.session is not None, what="the session")
    ui.screenshot("signed_in")
    ui.tap(banner(ui).operator)  # required: signing out in a session is Finish (nothing unsent: at once)
    ui.wait(lambda: ui.app.operator is None, what="the sign-out")
    assert ui.app.session is None and ui.app.manager.current == "signin"
    assert events[-1] == OperatorEvent(SIGNED_OUT, "SMITH^Anna", "finish")


def test_badge_then_pin_and_the_name_goes_into_operators_name(kiosk_ui, demo, operators):
    from pydicom import dcmread

    peers, _config = demo
    ui, events = start(kiosk_ui, demo, "required")
    screen = names_listed(ui)
    ui.type("OP-0042", enter=True)  # the badge scanner, a keyboard wedge
    ui.wait(lambda: screen.chosen == "SMITH^Anna", what="the badge's operator")
    assert ui.app.operator is None  # a badge alone does not sign in
    type_pin(ui, screen, PIN)
    ui.wait(lambda: ui.app.operator is not None, what="the sign-in")
    assert events == [OperatorEvent(SIGNED_IN, "SMITH^Anna", "badge")]

    send = send_one_page(ui, "A1001")
    ui.tap(send.ids.send)
    ui.wait(lambda: send.finished, timeout=60, what="the send result")
    [received] = sorted(peers.received.glob("*.dcm"))
    assert str(dcmread(received).OperatorsName) == "SMITH^Anna"

    ui.tap(send.ids.next)  # ends the session: the operator signs out too
    ui.wait(lambda: ui.app.operator is None, what="the sign-out")
    assert ui.app.manager.current == "signin" and banner(ui).operator.text == T["sign_in"]
    assert events[-1] == OperatorEvent(SIGNED_OUT, "SMITH^Anna", "finish")


def test_wrong_pin_unknown_badge_and_lock_out_are_refused_with_a_message(kiosk_ui, demo, operators, caplog):
    caplog.set_level(logging.INFO)
    ui, events = start(kiosk_ui, demo, "required")
    screen = names_listed(ui)
    ui.type("NOT-A-BADGE", enter=True)
    ui.wait(lambda: screen.error == T["signin_badge_unknown"], what="the unknown badge message")
    assert events == [OperatorEvent(FAILED, "", "unknown badge")]

    tap_text(ui, screen.ids.names, "DOE")
    type_pin(ui, screen, "9999")
    ui.wait(lambda: screen.error == T["signin_pin_wrong"].format(left=4), what="the wrong PIN message")
    assert ui.app.operator is None and ui.app.manager.current == "signin" and screen.entered == ""
    assert events[-1] == OperatorEvent(FAILED, "DOE^John", "wrong pin")
    ui.screenshot("signin_wrong_pin")
    for left in (3, 2, 1):
        type_pin(ui, screen, "9999")
        ui.wait(lambda: screen.error == T["signin_pin_wrong"].format(left=left), what=f"{left} tries left")
    type_pin(ui, screen, "9999")
    locked = T["signin_locked"].format(name="DOE, John", minutes=2)
    ui.wait(lambda: screen.error == locked, what="the lock-out message")
    type_pin(ui, screen, "1357")  # the right PIN, during the lock-out
    ui.wait(lambda: not screen.checking and screen.error == locked, what="the lock-out again")
    assert ui.app.operator is None
    assert [e.detail for e in events].count("locked out") == 2
    # Nothing logged or published holds a PIN or a badge code.
    assert "sign-in refused" in caplog.text  # the check below looks at a log that has the refusals
    published = "".join(repr(e) for e in events)
    for secret in ("9999", "1357", "NOT-A-BADGE"):
        assert secret not in published and secret not in caplog.text


def test_optional_sign_in_lets_a_session_start_and_a_tap_signs_out(kiosk_ui, demo, operators):
    ui, events = start(kiosk_ui, demo, "optional")
    assert ui.app.manager.current == "patient" and banner(ui).operator.text == T["sign_in"]
    ui.tap(start_session_by_barcode(ui, "A1004").ids.yes)
    ui.wait(lambda: ui.app.manager.current == "acquire", what="the acquire screen")
    assert ui.app.session is not None and ui.app.operator is None
    assert ui.app.services.build_options().operators_name == ""

    ui.tap(banner(ui).operator)  # "Sign in", in the middle of the session
    ui.wait(lambda: ui.app.manager.current == "signin", what="the sign-in screen")
    sign_in_by_name(ui, "DOE", "1357")
    ui.wait(lambda: ui.app.manager.current == "acquire", what="back where the user was")
    assert ui.app.session is not None and ui.app.operators_name == "DOE^John"
    ui.tap(banner(ui).operator)  # the name: a tap signs out
    assert ui.app.operator is None and ui.app.session is not None
    assert events == [OperatorEvent(SIGNED_IN, "DOE^John", "name"), OperatorEvent(SIGNED_OUT, "DOE^John", "tap")]


def test_idle_timeout_signs_out_with_or_without_a_session(kiosk_ui, demo, operators):
    ui, events = start(kiosk_ui, demo, "optional")
    ui.tap(banner(ui).operator)
    sign_in_by_name(ui)
    ui.wait(lambda: ui.app.operator is not None, what="the sign-in")
    ui.app.ui = replace(ui.app.ui, idle_timeout=1)
    ui.wait(lambda: ui.app.operator is None, timeout=10, what="the idle sign-out")
    assert events[-1] == OperatorEvent(SIGNED_OUT, "SMITH^Anna", "idle")

    ui.app.ui = replace(ui.app.ui, idle_timeout=0)
    ui.tap(banner(ui).operator)
    sign_in_by_name(ui)
    ui.wait(lambda: ui.app.operator is not None, what="the second sign-in")
    ui.tap(start_session_by_barcode(ui, "A1004").ids.yes)
    ui.wait(lambda: ui.app.session is not None, what="the session")
    ui.app.ui = replace(ui.app.ui, idle_timeout=1)
    ui.wait(lambda: ui.app.session is None, timeout=10, what="the idle timeout")
    assert ui.app.operator is None and events[-1] == OperatorEvent(SIGNED_OUT, "SMITH^Anna", "idle")
    ui.tap(ui.wait(lambda: ui.modal(), what="the idle notice").ids.close)  # and the switch to Patient is done


def test_sign_in_off_shows_no_operator_control(kiosk_ui, demo, operators):
    ui, events = start(kiosk_ui, demo, "off")
    assert ui.app.manager.current == "patient"
    assert banner(ui).operator.disabled and banner(ui).operator.width == 0
    ui.tap(start_session_by_barcode(ui, "A1004").ids.yes)
    ui.wait(lambda: ui.app.session is not None, what="the session")
    assert events == []


def test_sign_in_sign_out_and_a_wrong_pin_are_in_the_audit_trail(kiosk_ui, demo, operators):
    import time as _time

    from kiosk.audit import trail

    since = _time.time()
    ui, _events = start(kiosk_ui, demo, "optional")
    ui.tap(banner(ui).operator)
    screen = names_listed(ui)
    tap_text(ui, screen.ids.names, "DOE")
    type_pin(ui, screen, "9999")
    ui.wait(lambda: screen.error == T["signin_pin_wrong"].format(left=4), what="the wrong PIN message")
    type_pin(ui, screen, "1357")
    ui.wait(lambda: ui.app.operator is not None, what="the sign-in")
    ui.tap(banner(ui).operator)  # sign out
    entries = [e for e in trail.queue().entries(since) if e.event == "User Authentication"]
    assert [(e.event_type, e.outcome) for e in entries] == [("Login", 4), ("Login", 0), ("Logout", 0)]
    assert all(b"DOE^John" in e.frame for e in entries) and b"wrong pin" in entries[0].frame
    assert not any(b"9999" in e.frame or b"1357" in e.frame for e in entries)
