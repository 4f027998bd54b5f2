"""Patient screen: today's worklist, search and barcode, new patient, find in PACS.

Nothing starts until the user confirms the patient on a card showing name,
ID, birth date, sex, accession and procedure.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from typing import Any, Callable

from kivy.app import App
from kivy.factory import Factory
from kivy.properties import BooleanProperty, DictProperty, ListProperty, StringProperty
from kivy.uix.modalview import ModalView

from kiosk.errors import KioskError
from kiosk.session import Session
from kiosk.ui import text
from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.strings import T
from kiosk.ui.widgets.dialogs import ConfirmCard
from kiosk.ui.widgets.patient_card import confirm_patient, procedure_of, value_of

log = logging.getLogger(__name__)


def date_range(choice: str, custom: str, today: dt.date | None = None) -> str:
    """The worklist date filter (YYYYMMDD, a range or '' for any) for a date choice, or for a typed
    date or range ("2026-11-20", "2026-11-20 to 2026-11-23") when ``custom`` is not empty."""
    today = today or dt.date.today()
    if custom.strip():
        found = re.findall(r"\d{4}-?\d{2}-?\d{2}", custom)
        if not 1 <= len(found) <= 2:
            raise KioskError(T["date_not_understood"].format(text=custom.strip()), T["date_hint"])
        days = [d.replace("-", "") for d in found]
        for day in days:
            try:
                dt.datetime.strptime(day, "%Y%m%d")
            except ValueError:
                raise KioskError(T["date_not_understood"].format(text=day), T["date_hint"]) from None
        return "-".join(sorted(days)) if len(days) == 2 else days[0]
    offsets = {"date_today": (0, 0), "date_yesterday": (-1, -1), "date_tomorrow": (1, 1), "date_week": (-6, 0)}
    if choice not in offsets:
        return ""
    start, end = (today + dt.timedelta(days=d) for d in offsets[choice])
    return start.strftime("%Y%m%d") if start == end else f"{start:%Y%m%d}-{end:%Y%m%d}"


# StudyContext fields -> their labels on the confirmation card
READING_LABELS = {"patient_name": "field_name", "patient_id": "field_id", "accession": "field_accession",
                  "requested_procedure_description": "field_procedure", "study_description": "field_procedure"}
DATE_CHOICES = ["date_today", "date_yesterday", "date_tomorrow", "date_week", "date_any"]
MAX_PROPOSALS = 5  # new IDs tried when a proposed one is already taken
MODALITIES = ["", "OT", "DOC", "XC", "SM", "CR", "DX", "US", "ES", "OP"]


def generated_patient_id(prefix: str, now: dt.datetime | None = None) -> str:
    """A new patient ID: prefix, date and time, and 3 random hex digits (unique enough for one site)."""
    now = now or dt.datetime.now()
    return f"{prefix}{now:%y%m%d%H%M}{secrets.token_hex(2)[:3].upper()}"


def matches(context: Any, words: str) -> bool:
    """Every typed word appears in the name, ID, accession, procedure or modality."""
    haystack = " ".join(value_of(context, k) for k in ("patient_name", "patient_id", "accession", "modality"))
    haystack = (haystack + " " + procedure_of(context)).casefold().replace("^", " ")
    return all(word in haystack for word in words.casefold().split())


class PatientScreen(KioskScreen):
    """Pick the patient; ``contexts`` are StudyContexts from the worklist (or PACS)."""

    contexts = ListProperty([])
    status = StringProperty("")
    notice = StringProperty("")  # the list is incomplete: said where staff look, not in the muted status line
    loading = BooleanProperty(False)
    query_available = BooleanProperty(False)
    DATE_CHOICES = DATE_CHOICES
    MODALITIES = MODALITIES
    date_choice = StringProperty("date_today")
    modality = StringProperty("")
    filters = DictProperty({})  # more worklist matching keys (``WorklistQuery`` fields), from ``FilterCard``
    _refresh_event: Any = None
    _updated = ""
    _offline = 0.0  # when the list shown is the worklist's last answer (the server unreachable)

    def on_enter(self) -> None:
        self.query_available = self.app.services.query_available()
        self.ids.search.text = ""
        self.refresh()
        interval = self.app.ui.worklist_refresh
        if interval and self._refresh_event is None:
            self._refresh_event = self.app.schedule(lambda _dt: self.refresh(quiet=True), interval)

    def on_leave(self) -> None:
        if self._refresh_event is not None:
            self._refresh_event.cancel()
            self._refresh_event = None

    def on_session(self, session: Session | None) -> None:
        self.ids.search.text = ""

    # -- worklist ----------------------------------------------------------
    def refresh(self, quiet: bool = False) -> None:
        services = self.app.services
        if not services.worklist_configured():
            self.contexts, self.status = [], T["worklist_none"]
            return
        if self.loading:
            return
        try:
            dates = date_range(self.date_choice, self.ids.dates.text)
        except KioskError as error:
            self._failed(error)
            return
        self.loading = True
        if not quiet:
            self.status = T["worklist_loading"]
        modality, keys = self.modality, dict(self.filters)
        self.app.run_async(lambda: services.worklist(dates, modality, **keys), self._loaded, self._failed,
                           session_bound=False)

    def open_filters(self) -> None:
        FilterCard(self).open()

    def choose_date(self, label: str) -> None:
        """The date spinner: a named choice; the typed date box is cleared."""
        key = next((k for k in DATE_CHOICES if T[k] == label), "date_today")
        if key != self.date_choice:
            self.date_choice = key
            self.ids.dates.text = ""
            self.refresh()

    def choose_modality(self, label: str) -> None:
        modality = "" if label == T["modality_any"] else label
        if modality != self.modality:
            self.modality = modality
            self.refresh()

    def _loaded(self, contexts: list[Any]) -> None:
        self.loading = False
        self._offline = offline = getattr(contexts, "offline_since", 0.0)
        self._updated = dt.datetime.fromtimestamp(offline or dt.datetime.now().timestamp()).strftime("%H:%M")
        self._set_notice(contexts, "worklist_cut")
        if offline:
            minutes = int((dt.datetime.now().timestamp() - offline) // 60)
            self.notice = T["worklist_offline"].format(time=self._updated, minutes=minutes)
        self.contexts = contexts
        self.show()

    def _set_notice(self, contexts: list[Any], key: str) -> None:
        """The warning that the node's answer was cut at its limit (``Found.cut_at``), or none."""
        cut_at = getattr(contexts, "cut_at", 0)
        self.notice = T[key].format(count=cut_at) if cut_at else ""

    def _failed(self, error: KioskError) -> None:
        self.loading = False
        self.status = error.message + (f" {error.hint}" if error.hint else "")

    def on_contexts(self, *_args: Any) -> None:
        self.show()

    def show(self) -> None:
        """Fill the list with the contexts matching the search box."""
        box = self.ids.rows
        box.clear_widgets()
        words = self.ids.search.text.strip()
        shown = [c for c in self.contexts if matches(c, words)] if words else list(self.contexts)
        for context in shown:
            row = Factory.WorklistRow(text=self.row_markup(context))
            row.bind(on_release=lambda _row, c=context: self.confirm(c))
            box.add_widget(row)
        if not self.contexts:
            if self.app.services.worklist_configured() and not self.loading:
                self.status = T["worklist_empty"] if self._updated else self.status
        elif words:
            self.status = T["worklist_filtered"].format(shown=len(shown), count=len(self.contexts))
        else:
            self.status = T["worklist_count"].format(count=len(self.contexts), time=self._updated,
                                                     when=self.ids.dates.text.strip() or T[self.date_choice])

    @staticmethod
    def row_markup(context: Any) -> str:
        name = text.markup(text.person_name(value_of(context, "patient_name")))
        details = "   ".join(p for p in (
            f"ID {text.markup(value_of(context, 'patient_id'))}", f"born {text.markup(text.date(value_of(context, 'birth_date')))}",
            f"Acc {text.markup(value_of(context, 'accession'))}" if value_of(context, "accession") else "",
            text.markup(procedure_of(context)),
            f"[color=ffbf4d]{T['reading_row']}[/color]" if getattr(context, "misread", None) else "") if p)
        return f"[b][size=26sp]{name}[/size][/b]\n[color=c0c8d0]{details}[/color]"

    # -- search / barcode ----------------------------------------------------
    def on_search_text(self) -> None:
        self.show()

    def on_typed(self, text: str) -> bool:
        """Keys typed with no field focused (a barcode wedge) go to the search box.

        The box is not focused by default so the on-screen keyboard stays
        closed until someone taps the box.
        """
        if self.ids.search.focus:
            return False
        self.ids.search.text += text
        return True

    def on_key(self, key: int) -> bool:
        if key in (13, 271) and not self.ids.search.focus:
            self.on_search_enter()
            return True
        return False

    def on_search_enter(self) -> None:
        """Enter (what a barcode wedge sends last): an exact accession or patient ID picks the patient."""
        code = self.ids.search.text.strip()
        if not code:
            return
        exact = [c for c in self.contexts if code in (value_of(c, "accession"), value_of(c, "patient_id"))]
        if len(exact) == 1:
            self.confirm(exact[0])
        elif not exact and not [c for c in self.contexts if matches(c, code)]:
            self.status = T["no_match"].format(text=code)

    def scan_wristband(self) -> None:
        """Read a wristband held up to the camera; its barcode goes into the search as a wedge types it."""
        from kiosk.ui.widgets.wristband import WristbandCard

        WristbandCard(self.app.services, self.wristband_read).open()

    def wristband_read(self, code: str) -> None:
        self.ids.search.text = code
        self.on_search_enter()

    def find_in_pacs(self) -> None:
        code = self.ids.search.text.strip()
        self.status = T["busy"]
        self.loading = True
        self.app.run_async(lambda: self.app.services.find_studies(code), self._found, self._failed,
                           session_bound=False)

    def _found(self, contexts: list[Any]) -> None:
        self.loading = False
        self._offline = 0.0
        self._updated = dt.datetime.now().strftime("%H:%M")
        self.ids.search.text = ""
        self._set_notice(contexts, "pacs_cut")
        self.contexts = contexts

    # -- confirmation ------------------------------------------------------
    def confirm(self, context: Any) -> None:
        if getattr(context, "misread", None):
            self.ask_reading(context)
            return
        if self._offline and context in self.contexts:
            log.warning("a worklist entry is picked from the offline copy of %s", self._updated)
        # With a document from the Inbox waiting, the session starts with its pages (kiosk/ui/inbox_state.py).
        start = self.app.inbox.start_session if self.app.inbox.pending is not None else self.app.start_session
        self.card = confirm_patient(context, lambda: start(context))

    def ask_reading(self, context: Any) -> None:
        """Values came declared Latin-1 but hold UTF-8 bytes: the operator picks the spelling before the
        patient can be confirmed (a wrong one would go into every object)."""
        rows, seen = [], set()
        for name, utf8 in context.misread.items():
            sent = getattr(context, name)
            if (sent, utf8) in seen:
                continue  # e.g. the procedure, which is also the study description
            seen.add((sent, utf8))
            label = T[READING_LABELS.get(name, "field_other")]
            shown = text.person_name if name in ("patient_name", "referring_physician") else str
            rows.append((T["reading_sent"].format(field=label), text.markup(shown(sent))))
            rows.append((T["reading_utf8"].format(field=label), text.markup(shown(utf8))))
        card = ConfirmCard(title=T["reading_title"], rows=rows, yes_text=T["reading_use_utf8"],
                           no_text=T["reading_use_sent"], action=lambda: self.confirm(context.as_utf8()),
                           no_action=lambda: self.confirm(context.as_declared()))
        card.open()
        self.card = card

    def new_patient(self) -> None:
        prefix = self.app.ui.patient_id_prefix
        propose = (lambda: generated_patient_id(prefix)) if self.app.ui.generate_patient_id else None
        NewPatientCard(on_done=self.confirm, propose=propose).open()


class FilterCard(ModalView):
    """More worklist matching keys (birth date, sex, referring physician, procedure, start time, study);
    the worklist server matches them, so an order beyond ``max_results`` can still be found."""

    KEYS = ("birth_date", "sex", "referring_physician", "procedure", "time", "study_uid")

    def __init__(self, screen: PatientScreen, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.screen = screen
        for key in self.KEYS:
            self.ids[key].text = screen.filters.get(key, "")

    def apply(self, clear: bool = False) -> None:
        self.screen.filters = {} if clear else {k: self.ids[k].text.strip() for k in self.KEYS if self.ids[k].text.strip()}
        self.dismiss()
        self.screen.refresh()


class NewPatientCard(ModalView):
    """The new-patient form; validation comes from the study module.

    Before the form closes, the ID is looked up on the PACS and in the
    worklist: an ID already filed for someone is refused (a proposed one is
    replaced by another). If the lookup fails, the message says so and a
    second tap uses the ID unchecked.
    """

    error = StringProperty("")
    checking = BooleanProperty(False)

    def __init__(self, on_done: Any, propose: Callable[[], str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_done = on_done
        self.propose = propose
        self.proposed = propose() if propose else ""
        self.ids.pid.text = self.proposed
        self.unchecked = ""  # an ID the user chose to use although the lookup failed
        self.tries = 0

    def submit(self) -> None:
        ids = self.ids
        try:
            context = self.build_context(ids.family.text, ids.given.text, ids.pid.text, ids.birth.text, ids.sex.text)
        except KioskError as error:
            self.error = error.message
            return
        app = App.get_running_app()
        services = app.services
        if context.patient_id == self.unchecked or not (services.worklist_configured() or services.query_available()):
            self.finish(context)
            return
        self.checking = True
        self.error = T["new_id_checking"]
        app.run_async(lambda: services.patient_id_holders(context.patient_id),
                      lambda names: self.checked(context, names), lambda error: self.check_failed(context, error),
                      session_bound=False)

    def checked(self, context: Any, names: list[str]) -> None:
        self.checking = False
        if not names:
            self.finish(context)
            return
        if self.propose and context.patient_id == self.proposed and self.tries < MAX_PROPOSALS:
            self.tries += 1
            self.proposed = self.ids.pid.text = self.propose()
            self.submit()
            return
        self.error = T["new_id_taken"].format(patient_id=context.patient_id,
                                              names="; ".join(text.person_name(n) for n in names))

    def check_failed(self, context: Any, error: KioskError) -> None:
        self.checking = False
        self.unchecked = context.patient_id
        self.error = T["new_id_unchecked"].format(reason=error.message)

    def finish(self, context: Any) -> None:
        self.error = ""
        self.dismiss()
        self.on_done(context)

    @staticmethod
    def build_context(family: str, given: str, patient_id: str, birth: str, sex: str) -> Any:
        from kiosk.study import StudyContext

        name = "^".join(p for p in (family.strip().upper(), given.strip()) if p) if given.strip() else family.strip().upper()
        return StudyContext.manual(patient_name=name, patient_id=patient_id.strip(),
                                   birth_date=birth.strip().replace("-", ""), sex=sex.strip().upper())


SCREEN = PatientScreen
