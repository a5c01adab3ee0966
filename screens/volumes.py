"""Volumes screen: each dom0's capacity and free space, and its volumes grouped by namespace; ``/``
filters them."""

from __future__ import annotations

import humanize
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Header, Input, Static

from backend import catalog, cdrom
from backend.errors import IsoadminError
from backend.models import Volume

from .cdrom import PickDomain
from .filtering import FilterMixin, SortMixin
from .footer import KeyFooter
from .kernels import KernelFlow
from .keys import bindings
from .modals import ConfirmText, Details, iso_rows, when
from .plain import printable
from .vtable import VirtualTable
from .workers import ForwardWorkerErrors

COLUMNS = (("dom0", "Dom0"), ("namespace", "Namespace"), ("name", "Name"), ("owner", "Owner"),
           ("upload", "Upload"), ("size", "Size"), ("sha256", "sha256"))
ORDER = {"staging": 0, "final": 1, "vmdisk": 2, "other": 3}
NS_STYLE = {"staging": "bold cyan", "final": "green", "vmdisk": "", "other": "dim"}


def capacity_line(snapshot) -> Text:
    """One line per dom0: a bar of used space, free and capacity (or why it is down)."""
    text = Text()
    for h in (h for h in snapshot.hosts if h.role == "dom0"):
        if text:
            text.append("\n")
        text.append(f"{printable(h.name):12}", style="bold")
        if not h.up or h.storage is None:
            text.append(f"DOWN: {printable(h.error)}", style="bold red")
            continue
        cap, free = h.storage.capacity, h.storage.free
        used = max(0, cap - free)
        width = 30
        fill = int(width * used / cap) if cap else 0
        text.append("█" * fill, style="cyan")
        text.append("░" * (width - fill), style="dim")
        text.append(f"  {humanize.naturalsize(free, binary=True)} free of "
                    f"{humanize.naturalsize(cap, binary=True)} · unit {humanize.naturalsize(h.storage.unit, binary=True)}"
                    f" · {len(h.storage.volumes)} volumes")
    return text


def volume_cells(v: Volume) -> tuple:
    return (printable(v.dom0), Text(v.namespace, style=NS_STYLE.get(v.namespace, "")), printable(v.name),
            printable(v.owner), printable(v.upload),
            humanize.naturalsize(v.size, binary=True), (v.sha256[:12] + "…") if v.sha256 else "")


class VolumesScreen(KernelFlow, ForwardWorkerErrors, FilterMixin, SortMixin, Screen):
    """Volumes of every dom0 (staging first, then final, then the rest) in a :class:`VirtualTable`; the
    cursor stays on its volume across refreshes."""

    AUTO_FOCUS = "#volumes"
    SORT_KEYS = (lambda v: v.dom0, lambda v: v.namespace, lambda v: v.name, lambda v: v.owner, lambda v: v.upload,
                 lambda v: v.size, lambda v: v.sha256)
    BINDINGS = [*bindings("volumes"), Binding("escape", "clear_filter", "Clear filter", show=False)]

    def _selected(self) -> Volume | None:
        key = self.query_one("#volumes", VirtualTable).cursor_key
        return next((v for v in self.app.snapshot.volumes if f"{v.dom0}\0{v.name}" == key), None)

    def action_verify(self) -> None:
        vol = self._selected()
        if vol is not None and vol.namespace == "final":
            self.app.say(f"verifying {vol.dom0}:{vol.name} ({humanize.naturalsize(vol.size, binary=True)})…",
                         title="Verify")
            self.verify(f"{vol.dom0}:{vol.name}")

    @work(group="verify", exit_on_error=False)
    async def verify(self, ref: str) -> None:
        vol = await catalog.verify_volume(self.app.site, ref)
        self.app.say(f"{ref}: sha256 matches ({vol.sha256[:16]}…)", title="Verified")

    def action_delete(self) -> None:
        vol = self._selected()
        if self.app.refuse_read_only("delete volume", f"{vol.dom0}:{vol.name}" if vol else "") or vol is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.delete(f"{vol.dom0}:{vol.name}")

        self.app.push_screen(ConfirmText(f"Delete {vol.dom0}:{vol.name}?",
                                         f"{vol.owner}/{vol.upload}, {humanize.naturalsize(vol.size, binary=True)}. "
                                         "This cannot be undone.", "Delete"), confirmed)

    @work(group="delete", exit_on_error=False)
    async def delete(self, ref: str) -> None:
        vol = await self.app.site.delete_volume(ref)
        self.app.say(f"deleted {ref} ({vol.owner}/{vol.upload})", title="Deleted")
        self.app.refresh_site()

    def action_insert_cd(self) -> None:
        vol = self._selected()
        if self.app.refuse_read_only("insert cd", f"{vol.dom0}:{vol.name}" if vol else ""):
            return
        if vol is not None and vol.namespace == "final":
            self.pick_domain(vol)

    @work(group="cdrom", exclusive=True)
    async def pick_domain(self, vol: Volume) -> None:
        try:
            domains = await cdrom.vm_domains(self.app.site, vol.dom0)
        except IsoadminError as exc:
            self.app.show_error(exc)
            return
        if not domains:
            self.app.notify(f"{vol.dom0} has no VM to insert a CD into", title="Insert CD", markup=False)
            return

        def picked(domain: str | None) -> None:
            if domain:
                self.insert_cd(f"{vol.dom0}:{vol.name}", domain)

        self.app.push_screen(PickDomain(f"Insert {vol.dom0}:{vol.name} ({vol.owner}/{vol.upload}) into", domains),
                             picked)

    @work(group="cdrom", exclusive=True)
    async def insert_cd(self, ref: str, domain: str) -> None:
        try:
            await cdrom.insert_cd(self.app.site, ref, domain)
        except IsoadminError as exc:
            self.app.show_error(exc)
            return
        self.app.notify(f"{ref} is in the CD-ROM drive of {domain}", title="CD inserted", markup=False)

    def action_eject_cd(self) -> None:
        vol = self._selected()
        if self.app.refuse_read_only("eject cd", f"{vol.dom0}:{vol.name}" if vol else ""):
            return
        if vol is not None:
            self.eject_cd(vol)

    @work(group="cdrom", exclusive=True)
    async def eject_cd(self, vol: Volume) -> None:
        try:
            domains = await cdrom.holding(self.app.site, vol)
            if not domains:
                self.app.notify(f"{vol.dom0}:{vol.name} is in no VM's CD-ROM drive", title="Eject CD", markup=False)
                return
            for domain in domains:
                await cdrom.eject_cd(self.app.site, f"{vol.dom0}:{domain}")
        except IsoadminError as exc:
            self.app.show_error(exc)
            return
        self.app.notify(f"ejected {vol.dom0}:{vol.name} from {', '.join(domains)}", title="CD ejected", markup=False)

    def action_kernels(self) -> None:
        vol = self._selected()
        if self.app.refuse_read_only("stage kernel", f"{vol.dom0}:{vol.name}" if vol else ""):
            return
        if vol is not None and vol.namespace == "final":
            self.start_kernels(f"{vol.dom0}:{vol.name}")

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[tuple[str, tuple, str]] = []  # (key, cells, filter text), in table order
        self._rows_of = None  # the snapshot _rows were computed from
        self._shown_for = None  # (snapshot, filter) the table shows
        self._widths: list[int] = []  # column widths fitting every volume (filtering does not move them)
        self._objects: dict[str, Volume] = {}
        self._ordered: list = []
        self._ordered_for = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Static(id="capacity", classes="hosts")
            yield Input(placeholder="filter: dom0, namespace, name, owner or upload", id="volume-filter")
            yield VirtualTable(COLUMNS, id="volumes")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.query_one("#volume-filter", Input).display = False
        self.update_view()

    def on_screen_resume(self) -> None:
        self.update_view()

    async def on_virtual_table_row_selected(self, event: VirtualTable.RowSelected) -> None:
        """``enter`` on a row."""
        event.stop()
        result = self.action_details()
        if result is not None:
            await result

    def update_view(self, force: bool = False) -> None:
        """Bring the table in line with the snapshot, the filter and the sort (nothing to do when none
        changed)."""
        snapshot = self.app.snapshot
        if (not force and self._shown_for is not None and self._shown_for[0] is snapshot
                and self._shown_for[1] == self.filter_text):
            return
        if self._rows_of is not snapshot:
            self._objects = {f"{v.dom0}\0{v.name}": v for v in snapshot.volumes}
            self._ordered_for = None
            self.query_one("#capacity", Static).update(capacity_line(snapshot))
            volumes = sorted(snapshot.volumes, key=lambda v: (ORDER.get(v.namespace, 9), v.dom0, v.name))
            self._rows = []
            for v in volumes:
                cells = volume_cells(v)  # the filter matches dom0, namespace, name, owner and upload as shown
                self._rows.append((f"{v.dom0}\0{v.name}", cells, " ".join(map(str, cells[:5])).lower()))
            self._rows_of = snapshot
            self._widths = self.query_one("#volumes", VirtualTable).column_widths([(k, c) for k, c, _ in self._rows])
        order = (self.sort_column, self.sort_reverse)
        if self._ordered_for != order:
            self._ordered, self._ordered_for = self.ordered(self._rows, self._objects), order
        text = self.filter_text.lower()
        table = self.query_one("#volumes", VirtualTable)
        table.empty_text = (f"no volume matches {self.filter_text!r}" if text else
                            "no volumes yet: reading the dom0s…" if not snapshot.hosts else
                            "no volumes on the dom0s that are up (see the capacity lines above)")
        table.set_rows([(key, cells) for key, cells, hay in self._ordered if not text or text in hay], self._widths)
        self._shown_for = (snapshot, self.filter_text)

    def action_details(self) -> None:
        v = self._selected()
        if v is None:
            return
        m = dict(v.meta)
        rows = [("dom0", v.dom0), ("name", v.name), ("namespace", v.namespace), ("path", v.path),
                ("size", f"{humanize.naturalsize(v.size, binary=True)} ({v.size} B)")]
        upload = m.pop("size", None)
        rows += [("owner", str(m.pop("owner", "") or "—")), ("upload", str(m.pop("upload", "") or "—")),
                 ("upload size", f"{humanize.naturalsize(upload, binary=True)} ({upload} B)"
                  if isinstance(upload, int) else "—"),
                 ("source", f"{m.pop('source_host', '?')}:{m.pop('source_path', '?')}"),
                 ("source modified", when(m.pop("source_mtime", None))),
                 ("approved by", str(m.pop("approver", "") or "—")), ("approved", when(m.pop("time", None))),
                 ("job", str(m.pop("job", "") or "—")), ("sha256", str(m.pop("sha256", "") or "—"))]
        if "iso" in m:
            rows += iso_rows(m.pop("iso"))
        rows += [(k, str(val)) for k, val in sorted(m.items()) if k not in ("created_by", "source_inode")]
        self.app.push_screen(Details(f"Volume {v.dom0}:{v.name}", rows))
