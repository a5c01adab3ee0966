"""Uploads screen: every owner's uploads, live; approve (``a``), reject (``r``), filter (``/``), details."""

from __future__ import annotations

import time

import humanize
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from backend import catalog
from backend.errors import IsoadminError, QuotaExceeded
from backend.models import Upload, UploadState

from .filtering import FilterMixin
from .modals import ConfirmApprove, ConfirmNonIso, ConfirmText, Details, RejectReason

COLUMNS = ("owner", "file", "size", "age", "volume id", "boot", "state")
STATE_STYLE = {
    UploadState.WRITING: "yellow", UploadState.PENDING: "", UploadState.IMPORTING: "bold cyan",
    UploadState.AVAILABLE: "green", UploadState.FAILED: "bold red", UploadState.REJECTED: "magenta",
    UploadState.REFUSED: "dim red",
}


def row_key(upload: Upload) -> str:
    return f"{upload.host}\0{upload.path}"


def upload_cells(u: Upload, now: float) -> tuple:
    """The table cells of one upload."""
    if u.iso is None:
        vid, boot = "", ""
    elif u.iso.is_iso9660:
        vid, boot = u.iso.volume_id or "", "yes" if u.iso.bootable else "no"
    else:
        vid, boot = Text("not ISO", style="italic"), "mbr" if u.iso.hybrid_mbr else "—"
    return (u.owner, u.name, humanize.naturalsize(u.size, binary=True),
            humanize.naturaltime(max(0.0, now - u.mtime)), vid, boot,
            Text(u.state.value, style=STATE_STYLE.get(u.state, "")))


def host_line(snapshot) -> Text:
    """``imagehost up 12 ms · dom0-a up 8 ms · dom0-b DOWN: reason``."""
    line = Text()
    for i, h in enumerate(snapshot.hosts):
        if i:
            line.append(" · ", style="dim")
        if h.up:
            line.append(f"{h.name} ", style="bold")
            line.append(f"up {h.latency * 1000:.0f} ms", style="green")
        else:
            line.append(f"{h.name} ", style="bold")
            line.append(f"DOWN: {h.error}", style="bold red")
    return line if snapshot.hosts else Text("connecting…", style="dim")


class UploadsScreen(FilterMixin, Screen):
    """All uploads of all owners. Rows are updated in place by key, so the cursor stays put."""

    AUTO_FOCUS = "#uploads"
    BINDINGS = [
        Binding("a", "approve", "Approve", id="approve"),
        Binding("r", "reject", "Reject", id="reject"),
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("g", "gc", "GC", id="gc"),
        Binding("enter", "details", "Details", id="details"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.shown: dict[str, tuple] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Static(id="hosts", classes="hosts")
            yield Input(placeholder="filter: owner, file or state", id="filter")
            table = DataTable(id="uploads", cursor_type="row", zebra_stripes=True)
            for name in COLUMNS:
                table.add_column(name.title() if name != "volume id" else "Volume id", key=name)
            yield table
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.update_view()

    def on_screen_resume(self) -> None:
        self.update_view()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in ("approve", "reject", "gc") and self.app.read_only:
            return False
        return True

    # ------------------------------------------------------------------ view

    def visible(self) -> list[Upload]:
        text = self.filter_text.lower()
        uploads = sorted(self.app.snapshot.uploads, key=lambda u: (u.owner, u.name, u.host))
        if text:
            uploads = [u for u in uploads if text in f"{u.owner}/{u.name} {u.state.value}".lower()]
        return uploads

    async def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """``enter`` on a row (the table takes the key itself, so its message is the trigger)."""
        event.stop()
        result = self.action_details()
        if result is not None:
            await result

    def update_view(self) -> None:
        """Bring the table in line with the app's snapshot: add, update and remove rows by key."""
        self.query_one("#hosts", Static).update(host_line(self.app.snapshot))
        table = self.query_one("#uploads", DataTable)
        now = time.time()
        wanted = {row_key(u): upload_cells(u, now) for u in self.visible()}
        for key in [k for k in self.shown if k not in wanted]:
            table.remove_row(key)
            del self.shown[key]
        added = False
        for key, cells in wanted.items():
            old = self.shown.get(key)
            if old is None:
                table.add_row(*cells, key=key)
                added = True
            elif old != cells:
                for column, (before, after) in zip(COLUMNS, zip(old, cells)):
                    if before != after:
                        table.update_cell(key, column, after)
            self.shown[key] = cells
        if added:
            table.sort("owner", "file")

    def selected(self) -> Upload | None:
        table = self.query_one("#uploads", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((u for u in self.app.snapshot.uploads if row_key(u) == key), None)

    # ------------------------------------------------------------------ actions

    def action_details(self) -> None:
        u = self.selected()
        if u is None:
            return
        rows = [("owner", u.owner), ("file", u.name), ("host", u.host), ("path", u.path), ("kind", u.kind),
                ("size", f"{u.size} B ({humanize.naturalsize(u.size, binary=True)})"),
                ("modified", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(u.mtime))),
                ("inode / links", f"{u.inode} / {u.nlink}"), ("state", u.state.value), ("reason", u.reason or "—"),
                ("job", u.job or "—")]
        if u.iso is not None:
            rows += [("ISO 9660", "yes" if u.iso.is_iso9660 else "no"), ("volume id", u.iso.volume_id or "—"),
                     ("volume size", f"{u.iso.volume_bytes} B" if u.iso.volume_bytes else "—"),
                     ("El Torito", "bootable" if u.iso.bootable else "no"),
                     ("hybrid MBR", "0x55AA" if u.iso.hybrid_mbr else "no"), ("note", u.iso.problem or "—")]
        self.app.push_screen(Details(f"Upload {u.key}", rows))

    def action_approve(self) -> None:
        u = self.selected()
        if u is None:
            return
        if self.app.read_only:
            self.app.notify("read-only session: approving is not allowed", title="Read-only", severity="error")
            return
        if u.iso is not None and not u.iso.is_iso9660 and u.state != UploadState.REFUSED:
            def confirmed(yes: bool | None) -> None:
                if yes:
                    self.plan(u.key, True)
            self.app.push_screen(ConfirmNonIso(u), confirmed)
        else:
            self.plan(u.key, False)

    @work(group="plan", exclusive=True)
    async def plan(self, key: str, allow_non_iso: bool, override_quota: bool = False) -> None:
        try:
            plan = await self.app.site.plan(key, allow_non_iso=allow_non_iso, override_quota=override_quota)
        except QuotaExceeded as exc:
            def override(yes: bool | None) -> None:
                if yes:
                    self.plan(key, allow_non_iso, True)
            self.app.push_screen(ConfirmText("Quota exceeded", f"{exc.message}.\n\nOverride the quota for this "
                                             "import? (audited)", "Override"), override)
            return
        except IsoadminError as exc:
            self.app.show_error(exc)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.start_import(plan)
                self.app.notify(f"importing {plan.upload.key} onto {plan.dom0}", title="Approved")

        self.app.push_screen(ConfirmApprove(plan), confirmed)

    def action_reject(self) -> None:
        u = self.selected()
        if u is None:
            return
        if self.app.read_only:
            self.app.notify("read-only session: rejecting is not allowed", title="Read-only", severity="error")
            return

        def given(reason: str | None) -> None:
            if reason:
                self.reject(u.key, reason)

        self.app.push_screen(RejectReason(u), given)

    @work(group="reject")
    async def reject(self, key: str, reason: str) -> None:
        try:
            await self.app.site.reject(key, reason)
        except IsoadminError as exc:
            self.app.show_error(exc)
            return
        self.app.notify(f"{key} rejected: {reason}", title="Rejected")
        self.update_view()
        self.app.refresh_site()

    def action_gc(self) -> None:
        """Show what garbage collection would remove, and remove it on confirmation."""
        if self.app.read_only:
            self.app.notify("read-only session: gc is not allowed", title="Read-only", severity="error")
            return
        items = catalog.gc_plan(self.app.site)
        if not items:
            self.app.notify("nothing is old enough to collect", title="GC")
            return
        lines = "\n".join(f"{i.owner}/{i.name}: {i.reason} ({i.age:.1f} days)" for i in items)

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.gc(items)

        self.app.push_screen(ConfirmText(f"Remove {len(items)} old upload(s)?", lines, "Remove"), confirmed)

    @work(group="gc", exclusive=True)
    async def gc(self, items: list) -> None:
        try:
            results = await catalog.gc_apply(self.app.site, items)
        except IsoadminError as exc:
            self.app.show_error(exc)
            return
        kept = [f"{i.owner}/{i.name}: {o}" for i, o in results if o != "removed"]
        self.app.notify("\n".join(kept) or f"{len(results)} upload(s) removed", title="GC",
                        severity="warning" if kept else "information")
        self.app.refresh_site()
