"""Audit screen: the site's audit log (who, when, host, target, outcome, reason), newest first, with a filter.

The log lives on the ledger: it is read again (only what was appended) when a refresh shows its head
moved, and its hash chain is checked each time; a broken chain shows as a banner above the table.
"""

from __future__ import annotations

import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Static

from backend.errors import IsoadminError

from .filtering import FilterMixin
from .footer import KeyFooter
from .keys import bindings
from .plain import plain, printable

COLUMNS = ("time", "who", "action", "target", "host", "outcome", "reason")
OUTCOME_STYLE = {"done": "green", "started": "cyan", "failed": "bold red", "refused": "magenta"}


class AuditScreen(FilterMixin, Screen):
    """Every audited action; ``/`` filters by any text, ``escape`` clears."""

    AUTO_FOCUS = "#audit"
    BINDINGS = [*bindings("audit"), Binding("escape", "clear_filter", "Clear filter", show=False)]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Static("", id="audit-banner")
            yield Input(placeholder="filter: who, action, target, outcome, reason", id="audit-filter-box")
            table = DataTable(id="audit", cursor_type="row", zebra_stripes=True)
            for name in COLUMNS:
                table.add_column(name.title(), key=name)
            yield table
        yield KeyFooter()

    entries: list = []
    loaded: tuple[int, str] | None = None  # the audit head the entries were read at

    def on_mount(self) -> None:
        self.query_one(Input).display = False
        self.query_one("#audit-banner", Static).display = False
        self.update_view()

    def on_screen_resume(self) -> None:
        self.update_view()

    def update_view(self, force: bool = False) -> None:
        """Read the log again when the last refresh shows its head moved; else redraw (filter)."""
        books = self.app.snapshot.books
        if self.loaded != (books.audit_count, books.audit_hash):
            self.load((books.audit_count, books.audit_hash))
        self.render_rows()

    @work(group="audit", exclusive=True)
    async def load(self, head: tuple[int, str]) -> None:
        site = self.app.site
        banner = self.query_one("#audit-banner", Static)
        try:
            self.entries = await site.audit.entries()
            problem = await site.audit.verify()
        except IsoadminError as exc:
            banner.update(plain(f"audit log unreadable: {exc.message}"))
            banner.display = True
            return
        self.loaded = head
        if site.as_user is not None:
            self.entries = [e for e in self.entries if "/" in e.target and site.may_act_for(e.target.split("/", 1)[0])]
        banner.display = problem is not None
        if problem is not None:
            banner.update(plain(f"AUDIT LOG BROKEN at entry {problem.entry}: {problem.detail} "
                               f"({site.ledger.where}/audit.jsonl)"))
        self.render_rows()

    def render_rows(self) -> None:
        table = self.query_one("#audit", DataTable)
        table.clear()
        text = self.filter_text.lower()
        for e in reversed(self.entries):
            row = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.time)), e.who, e.action, e.target, e.host,
                   e.outcome, e.reason)
            if text and text not in printable(" ".join(row)).lower():  # the filter matches what is shown
                continue
            table.add_row(*map(plain, row[:5]), plain(e.outcome, style=OUTCOME_STYLE.get(e.outcome, "")),
                          plain(row[6]))
