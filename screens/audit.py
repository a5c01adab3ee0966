"""Audit screen: the audit log (who, when, host, target, outcome, reason), newest first, with a filter."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input

from .filtering import FilterMixin
from .plain import plain

COLUMNS = ("time", "who", "action", "target", "host", "outcome", "reason")
OUTCOME_STYLE = {"done": "green", "started": "cyan", "failed": "bold red", "refused": "magenta"}


class AuditScreen(FilterMixin, Screen):
    """Every audited action; ``/`` filters by any text, ``escape`` clears."""

    AUTO_FOCUS = "#audit"
    BINDINGS = [Binding("slash", "filter", "Filter", id="audit-filter"),
                Binding("escape", "clear_filter", "Clear filter", show=False)]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Input(placeholder="filter: who, action, target, outcome, reason", id="audit-filter-box")
            table = DataTable(id="audit", cursor_type="row", zebra_stripes=True)
            for name in COLUMNS:
                table.add_column(name.title(), key=name)
            yield table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Input).display = False
        self.update_view()

    def on_screen_resume(self) -> None:
        self.update_view()

    def update_view(self) -> None:
        table = self.query_one("#audit", DataTable)
        table.clear()
        text = self.filter_text.lower()
        for e in reversed(self.app.site.audit.entries()):
            row = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.time)), e.who, e.action, e.target, e.host,
                   e.outcome, e.reason)
            if text and text not in " ".join(row).lower():
                continue
            table.add_row(*map(plain, row[:5]), plain(e.outcome, style=OUTCOME_STYLE.get(e.outcome, "")),
                          plain(row[6]))
