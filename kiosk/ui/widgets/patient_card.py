"""The "Is this the right patient?" card: before a session starts (Patient screen) or resumes (Outbox)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from kiosk.ui import text
from kiosk.ui.strings import T
from kiosk.ui.widgets.dialogs import ConfirmCard


def value_of(context: Any, key: str) -> str:
    """A field of a StudyContext or of a context dict (a session's manifest), as text."""
    return str(context.get(key, "") if isinstance(context, dict) else getattr(context, key, "") or "")


def procedure_of(context: Any) -> str:
    return value_of(context, "requested_procedure_description") or value_of(context, "study_description") \
        or value_of(context, "procedure")


def patient_rows(context: Any) -> list[tuple[str, str]]:
    """Name, ID, birth date, sex, accession and procedure: what staff check against the paper."""
    return [
        (T["field_name"], text.markup(text.person_name(value_of(context, "patient_name")))),
        (T["field_id"], text.markup(value_of(context, "patient_id"))),
        (T["field_birth"], text.date(value_of(context, "birth_date"))),
        (T["field_sex"], value_of(context, "sex")),
        (T["field_accession"], text.markup(value_of(context, "accession"))),
        (T["field_procedure"], text.markup(procedure_of(context))),
    ]


def confirm_patient(context: Any, action: Callable[[], None], yes_text: str = T["confirm_yes"],
                    extra: Sequence[tuple[str, str]] = ()) -> ConfirmCard:
    """Open the card; ``action`` runs only on Yes."""
    card = ConfirmCard(title=T["confirm_title"], rows=patient_rows(context) + list(extra), yes_text=yes_text,
                       no_text=T["confirm_no"], action=action)
    card.open()
    return card
