"""Outbox events for the UI and the CLI: a thread-safe publish/subscribe bus.

Subscribers are called in the thread that publishes (a delivery worker); the
UI hands them on to its own thread (``Clock.schedule_once``). A subscriber
that raises is logged and does not disturb delivery.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Union

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobsAdded:
    """New jobs were queued (one per instance and destination)."""

    destination: str
    job_ids: tuple[int, ...]


@dataclass(frozen=True)
class Progress:
    """Progress of the association currently sending to ``destination``."""

    destination: str
    instances_done: int
    instances_total: int
    bytes_done: int
    bytes_total: int


@dataclass(frozen=True)
class StateChanged:
    """A job moved from ``old`` to ``new`` (``status``/``reason`` explain failures)."""

    job_id: int
    destination: str
    old: str
    new: str
    status: int | None = None
    reason: str = ""


@dataclass(frozen=True)
class DestinationStatus:
    """A destination answered (``reachable``) or could not be reached."""

    destination: str
    reachable: bool
    reason: str = ""


@dataclass(frozen=True)
class StepQueued:
    """A performed procedure step message (MPPS) was queued."""

    message_id: int
    step_uid: str


@dataclass(frozen=True)
class StepChanged:
    """A performed procedure step message was sent, will be retried, or failed (``reason`` says why)."""

    message_id: int
    step_uid: str
    action: str
    new: str
    status: int | None = None
    reason: str = ""


Event = Union[JobsAdded, Progress, StateChanged, DestinationStatus, StepQueued, StepChanged]
Subscriber = Callable[[Event], None]


class EventBus:
    """Subscribe with a callback; ``subscribe`` returns the function that unsubscribes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: Event) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - a broken subscriber must not stop delivery
                log.exception("outbox event subscriber failed on %s", type(event).__name__)
