"""Helpers for in-process Kivy tests: a private Xvfb, a fresh app per test, taps and waits.

One Kivy Window exists per process (created under the session's Xvfb); each
test builds a new ``KioskApp`` on it with ``_run_prepare()`` and
``runTouchApp(embedded=True)``, pumps frames with ``EventLoop.idle()`` and
stops it afterwards (the app cancels its own Clock events in ``on_stop``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from tests.support.paths import ROOT

SCREENSHOTS = ROOT / ".pytest_cache" / "screenshots"


def _free_display() -> int:
    for number in range(90, 190):
        if not Path(f"/tmp/.X{number}-lock").exists() and not Path(f"/tmp/.X11-unix/X{number}").exists():
            return number
    raise RuntimeError("no free X display number between :90 and :189")


@pytest.fixture(scope="session")
def xvfb():
    """A private Xvfb (1280x800) for the whole session; DISPLAY points at it."""
    binary = "/usr/bin/Xvfb"
    if not Path(binary).exists():
        message = "Xvfb is not installed (apt-get install xvfb)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    number = _free_display()
    proc = subprocess.Popen([binary, f":{number}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Xvfb :{number} did not start")
        time.sleep(0.05)
    os.environ["DISPLAY"] = f":{number}"
    os.environ.pop("SDL_VIDEODRIVER", None)
    yield f":{number}"
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


class UI:
    """A running KioskApp with helpers to drive it like a user."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def pump(self, frames: int = 3) -> None:
        from kivy.base import EventLoop

        for _ in range(frames):
            EventLoop.idle()

    def wait(self, condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
        """Pump frames until ``condition()`` is truthy; fail after ``timeout`` seconds."""
        from kivy.base import EventLoop

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            EventLoop.idle()
            result = condition()
            if result:
                return result
            time.sleep(0.01)
        pytest.fail(f"timed out after {timeout} s waiting for {what}")

    def screen(self, name: str = "") -> Any:
        manager = self.app.manager
        return manager.get_screen(name) if name else manager.current_screen

    def tap(self, widget: Any) -> None:
        """A real touch at the widget's centre (it must be on screen and enabled)."""
        from kivy.tests import UnitTestTouch

        from kivy.uix.scrollview import ScrollView

        assert not widget.disabled, f"{widget} is disabled"
        parent, seen = widget.parent, set()
        while parent is not None and id(parent) not in seen and not isinstance(parent, ScrollView):
            seen.add(id(parent))  # the Window is its own parent
            parent = parent.parent
        if isinstance(parent, ScrollView):
            parent.scroll_to(widget, padding=0, animate=False)
            self.pump(2)
        self.settle(widget)
        self.uncovered(widget)
        x, y = widget.to_window(*widget.center)
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        self.pump(1)
        touch.touch_up()
        self.pump(2)

    def uncovered(self, widget: Any, timeout: float = 5.0) -> None:
        """Pump frames until no card other than the one holding ``widget`` is on the window: a card
        that was just answered stays there while it fades out and takes every touch (a user waits)."""
        from kivy.core.window import Window
        from kivy.uix.modalview import ModalView

        root = widget
        while root.parent is not None and root.parent is not root and root.parent is not Window:
            root = root.parent
        deadline = time.monotonic() + timeout
        while True:
            covering = [c for c in Window.children if isinstance(c, ModalView) and c is not root]
            if not covering or (isinstance(root, ModalView) and Window.children.index(root) < Window.children.index(covering[0])):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"{type(covering[0]).__name__} still covers {widget} after {timeout} s")
            self.pump(1)

    def settle(self, widget: Any, timeout: float = 5.0) -> None:
        """Pump frames until ``widget`` stops moving: a tap on a widget that is still being laid
        out (or sliding in with its screen) would land on whatever is there now."""
        where = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(1)
            now = (tuple(widget.to_window(*widget.pos)), tuple(widget.size))
            if now == where:
                return
            where = now

    def type(self, text: str, enter: bool = False) -> None:
        from kivy.core.window import Window

        for char in text:
            Window.dispatch("on_textinput", char)
        if enter:
            Window.dispatch("on_key_down", 13, 40, "\r", [])
        self.pump(2)

    def modal(self, cls: type | None = None) -> Any:
        """The open modal card (of ``cls``), if any."""
        from kivy.core.window import Window
        from kivy.uix.modalview import ModalView

        for child in Window.children:
            if isinstance(child, ModalView) and (cls is None or isinstance(child, cls)):
                return child
        return None

    def screenshot(self, name: str) -> Path:
        """Save the window as PNG (in .pytest_cache/screenshots) and check it is not blank."""
        from kivy.core.window import Window
        from PIL import Image

        self.pump(4)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        written = Path(Window.screenshot(name=str(SCREENSHOTS / f"{name}.png")))
        final = SCREENSHOTS / f"{name}.png"
        written.replace(final)
        pixels = np.asarray(Image.open(final).convert("L"))
        assert pixels.std() > 10, f"screenshot {name} looks blank"
        return final


@pytest.fixture(scope="session")
def private_sane(tmp_path_factory):
    """Device discovery in the UI must not use the system SANE config (it probes the network for
    seconds) and must leave SANE's test backend usable for later tests: SANE reads the config dir
    once per process, so set it before the first discovery, the same way ``sane_test_backend`` does."""
    if "SANE_CONFIG_DIR" not in os.environ:
        from tests.support.sources import write_sane_config

        os.environ["SANE_CONFIG_DIR"] = str(write_sane_config(tmp_path_factory.mktemp("sane")))
    return os.environ["SANE_CONFIG_DIR"]


@pytest.fixture
def kiosk_ui(xvfb, private_sane, tmp_path):
    """``start(config, demo=None)`` -> UI; the app is stopped after the test."""
    started: list[Any] = []

    def start(config: Any, demo: Any = None) -> UI:
        """A test that does not choose ``[media] mount_points`` gets an empty folder: the machine's own
        /media and /mnt never show up as a Disc or USB tile or a Copy to USB row."""
        from dataclasses import replace

        from kiosk.config import MediaConfig
        from kiosk.ui.launch import configure_window, prepare_environment

        if config.media.mount_points == MediaConfig().mount_points:
            (tmp_path / "no-media").mkdir(exist_ok=True)
            config = replace(config, media=replace(config.media, mount_points=[str(tmp_path / "no-media")]))

        prepare_environment()
        configure_window(config.ui)
        from kivy.base import runTouchApp
        from kivy.core.window import Window

        from kiosk.session import SessionStore
        from kiosk.ui.app import KioskApp

        Window.size = (1280, 800)
        app = KioskApp(config, store=SessionStore(tmp_path / "sessions"), demo=demo)
        app._run_prepare()
        runTouchApp(embedded=True)
        started.append(app)
        ui = UI(app)
        ui.pump(5)
        return ui

    yield start
    from kivy.base import EventLoop
    from kivy.core.window import Window

    for app in started:
        for modal in [c for c in Window.children if c is not app.root]:
            Window.remove_widget(modal)
        app.stop()
        EventLoop.idle()
