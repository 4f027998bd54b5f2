"""Send screen: destinations preselected (by the [routing] rules, with the reasons), progress per image and overall, an honest result.

Pressing Send builds the objects and queues them durably in the outbox (after
which the session's own copies are removed); the outbox's delivery loop sends
them. The screen follows the outbox jobs and says "N of N stored" only when
the archive accepted every object (and confirmed them, with storage
commitment). Failures say why; the images stay in the outbox.

While a writable USB stick is mounted under ``[media] mount_points`` a "Copy to
USB" row (unticked) offers it as one more destination: the outbox's ``folder:``
destination writes the session there as a DICOM File-set with a DICOMDIR.

With ``[media] burner`` set, "Burn CD" writes the session's objects (their outbox spool files,
once queued) to a disc. The burn is not cancelled by Finish or the next patient (a disc stopped
half-way is lost): it runs on, the idle timeout waits for it, and its outcome then comes as a message.

Pages whose barcode names another patient or order (``kiosk.barcodes``, flagged when they were
added) block Send: the screen says which, and "Send anyway" sends them after the administrator
PIN (the station records the override in the audit trail).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kivy.clock import Clock
from kivy.factory import Factory
from kivy.properties import BooleanProperty, NumericProperty, StringProperty

from kiosk.barcodes import BarcodeMismatch
from kiosk.errors import KioskError
from kiosk.routing import Routed, of_capture, route
from kiosk.session import Session
from kiosk.ui.media_watch import MediaWatch
from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.services import folder_destination
from kiosk.ui.strings import T

STORED = ("sent", "committed")


def describe(name: str, jobs: list[Any]) -> tuple[str, bool]:
    """(sentence, finished?) for one destination's jobs of this send."""
    total = len(jobs)
    committed = [j for j in jobs if j.state == "committed"]
    sent = [j for j in jobs if j.state == "sent"]
    failed = [j for j in jobs if j.state in ("failed", "retrying")]
    waiting = [j for j in jobs if j.state in ("queued", "sending")]
    commitment = any(j.commitment for j in jobs)
    stored = len(committed) + len(sent)
    if waiting:
        return T["sending"].format(done=stored + len(failed) + 1 if stored + len(failed) < total else total,
                                   total=total), False
    if failed:
        # A failed job waits for a person (e.g. refused by the destination's rules); a retrying one is retried.
        stuck = [j for j in failed if j.state == "failed"]
        reason = (stuck or failed)[0].reason or "no reason given"
        key = "_held" if stuck else ""
        if stored:
            return T["send_result_partial" + key].format(done=stored, total=total, destination=name,
                                                        reason=reason), True
        return T["send_result_failed" + key].format(destination=name, reason=reason), True
    if commitment:
        if len(committed) == total:
            return T["send_result_commit"].format(done=total, total=total, destination=name), True
        return T["send_result_ok"].format(done=stored, total=total, destination=name) + ". " + T["commit_waiting"], False
    return T["send_result_ok"].format(done=stored, total=total, destination=name), True


class SendScreen(KioskScreen):
    """Choose destinations and send; follow the outbox until every object is settled."""

    sending = BooleanProperty(False)
    finished = BooleanProperty(False)
    overall = NumericProperty(0)
    current = NumericProperty(0)
    result = StringProperty("")
    available = StringProperty("")
    burner = BooleanProperty(False)  # [media] burner set: the Burn CD button is shown
    queued = BooleanProperty(False)  # the session's objects are in the outbox: they can be burned
    busy = BooleanProperty(False)  # burning a disc: not idle (the app's idle check reads ``busy``)
    burn_status = StringProperty("")
    blocked = StringProperty("")  # why Send waits: pages with a barcode of another patient

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job: Any = None
        self._poll: Any = None
        self._unsubscribe: Any = None
        self.checks: dict[str, Any] = {}
        self.usb: dict[Path, Any] = {}  # writable media: their "Copy to USB" rows
        self.labels: dict[str, str] = {}  # outbox destination name -> as the result names it
        self._usb_watch: MediaWatch | None = None

    def on_enter(self) -> None:
        if self.job is not None:
            return
        if self._usb_watch is None:
            self._usb_watch = MediaWatch(self.app, self.app.services.writable_media, self._usb_changed)
        self._usb_watch.start()
        box = self.ids.destinations
        box.clear_widgets()
        self.checks: dict[str, Any] = {}
        config = self.app.kiosk_config
        routed = route(config, self._objects(config))
        for name, node in config.destinations.items():
            row = Factory.DestinationRow()
            address = node.stow_url or f"{node.ae_title}@{node.host}:{node.port}"
            row.text = T["destination_line"].format(name=name, address=address)
            row.chosen = name in routed
            reasons = routed.get(name, [])
            if config.routing.rules or config.routing.default:
                row.why = T["destination_chosen"].format(reasons="; ".join(reasons)) if reasons else \
                    "" if row.chosen else T["destination_not_chosen"]
            self.checks[name] = row
            box.add_widget(row)
        self.available = "" if self.checks or self.usb else T["send_no_destinations"]
        self.result = ""
        self.burner = self.app.services.burner_configured()
        self.blocked = self._blocked()

    def _blocked(self) -> str:
        """Why Send waits (the session's flagged pages), or ""."""
        station = self.app.station
        pages = station.flagged() if station is not None else []
        if not pages:
            return ""
        return T["barcode_blocked"].format(pages="; ".join(f"page {i + 1} carries {m.describe()}" for i, m in pages))

    def send_anyway(self) -> None:
        """Send with the flagged pages, once the administrator PIN is given."""
        if self.blocked and not self.sending:
            self.app.require_pin(lambda: self.send(allow_mismatch=True))

    def on_leave(self) -> None:
        if self._usb_watch is not None:
            self._usb_watch.stop()

    def _usb_changed(self, roots: list[Path]) -> None:
        """Media mounted or removed: a row per writable one, unticked (a ticked row keeps its tick)."""
        if self.sending or self.finished:
            return
        box = self.ids.usb
        for root in [r for r in self.usb if r not in roots]:
            box.remove_widget(self.usb.pop(root))
        for root in roots:
            if root not in self.usb:
                row = Factory.DestinationRow()
                row.text, row.why, row.chosen = T["copy_to_usb"].format(label=root.name), T["copy_to_usb_why"], False
                self.usb[root] = row
                box.add_widget(row)
        self.available = "" if self.checks or self.usb else T["send_no_destinations"]

    def _objects(self, config: Any) -> list[Routed]:
        """The session's objects as routing sees them, from its captures (before they are built)."""
        station = self.app.station
        session = station.session if station is not None else None
        if session is None:
            return []
        modality = getattr(station.study, "modality", "") or ""
        return [of_capture(item.capture, modality, multiframe=item.capture.is_clip or session.multiframe)
                for item in session.items]

    def on_session(self, session: Session | None) -> None:
        self._stop_following()
        self.ids.usb.clear_widgets()
        self.usb, self.labels = {}, {}
        self.job, self.sending, self.finished, self.queued = None, False, False, False
        self.blocked = ""
        self.overall = self.current = 0
        self.result = ""
        if not self.busy:  # a burn still running says so until it ends
            self.burn_status = ""

    def on_app_stop(self) -> None:
        self._stop_following()
        if self._usb_watch is not None:
            self._usb_watch.stop()

    def send(self, allow_mismatch: bool = False) -> None:
        station = self.app.station
        names = [name for name, row in self.checks.items() if row.active]
        folders = [root for root, row in self.usb.items() if row.active]
        if station is None or not (names or folders) or self.sending:
            return
        self.sending = True
        self.result = T["busy"]
        operator = self.app.operators_name  # who pressed Send, even if they sign out while it builds
        config = self.app.kiosk_config
        self.labels = {folder_destination(config, root)[0]: T["usb_destination"].format(label=root.name)
                       for root in folders}

        def work() -> Any:
            # The station then removes the session's own copies.
            job = self.app.services.send(station, names, operator, folders, allow_mismatch)
            self.app.session_saved(station.session)  # it holds no images now: every screen says so
            return job

        self.app.run_async(work, self._queued, self._failed)

    def _failed(self, error: KioskError) -> None:
        self.sending = False
        if isinstance(error, BarcodeMismatch):  # flagged since the screen was shown
            self.blocked, self.result = self._blocked(), ""
            return
        self.result = error.message + (f"\n{error.hint}" if error.hint else "")

    def _queued(self, job: Any) -> None:
        self.job, self.queued, self.blocked = job, True, ""
        self._unsubscribe = self.app.services.subscribe(self._on_event)
        self._poll = self.app.schedule(lambda _dt: self._refresh(), 0.3)
        self._refresh()

    def burn(self) -> None:
        """Burn the objects the station queued (each once, whatever its destinations) to a disc."""
        station = self.app.station
        if station is None or not self.queued or self.busy:
            return
        job_ids = [job_id for ids in station.jobs.values() for job_id in ids]
        session = station.session
        self.busy, self.burn_status = True, T["burn_start"]

        def progress(done: int, total: int) -> None:  # on the worker thread
            text = T["burning"] if done == total else T["burn_preparing"].format(done=done, total=total)
            Clock.schedule_once(lambda _dt: self._burn_progress(session, text))

        def burned(result: Any) -> None:
            text = T["burned"].format(count=len(result.written))
            if result.failed:
                text += "\n" + T["burn_left_out"].format(count=len(result.failed), reason=result.failed[0][1])
            self._burned(session, text)

        self.app.run_async(lambda: self.app.services.burn(job_ids, progress), burned,
                           lambda error: self._burned(session, error.message + (f"\n{error.hint}" if error.hint else "")),
                           session_bound=False)  # its outcome matters after Finish too

    def _burn_progress(self, session: Session, text: str) -> None:
        if self.busy and session is self.app.session:
            self.burn_status = text

    def _burned(self, session: Session, text: str) -> None:
        self.busy = False
        if session is self.app.session:
            self.burn_status = text
        else:  # the session ended while burning: the outcome (no patient data) over whatever is shown now
            self.burn_status = ""
            self.app.show_message(text)

    def _on_event(self, event: Any) -> None:
        # Called on the delivery thread: hand over to the UI thread.
        if getattr(event, "bytes_total", 0):
            fraction = event.bytes_done / event.bytes_total
            Clock.schedule_once(lambda _dt: setattr(self, "current", fraction))

    def _refresh(self) -> None:
        job = self.job
        if job is None:
            return
        self.app.run_async(lambda: self.app.services.job_states(job), self._show)

    def _show(self, states: dict[str, list[Any]]) -> None:
        if self.job is None:
            return
        lines, finished, settled, total = [], True, 0, 0
        for name, jobs in states.items():
            line, done = describe(self.labels.get(name, name), jobs)
            lines.append(line)
            finished = finished and done
            settled += sum(1 for j in jobs if j.state not in ("queued", "sending"))
            total += len(jobs)
        self.overall = settled / total if total else 1
        self.result = "\n".join(lines)
        if finished:
            self.finished, self.sending = True, False
            self.current = 1
            self._stop_following()

    def _stop_following(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


SCREEN = SendScreen
