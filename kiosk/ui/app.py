"""The touch kiosk: a Kivy App with one ScreenManager and a patient banner.

The app owns the current ``Session`` and the idle timer; screens ask it to run
slow work (``run_async``) and get results back on the UI thread through
``Clock.schedule_once``. Results of work started for a session that has since
ended are dropped, so no data of a previous patient reaches the screen.
Layouts live in the .kv files next to each screen; all sentences in
``strings.py``.

With ``[ui] sign_in`` "optional" or "required" the app also holds the
signed-in operator (``operator``, a ``kiosk.operators.Operator`` or None) and
publishes every sign-in, sign-out and refused PIN on ``operator_events``
(``kiosk.operators.OperatorEvents``): the audit trail subscribes there.
"required": the Patient screen, and so every session, waits for a sign-in.
Finish, the idle timeout and a tap on the operator in the banner sign out.

Work that still adds to a session after the screen moved on (a clip being
finished) holds its station (``hold``): ending the session then ends the
station once that work is done, so the clip stays with its own patient.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from kivy.app import App
from kivy.clock import Clock
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.lang.parser import global_idmap
from kivy.properties import AliasProperty, BooleanProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.screenmanager import NoTransition

from kiosk.audit import trail
from kiosk.capture import Capture
from kiosk.config import Config
from kiosk.errors import KioskError
from kiosk.operators import FAILED, SIGNED_IN, SIGNED_OUT, Operator, OperatorEvent, OperatorEvents
from kiosk.session import Session, SessionStore, sessions_dir
from kiosk.station import Station
from kiosk.ui import text
from kiosk.ui.background import background_priority
from kiosk.ui.inbox_state import InboxState
from kiosk.ui.strings import T

log = logging.getLogger(__name__)
ADMINISTRATOR = "administrator"  # the user of the admin PIN, in the audit trail

HERE = Path(__file__).parent
BG = (0.07, 0.08, 0.10, 1)  # theme.kv's BG
SCREENS = ("patient", "acquire", "media", "review", "send", "outbox", "settings", "signin", "inbox")


def process_age() -> float | None:
    """Seconds since this process started (Linux), or None."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - started


class KioskApp(App):
    """The capture station UI. ``kiosk_config`` is the loaded TOML configuration."""

    session: Session | None = ObjectProperty(None, allownone=True)  # the station's persisted session
    station: Station | None = ObjectProperty(None, allownone=True)  # kiosk.station: the session's lifecycle
    session_revision = NumericProperty(0)  # counts the session's saved changes (bumped on the UI thread)
    has_session = BooleanProperty(False)
    message = StringProperty("")
    operator: Operator | None = ObjectProperty(None, allownone=True)  # who is signed in
    sign_in_mode = StringProperty("off")  # [ui] sign_in, as a property the banner follows
    keeping = BooleanProperty(False)  # something is still being added to the current station (a clip): Send waits

    def __init__(self, kiosk_config: Config, store: SessionStore | None = None,
                 demo: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.title = T["title"]
        self.kiosk_config = kiosk_config
        self.ui = kiosk_config.ui
        self.store = store or SessionStore(sessions_dir(self.ui.sessions_dir))
        self.demo = demo
        self.last_activity = time.monotonic()
        self._generation = 0
        self._stopped = False
        self._events: list[Any] = []
        self.services: Any = None
        self.sign_in_mode = self.ui.sign_in
        self.operator_events = OperatorEvents()
        self.operator_events.subscribe(trail.operator_event)  # User Authentication in the audit trail
        self._after_sign_in = "patient"  # where the sign-in screen leads
        self._holds: dict[int, list[Any]] = {}  # id(station) -> [station, holds, end it at the last release]
        self._holds_lock = threading.Lock()

    # -- strings -----------------------------------------------------------
    @staticmethod
    def t(key: str, **values: Any) -> str:
        return T[key].format(**values) if values else T[key]

    markup = staticmethod(text.markup)

    # -- build -------------------------------------------------------------
    def build(self):
        from kiosk.ui.services import Services
        from kiosk.ui.widgets import check, clip, pull  # noqa: F401 - widgets the .kv rules use

        self.services = Services(self.kiosk_config, demo=self.demo)
        self.run_async(self.services.start_listener, lambda _r: None, session_bound=False)
        self.inbox = InboxState(self)  # before the screens: their rules bind to it
        for kv in [HERE / "theme.kv", *sorted((HERE / "widgets").glob("*.kv"))]:
            Builder.unload_file(str(kv))
            Builder.load_file(str(kv))
        import importlib

        manager = clip.ClipScreenManager(transition=NoTransition())
        for name in SCREENS:
            module = importlib.import_module(f"kiosk.ui.screens.{name}")
            Builder.unload_file(str(HERE / "screens" / f"{name}.kv"))
            Builder.load_file(str(HERE / "screens" / f"{name}.kv"))
            manager.add_widget(module.SCREEN(name=name))
        self.manager = manager
        self.go("patient")  # the sign-in screen instead while a sign-in is required
        self.inbox.start()
        root = Builder.load_string("RootLayout:")
        root.ids.holder.add_widget(manager)
        Window.clearcolor = BG  # the background, drawn by the frame's clear instead of a rectangle
        Window.bind(on_touch_down=self._touched, on_key_down=self._key, on_textinput=self._text)
        self._events.append(Clock.schedule_interval(self._check_idle, 1.0))
        # The callback runs after the first frame is drawn: the start-up time support asks for.
        self._events.append(Clock.schedule_once(self._first_frame, 0))
        return root

    def _first_frame(self, _dt: float) -> None:
        age = process_age()
        if age is not None:
            log.info("first frame drawn %.2f s after the process started", age)
        # What exists now (Kivy, the screens, the libraries) lives as long as the app: kept out of
        # the collector's full passes, which otherwise walk all of it and stall a frame by ~100 ms.
        gc.collect()
        gc.freeze()

    def on_stop(self) -> None:
        # Tests create many apps in one process: leave no timers or bindings behind.
        self._stopped = True  # results of work still running are dropped
        for event in self._events:
            event.cancel()
        self._events.clear()
        Window.unbind(on_touch_down=self._touched, on_key_down=self._key, on_textinput=self._text)
        for screen in self.manager.screens if hasattr(self, "manager") else ():
            screen.on_app_stop()
        # Abandoned before the services close: its MPPS message is queued in the open outbox.
        if self.station is not None and self.station.captures:
            self.station.abandon()
        if self.services:
            self.services.close()
        # A .kv rule that read ``app`` while the screens stopped (a button following the preview's
        # end) made Kivy's ``app`` proxy take this app again after it forgot it on_stop: forget it
        # now, or the next app's rules would read this one's settings.
        object.__setattr__(global_idmap["app"], "_obj", None)

    def schedule(self, callback: Callable[[float], None], interval: float) -> Any:
        """A repeating timer cancelled when the app stops."""
        event = Clock.schedule_interval(callback, interval)
        self._events.append(event)
        return event

    def apply_config(self, config: Config) -> None:
        """Settings were saved: use the new values (network changes reach new connections)."""
        from kiosk.ui.services import Services

        self.kiosk_config = config
        self.ui = config.ui
        self.sign_in_mode = config.ui.sign_in
        if self.sign_in_mode == "off" and self.operator is not None:
            self.sign_out("settings")
        old, self.services = self.services, Services(config, demo=self.demo)
        old.close()  # frees the port before the new listener takes it
        self.run_async(self.services.start_listener, lambda _r: None, session_bound=False)

    # -- navigation ----------------------------------------------------------
    def go(self, name: str) -> None:
        if name == "patient" and self.sign_in_required():
            self._after_sign_in, name = "patient", "signin"
        self.manager.current = name

    # -- operator sign-in --------------------------------------------------------
    def sign_in_required(self) -> bool:
        """True while nobody is signed in and ``[ui] sign_in`` is "required"."""
        return self.sign_in_mode == "required" and self.operator is None

    def open_sign_in(self) -> None:
        """The banner's operator control: sign in, or sign out the operator shown."""
        if self.operator is None:
            self._after_sign_in = self.manager.current if self.manager.current != "signin" else "patient"
            self.manager.current = "signin"
        elif self.sign_in_mode == "required" and self.session is not None:
            # Objects must not be built without an operator: signing out ends the session, as Finish does.
            from kiosk.ui.widgets.finish import confirm_finish

            confirm_finish(self)
        else:
            self.sign_out("tap")

    def sign_in_as(self, operator: Operator, via: str) -> None:
        """``operator`` typed their PIN (after a badge scan when ``via`` is "badge", else "name")."""
        self.operator = operator
        log.info("operator signed in by %s", via)
        self.operator_events.publish(OperatorEvent(SIGNED_IN, operator.name, via))
        self.leave_sign_in()

    def leave_sign_in(self) -> None:
        """Back from the sign-in screen to where the user was (the Patient screen at first)."""
        self.go(self._after_sign_in if self._after_sign_in != "signin" else "patient")

    def sign_out(self, why: str) -> None:
        """Sign the operator out (``why``: "finish", "idle", "tap" or "settings", sign-in turned off);
        nothing happens if nobody is signed in."""
        operator, self.operator = self.operator, None
        if operator is None:
            return
        log.info("operator signed out (%s)", why)
        self.operator_events.publish(OperatorEvent(SIGNED_OUT, operator.name, why))
        if self.sign_in_mode == "required" and self.manager.current == "patient":
            self.go("patient")

    def sign_in_failed(self, name: str, what: str) -> None:
        """A refused sign-in (``what``: "wrong pin", "locked out" or "unknown badge"; ``name`` "" if unknown)."""
        log.info("sign-in refused: %s", what)
        self.operator_events.publish(OperatorEvent(FAILED, name, what))

    @property
    def operators_name(self) -> str:
        """The signed-in operator's name (Family^Given) for Operators' Name, or ""."""
        return self.operator.name if self.operator is not None else ""

    def _key(self, _window: Any, key: int, *_args: Any) -> bool:
        """Keyboard / foot pedal: the current screen may take a key (e.g. Capture)."""
        self._touched()
        if self._modal_open():
            return False
        screen = self.manager.current_screen
        return bool(getattr(screen, "on_key", lambda _k: False)(key))

    def _text(self, _window: Any, text: str) -> bool:
        """Typed text with no field focused (a barcode wedge): the current screen may take it."""
        self._touched()
        if self._modal_open():
            return False
        screen = self.manager.current_screen
        return bool(getattr(screen, "on_typed", lambda _t: False)(text))

    @staticmethod
    def _modal_open() -> bool:
        from kivy.uix.modalview import ModalView

        return any(isinstance(child, ModalView) for child in Window.children)

    # -- background work -----------------------------------------------------
    def run_async(self, work: Callable[[], Any], done: Callable[[Any], None] | None = None,
                  failed: Callable[[KioskError], None] | None = None, session_bound: bool = True) -> None:
        """Run ``work`` on a thread; deliver its result (or error) on the UI thread.

        With ``session_bound`` the result is dropped if the session changed meanwhile.
        """
        generation = self._generation

        def deliver(callback: Callable[[Any], None] | None, value: Any) -> None:
            def on_ui(_dt: float) -> None:
                if self._stopped or (session_bound and generation != self._generation):
                    return
                if callback:
                    callback(value)
                elif isinstance(value, KioskError):
                    self.show_error(value)
            Clock.schedule_once(on_ui)

        def thread() -> None:
            background_priority()
            try:
                result = work()
            except KioskError as error:
                deliver(failed, error)
            except Exception as error:  # noqa: BLE001 - shown as a sentence, logged with traceback
                log.exception("background task failed")
                deliver(failed, KioskError(T["internal_error"].format(error=f"{type(error).__name__}: {error}")))
            else:
                deliver(done, result)

        threading.Thread(target=thread, daemon=True, name="kiosk-ui-work").start()

    def show_error(self, error: KioskError | str) -> None:
        from kiosk.ui.widgets.dialogs import MessageCard

        if isinstance(error, KioskError):
            body = error.message + (f"\n\n{error.hint}" if error.hint else "")
        else:
            body = error
        MessageCard(title=T["error_title"], body=body).open()

    def show_message(self, body: str) -> None:
        from kiosk.ui.widgets.dialogs import MessageCard

        MessageCard(title="", body=body).open()

    # -- the session -------------------------------------------------------
    # Screens show these, read from the session each time it changes: never a copy taken earlier.
    def _image_count(self) -> int:
        return len(self.session) if self.session is not None else 0

    image_count = AliasProperty(_image_count, None, bind=("session", "session_revision"))

    def _banner_markup(self) -> str:
        if self.session is None:
            return ""
        c = self.session.context
        return text.markup(T["banner"].format(
            name=text.person_name(c.patient_name), patient_id=c.patient_id,
            birth_date=text.date(c.birth_date) or "?"))

    banner_markup = AliasProperty(_banner_markup, None, bind=("session", "session_revision"))

    def session_saved(self, session: Session) -> None:
        """The session changed (its ``on_change``; any thread): refresh what screens show from it."""
        def on_ui(_dt: float) -> None:
            if session is self.session and not self._stopped:
                self.session_revision += 1
        Clock.schedule_once(on_ui)

    def start_session(self, context: Any, captures: Sequence[Capture] = ()) -> None:
        """Begin capturing for a confirmed patient (a ``StudyContext``); not while a sign-in is required.
        With ``captures`` (an Inbox document's) the session starts holding them, on Review."""
        if self.sign_in_required():
            self.go("patient")
            return
        if self.session is not None:
            self._end_station()
        self.station = Station.start(self.store, context, barcodes=self.kiosk_config.barcodes)
        self.services.track(self.station)
        self.session = self.station.session
        if captures:
            self.station.add_pages(captures)
        self._session_changed()
        self.go("review" if captures else "acquire")

    def resume_session(self, folder: Path) -> None:
        if self.sign_in_required():
            self.go("patient")
            return
        if self.session is not None:
            self._end_station()
        self.station = Station.resume(self.store.load(folder), barcodes=self.kiosk_config.barcodes)
        self.services.track(self.station)
        self.session = self.station.session
        self._session_changed()
        self.go("review")

    def end_session(self, reason: str = "", why: str = "finish") -> None:
        """Finish/idle (``why``): keep unsent captures in the store, clear every screen, sign the
        operator out, back to Patient."""
        self._end_station()
        self.sign_out(why)
        self.go("patient")
        if reason:
            self.show_message(reason)

    def _end_station(self) -> None:
        station, self.station, self.session = self.station, None, None
        if station is not None:
            with self._holds_lock:
                held = self._holds.get(id(station))
                if held is not None:
                    held[2] = True  # ended by the last release
            if held is None:
                station.end()
        self._session_changed()

    def hold(self, station: Station) -> Callable[[], None]:
        """Keep ``station`` from ending until the returned ``release()`` (callable once, from any
        thread): work that adds to it, such as a clip being finished. A session ended meanwhile
        leaves the screens at once; its station ends at the last release."""
        with self._holds_lock:
            held = self._holds.setdefault(id(station), [station, 0, False])
            held[1] += 1
        self._follow_holds()
        released = threading.Event()

        def release() -> None:
            if released.is_set():
                return
            released.set()
            with self._holds_lock:
                held[1] -= 1
                end = held[1] == 0 and held[2]
                if held[1] == 0:
                    del self._holds[id(station)]
            if end:
                try:
                    station.end()
                except KioskError as error:  # the captures stay in the session folder
                    log.warning("a held session could not be ended: %s", error.message)
            Clock.schedule_once(lambda _dt: self._follow_holds())

        return release

    def _follow_holds(self) -> None:
        with self._holds_lock:
            keeping = self.station is not None and id(self.station) in self._holds
        self.keeping = keeping

    def _session_changed(self) -> None:
        self._generation += 1
        self.has_session = self.session is not None
        self._follow_holds()
        if self.session is not None:
            self.session.on_change = self.session_saved
        for screen in self.manager.screens:
            screen.on_session(self.session)

    # -- idle timeout ----------------------------------------------------------
    def _touched(self, *_args: Any) -> None:
        self.last_activity = time.monotonic()

    def _check_idle(self, _dt: float) -> None:
        timeout = self.ui.idle_timeout
        if not timeout or (self.session is None and self.operator is None):
            return
        if any(getattr(screen, "busy", False) for screen in self.manager.screens):
            # A scan, recording or save in progress is not idleness: the countdown starts when it ends.
            self.last_activity = time.monotonic()
            return
        if time.monotonic() - self.last_activity >= timeout:
            if self.session is None:  # signed in, no patient yet
                log.info("idle timeout after %s s", timeout)
                self.sign_out("idle")
                return
            log.info("idle timeout after %s s: %s", timeout, self.session.label())
            self.end_session(T["idle_ended"].format(duration=f"{round(timeout / 60)} min" if timeout >= 60
                                                    else f"{timeout} s"), why="idle")

    # -- admin PIN -----------------------------------------------------------
    def require_pin(self, then: Callable[[], None]) -> None:
        """Run ``then`` after the admin PIN was typed; refuse when no PIN is configured."""
        from kiosk.ui.widgets.dialogs import PinPad

        pin = self.ui.admin_pin
        if not pin:
            self.show_message(T["pin_locked"])
            return
        # A wrong admin PIN is a refused User Authentication in the audit trail (never the digits typed).
        PinPad(expected=pin, then=then,
               wrong=lambda: trail.authenticated(ADMINISTRATOR, succeeded=False, reason="wrong admin PIN")).open()
