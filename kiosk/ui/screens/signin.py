"""Sign-in screen: the operator scans their badge or taps their name, then types their personal PIN.

A badge scanner is a keyboard wedge: its characters arrive with no field
focused and end with Enter (``on_typed``/``on_key``, as on the Patient
screen); the code is never shown or logged. The PIN is checked off the UI
thread (scrypt takes tens of milliseconds); a refused PIN is said on the
screen and published for the audit trail (``app.sign_in_failed``).
"""

from __future__ import annotations

import logging
from typing import Any

from kivy.factory import Factory
from kivy.properties import BooleanProperty, ListProperty, StringProperty

from kiosk.errors import KioskError
from kiosk.operators import LockedOut, Operator, UnknownOperator, WrongPin
from kiosk.ui import text
from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.strings import T

log = logging.getLogger(__name__)

MAX_PIN = 12
MAX_BADGE = 256  # characters kept of what a wedge types before Enter
ENTER = (13, 271)


class SignInScreen(KioskScreen):
    """``operators`` from the register; ``chosen`` is the name whose PIN is being typed ("" for none)."""

    operators = ListProperty([])
    chosen = StringProperty("")
    via = StringProperty("name")  # how ``chosen`` was picked: "name" or "badge"
    entered = StringProperty("")  # the PIN digits so far (shown as dots)
    error = StringProperty("")
    checking = BooleanProperty(False)
    _badge = ""  # what the wedge has typed since the last Enter

    def on_enter(self) -> None:
        self.reset()
        self.app.run_async(self.app.services.operators.list, self._listed, self._failed, session_bound=False)

    def on_leave(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.chosen, self.entered, self.error, self._badge, self.checking = "", "", "", "", False

    def _listed(self, operators: list[Operator]) -> None:
        self.operators = operators
        if not operators:
            self.error = T["signin_nobody"]

    def _failed(self, error: KioskError) -> None:
        self.checking = False
        self.error = error.message + (f" {error.hint}" if error.hint else "")

    def on_operators(self, *_args: Any) -> None:
        box = self.ids.names
        box.clear_widgets()
        for operator in self.operators:
            row = Factory.OperatorRow(text=text.markup(text.person_name(operator.name)))
            row.bind(on_release=lambda _row, name=operator.name: self.choose(name, "name"))
            box.add_widget(row)

    def choose(self, name: str, via: str) -> None:
        self.chosen, self.via, self.entered, self.error = name, via, "", ""

    # -- the badge (keyboard wedge) ----------------------------------------------------
    def on_typed(self, typed: str) -> bool:
        self._badge = (self._badge + typed)[-MAX_BADGE:]
        return True

    def on_key(self, key: int) -> bool:
        if key not in ENTER:
            return False
        code, self._badge = self._badge.strip(), ""
        if code:
            self.app.run_async(lambda: self.app.services.operators.by_badge(code), self._badge_read, self._failed,
                               session_bound=False)
        return True

    def _badge_read(self, operator: Operator | None) -> None:
        if operator is None:
            self.chosen, self.entered, self.error = "", "", T["signin_badge_unknown"]
            self.app.sign_in_failed("", "unknown badge")
            return
        self.choose(operator.name, "badge")

    # -- the PIN ----------------------------------------------------------------------
    def press(self, key: str) -> None:
        if not self.chosen or self.checking:
            return
        self.error = ""
        if key == "<":
            self.entered = self.entered[:-1]
        elif key == "ok":
            self.check()
        elif len(self.entered) < MAX_PIN:
            self.entered += key

    def check(self) -> None:
        name, pin, via = self.chosen, self.entered, self.via
        if not pin:
            return
        self.checking, self.entered = True, ""
        register = self.app.services.operators
        self.app.run_async(lambda: register.verify(name, pin), lambda operator: self._verified(operator, via),
                           lambda error: self._refused(name, error), session_bound=False)

    def _verified(self, operator: Operator, via: str) -> None:
        self.checking = False
        self.app.sign_in_as(operator, via)

    def _refused(self, name: str, error: KioskError) -> None:
        self.checking = False
        shown = text.person_name(name)
        if isinstance(error, WrongPin):
            self.error = T["signin_pin_wrong"].format(left=error.left)
            self.app.sign_in_failed(name, "wrong pin")
        elif isinstance(error, LockedOut):
            self.error = T["signin_locked"].format(name=shown, minutes=max(1, round(error.seconds / 60)))
            self.app.sign_in_failed(name, "locked out")
        elif isinstance(error, UnknownOperator):  # removed meanwhile (kiosk operator remove)
            self.chosen, self.error = "", T["signin_removed"].format(name=shown)
            self.app.run_async(self.app.services.operators.list, self._listed, self._failed, session_bound=False)
        else:
            self._failed(error)


SCREEN = SignInScreen
