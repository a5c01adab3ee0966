"""Modal screens: the approval plan, the non-ISO confirmation, a rejection reason, details, help, errors.

Every text that comes from a host or a person is shown with :func:`screens.plain.plain` (escaped, never
markup)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import humanize
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from backend.models import Upload
from backend.site import ImportPlan
from backend.text import is_printable

from .footer import KeyFooter
from .keys import KEYS, display
from .plain import plain


def _size(n: int) -> str:
    return f"{humanize.naturalsize(n, binary=True)} ({n} B)"


def when(epoch: float | None) -> str:
    """A time for people: local date and time, and how long ago (``2026-12-01 14:03:12 (an hour ago)``)."""
    if not epoch:
        return "—"
    return (f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(epoch))} "
            f"({humanize.naturaltime(max(0.0, time.time() - epoch))})")


def iso_rows(facts: dict | None) -> list[tuple[str, str]]:
    """ISO facts as labelled rows (``facts``: :meth:`~backend.isoinfo.IsoFacts.to_json`-like dict or None); a file
    that is not ISO 9660 but a kernel or a ramdisk gets a ``content`` row."""
    if not facts:
        return [("ISO 9660", "no")]
    size = facts.get("volume_bytes")
    rows = [("ISO 9660", "yes" if facts.get("is_iso9660", True) else "no"),
            ("volume id", facts.get("volume_id") or "—"),
            ("volume size", _size(size) if isinstance(size, int) else "—"),
            ("El Torito", "bootable" if facts.get("bootable") else "no"),
            ("hybrid MBR", "yes (0x55AA)" if facts.get("hybrid_mbr") else "no"),
            ("note", facts.get("problem") or "—")]
    if facts.get("content"):  # a kernel or a ramdisk's format, read from its first bytes
        version = facts.get("kernel_version")
        rows.insert(1, ("content", facts["content"] + (f" ({version})" if version else "")))
    return rows


class _Confirm(ModalScreen[bool]):
    """A yes/no modal: ``y`` / ``n`` / ``escape``."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n", "answer(False)", "No"),
                Binding("escape", "answer(False)", "Cancel")]
    yes_label = "Yes"

    def body(self) -> ComposeResult:  # pragma: no cover - overridden
        yield from ()

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            with VerticalScroll(classes="dialog-body"):  # scrolls; the buttons stay in view
                yield from self.body()
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes_label} \\[y]", variant="primary", id="yes")
                yield Button("Cancel \\[n]", id="no")
        yield KeyFooter()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class ConfirmApprove(_Confirm):
    """Shows an :class:`ImportPlan` (dom0, storage, volume names, size, every host command)."""

    yes_label = "Approve"

    def __init__(self, plan: ImportPlan) -> None:
        super().__init__()
        self.plan = plan

    def body(self) -> ComposeResult:
        p, u = self.plan, self.plan.upload
        yield Label(plain(f"Approve {u.key}?"), classes="dialog-title")
        facts = Table.grid(padding=(0, 2))
        for name, value in (("upload", f"{u.host}:{u.path}"), ("size", _size(u.size)),
                            ("dom0", f"{p.dom0} (storage {p.storage}, domain {p.domain})"),
                            ("staging", p.staging), ("final", p.final),
                            ("allocation", f"{_size(p.alloc)} of {humanize.naturalsize(p.free, binary=True)} free"),
                            ("job", f"{p.job_id} (serial {p.serial})")):
            facts.add_row(Text(name, style="bold"), plain(value))
        yield Static(facts)
        for warning in p.warnings:
            yield Static(plain(f"⚠ {warning}", style="bold yellow"))
        steps = Table("phase", "host", box=None, header_style="bold", expand=True)
        steps.add_column("command", overflow="fold")  # the exact commands, never cut
        for step in p.steps:
            steps.add_row(plain(step.phase), plain(step.host), plain(step.command, style="cyan"))
        yield Static(steps, classes="plan-steps")


class ConfirmRepair(_Confirm):
    """Lists every fix ``repair`` will apply."""

    yes_label = "Repair"

    def __init__(self, findings: list) -> None:
        super().__init__()
        self.findings = findings

    def body(self) -> ComposeResult:
        yield Label(f"Repair {len(self.findings)} finding(s)?", classes="dialog-title")
        table = Table("kind", "host", "target", "fix", box=None, header_style="bold", expand=True)
        for f in self.findings:
            table.add_row(plain(f.kind), plain(f.host), plain(f.target), plain(f.fix, style="cyan"))
        yield Static(table, classes="plan-steps")


class ConfirmNonIso(_Confirm):
    """Asks before importing a file that is not ISO 9660 (floppy images are legitimate boot media)."""

    yes_label = "Import anyway"

    def __init__(self, upload: Upload) -> None:
        super().__init__()
        self.upload = upload

    def body(self) -> ComposeResult:
        u = self.upload
        why = u.iso.problem if u.iso else "header not read"
        yield Label(plain(f"{u.key} is not ISO 9660"), classes="dialog-title")
        kind = "It has a boot sector (0x55AA): a floppy or disk image." if u.iso and u.iso.hybrid_mbr else \
            "It has no boot sector either."
        text = plain(why)
        text.append(f"\n{kind}\nImport it anyway?")
        yield Static(text)


class ConfirmText(_Confirm):
    """A yes/no question with a title and a paragraph (e.g. overriding a quota)."""

    def __init__(self, title: str, text: str, yes_label: str) -> None:
        super().__init__()
        self.title_text, self.text, self.yes_label = title, text, yes_label

    def body(self) -> ComposeResult:
        yield Label(plain(self.title_text), classes="dialog-title")
        yield Static(plain(self.text, keep_newlines=True))


class _Form(ModalScreen):
    """A modal of input fields: ``enter`` in any field or the ``yes`` button calls :meth:`_submit` (which
    dismisses with the answer, or says what is missing); the other button and ``escape`` dismiss with None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def _submit(self) -> None:
        raise NotImplementedError

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "yes":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ViewAs(_Form):
    """Asks whose view to show: a user name (only the owners that user may act for), or empty for all.

    Dismisses with the name, ``""`` for every owner, or None when cancelled (nothing changes).
    """

    def __init__(self, current: str | None) -> None:
        super().__init__()
        self.current = current or ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("View as user", classes="dialog-title")
            yield Static("Only the owners this user may act for are shown: the owner, the members of its "
                         "folder's group on the image host, [owners] in the config. Empty: every owner.",
                         markup=False)
            yield Input(value=self.current, placeholder="user (empty: every owner)", id="as-user")
            with Horizontal(classes="buttons"):
                yield Button("View", variant="primary", id="yes")
                yield Button("Cancel", id="no")
        yield KeyFooter()

    def _submit(self) -> None:
        self.dismiss(self.query_one("#as-user", Input).value.strip())


class RejectReason(_Form):
    """Asks for the reason of a rejection (required); the upload itself is kept. Dismisses with the reason
    (str), or None."""

    def __init__(self, upload: Upload) -> None:
        super().__init__()
        self.upload = upload

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(plain(f"Reject {self.upload.key}"), classes="dialog-title")
            yield Static("The file stays on the image host; the owner can see why.")
            yield Input(placeholder="reason (required)", id="reason")
            with Horizontal(classes="buttons"):
                yield Button("Reject", variant="error", id="yes")
                yield Button("Cancel", id="no")
        yield KeyFooter()

    def _submit(self) -> None:
        reason = self.query_one("#reason", Input).value.strip()
        if not reason:
            self.notify("a rejection needs a reason", severity="warning")
            return
        self.dismiss(reason)


@dataclass(frozen=True)
class DownloadRequest:
    """What :class:`DownloadUrl` asks for: the URL, the owner, and the optional file name and sha256
    (``None`` when left empty)."""

    url: str
    owner: str
    name: str | None = None
    sha256: str | None = None


class DownloadUrl(_Form):
    """Asks for a download: URL (required), owner (prefilled from the selected row, unless the display rule
    would escape it: an input box shows its value raw), optional file name and sha256. Dismisses with a
    :class:`DownloadRequest`, or None when cancelled. The checks (scheme, host, name, sha256) are the
    backend's: their one error is shown when the download is refused."""

    AUTO_FOCUS = "#dl-url"

    def __init__(self, owner: str = "") -> None:
        super().__init__()
        self.owner = owner if is_printable(owner, keep_newlines=False) else ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Download from a URL", classes="dialog-title")
            with VerticalScroll(classes="dialog-body", id="download-body"):  # scrolls at 80×24; buttons stay
                yield Input(placeholder="URL (http, https, ftp)", id="dl-url")
                yield Input(value=self.owner, placeholder="owner", id="dl-owner")
                yield Input(placeholder="file name (empty: the URL's last part)", id="dl-name")
                yield Input(placeholder="sha256 (optional: a mismatch removes the file)", id="dl-sha256")
                yield Static("The owner's image host downloads it (through its cache) into the owner's folder; "
                             "it shows as writing until complete, then pending. Progress: the Jobs screen (2).",
                             markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Download", variant="primary", id="yes")
                yield Button("Cancel", id="no")
        yield KeyFooter()

    def _value(self, name: str) -> str:
        return self.query_one(f"#dl-{name}", Input).value.strip()

    def _submit(self) -> None:
        url, owner = self._value("url"), self._value("owner")
        if not url or not owner:
            self.notify("a download needs a URL and an owner", severity="warning", markup=False)
            return
        self.dismiss(DownloadRequest(url, owner, self._value("name") or None, self._value("sha256") or None))


class MessageLog(ModalScreen[None]):
    """Every notification of the session, newest first (the screen shows only the newest three)."""

    BINDINGS = [Binding("escape,n,q", "close", "Close")]

    def __init__(self, messages: list[tuple[float, str, str, str]]) -> None:
        super().__init__()
        self.messages = list(messages)

    def compose(self) -> ComposeResult:
        grid = Table.grid(padding=(0, 2))
        style = {"error": "bold red", "warning": "yellow"}
        for when, severity, title, text in reversed(self.messages):
            grid.add_row(Text(time.strftime("%H:%M:%S", time.localtime(when)), style="dim"),
                         plain(title, style=style.get(severity, "bold")), plain(text))
        with Vertical(classes="dialog"):
            yield Label(f"Messages ({len(self.messages)})", classes="dialog-title")
            with VerticalScroll(classes="details"):
                yield Static(grid if self.messages else Text("no messages yet", style="dim"))
        yield KeyFooter()

    def action_close(self) -> None:
        self.dismiss(None)


class Details(ModalScreen[None]):
    """Every field of an upload or a volume."""

    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, title: str, rows: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.rows = rows

    def compose(self) -> ComposeResult:
        grid = Table.grid(padding=(0, 2))
        for name, value in self.rows:
            grid.add_row(Text(name, style="bold"), plain(value))
        with Vertical(classes="dialog"):
            yield Label(plain(self.title_text), classes="dialog-title")
            with VerticalScroll(classes="details"):
                yield Static(grid)
            yield Static("escape closes", classes="hint")
        yield KeyFooter()

    def action_close(self) -> None:
        self.dismiss(None)


class ErrorModal(ModalScreen[None]):
    """A backend error that needs reading: title and message."""

    BINDINGS = [Binding("escape,enter", "close", "Close")]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title_text, self.message = title, message

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog error"):
            yield Label(plain(self.title_text), classes="dialog-title")
            yield Static(plain(self.message, keep_newlines=True))
            yield Button("Close", id="close")
        yield KeyFooter()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """The keys, from the one list of them (:data:`screens.keys.KEYS`, remapped by the keymap); in a
    read-only session the mutating ones are marked."""

    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, read_only: bool = False) -> None:
        super().__init__()
        self.read_only = read_only

    def compose(self) -> ComposeResult:
        keymap = getattr(self.app, "_keymap", {}) if self.is_attached else {}
        grid = Table.grid(padding=(0, 2))
        where = None
        for k in KEYS:
            if k.where != where:
                where = k.where
                grid.add_row(Text(where.title(), style="bold underline"), "")
            keys = display(",".join(keymap[k.id]) if k.id in keymap and isinstance(keymap[k.id], list)
                           else keymap.get(k.id, k.keys))
            note = " (read-only session: refused)" if self.read_only and k.mutating else ""
            grid.add_row(Text(keys, style="bold cyan"), Text(k.help + note))
        with Vertical(classes="dialog"):
            yield Label("isoadmin keys" + (" (READ-ONLY session)" if self.read_only else ""), classes="dialog-title")
            with VerticalScroll(classes="details"):
                yield Static(grid)
        yield KeyFooter()

    def action_close(self) -> None:
        self.dismiss(None)
