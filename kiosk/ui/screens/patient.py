"""Patient screen: today's worklist, search and barcode, new patient, find in PACS.

Nothing starts until the user confirms the patient on a card showing name,
ID, birth date, sex, accession and procedure.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kivy.factory import Factory
from kivy.properties import BooleanProperty, ListProperty, StringProperty
from kivy.uix.modalview import ModalView

from kiosk.errors import KioskError
from kiosk.session import Session
from kiosk.ui import text
from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.strings import T
from kiosk.ui.widgets.dialogs import ConfirmCard


def _get(context: Any, key: str) -> str:
    return str(context.get(key, "") if isinstance(context, dict) else getattr(context, key, "") or "")


def procedure_of(context: Any) -> str:
    return _get(context, "requested_procedure_description") or _get(context, "study_description") \
        or _get(context, "procedure")


def matches(context: Any, words: str) -> bool:
    """Every typed word appears in the name, ID, accession, procedure or modality."""
    haystack = " ".join(_get(context, k) for k in ("patient_name", "patient_id", "accession", "modality"))
    haystack = (haystack + " " + procedure_of(context)).casefold().replace("^", " ")
    return all(word in haystack for word in words.casefold().split())


class PatientScreen(KioskScreen):
    """Pick the patient; ``contexts`` are StudyContexts from the worklist (or PACS)."""

    contexts = ListProperty([])
    status = StringProperty("")
    loading = BooleanProperty(False)
    query_available = BooleanProperty(False)
    _refresh_event: Any = None
    _updated = ""

    def on_enter(self) -> None:
        self.query_available = self.app.services.query_available()
        self.ids.search.text = ""
        self.refresh()
        interval = self.app.ui["worklist_refresh"]
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
        self.loading = True
        if not quiet:
            self.status = T["worklist_loading"]
        self.app.run_async(services.worklist, self._loaded, self._failed, session_bound=False)

    def _loaded(self, contexts: list[Any]) -> None:
        self.loading = False
        self._updated = dt.datetime.now().strftime("%H:%M")
        self.contexts = contexts
        self.show()

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
            self.status = T["worklist_count"].format(count=len(self.contexts), time=self._updated)

    @staticmethod
    def row_markup(context: Any) -> str:
        name = text.markup(text.person_name(_get(context, "patient_name")))
        details = "   ".join(p for p in (
            f"ID {_get(context, 'patient_id')}", f"born {text.date(_get(context, 'birth_date'))}",
            f"Acc {_get(context, 'accession')}" if _get(context, "accession") else "",
            text.markup(procedure_of(context))) if p)
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
        exact = [c for c in self.contexts if code in (_get(c, "accession"), _get(c, "patient_id"))]
        if len(exact) == 1:
            self.confirm(exact[0])
        elif not exact and not [c for c in self.contexts if matches(c, code)]:
            self.status = T["no_match"].format(text=code)

    def find_in_pacs(self) -> None:
        code = self.ids.search.text.strip()
        self.status = T["busy"]
        self.loading = True
        self.app.run_async(lambda: self.app.services.find_studies(code), self._found, self._failed,
                           session_bound=False)

    def _found(self, contexts: list[Any]) -> None:
        self.loading = False
        self._updated = dt.datetime.now().strftime("%H:%M")
        self.ids.search.text = ""
        self.contexts = contexts

    # -- confirmation ------------------------------------------------------
    def confirm(self, context: Any) -> None:
        rows = [
            (T["field_name"], text.markup(text.person_name(_get(context, "patient_name")))),
            (T["field_id"], text.markup(_get(context, "patient_id"))),
            (T["field_birth"], text.date(_get(context, "birth_date"))),
            (T["field_sex"], _get(context, "sex")),
            (T["field_accession"], text.markup(_get(context, "accession"))),
            (T["field_procedure"], text.markup(procedure_of(context))),
        ]
        card = ConfirmCard(title=T["confirm_title"], rows=rows, yes_text=T["confirm_yes"], no_text=T["confirm_no"],
                           action=lambda: self.app.start_session(context))
        card.open()
        self.card = card

    def new_patient(self) -> None:
        NewPatientCard(on_done=self.confirm).open()


class NewPatientCard(ModalView):
    """The new-patient form; validation comes from the study module."""

    error = StringProperty("")

    def __init__(self, on_done: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_done = on_done

    def submit(self) -> None:
        ids = self.ids
        try:
            context = self.build_context(ids.family.text, ids.given.text, ids.pid.text, ids.birth.text, ids.sex.text)
        except KioskError as error:
            self.error = error.message
            return
        self.dismiss()
        self.on_done(context)

    @staticmethod
    def build_context(family: str, given: str, patient_id: str, birth: str, sex: str) -> Any:
        from kiosk.study import StudyContext

        name = "^".join(p for p in (family.strip().upper(), given.strip()) if p) if given.strip() else family.strip().upper()
        return StudyContext.manual(patient_name=name, patient_id=patient_id.strip(),
                                   birth_date=birth.strip().replace("-", ""), sex=sex.strip().upper())


SCREEN = PatientScreen
