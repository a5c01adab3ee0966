"""Hosts screen: every host's role, up/down, latency, last refresh and error; dom0 capacity bars."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from .plain import plain
from .volumes import capacity_line

COLUMNS = ("host", "role", "state", "latency", "last refresh", "error")


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
        yield Footer()

    def on_mount(self) -> None:
        self.update_view()

    def on_screen_resume(self) -> None:
        self.update_view()

    def update_view(self) -> None:
        snap = self.app.snapshot
        table = self.query_one("#hosts-table", DataTable)
        table.clear()
        for h in snap.hosts:
            state = Text("up", style="green") if h.up else Text("DOWN", style="bold red")
            ago = f"{time.time() - h.checked:.0f} s ago" if h.checked else "—"
            table.add_row(plain(h.name), h.role, state, f"{h.latency * 1000:.0f} ms", ago, plain(h.error), key=h.name)
        self.query_one("#capacity", Static).update(capacity_line(snap))
