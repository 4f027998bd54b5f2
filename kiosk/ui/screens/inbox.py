"""Inbox screen: documents that arrived by themselves (print jobs, the watched folder) and wait for a
patient; each can be assigned (the patient screen, then Review and Send) or deleted (admin PIN).

The list is ``app.inbox.items`` (kiosk/ui/inbox_state.py), refreshed off the UI thread.
"""

from __future__ import annotations

from typing import Any

from kivy.factory import Factory
from kivy.properties import StringProperty

from kiosk.ui import text
from kiosk.ui.screens.base import KioskScreen
from kiosk.ui.strings import T
from kiosk.ui.widgets.dialogs import ConfirmCard


class InboxScreen(KioskScreen):
    """The held documents, oldest first."""

    status = StringProperty("")

    def on_enter(self) -> None:
        self.app.inbox.bind(items=self.show)
        self.app.inbox.look()
        self.show()

    def on_leave(self) -> None:
        self.app.inbox.unbind(items=self.show)

    def show(self, *_args: Any) -> None:
        items = self.app.inbox.items
        box = self.ids.rows
        box.clear_widgets()
        self.status = T["inbox_count"].format(count=len(items)) if items else T["inbox_empty"]
        for item in items:
            row = Factory.InboxRow()
            row.text = (f"[b]{text.markup(item.name)}[/b]\n"
                        f"[size=17sp][color=c0c8d0]{self.app.inbox.describe(item)}[/color][/size]")
            row.ids.assign.bind(on_release=lambda _b, i=item: self.app.inbox.assign(i))
            row.ids.delete.bind(on_release=lambda _b, i=item: self.delete(i))
            box.add_widget(row)

    def delete(self, item: Any) -> None:
        def confirmed() -> None:
            ConfirmCard(title=T["inbox_delete"], rows=[("", T["inbox_confirm_delete"].format(name=text.markup(item.name)))],
                        yes_text=T["inbox_delete"], no_text=T["cancel"],
                        action=lambda: self.app.inbox.delete(item)).open()

        self.app.require_pin(confirmed)


SCREEN = InboxScreen
