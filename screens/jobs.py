"""Jobs screen: one progress bar per import job with phase, bytes, rate and ETA; finished jobs stay."""

from __future__ import annotations

import humanize
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, ProgressBar, Static

from backend.state import PHASES, JobRecord

STATE_STYLE = {"running": "bold cyan", "done": "green", "failed": "bold red"}


def job_status(job: JobRecord) -> Text:
    """``copy 3/7 · 12.0 MiB / 48.0 MiB · 40.1 MiB/s · ETA 1 second`` and the outcome."""
    text = Text()
    text.append(job.state, style=STATE_STYLE.get(job.state, ""))
    if job.phase in PHASES:
        text.append(f"  {job.phase} ({PHASES.index(job.phase) + 1}/{len(PHASES)})")
    text.append("  ")
    text.append(f"{humanize.naturalsize(job.done_bytes, binary=True)} / "
                f"{humanize.naturalsize(job.total_bytes, binary=True)}")
    if job.phase == "copy" and job.verified_bytes:  # the verify reads back behind the copy, in the same pass
        text.append(f", verified {humanize.naturalsize(job.verified_bytes, binary=True)}")
    if job.rate:
        text.append(f"  {humanize.naturalsize(job.rate, binary=True)}/s")
    if job.eta is not None:
        text.append(f"  ETA {humanize.precisedelta(job.eta, minimum_unit='seconds', format='%0.0f')}")
    if job.state == "done":
        text.append(f"  → {job.dom0}:{job.final}  sha256 {job.sha256[:16]}…", style="green")
    if job.state == "failed":
        text.append(f"\n{job.error}", style="red")
        if job.rollback:
            text.append(f"\nrollback: {job.rollback}", style="dim")
    return text


class JobView(Vertical):
    """One job: title, progress bar, status line."""

    def __init__(self, job: JobRecord) -> None:
        super().__init__(id=f"job-{job.id}", classes="job")
        self.job = job

    def compose(self) -> ComposeResult:
        yield Static(classes="job-title")
        yield ProgressBar(total=max(1, self.job.total_bytes), show_eta=False, classes="job-bar")
        yield Static(classes="job-status")

    def on_mount(self) -> None:
        self.show(self.job)

    def show(self, job: JobRecord) -> None:
        self.job = job
        self.set_class(job.state == "failed", "failed")
        self.set_class(job.state == "done", "done")
        title = Text()
        title.append(job.key, style="bold")
        title.append(f"   {job.host} → {job.dom0} · job {job.id} · by {job.approver}", style="dim")
        self.query_one(".job-title", Static).update(title)
        done = job.total_bytes if job.state == "done" else job.done_bytes
        self.query_one(ProgressBar).update(total=max(1, job.total_bytes), progress=done)
        self.query_one(".job-status", Static).update(job_status(job))


class JobsScreen(Screen):
    """Every job of the journal, newest first; running ones update live."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("No import jobs yet: approve an upload on the Uploads screen (1, then a).", id="no-jobs")
        yield VerticalScroll(id="jobs")
        yield Footer()

    def on_mount(self) -> None:
        self.update_view()

    def on_screen_resume(self) -> None:
        self.update_view()

    def update_view(self) -> None:
        for job in sorted(self.app.jobs.values(), key=lambda j: j.created):
            self.update_job(job)

    def update_job(self, job: JobRecord) -> None:
        """Show ``job``: update its view in place, or add it at the top."""
        self.query_one("#no-jobs").display = False
        container = self.query_one("#jobs", VerticalScroll)
        found = container.query(f"#job-{job.id}")
        if found:
            found.first(JobView).show(job)
        else:
            container.mount(JobView(job), before=0 if container.children else None)
