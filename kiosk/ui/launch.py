"""Starting the UI: Kivy settings that must exist before the window, then the app.

Kivy reads its environment at import and creates the window when
``kivy.core.window`` is first imported, so kiosk mode, the keyboard mode and
the environment are set here first, and ``kiosk.ui.app`` is imported last.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from kiosk.config import Config, UIConfig
from kiosk.errors import KioskError


def prepare_environment() -> None:
    """Before any Kivy import: no argv parsing, Python logging, no ~/.kivy log files; a UI thread
    that gets the interpreter lock back quickly."""
    import platformdirs

    # Kivy's clock reads the time through ctypes, which drops the interpreter lock: each of the
    # several reads per frame waited up to the default 5 ms switch interval while a worker thread
    # built or sent objects in Python (frames of 120-190 ms). 1 ms bounds that wait.
    sys.setswitchinterval(0.001)

    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
    os.environ.setdefault("KIVY_HOME", os.path.join(platformdirs.user_data_dir("kiosk", appauthor=False), "kivy"))
    os.makedirs(os.environ["KIVY_HOME"], exist_ok=True)


def configure_window(ui: UIConfig) -> None:
    """Window options that must be set before the window exists (kiosk mode, keyboard)."""
    from kivy.config import Config as KivyConfig

    KivyConfig.set("kivy", "exit_on_escape", "0")
    KivyConfig.set("kivy", "keyboard_mode", "systemanddock" if ui.keyboard == "dock" else "system")
    KivyConfig.set("input", "mouse", "mouse,disable_multitouch")
    # Kivy asks for 2x multisampling by default: with software GL (Mesa llvmpipe, no GPU) that triples
    # the cost of every frame (a 1280x800 redraw took ~40 ms instead of ~14 ms); flat UI needs none.
    KivyConfig.set("graphics", "multisamples", "0")
    if ui.kiosk_mode:
        # Without a window manager, fullscreen=auto draws at the wrong size: size it by hand.
        width, height = _screen_size()
        for key, value in (("borderless", "1"), ("fullscreen", "0"), ("position", "custom"), ("left", "0"),
                           ("top", "0"), ("width", str(width)), ("height", str(height)), ("resizable", "0")):
            KivyConfig.set("graphics", key, value)
    else:
        KivyConfig.set("graphics", "width", "1280")
        KivyConfig.set("graphics", "height", "800")


def _screen_size() -> tuple[int, int]:
    import ctypes
    import ctypes.util

    try:
        sdl = ctypes.CDLL(ctypes.util.find_library("SDL2") or "libSDL2-2.0.so.0")
    except OSError:
        return 1920, 1080

    class Mode(ctypes.Structure):
        _fields_ = [("format", ctypes.c_uint32), ("w", ctypes.c_int), ("h", ctypes.c_int),
                    ("refresh_rate", ctypes.c_int), ("driverdata", ctypes.c_void_p)]

    mode = Mode()
    if sdl.SDL_InitSubSystem(0x20) == 0 and sdl.SDL_GetDesktopDisplayMode(0, ctypes.byref(mode)) == 0:
        return mode.w, mode.h
    return 1920, 1080


def run_ui(config: Config, demo: Any = None) -> int:
    """Start the touch UI (blocks until the window closes)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        # Without a display SDL would draw off screen: a kiosk nobody can see.
        raise KioskError("there is no screen to show the touch UI on (DISPLAY is not set)",
                         "start it inside the touch screen's X session, or use the command-line tools "
                         "(kiosk --help; kiosk demo --headless for the demo peers)")
    prepare_environment()
    from kiosk.net import fastpath; fastpath.apply(config)  # noqa: E702 - [network] fast_path, for this process
    configure_window(config.ui)
    from kiosk.ui.app import KioskApp

    from kiosk.audit import events, trail

    trail.start_sender()  # the UI is a long-running process: its audit trail goes out while it runs
    trail.record(events.application_activity(trail.application(), True, "touch UI", trail.operator()))
    try:
        KioskApp(config, demo=demo).run()
    finally:
        trail.record(events.application_activity(trail.application(), False, "touch UI", trail.operator()))
        trail.stop_sender()
    return 0
