"""Outbox screen: jobs by state (retry open to all, remove behind the PIN) and unsent sessions.

Unsent sessions are those ended by Finish or the idle timeout before Send;
they can be resumed (back under their patient, once the user confirmed that
patient on the same card the Patient screen shows) or discarded.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kivy.factory import Factory
from kivy.properties import ListProperty, StringProperty

from kiosk.errors import KioskError
from kiosk.session import Session
from kiosk.ui import text
from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.strings import T
from kiosk.ui.widgets.dialogs import ConfirmCard
from kiosk.ui.widgets.patient_card import confirm_patient

PROBLEM_STATES = ("failed", "retrying")


class OutboxScreen(KioskScreen):
    """What waits to be delivered, and the sessions kept unsent."""

    status = StringProperty("")
    summary = StringProperty("")
    selected_jobs = ListProperty([])  # job ids tapped in the list; none selected: the buttons act on all failed
    problems = ListProperty([])

    def on_enter(self) -> None:
        self.reload()

    def on_session(self, session: Session | None) -> None:
        self.ids.jobs.clear_widgets()
        self.ids.kept.clear_widgets()

    def reload(self) -> None:
        self.status = T["busy"]

        def work() -> tuple[list[Any], list[dict[str, Any]], str]:
            problem = ""
            try:
                jobs = self.app.services.outbox_jobs()
                steps = [m for m in self.app.services.outbox_steps() if m.state != "sent"]
            except KioskError as error:
                jobs, steps, problem = [], [], T["outbox_unavailable"].format(reason=error.message)
            return jobs, steps, self.app.store.summaries(), problem

        self.app.run_async(work, self._show, session_bound=False)

    def _show(self, result: tuple[list[Any], list[Any], list[dict[str, Any]], str]) -> None:
        jobs, steps, kept, problem = result
        box = self.ids.jobs
        box.clear_widgets()
        counts: dict[str, int] = {}
        for job in jobs:
            counts[job.state] = counts.get(job.state, 0) + 1
        shown = [j for j in jobs if j.state in PROBLEM_STATES + ("queued", "sending")][:50]
        self.selected_jobs = [i for i in self.selected_jobs if i in {j.id for j in shown}]
        for job in shown:
            when = dt.datetime.fromtimestamp(job.created).strftime("%d.%m. %H:%M")
            row = Factory.JobRow(text=text.markup(T["job_line"].format(
                when=when, destination=job.destination, state=T.get(f"state_{job.state}", job.state),
                reason=job.reason or (T["job_preparing"] if job.preparing else ""))))
            row.job_id = job.id
            row.selected = job.id in self.selected_jobs
            row.bind(on_release=self.toggle)
            box.add_widget(row)
        for message in steps:  # what the RIS has not been told yet, or refused
            when = dt.datetime.fromtimestamp(message.created).strftime("%d.%m. %H:%M")
            box.add_widget(Factory.JobRow(text=text.markup(T["step_line"].format(
                when=when, destination=message.node, message=f"{message.action} {message.step_status}",
                state=T.get(f"state_{message.state}", message.state), reason=message.reason))))
        self.summary = "   ".join(f"{T.get(f'state_{state}', state)}: {n}" for state, n in sorted(counts.items())) \
            or T["outbox_empty"]
        self.problems = [j.id for j in jobs if j.state in PROBLEM_STATES]
        self.status = problem
        rows = self.ids.kept
        rows.clear_widgets()
        for entry in kept:
            if self.app.session is not None and entry["folder"] == self.app.session.folder:
                continue
            context = entry["context"]
            row = Factory.KeptRow()
            row.text = text.markup(T["kept_line"].format(
                name=text.person_name(context.patient_name), patient_id=context.patient_id,
                count=entry["count"], created=entry["created"].replace("T", " ")))
            row.ids.resume.bind(on_release=lambda _b, e=entry: self.resume(e))
            row.ids.discard.bind(on_release=lambda _b, e=entry: self.discard(e))
            rows.add_widget(row)

    def toggle(self, row: Any) -> None:
        """Tap a job to select it (again to unselect); Retry and Remove then act on the selection."""
        row.selected = not row.selected
        self.selected_jobs = [j for j in self.selected_jobs if j != row.job_id] + ([row.job_id] if row.selected else [])

    def _targets(self) -> list[int]:
        return list(self.selected_jobs) or list(self.problems)

    def retry(self) -> None:
        """Open to everyone: send the selected (or all failed) jobs again now."""
        ids = self._targets()
        if ids:
            self.selected_jobs = []
            self.app.run_async(lambda: self.app.services.retry(ids), lambda _n: self.reload(), session_bound=False)

    def remove(self) -> None:
        """Behind the admin PIN: delete the selected (or all failed) jobs for good."""
        ids = self._targets()
        if ids:
            self.app.require_pin(lambda: self.app.run_async(
                lambda: self.app.services.remove(ids), lambda _n: self.reload(), session_bound=False))

    def resume(self, entry: dict[str, Any]) -> None:
        """Switch to a kept session's patient only once the user confirmed who it is."""
        confirm_patient(entry["context"], lambda: self.app.resume_session(entry["folder"]),
                        yes_text=T["confirm_resume"], extra=[(T["field_images"], str(entry["count"]))])

    def discard(self, entry: dict[str, Any]) -> None:
        def really() -> None:
            self.app.run_async(lambda: self.app.store.load(entry["folder"]).discard(), lambda _r: self.reload(),
                               session_bound=False)

        self.app.require_pin(lambda: ConfirmCard(
            title=T["discard"], rows=[("", T["confirm_discard"].format(count=entry["count"]))],
            yes_text=T["discard"], no_text=T["cancel"], action=really).open())


SCREEN = OutboxScreen
