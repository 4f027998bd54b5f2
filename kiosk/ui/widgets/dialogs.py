"""Modal cards: a message, a yes/no confirmation, the admin PIN pad."""

from __future__ import annotations

from typing import Callable

from kivy.properties import ListProperty, ObjectProperty, StringProperty
from kivy.uix.modalview import ModalView

from kiosk.ui.strings import T


class MessageCard(ModalView):
    """A sentence (and its hint) with one Close button."""

    title = StringProperty("")
    body = StringProperty("")


class ConfirmCard(ModalView):
    """A question with labelled rows and two big answers."""

    title = StringProperty("")
    rows = ListProperty([])  # [(label, markup value), ...]
    yes_text = StringProperty(T["ok"])
    no_text = StringProperty(T["cancel"])
    action = ObjectProperty(None)
    no_action = ObjectProperty(None)  # for questions whose "no" is a choice too, not a way back

    def on_pre_open(self) -> None:
        from kivy.factory import Factory
        from kivy.metrics import dp, sp

        grid = self.ids.rows
        grid.clear_widgets()
        for label, value in self.rows:
            grid.add_widget(Factory.Muted(text=label, size_hint_x=0.3, height=dp(44)))
            grid.add_widget(Factory.Body(text=value, bold=True, font_size=sp(24), height=dp(44)))

    def answer(self, yes: bool) -> None:
        self.dismiss()
        if yes and self.action:
            self.action()
        elif not yes and self.no_action:
            self.no_action()


class PinPad(ModalView):
    """Digits 0-9; calls ``then`` once the expected PIN is typed, ``wrong`` at each wrong one."""

    expected = StringProperty("")
    typed = StringProperty("")
    error = StringProperty("")
    then: Callable[[], None] | None = ObjectProperty(None)
    wrong: Callable[[], None] | None = ObjectProperty(None)

    def press(self, key: str) -> None:
        self.error = ""
        if key == "<":
            self.typed = self.typed[:-1]
        elif key == "ok":
            if self.typed == self.expected:
                self.dismiss()
                if self.then:
                    self.then()
            else:
                self.typed, self.error = "", T["pin_wrong"]
                if self.wrong:
                    self.wrong()
        elif len(self.typed) < 12:
            self.typed += key
