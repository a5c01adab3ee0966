"""Health screen: what ``isoadmin check`` finds (leftovers the hosts show), and ``R`` to repair."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult

from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from backend import health
from backend.errors import IsoadminError

from .footer import KeyFooter
from .keys import bindings
from .modals import ConfirmRepair
from .plain import plain, printable
from .workers import ForwardWorkerErrors

COLUMNS = ("kind", "host", "target", "detail", "fix")


class HealthScreen(ForwardWorkerErrors, Screen):
    """Findings of :func:`backend.health.check`; ``c`` checks again, ``R`` repairs (after a confirmation
    that lists every fix; absent in read-only sessions)."""

    AUTO_FOCUS = "#findings"
    BINDINGS = bindings("health")

    def __init__(self) -> None:
        super().__init__()
        self.findings: list[health.Finding] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="body"):
            yield Static("checking…", id="summary", classes="hosts")
            table = DataTable(id="findings", cursor_type="row", zebra_stripes=True)
            for name in COLUMNS:
                table.add_column(name.title(), key=name)
            yield table
        yield KeyFooter()

    def on_mount(self) -> None:
        self.action_check()

    def action_check(self) -> None:
        self.run_check()

    @work(group="health", exclusive=True, exit_on_error=False)
    async def run_check(self) -> None:
        try:
            self.findings = await health.check(self.app.site)
        except IsoadminError as exc:  # shown in place: the screen's state, not a dialog
            self.query_one("#summary", Static).update(plain(f"check failed: {exc.message}", style="bold red"))
            return
        self.show()

    def show(self) -> None:
        table = self.query_one("#findings", DataTable)
        table.clear()
        for i, f in enumerate(self.findings):
            table.add_row(plain(f.kind, style="bold yellow" if f.fix else "bold red"), plain(f.host),
                          plain(f.target), plain(f.detail), plain(f.fix) if f.fix else Text("needs a person", style="red"),
                          key=str(i))
        summary = (Text("healthy: no orphan volumes, no stray disks, no unfinished jobs", style="green")
                   if not self.findings else Text(f"{len(self.findings)} finding(s)", style="bold yellow"))
        self.query_one("#summary", Static).update(summary)

    def action_repair(self) -> None:
        if self.app.refuse_read_only("repair", f"{len(self.findings)} findings"):
            return
        fixable = [f for f in self.findings if f.fix]
        if not fixable:
            self.app.say("nothing to repair", title="Health")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.run_repair(fixable)

        self.app.push_screen(ConfirmRepair(fixable), confirmed)

    @work(group="health", exclusive=True, exit_on_error=False)
    async def run_repair(self, findings: list[health.Finding]) -> None:
        results = await health.repair(self.app.site, findings, apply=True)
        failed = [printable(f"{f.target}: {o}") for f, o in results if o.startswith("failed")]
        if failed:
            self.app.say("\n".join(failed), title="Repair incomplete", severity="error", timeout=10)
        else:
            self.app.say(f"{len(results)} fix(es) done", title="Repaired")
        self.findings = await health.check(self.app.site)
        self.show()
        self.app.refresh_site()
