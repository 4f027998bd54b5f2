"""Finish (the banner's red button): with unsent images, ask first instead of ending at once."""

from __future__ import annotations

from typing import Any, Callable

from kivy.app import App
from kivy.properties import BooleanProperty, NumericProperty, ObjectProperty
from kivy.uix.modalview import ModalView

from kiosk.ui.strings import T


class FinishCard(ModalView):
    """Unsent images: Send now, Keep for later, Discard (behind the admin PIN; locked without one), Back."""

    count = NumericProperty(0)
    locked = BooleanProperty(False)  # no admin PIN is set: discarding cannot be allowed
    send_action: Callable[[], None] | None = ObjectProperty(None)
    keep_action: Callable[[], None] | None = ObjectProperty(None)
    discard_action: Callable[[], None] | None = ObjectProperty(None)

    def on_open(self) -> None:
        App.get_running_app().bind(session=self._session_ended)

    def on_dismiss(self) -> None:
        App.get_running_app().unbind(session=self._session_ended)

    def _session_ended(self, *_args: Any) -> None:
        self.dismiss()  # e.g. by the idle timeout: the question no longer applies

    def choose(self, action: Callable[[], None] | None) -> None:
        self.dismiss()
        if action:
            action()


def confirm_finish(app: Any) -> None:
    """End the session the app holds; unsent images are sent, kept or discarded as the user says."""
    session = app.session
    if session is None:
        return
    count = len(session)
    if not count:  # nothing unsent (or already in the outbox): nothing to lose
        app.end_session()
        return

    def keep() -> None:
        if app.session is session:
            app.end_session(T["finish_kept"].format(count=count))

    def discard() -> None:
        if app.session is session:  # the same session once the PIN was typed
            session.discard()
            app.end_session(T["finish_discarded"].format(count=count))

    FinishCard(count=count, locked=not app.ui.admin_pin, send_action=lambda: app.go("send"),
               keep_action=keep, discard_action=lambda: app.require_pin(discard)).open()
