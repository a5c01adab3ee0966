"""Owners screen: one row per owner with a quota bar, pending uploads, CD volumes and VM disks;
``enter`` shows that owner's uploads."""

from __future__ import annotations

import humanize
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Header, Input, Static

from backend import quota

from .footer import KeyFooter
from .keys import bindings
from .plain import plain, printable
from .vtable import VirtualTable

COLUMNS = {"owner": "Owner", "group": "Group", "may act": "May act", "quota": "Quota", "pending": "Pending",
           "cds": "CD volumes", "vm disks": "VM disks"}


def quota_bar(used: int, limit: int, width: int = 20) -> Text:
    """``██████░░░░ 3.0 GiB / 5.0 GiB``; red when over, no bar without a quota."""
    size = lambda n: humanize.naturalsize(n, binary=True)  # noqa: E731
    if not limit:
        return Text(f"{size(used)} (no quota)", style="dim")
    fill = min(width, int(width * used / limit))
    style = "red" if used > limit else "yellow" if used > 0.8 * limit else "green"
    bar = Text("█" * fill, style=style)
    bar.append("░" * (width - fill), style="dim")
    bar.append(f" {size(used)} / {size(limit)}")
    return bar


class OwnersScreen(Screen):
    """Every owner shown (all, or those ``--as USER`` may act for)."""

    AUTO_FOCUS = "#owners"
    BINDINGS = bindings("owners")

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Static(id="owners-note", classes="hosts")
            yield VirtualTable(list(COLUMNS.items()), id="owners")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.update_view()

    def on_screen_resume(self) -> None:
        self.update_view()

    async def on_virtual_table_row_selected(self, event: VirtualTable.RowSelected) -> None:
        """``enter`` on a row (or a click)."""
        event.stop()
        result = self.action_uploads()
        if result is not None:
            await result

    _shown_for = None  # (snapshot, as_user) the table shows

    def update_view(self) -> None:
        """Rebuild the rows when the snapshot (or the user viewed as) changed since the last time."""
        snap, site = self.app.snapshot, self.app.site
        if self._shown_for is not None and self._shown_for[0] is snap and self._shown_for[1] == site.as_user:
            return
        self._shown_for = (snap, site.as_user)
        who = f"as {site.as_user}: " if site.as_user else ""
        self.query_one("#owners-note", Static).update(plain(f"{who}{len(snap.owners)} owner(s)"))
        self.query_one("#owners", VirtualTable).set_rows([
            (r["name"], (plain(r["name"]), plain(r["group"]),
                         plain(", ".join(sorted(set(r["members"]) - {r["name"]})) or "—"),
                         quota_bar(r["used"], r["quota"]), str(r["pending"]), str(r["cds"]), str(r["vm_disks"])))
            for r in quota.owner_summary(site.config, snap.owners, snap.uploads, snap.volumes)])

    async def action_uploads(self) -> None:
        owner = self.query_one("#owners", VirtualTable).cursor_key
        if owner is None:
            return
        await self.app.switch_mode("uploads")
        screen = self.app.screen
        box = screen.query_one(Input)
        box.display = True
        box.value = f"{printable(owner)}/"  # the Uploads filter matches OWNER/FILE as shown
