"""Work off the UI thread: worker threads run at a lower CPU priority than drawing.

Kept apart from ``app`` so the services and screens that start threads do not
import the app that imports them.
"""

from __future__ import annotations

import os
import threading


def background_priority() -> None:
    """Lower the calling thread's CPU priority (Linux: per-thread nice 10).

    Without a GPU the UI thread draws every frame with the CPU; scanning, encoding and sending
    then compete with it for the same cores. Niced workers still use every idle cycle but yield
    to drawing, so the screen stays responsive while they run.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not permitted: run at normal priority
        pass
