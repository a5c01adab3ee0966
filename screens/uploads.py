"""Uploads screen: every owner's uploads, live; approve (``a``), reject (``r``), filter (``/``), details."""

from __future__ import annotations

import dataclasses
import posixpath
import time

import humanize
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Header, Input, Static

from backend import catalog
from backend.errors import QuotaExceeded, UploadRejected
from backend.models import APPROVABLE, Upload, UploadState

from .filtering import FilterMixin, SortMixin
from .footer import KeyFooter
from .kernels import KernelFlow
from .keys import bindings
from .modals import (ConfirmApprove, ConfirmNonIso, ConfirmText, Details, DownloadRequest, DownloadUrl, RejectReason,
                     iso_rows, when)
from .plain import plain, printable
from .vtable import VirtualTable
from .workers import ForwardWorkerErrors

# What an admin decides with comes first (owner, file, state, size, age); at 80 columns the rest is to the
# right (the header shows an arrow), reached by scrolling.
COLUMNS = (("owner", "Owner"), ("file", "File"), ("state", "State"), ("size", "Size"), ("age", "Age"),
           ("volume id", "Volume id"), ("boot", "Boot"))
STATE_STYLE = {
    UploadState.WRITING: "yellow", UploadState.PENDING: "", UploadState.IMPORTING: "bold cyan",
    UploadState.AVAILABLE: "green", UploadState.FAILED: "bold red", UploadState.REJECTED: "magenta",
    UploadState.REFUSED: "dim red",
}


def row_key(upload: Upload) -> str:
    return f"{upload.host}\0{upload.path}"


def download_row_key(job) -> str:
    """The row key of the part file a running download job writes (its upload's row while it downloads)."""
    return f"{job.host}\0{posixpath.dirname(job.path)}/{job.staging}"


def state_cell(u: Upload, job=None) -> Text:
    """The State cell: the state, and for an importing upload its job's phase and progress
    (``copy ███▌░░░░ 45%``); for a file being downloaded its download's (``download ██░░░░░░ 25%``, or
    the bytes so far when the server announced no length)."""
    text = Text(u.state.value, style=STATE_STYLE.get(u.state, ""))
    if job is None or job.state != "running":
        return text
    if job.kind == "download" and u.state == UploadState.WRITING:
        text = Text("download", style="bold cyan")
    elif job.kind != "download" and u.state == UploadState.IMPORTING:
        text = Text(job.phase, style="bold cyan")
    else:
        return text
    if job.phase in ("copy", "download"):
        if job.total_bytes:
            done = min(1.0, job.done_bytes / job.total_bytes)
            cells = int(done * 8)
            text.append(" " + "█" * cells + "░" * (8 - cells), style="cyan")
            text.append(f" {done * 100:3.0f}%")
        else:
            text.append(f" {humanize.naturalsize(job.done_bytes, binary=True)}")
    return text


def upload_cells(u: Upload, now: float, job=None) -> tuple:
    """The table cells of one upload (``job``: its running job, for the progress in the State cell)."""
    if u.iso is None:
        vid, boot = "", ""
    elif u.iso.is_iso9660:
        vid, boot = printable(u.iso.volume_id), "yes" if u.iso.bootable else "no"
    else:
        vid, boot = plain(u.iso.summary, style="italic"), "mbr" if u.iso.hybrid_mbr else "—"
    return (printable(u.owner), printable(u.name), state_cell(u, job), humanize.naturalsize(u.size, binary=True),
            humanize.naturaltime(max(0.0, now - u.mtime)), vid, boot)


def host_line(snapshot) -> Text:
    """``imagehost up · dom0-a up · dom0-b DOWN: reason`` (no latency: a number that means nothing to a
    person deciding; the Hosts screen has it)."""
    line = Text()
    for i, h in enumerate(snapshot.hosts):
        if i:
            line.append(" · ", style="dim")
        if h.up:
            line.append(f"{printable(h.name)} ", style="bold")
            line.append("up", style="green")
        else:
            line.append(f"{printable(h.name)} ", style="bold")
            line.append(f"DOWN: {printable(h.error)}", style="bold red")
    return line if snapshot.hosts else Text("connecting…", style="dim")


class UploadsScreen(KernelFlow, ForwardWorkerErrors, FilterMixin, SortMixin, Screen):
    """All uploads of all owners, in a :class:`VirtualTable` (10,000 rows stay fast). The cells are
    computed once per snapshot; a filter keystroke only picks rows. The cursor stays on its upload."""

    AUTO_FOCUS = "#uploads"
    BINDINGS = [*bindings("uploads"), Binding("escape", "clear_filter", "Clear filter", show=False)]
    SORT_KEYS = (lambda u: u.owner, lambda u: u.name, lambda u: u.state.value, lambda u: u.size, lambda u: -u.mtime,
                 lambda u: (u.iso.volume_id or "") if u.iso else "", lambda u: bool(u.iso and u.iso.bootable))

    def __init__(self) -> None:
        super().__init__()
        self.shown: dict[str, tuple] = {}
        self._downloads: dict = {}  # row key of a part file → its running download job
        self.last_update = (0, 0, 0)  # rows added, updated, removed by the last new snapshot
        self._rows: list[tuple[str, tuple, str]] = []  # (key, cells, filter text), sorted
        self._rows_of = None  # the snapshot _rows were computed from
        self._shown_for = None  # (snapshot, filter) the table shows
        self._cell_cache: dict[str, tuple] = {}  # row key → (what the cells show, when computed, cells)
        self._widths: list[int] = []  # column widths fitting every upload (filtering does not move them)
        self._objects: dict[str, Upload] = {}
        self._ordered: list = []
        self._ordered_for = None  # (sort column, reverse) _ordered was computed for

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Static(id="hosts", classes="hosts")
            yield Input(placeholder="filter: owner, file or state", id="filter")
            yield VirtualTable(COLUMNS, id="uploads")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.update_view()

    def on_screen_resume(self) -> None:
        self.update_view()

    # ------------------------------------------------------------------ view

    async def on_virtual_table_row_selected(self, event: VirtualTable.RowSelected) -> None:
        """``enter`` on a row."""
        event.stop()
        result = self.action_details()
        if result is not None:
            await result

    def _snapshot_rows(self) -> None:
        """Compute every upload's cells once per snapshot, and count what changed since the last one."""
        snapshot = self.app.snapshot
        if self._rows_of is snapshot:
            return
        now = time.time()
        self._downloads = {download_row_key(j): j for j in self.app.jobs.values()
                           if j.kind == "download" and j.state == "running"}
        rows = []
        for u in sorted(snapshot.uploads, key=lambda u: (u.owner, u.name, u.host)):
            cells = self._cells(u, now)  # the filter matches OWNER/FILE as shown (escaped)
            rows.append((row_key(u), cells, f"{cells[0]}/{cells[1]} {u.state.value}".lower()))
        cells = {key: c for key, c, _ in rows}
        for key in [k for k in self._cell_cache if k not in cells]:
            del self._cell_cache[key]  # gone from the image host
        added = sum(1 for key in cells if key not in self.shown)
        updated = sum(1 for key, c in cells.items() if key in self.shown and self.shown[key] != c)
        removed = sum(1 for key in self.shown if key not in cells)
        if self._rows_of is not None:
            self.last_update = (added, updated, removed)
        self.shown, self._rows, self._rows_of = cells, rows, snapshot
        self._objects = {row_key(u): u for u in snapshot.uploads}
        self._ordered_for = None
        self._widths = self.query_one("#uploads", VirtualTable).column_widths([(k, c) for k, c, _ in rows])

    def _cells(self, u: Upload, now: float) -> tuple:
        """The upload's cells, reused from the last snapshot when nothing shown changed; the age is
        recomputed once it may read differently (after a twentieth of it, at least every 10 s)."""
        job = (self.app.jobs.get(u.job) if u.state == UploadState.IMPORTING
               else self._downloads.get(row_key(u)) if u.state == UploadState.WRITING else None)
        inputs = (u.size, u.mtime, u.state, u.reason, u.iso, job and (job.phase, job.done_bytes))
        cached = self._cell_cache.get(row_key(u))
        if cached and cached[0] == inputs and now - cached[1] < max(10.0, (now - u.mtime) / 20):
            return cached[2]
        cells = upload_cells(u, now, job)
        self._cell_cache[row_key(u)] = (inputs, now, cells)
        return cells

    def update_view(self, force: bool = False) -> None:
        """Bring the table in line with the app's snapshot, the filter and the sort (nothing to do when
        none changed, as on returning to this screen)."""
        snapshot = self.app.snapshot
        if (not force and self._shown_for is not None and self._shown_for[0] is snapshot
                and self._shown_for[1] == self.filter_text):
            return
        if self._rows_of is not snapshot:  # a filter keystroke leaves the host line (and the layout) alone
            self.query_one("#hosts", Static).update(host_line(snapshot))
        self._snapshot_rows()
        order = (self.sort_column, self.sort_reverse)
        if self._ordered_for != order:
            self._ordered = self.ordered(self._rows, self._objects)
            self._ordered_for = order
        text = self.filter_text.lower()
        rows = [(key, cells) for key, cells, hay in self._ordered if not text or text in hay]
        table = self.query_one("#uploads", VirtualTable)
        table.empty_text = (f"no upload matches {self.filter_text!r}" if text else
                            "no uploads: owners' folders on the image hosts are empty" if all(
                                h.up for h in snapshot.hosts if h.role == "image host") and snapshot.hosts
                            else "no uploads yet: reading the image hosts…" if not snapshot.hosts
                            else "no uploads: an image host is down (see above)")
        table.set_rows(rows, self._widths)
        self._shown_for = (snapshot, self.filter_text)

    def show_progress(self, job) -> None:
        """A job moved: redraw its upload's row alone (phase and bar in the State cell; a download's on the
        row of the part file it writes)."""
        key = download_row_key(job) if job.kind == "download" else f"{job.host}\0{job.path}"
        if job.kind == "download":
            self._downloads[key] = job
        u = self._objects.get(key)
        if u is not None:
            cells = upload_cells(u, time.time(), job)
            self.query_one("#uploads", VirtualTable).update_row(key, cells)

    def selected(self) -> Upload | None:
        """The upload under the cursor, or None."""
        key = self.query_one("#uploads", VirtualTable).cursor_key
        if key is None:
            return None
        return next((u for u in self.app.snapshot.uploads if row_key(u) == key), None)

    # ------------------------------------------------------------------ actions

    def action_details(self) -> None:
        u = self.selected()
        if u is None:
            return
        rows = [("owner", u.owner), ("file", u.name), ("where", f"{u.host}:{u.path}"), ("kind", u.kind),
                ("size", f"{humanize.naturalsize(u.size, binary=True)} ({u.size} B)"),
                ("modified", when(u.mtime)), ("inode / links", f"{u.inode} / {u.nlink}"),
                ("state", u.state.value), ("why", u.reason or "—"), ("job", u.job or "—")]
        if u.iso is not None:
            rows += iso_rows(dataclasses.asdict(u.iso))
        self.app.push_screen(Details(f"Upload {u.key}", rows))

    def action_approve(self) -> None:
        u = self.selected()
        if self.app.refuse_read_only("approve", u.key if u else "") or u is None:
            return
        # what stops an import (still being written, refused, importing ...) is said before "not ISO" is asked
        if u.state in APPROVABLE and u.iso is not None and not u.iso.is_iso9660:
            def confirmed(yes: bool | None) -> None:
                if yes:
                    self.plan(u.key, True)
            self.app.push_screen(ConfirmNonIso(u), confirmed)
        else:
            self.plan(u.key, False)

    @work(group="plan", exclusive=True, exit_on_error=False)
    async def plan(self, key: str, allow_non_iso: bool, override_quota: bool = False,
                   override_rejection: bool = False) -> None:
        try:
            plan = await self.app.site.plan(key, allow_non_iso=allow_non_iso, override_quota=override_quota,
                                            override_rejection=override_rejection)
        except QuotaExceeded as exc:  # a question, not an error; other errors go to the app's handler
            def override(yes: bool | None) -> None:
                if yes:
                    self.plan(key, allow_non_iso, True, override_rejection)
            self.app.push_screen(ConfirmText("Quota exceeded", f"{exc.message}.\n\nOverride the quota for this "
                                             "import? (audited)", "Override"), override)
            return
        except UploadRejected as exc:  # a question too: importing it anyway is deliberate
            r = exc.rejection

            def overrule(yes: bool | None) -> None:
                if yes:
                    self.plan(key, allow_non_iso, override_quota, True)
            self.app.push_screen(ConfirmText("Rejected upload", f"{key} was rejected by {r.get('by', '?')}: "
                                             f"{r.get('reason', '')}\n\nImport it anyway? (audited)",
                                             "Import anyway"), overrule)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.app.start_import(plan)
                self.app.say(f"importing {plan.upload.key} onto {plan.dom0}", title="Approved")

        self.app.push_screen(ConfirmApprove(plan), confirmed)

    def action_kernels(self) -> None:
        u = self.selected()
        if self.app.refuse_read_only("stage kernel", u.key if u else "") or u is None:
            return
        self.start_kernels(u.key)  # an uploaded kernel and its ramdisk, or the ISO imported from this upload

    def action_reject(self) -> None:
        u = self.selected()
        if self.app.refuse_read_only("reject", u.key if u else "") or u is None:
            return
        if u.state in (UploadState.IMPORTING, UploadState.AVAILABLE):  # say so before asking for a reason
            self.app.say(f"{u.key} is {u.state.value}: {u.reason}", title="Cannot reject", severity="warning")
            return

        def given(reason: str | None) -> None:
            if reason:
                self.reject(u.key, reason)

        self.app.push_screen(RejectReason(u), given)

    @work(group="reject", exit_on_error=False)
    async def reject(self, key: str, reason: str) -> None:
        await self.app.site.reject(key, reason)
        self.app.say(f"{key} rejected: {reason}", title="Rejected")
        self.update_view()
        self.app.refresh_site()

    def action_download_url(self) -> None:
        """Ask for a URL (the owner prefilled from the selected row) and start the download."""
        u = self.selected()
        if self.app.refuse_read_only("download-url", u.owner if u else ""):
            return

        def given(request: DownloadRequest | None) -> None:
            if request is not None:
                self.app.start_download(request)

        self.app.push_screen(DownloadUrl(u.owner if u else ""), given)

    def action_gc(self) -> None:
        """Show what garbage collection would remove, and remove it on confirmation."""
        if self.app.refuse_read_only("gc", "old uploads"):
            return
        items = catalog.gc_plan(self.app.site)
        if not items:
            self.app.say("nothing is old enough to collect", title="GC")
            return
        lines = "\n".join(printable(f"{i.owner}/{i.name}: {i.reason} ({i.age:.1f} days)") for i in items)

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.gc(items)

        self.app.push_screen(ConfirmText(f"Remove {len(items)} old upload(s)?", lines, "Remove"), confirmed)

    @work(group="gc", exclusive=True, exit_on_error=False)
    async def gc(self, items: list) -> None:
        results = await catalog.gc_apply(self.app.site, items)
        kept = [printable(f"{i.owner}/{i.name}: {o}") for i, o in results if o != "removed"]
        self.app.say("\n".join(kept) or f"{len(results)} upload(s) removed", title="GC",
                        severity="warning" if kept else "information")
        self.app.refresh_site()
