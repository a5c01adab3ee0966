"""Hosts screen: every host's role, up/down (and why), free space and capacity; dom0 capacity bars. No
latencies or timings: a number that changes at every refresh says nothing to a person deciding
(``isoadmin hosts`` prints the latency; ``-v`` logs every command's time)."""

from __future__ import annotations

import humanize

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from .footer import KeyFooter
from .plain import plain
from .volumes import capacity_line

COLUMNS = ("host", "role", "state", "free", "capacity", "error")


class HostsScreen(Screen):
    """The site's hosts as the last refresh saw them."""

    AUTO_FOCUS = "#hosts-table"

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            table = DataTable(id="hosts-table", cursor_type="row", zebra_stripes=True)
            for name in COLUMNS:
                table.add_column(name.title(), key=name)
            yield table
            yield Static(id="capacity", classes="hosts")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.update_view()

    def on_screen_resume(self) -> None:
        self.update_view()

    shown_for = None  # the snapshot the table shows

    def update_view(self) -> None:
        """Show the last snapshot's hosts (nothing to do when it is the one shown, as on a screen switch)."""
        snap = self.app.snapshot
        if self.shown_for is snap:
            return
        self.shown_for = snap
        table = self.query_one("#hosts-table", DataTable)
        table.clear()
        for h in snap.hosts:
            state = Text("up", style="green") if h.up else Text("DOWN", style="bold red")
            free = humanize.naturalsize(h.storage.free, binary=True) if h.storage else ""
            capacity = humanize.naturalsize(h.storage.capacity, binary=True) if h.storage else ""
            table.add_row(plain(h.name), h.role, state, free, capacity, plain(h.error), key=h.name)
        self.query_one("#capacity", Static).update(capacity_line(snap))
