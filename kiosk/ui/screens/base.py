"""What every screen shares: access to the app and the session hooks."""

from __future__ import annotations

from typing import Any

from kivy.app import App
from kivy.uix.screenmanager import Screen

from kiosk.session import Session


class KioskScreen(Screen):
    """A screen of the kiosk. Subclasses clear patient data in ``on_session(None)``."""

    @property
    def app(self) -> Any:
        return App.get_running_app()

    def on_session(self, session: Session | None) -> None:
        """The session started, resumed or ended (None): drop anything of the previous patient."""

    def on_app_stop(self) -> None:
        """The app is stopping: release devices, stop timers."""
