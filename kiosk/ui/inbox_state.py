"""The touch UI's view of the inbox (``kiosk.inbox.store``): held documents, the badge's count, the
document being assigned to a patient.

The store is read on a worker thread every ``INTERVAL`` seconds (the folder may be on a slow
disk); ``items`` and ``count`` change on the UI thread. Assigning: the operator picks a
document, then the patient as for any session; the document's pages
(``kiosk.inbox.store.documents_of``: one Encapsulated PDF, or pages with ``[inbox] as_pages``)
become the new session's captures, reviewed and sent as any. The held copy goes
(``Inbox.release``) once every object of the session is in the outbox (the station's
``delivering``); a session ended unsent leaves the document held.
"""

from __future__ import annotations

import logging
from typing import Any

from kivy.clock import Clock
from kivy.event import EventDispatcher
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, ObjectProperty

from kiosk.errors import KioskError
from kiosk.ui.strings import T

log = logging.getLogger(__name__)

INTERVAL = 3.0  # seconds between two looks at the store: a print job shows up about that long after it lands


class InboxState(EventDispatcher):
    """What the Inbox button, the Inbox screen and the patient screen's banner show."""

    items = ListProperty([])  # InboxItem, oldest first
    count = NumericProperty(0)
    pending = ObjectProperty(None, allownone=True)  # the InboxItem waiting for its patient
    adding = BooleanProperty(False)  # a document's pages are being put into the new session

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self._looking = False
        self._reported = False
        self._inbox: Any = None

    def _store(self) -> Any:
        """The store, opened once (off the UI thread: its folder is made and swept on opening)."""
        if self._inbox is None:
            from kiosk.inbox.store import Inbox

            self._inbox = Inbox(self.app.kiosk_config)
        return self._inbox

    # -- watching the store ---------------------------------------------------------------
    def start(self) -> None:
        self.app.schedule(self.look, INTERVAL)
        self.look()

    def look(self, _dt: float = 0) -> None:
        """Read the held documents off the UI thread (one look at a time)."""
        if self._looking:
            return
        self._looking = True
        self.app.run_async(lambda: self._store().held(), self._looked, self._look_failed, session_bound=False)

    def _looked(self, items: list[Any]) -> None:
        self._looking = False
        if items != self.items:
            self.items = items
            self.count = len(items)
        if self.pending is not None and all(i.id != self.pending.id for i in items):
            self.pending = None  # filed or deleted meanwhile (a rule, another station)

    def _look_failed(self, error: KioskError) -> None:
        self._looking = False
        if not self._reported:  # said once in the log; the badge stays as it was
            self._reported = True
            log.warning("the inbox cannot be read: %s", error.message)

    # -- assigning a patient -----------------------------------------------------------------
    def assign(self, item: Any) -> None:
        """Pick the patient for ``item``: back to the patient screen, with the banner naming it."""
        self.pending = item
        self.app.go("patient")

    def cancel(self) -> None:
        self.pending = None

    def start_session(self, context: Any) -> None:
        """The patient for the pending document is confirmed: its pages are read off the UI thread, then
        a session starts holding them, on Review."""
        item = self.pending
        if item is None:
            return

        def work() -> list[Any]:
            from kiosk.inbox.store import documents_of

            return documents_of(item, as_pages=self.app.kiosk_config.inbox.as_pages)

        def read(captures: list[Any]) -> None:
            self.adding, self.pending = False, None
            self.app.start_session(context, captures)
            station = self.app.station
            if station is None:  # a sign-in is required first: the document stays held
                return
            log.info("inbox document %s: %d capture(s) in the session", item.id, len(captures))
            station.subscribe(lambda _event: self._release(item), "delivering")

        def failed(error: KioskError) -> None:
            self.adding = False
            self.app.show_error(error)  # the document stays held

        self.adding = True
        self.app.run_async(work, read, failed, session_bound=False)

    def _release(self, item: Any) -> None:
        """Every object is in the outbox (called on the station's thread): the held copy goes."""
        try:
            self._store().release(item.id)
        except KioskError as error:
            log.warning("inbox document %s was sent but stays held: %s", item.id, error.message)
            return
        log.info("inbox document %s released: its objects are in the outbox", item.id)
        Clock.schedule_once(self.look)

    def delete(self, item: Any) -> None:
        """Throw a held document away unsent (after the admin PIN): ``Inbox.discard`` moves a watched-folder
        or print-folder original to ``failed/`` with the reason."""
        def done(_result: Any) -> None:
            log.info("inbox document %s deleted by the operator", item.id)
            if self.pending is not None and self.pending.id == item.id:
                self.pending = None
            self.look()

        self.app.run_async(lambda: self._store().discard(item.id), done, session_bound=False)

    @staticmethod
    def describe(item: Any) -> str:
        """The list row's second line: who printed it (or the folder), when it came, why it waits."""
        from kiosk.ui import text

        origin = (T["inbox_from_print"].format(user=item.user or "?", host=item.host or "?") if item.source == "print"
                  else T["inbox_from_folder"])
        received = item.received.replace("T", " ")[:16] if item.received else "?"
        parts = [origin, T["inbox_received"].format(time=received)]
        if item.reason:
            parts.append(item.reason)
        return text.markup("   ·   ".join(parts))
