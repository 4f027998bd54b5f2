"""Media screen: a patient's CD or USB stick read, its studies chosen, checked against this patient, imported.

Stages (``stage``): "reading" (``kiosk.media.reader.read_medium`` on a worker
thread, cancellable), "studies" (a row per study with a thumbnail; ticking
chooses it), "importing" (``kiosk.media.importer.import_media``, progress "n of
N", cancellable) and "summary" (what was queued, skipped and why, what failed;
then the delivery as on the Send screen).

Patient safety: nothing is queued before the reconciliation card
(``ReconcileCard``) was confirmed; it shows the disc's and this patient's
values side by side, the differences highlighted, and an explicit warning
when the name or the birth date differ. Studies come ticked only when the
disc holds one patient whose name and birth date match; studies of one disc
patient are imported at a time. A medium removed before the import is done
ends the screen with a message; leaving, a new patient, Finish or the idle
timeout clear everything shown from the medium.
"""

from __future__ import annotations

import collections
import logging
import threading
from pathlib import Path
from typing import Any, Callable

from kivy.app import App
from kivy.clock import Clock
from kivy.factory import Factory
from kivy.properties import BooleanProperty, ListProperty, NumericProperty, ObjectProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.modalview import ModalView

from kiosk.errors import KioskError
from kiosk.routing import Routed, route
from kiosk.session import Session
from kiosk.ui import text
from kiosk.ui.media_watch import MediaWatch
from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.screens.send import describe
from kiosk.ui.services import SendJob
from kiosk.ui.strings import T
from kiosk.ui.widgets.thumbs import texture_from

log = logging.getLogger(__name__)

THUMB = 160  # pixels: a study row's picture
NO_PICTURE = {"SR", "KO", "PR", "DOC", "REG", "RTSTRUCT", "RTPLAN", "RTRECORD", "AU", "ECG", "PLAN"}
FAILED_SHOWN = 8  # failed files listed on the summary; the rest are counted


def _warns(row: Any) -> bool:
    """A differing name or birth date: another person, or a typing error somewhere."""
    label = row.label.lower()
    return row.differs and ("name" in label or "birth" in label)


def shown_value(row: Any, value: str) -> str:
    """A reconciliation value as people read it: names Family, Given; dates YYYY-MM-DD."""
    label = row.label.lower()
    if "name" in label:
        value = text.person_name(value)
    elif "date" in label:
        value = text.date(value)
    return text.markup(value) if value else "—"


def _cell(value: str, differs: bool = False, heading: bool = False) -> Any:
    cell = Factory.ReconcileCell()
    cell.text, cell.differs, cell.heading = value, differs, heading
    return cell


class MediaStudyRow(ButtonBehavior, BoxLayout):
    """One study on the medium: a tick, its picture (or what it holds), date, description, counts."""

    text = StringProperty("")
    picture_text = StringProperty("")  # shown where there is no picture
    chosen = BooleanProperty(False)
    study_uid = StringProperty("")
    patient = NumericProperty(0)  # the index of the disc's patient

    def on_release(self) -> None:
        self.chosen = not self.chosen


class ReconcileCard(ModalView):
    """Before anything is queued: the disc's and this patient's values, the count and the destinations."""

    rows = ListProperty([])  # kiosk.media.reconcile.Row
    count = StringProperty("")
    warning = StringProperty("")
    destinations = ListProperty([])  # (name, text, why, chosen)
    any_destination = BooleanProperty(False)
    action: Callable[[list[str]], None] | None = ObjectProperty(None)

    def on_pre_open(self) -> None:
        table = self.ids.table
        table.clear_widgets()
        for heading in ("", T["reconcile_disc"], T["reconcile_here"]):
            table.add_widget(_cell(heading, heading=True))
        for row in self.rows:
            mark = T["reconcile_differs"] if row.differs else ""
            table.add_widget(_cell(mark + text.markup(row.label), row.differs))
            table.add_widget(_cell(shown_value(row, row.medium), row.differs))
            table.add_widget(_cell(shown_value(row, row.local), row.differs))
        box = self.ids.targets
        box.clear_widgets()
        self.checks: dict[str, Any] = {}
        for name, line, why, chosen in self.destinations:
            row = Factory.DestinationRow()  # the Send screen's row (send.kv)
            row.text, row.why, row.chosen = line, why, chosen
            row.bind(active=self._destinations_changed)
            self.checks[name] = row
            box.add_widget(row)
        self._destinations_changed()

    def _destinations_changed(self, *_args: Any) -> None:
        self.any_destination = any(row.active for row in self.checks.values())

    def on_open(self) -> None:
        App.get_running_app().bind(session=self._session_ended)

    def on_dismiss(self) -> None:
        App.get_running_app().unbind(session=self._session_ended)

    def _session_ended(self, *_args: Any) -> None:
        self.dismiss()  # Finish or the idle timeout: nothing of this patient stays on screen

    def confirm(self) -> None:
        chosen = [name for name, row in self.checks.items() if row.active]
        self.dismiss()
        if chosen and self.action:
            self.action(chosen)


class MediaScreen(KioskScreen):
    """Read a medium, choose its studies, confirm them for this patient, import, summarise."""

    stage = StringProperty("")  # "", "reading", "studies", "importing", "summary"
    label = StringProperty("")
    status = StringProperty("")
    hint = StringProperty("")
    chosen_text = StringProperty("")
    any_chosen = BooleanProperty(False)
    progress = NumericProperty(0)
    busy = BooleanProperty(False)  # reading or importing: not idle
    summary = StringProperty("")
    delivery = StringProperty("")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root_path: Path | None = None
        self.medium: Any = None
        self.rows: list[MediaStudyRow] = []
        self.card: ReconcileCard | None = None
        self._cancel = threading.Event()
        self._token = 0  # bumped whenever the screen is cleared: answers for an older medium are dropped
        self._removed = False
        self._watch: MediaWatch | None = None
        self._job: SendJob | None = None
        self._poll: Any = None

    # -- life cycle ------------------------------------------------------------
    def open(self, root: Path) -> None:
        """Read the medium at ``root`` (called before the screen is shown)."""
        self.clear()
        self.root_path, self.label = root, root.name
        self.stage, self.busy = "reading", True
        self.status = T["media_reading"].format(count=0)
        token, cancel = self._token, self._cancel

        def progress(count: int) -> None:
            Clock.schedule_once(lambda _dt: self._read_progress(token, count))

        context = self.app.session.context if self.app.session is not None else None

        def work() -> tuple[Any, bool]:
            medium = self.app.services.read_medium(root, cancel, progress)
            return medium, self._matches(medium, context)

        self.app.run_async(work, lambda result: self._read(token, *result), lambda e: self._read_failed(token, e))

    def on_enter(self) -> None:
        if self._watch is None:
            self._watch = MediaWatch(self.app, self.app.services.inserted_media, self._media_changed)
        self._watch.start()

    def on_leave(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        if self.stage != "importing":
            self.clear()  # nothing of the medium (another patient's data, perhaps) stays behind

    def on_session(self, session: Session | None) -> None:
        self.clear()

    def on_app_stop(self) -> None:
        self.clear()
        if self._watch is not None:
            self._watch.stop()

    def clear(self) -> None:
        """Forget the medium: cancel its work, close its card, empty the list and the summary."""
        self._cancel.set()
        self._cancel = threading.Event()
        self._token += 1
        self._stop_following()
        if self.card is not None:
            self.card.dismiss()
            self.card = None
        self.medium, self.root_path, self._removed, self._job = None, None, False, None
        self.rows = []
        self.ids.studies.clear_widgets()
        self.stage, self.label, self.status, self.hint, self.summary, self.delivery = "", "", "", "", "", ""
        self.chosen_text, self.any_chosen, self.progress, self.busy = "", False, 0, False

    def _media_changed(self, roots: list[Path]) -> None:
        if self.root_path is None or self.root_path in roots or self.stage in ("", "summary"):
            return
        log.info("medium removed while on the media screen (%s)", self.stage)
        if self.stage == "importing":
            self._removed = True  # the importer queues nothing half: its answer decides what is said
            self._cancel.set()
            return
        label = self.label
        self.clear()
        self.app.go("acquire")
        self.app.show_message(T["media_removed"].format(label=label))

    # -- reading ---------------------------------------------------------------
    def _read_progress(self, token: int, count: int) -> None:
        if token == self._token and self.stage == "reading":
            self.status = T["media_reading"].format(count=count)

    def _matches(self, medium: Any, context: Any) -> bool:
        """Whether the disc holds one patient whose name and birth date are this patient's (worker thread)."""
        if context is None or len(medium.patients) != 1 or not medium.patients[0].studies:
            return False
        patient = medium.patients[0]
        return not any(_warns(row) for row in self.app.services.compare(patient, patient.studies[0], context))

    def _read(self, token: int, medium: Any, matched: bool) -> None:
        if token != self._token:
            return
        self.busy = False
        if self._cancel.is_set():
            self._back_to_acquire(T["media_read_cancelled"])
            return
        self.medium, self.label = medium, medium.label or self.label
        self.stage = "studies"
        empty = not any(True for _ in medium.studies())
        self.status = T["media_empty"].format(label=text.markup(self.label)) if empty else ""
        self.hint = T["media_hint_matched"] if matched else T["media_hint"]
        self._show_studies(medium, matched)

    def _read_failed(self, token: int, error: KioskError) -> None:
        if token != self._token:
            return
        if self._cancel.is_set():  # Cancel tapped: the reader stopped (a partial read is never shown)
            self._back_to_acquire(T["media_read_cancelled"])
            return
        self.busy = False
        self.stage = "studies"  # Back leads out
        self.status = error.message + (f" {error.hint}" if error.hint else "")

    def _show_studies(self, medium: Any, chosen: bool) -> None:
        box = self.ids.studies
        box.clear_widgets()
        self.rows = []
        for index, patient in enumerate(medium.patients):
            if not patient.studies:
                continue
            box.add_widget(Factory.Body(text=T["media_patient"].format(
                name=text.markup(text.person_name(patient.name)), patient_id=text.markup(patient.patient_id),
                birth_date=text.markup(text.date(patient.birth_date)) or "?"), font_size="22sp"))
            for study in patient.studies:
                modalities = ", ".join(study.modalities) or "?"
                row = MediaStudyRow(study_uid=study.uid, patient=index, chosen=chosen,
                                    picture_text=T["media_no_picture"].format(modalities=modalities),
                                    text=T["media_study"].format(
                                        date=text.date(study.date) or "?",
                                        description=text.markup(study.description) or T["media_no_description"],
                                        modalities=text.markup(modalities), series=len(study.series),
                                        images=len(study.instances), accession=text.markup(study.accession) or "—"))
                row.bind(chosen=self._row_chosen)
                self.rows.append(row)
                box.add_widget(row)
        if medium.problems:  # files the reader could not use, each with why (the rest can be imported)
            lines = [T["media_problems"].format(count=len(medium.problems))] + problem_lines(medium, medium.problems)
            box.add_widget(Factory.Muted(text="\n".join(lines)))
        self._count_chosen()
        self._render_thumbnails(medium)

    def _row_chosen(self, row: MediaStudyRow, chosen: bool) -> None:
        if chosen:  # one disc patient at a time: each import is checked against this patient on its own
            for other in self.rows:
                if other.patient != row.patient:
                    other.chosen = False
        self._count_chosen()

    def _count_chosen(self) -> None:
        chosen = self._chosen()
        self.any_chosen = bool(chosen)
        self.chosen_text = T["media_chosen"].format(
            studies=len(chosen), images=sum(len(study.instances) for _p, study in chosen)) if chosen else ""

    def _chosen(self) -> list[tuple[Any, Any]]:
        if self.medium is None:
            return []
        uids = {row.study_uid for row in self.rows if row.chosen}
        return [(p, s) for p, s in self.medium.studies() if s.uid in uids]

    def _render_thumbnails(self, medium: Any) -> None:
        """The middle image of each study's first image series, rendered on a worker thread."""
        token = self._token
        studies = [study for _p, study in medium.studies()]

        def picture_of(study: Any) -> Any:
            series = [s for s in study.series if s.instances and s.modality not in NO_PICTURE]
            for one in series[:3]:  # a series without decodable pixels: try the next, not all of them
                ordered = sorted(one.instances, key=lambda i: (i.instance_number is None, i.instance_number or 0))
                pixels = self.app.services.preview(ordered[len(ordered) // 2].path, THUMB)
                if pixels is not None:
                    return pixels
            return None

        def work() -> None:
            for study in studies:
                if token != self._token:
                    return
                pixels = picture_of(study)
                if pixels is not None:
                    Clock.schedule_once(lambda _dt, uid=study.uid, p=pixels: self._show_thumbnail(token, uid, p))

        self.app.run_async(work, lambda _r: None, lambda _e: None)

    def _show_thumbnail(self, token: int, uid: str, pixels: Any) -> None:
        if token != self._token:
            return
        for row in self.rows:
            if row.study_uid == uid:
                row.ids.picture.texture = texture_from(pixels)

    # -- reconciliation --------------------------------------------------------
    def review(self) -> None:
        """Import…: the reconciliation card for the ticked studies (worker thread: the comparison)."""
        chosen, session = self._chosen(), self.app.session
        if not chosen or session is None or self.stage != "studies":
            return
        context, token = session.context, self._token

        def work() -> list[Any]:
            rows: list[Any] = []
            for patient, study in chosen:
                rows += [r for r in self.app.services.compare(patient, study, context) if r not in rows]
            return rows

        self.app.run_async(work, lambda rows: self._show_card(token, chosen, rows))

    def _show_card(self, token: int, chosen: list[tuple[Any, Any]], rows: list[Any]) -> None:
        if token != self._token or self.stage != "studies":
            return
        config = self.app.kiosk_config
        series = [(p, st, se) for p, st in chosen for se in st.series]
        routed = route(config, [Routed(se.modality, "import", i.sop_class_uid) for _p, _st, se in series
                                for i in se.instances])
        destinations = []
        for name, node in config.destinations.items():
            address = node.stow_url or f"{node.ae_title}@{node.host}:{node.port}"
            reasons = routed.get(name, [])
            why = (T["destination_chosen"].format(reasons="; ".join(reasons)) if reasons else
                   "" if name in routed else T["destination_not_chosen"]) \
                if config.routing.rules or config.routing.default else ""
            destinations.append((name, T["destination_line"].format(name=name, address=address), why, name in routed))
        images = sum(len(se.instances) for _p, _st, se in series)
        self.card = ReconcileCard(rows=rows, destinations=destinations,
                                  count=T["reconcile_count"].format(images=images, studies=len(chosen)),
                                  warning=T["reconcile_warning"] if any(_warns(r) for r in rows) else "",
                                  action=lambda names: self.start_import(token, series, names))
        self.card.open()

    # -- import ------------------------------------------------------------------
    def start_import(self, token: int, series: list[Any], destinations: list[str]) -> None:
        """Confirmed: queue the chosen series under this patient (worker thread), progress as n of N."""
        session, medium = self.app.session, self.medium
        self.card = None
        if token != self._token or session is None or medium is None or self.stage != "studies":
            return
        self.stage, self.busy, self.progress = "importing", True, 0
        self.status = T["importing"].format(done=0, total=sum(len(se.instances) for _p, _st, se in series))
        self.ids.studies.clear_widgets()
        cancel, context = self._cancel, session.context

        def progress(done: int, total: int) -> None:
            Clock.schedule_once(lambda _dt: self._import_progress(token, done, total))

        def work() -> Any:
            return self.app.services.import_media(medium, series, context, destinations, progress, cancel)

        self.app.run_async(work, lambda result: self._imported(token, result),
                           lambda error: self._import_failed(token, error))

    def cancel(self) -> None:
        """Cancel reading or importing (what is done stays done: the importer queues nothing half)."""
        self._cancel.set()

    def _import_progress(self, token: int, done: int, total: int) -> None:
        if token == self._token and self.stage == "importing":
            self.progress = done / total if total else 0
            self.status = T["importing"].format(done=done, total=total)

    def _import_failed(self, token: int, error: KioskError) -> None:
        if token != self._token:
            return
        if self._removed:
            self._back_to_acquire(T["media_removed_during"].format(label=self.label))
            return
        self.busy = False
        self.stage = "summary"
        self.status = error.message + (f" {error.hint}" if error.hint else "")

    def _imported(self, token: int, result: Any) -> None:
        if token != self._token:
            return
        if self._removed and not result.queued:
            self._back_to_acquire(T["media_removed_during"].format(label=self.label))
            return
        self.busy, self.stage, self.progress = False, "summary", 1
        self.status = ""
        self.summary = summarise(result, self.medium)
        if result.queued and result.jobs:
            self._job = SendJob(result.jobs, result.queued)
            self._poll = self.app.schedule(lambda _dt: self._refresh(), 0.5)
            self._refresh()

    def _refresh(self) -> None:
        job = self._job
        if job is not None:
            self.app.run_async(lambda: self.app.services.job_states(job),
                               lambda states: self._show_delivery(job, states))

    def _show_delivery(self, job: SendJob, states: dict[str, list[Any]]) -> None:
        if job is not self._job:
            return
        lines = [describe(name, jobs) for name, jobs in states.items()]
        self.delivery = "\n".join(line for line, _done in lines)
        if all(done for _line, done in lines):
            self._stop_following()

    def _stop_following(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None

    # -- leaving -----------------------------------------------------------------
    def _back_to_acquire(self, message: str = "") -> None:
        self.clear()
        self.app.go("acquire")
        if message:
            self.app.show_message(message)

    def back(self) -> None:
        """Back (before the import) or Acquire more (after it): the Acquire screen, the medium forgotten."""
        self._back_to_acquire()

    def finish(self) -> None:
        """Finish: end the session as the banner's Finish does (asking first about unsent images)."""
        from kiosk.ui.widgets.finish import confirm_finish

        confirm_finish(self.app)


def summarise(result: Any, medium: Any) -> str:
    """The summary's lines (an ``ImportResult``): why it stopped early, queued, skipped (per reason),
    failed (each file as named on the medium, with its reason; the first few), warnings."""
    lines = []
    if result.stopped:
        lines.append(T["import_stopped"].format(why=text.markup(result.stopped), count=result.not_read))
    lines.append(T["import_queued"].format(count=result.queued, destinations=", ".join(result.jobs))
                 if result.queued else T["import_none_queued"])
    for reason, count in collections.Counter(reason for _instance, reason in result.skipped).items():
        lines.append(T["import_skipped"].format(count=count, reason=text.markup(reason)))
    if result.failed:
        lines += [T["import_failed"].format(count=len(result.failed)), *problem_lines(medium, result.failed)]
    lines += [text.markup(warning) for warning in result.warnings]
    return "\n".join(lines)


def problem_lines(medium: Any, problems: list[Any]) -> list[str]:
    """Each file (as named on the medium) and what is wrong with it, the first few; the rest counted."""
    lines = ["   " + T["import_failed_line"].format(file=text.markup(medium.relative(problem.path)),
                                                   problem=text.markup(problem.problem))
             for problem in problems[:FAILED_SHOWN]]
    if len(problems) > FAILED_SHOWN:
        lines.append("   " + T["import_more"].format(count=len(problems) - FAILED_SHOWN))
    return lines


SCREEN = MediaScreen
