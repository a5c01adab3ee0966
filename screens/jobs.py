"""Jobs screen: one progress bar per import job with phase, bytes, rate and ETA; finished jobs stay."""

from __future__ import annotations

import time

import humanize
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, ProgressBar, Static

from backend.state import PHASES, JobRecord

from .footer import KeyFooter
from .keys import bindings
from .plain import printable

STATE_STYLE = {"running": "bold cyan", "done": "green", "failed": "bold red"}


def _bytes(n: float) -> str:
    return humanize.naturalsize(n, binary=True)


def _progress(text: Text, done: int, total: int, rate: float, eta: float | None) -> None:
    text.append(f"{_bytes(done)} / {_bytes(total) if total else '? (no length announced)'}")
    if rate:
        text.append(f"  {_bytes(rate)}/s")
    if eta is not None:
        text.append(f"  ETA {humanize.precisedelta(eta, minimum_unit='seconds', format='%0.0f')}")


def job_status(job: JobRecord, now: float | None = None) -> Text:
    """``running  copy (4/7)  12.0 MiB / 48.0 MiB  40.1 MiB/s  ETA 1 second``; during the copy a second
    line for the verify that reads the landed bytes back behind it (``verify  8.0 MiB / 48.0 MiB  35.2
    MiB/s  ETA 2 seconds``); then the start time and elapsed time, and the outcome."""
    now = time.time() if now is None else now
    text = Text()
    text.append(job.state, style=STATE_STYLE.get(job.state, ""))
    if job.phase in PHASES:
        text.append(f"  {job.phase} ({PHASES.index(job.phase) + 1}/{len(PHASES)})")
    elif job.kind == "download" and job.state == "running":
        text.append("  download")
    text.append("  ")
    width = text.cell_len
    _progress(text, job.done_bytes, job.total_bytes, job.rate, job.eta)
    if job.phase == "copy" and job.state == "running":  # the verify reads back behind the copy, in the same pass
        text.append("\n" + "verify (read back)".rjust(width - 2) + "  ")
        _progress(text, job.verified_bytes, job.total_bytes, job.verify_rate, job.verify_eta)
    end = now if job.state == "running" else (job.updated or now)
    text.append(f"\nstarted {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(job.created))}, "
                f"{'running for' if job.state == 'running' else 'took'} "
                f"{humanize.precisedelta(max(0.0, end - job.created), minimum_unit='seconds', format='%0.0f')}",
                style="dim")
    if job.state == "done":
        where = f"{job.host}:{job.path}" if job.kind == "download" else f"{job.dom0}:{job.final}"
        text.append(printable(f"  → {where}  sha256 {job.sha256[:16]}…"), style="green")
    if job.state == "failed":
        text.append("\n" + printable(job.error), style="red")
        if job.rollback:
            text.append("\nrollback: " + printable(job.rollback), style="dim")
    return text


class JobView(Vertical, can_focus=True):
    """One job: title, progress bar, status line. Focus it (tab, click) to act on it (``x`` cancels)."""

    def __init__(self, job: JobRecord) -> None:
        super().__init__(id=f"job-{job.id}", classes="job")
        self.job = job

    def compose(self) -> ComposeResult:
        yield Static(classes="job-title")
        yield ProgressBar(total=max(1, self.job.total_bytes), show_eta=False, classes="job-bar")
        yield ProgressBar(total=max(1, self.job.total_bytes), show_eta=False, classes="job-bar verify-bar")
        yield Static(classes="job-status")

    def on_mount(self) -> None:
        self.show(self.job)

    def show(self, job: JobRecord) -> None:
        self.job = job
        self.set_class(job.state == "failed", "failed")
        self.set_class(job.state == "done", "done")
        title = Text()
        title.append(printable(job.key), style="bold")
        if job.kind == "download":
            title.append(printable(f"   {job.url} → {job.host} · download {job.id} · by {job.approver}"), style="dim")
        else:
            title.append(printable(f"   {job.host} → {job.dom0} · job {job.id} · by {job.approver}"), style="dim")
        self.query_one(".job-title", Static).update(title)
        done = job.total_bytes if job.state == "done" else job.done_bytes
        bar, verify = self.query(ProgressBar)
        bar.update(total=max(1, job.total_bytes), progress=done)
        verify.display = job.phase == "copy" and job.state == "running"
        verify.update(total=max(1, job.total_bytes), progress=job.verified_bytes)
        self.query_one(".job-status", Static).update(job_status(job))


class JobsScreen(Screen):
    """Every job of the site (the ledger), newest first; running ones update live. ``x`` cancels the
    focused running import of this console (it rolls back, audited)."""

    BINDINGS = bindings("jobs")

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("No import jobs yet: approve an upload on the Uploads screen (1, then a).", id="no-jobs")
        yield VerticalScroll(id="jobs")
        yield KeyFooter()

    def on_mount(self) -> None:
        self.update_view()

    def on_screen_resume(self) -> None:
        self.update_view()

    def update_view(self) -> None:
        for job in sorted(self.app.jobs.values(), key=lambda j: j.created):
            self.update_job(job)

    def action_cancel(self) -> None:
        view = self.focused if isinstance(self.focused, JobView) else None
        if view is None:
            views = [v for v in self.query(JobView) if v.job.state == "running"]
            view = views[0] if len(views) == 1 else None
        if view is None:
            self.app.notify("focus a running job first (tab)", title="Cancel", severity="warning")
            return
        job = view.job
        if self.app.refuse_read_only("cancel", job.key):
            return
        if job.state != "running":
            self.app.notify(f"job {job.id} is {job.state}", title="Cancel", severity="warning")
        elif job.id not in self.app.site.active:
            self.app.notify(f"job {job.id} runs on another console ({job.console}); cancel it there",
                            title="Cancel", severity="warning")
        else:
            self.app.cancel_import(job.id)

    def update_job(self, job: JobRecord) -> None:
        """Show ``job``: update its view in place, or add it at the top."""
        self.query_one("#no-jobs").display = False
        container = self.query_one("#jobs", VerticalScroll)
        found = container.query(f"#job-{job.id}")
        if found:
            view = found.first(JobView)
            if view.job != job or job.state == "running":  # a finished job's card never changes
                view.show(job)
        else:
            container.mount(JobView(job), before=0 if container.children else None)
