"""The Textual app: Uploads, Jobs, Volumes, Health, Audit, Owners and Hosts screens, a background refresh,
import workers.

The app holds the last :class:`~backend.site.Snapshot` and the live jobs; screens render from them and
start work through the app's workers. Host work happens only in ``backend``.

Errors: every worker runs with ``exit_on_error=False``; one handler (:meth:`IsoadminApp.on_worker_state_changed`)
shows a failed worker's error in one :class:`~screens.modals.ErrorModal` (an unexpected exception also
writes a crash report to the state dir) and the console keeps running. Text from hosts and people is shown
under the display rule (:mod:`backend.text`): notifications go through :meth:`IsoadminApp.say`.
"""

from __future__ import annotations

import asyncio
import gc
import time

from textual import work
from textual.app import App, ScreenStackError, UnknownModeError
from textual.css.query import NoMatches
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.worker import Worker, WorkerState

from backend.crash import one_line, write_crash_report
from backend.errors import IsoadminError
from backend.text import printable
from backend.site import ImportPlan, Site, Snapshot
from backend.state import JobRecord
from screens.audit import AuditScreen
from screens.commands import IsoadminCommands
from screens.health import HealthScreen
from screens.hosts import HostsScreen
from screens.jobs import JobsScreen
from screens.keys import bindings
from screens.modals import ConfirmText, ErrorModal, HelpScreen, MessageLog, ViewAs
from screens.owners import OwnersScreen
from screens.uploads import UploadsScreen
from screens.volumes import VolumesScreen


class SnapshotReady(Message):
    """A refresh of the site finished (``partial``: its rows, before new uploads' ISO facts are read)."""

    def __init__(self, snapshot: Snapshot, partial: bool = False) -> None:
        super().__init__()
        self.snapshot = snapshot
        self.partial = partial


class JobProgress(Message):
    """A job moved (at most 4 per second per job, throttled by the backend)."""

    def __init__(self, job: JobRecord) -> None:
        super().__init__()
        self.job = job


class IsoadminApp(App[int]):
    """The console.

    Args:
        site: the backend for the whole site (already built; the caller closes it).
        lab: the embedded lab object when running on one (kept for reference; the caller stops it).
        read_only: auditor mode: READ-ONLY in the header, mutating keys absent (the backend refuses anyway).
        refresh_seconds: pause between refreshes (default: the site's ``refresh_seconds``).
    """

    CSS_PATH = "../styles/app.tcss"
    TITLE = "isoadmin"
    MODES = {"uploads": UploadsScreen, "jobs": JobsScreen, "volumes": VolumesScreen, "health": HealthScreen,
             "audit": AuditScreen, "owners": OwnersScreen, "hosts": HostsScreen}
    DEFAULT_MODE = "uploads"
    COMMANDS = App.COMMANDS | {IsoadminCommands}
    BINDINGS = bindings("anywhere")
    #: notifications on screen at once (the older ones are in the message log, ``n``)
    MAX_TOASTS = 3

    def __init__(self, site: Site, *, lab=None, read_only: bool = False,
                 refresh_seconds: float | None = None) -> None:
        super().__init__()
        self.site = site
        self.lab = lab
        self.read_only = read_only or site.read_only
        self.refresh_seconds = refresh_seconds if refresh_seconds is not None else site.config.refresh_seconds
        self.snapshot = Snapshot()
        self.jobs: dict[str, JobRecord] = {j.id: j for j in site.jobs()}
        self.refreshes = 0
        self._frozen_at = 0  # site size (uploads + volumes) at the last gc.freeze
        self._refresh_timer = None
        self._unmounted: list[str] | None = None  # modes to mount ahead of their first switch
        self.messages: list[tuple[float, str, str, str]] = []  # (time, severity, title, text) of every notification
        self.set_keymap(dict(site.config.keymap))
        self._set_sub_title()

    def _set_sub_title(self) -> None:
        where = "lab" if self.lab is not None else str(self.site.config.source or "")
        if self.site.as_user:
            where += f" · as {self.site.as_user}"
        self.sub_title = printable(f"READ-ONLY · {where}" if self.read_only else where)

    def on_mount(self) -> None:
        self.recover_jobs()
        self.action_refresh_now()

    @work(group="recover", exclusive=True, exit_on_error=False)
    async def recover_jobs(self) -> None:
        """Resume or roll back jobs a killed console left running; say so."""
        for job in await self.site.recover():
            self.say(f"job {job.id} ({job.key}) was left running by a stopped console: {job.state}, "
                     f"{job.rollback}", title="Recovered", timeout=10)

    # ------------------------------------------------------------------ refresh

    def action_refresh_now(self) -> None:
        """Refresh the inventory now (a newer refresh replaces one still running)."""
        self.refresh_site()

    @work(group="refresh", exclusive=True, exit_on_error=False)
    async def refresh_site(self) -> None:
        snapshot = await self.site.refresh(on_rows=lambda rows: self.post_message(SnapshotReady(rows, partial=True)))
        self.post_message(SnapshotReady(snapshot))

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self.snapshot = message.snapshot
        self.refreshes += 0 if message.partial else 1
        if not self.read_only and self.site.orphaned_jobs(message.snapshot.books):
            self.recover_jobs()  # a console somewhere stopped with a job running: its lease has expired
        for job in message.snapshot.jobs:
            if job.id not in self.site.active:
                self.jobs[job.id] = job
        self._update_screen()
        if message.partial:
            return  # the rest of this refresh (ISO facts) follows
        if self._unmounted is None:  # the first full snapshot is on screen: mount the other screens
            self._unmounted = [mode for mode in self.MODES if mode != self.current_mode]
            self.call_after_refresh(self._premount)
        self._freeze_long_lived(len(message.snapshot.uploads) + len(message.snapshot.volumes))
        # one refresh cycle whatever triggered this refresh (the timer, ctrl+r, a finished import, a
        # reject, gc): the next timed refresh replaces any armed one
        if self._refresh_timer is not None:
            self._refresh_timer.stop()
        self._refresh_timer = self.set_timer(self.refresh_seconds, self.refresh_site, name="refresh")

    @property
    def screens_ready(self) -> bool:
        """True once every screen is mounted (see :meth:`_premount`)."""
        return self._unmounted == []

    def _premount(self) -> None:
        """Mount one screen that has not been shown yet, then (after the next repaint) the next one.

        Textual builds a mode's screen at its first switch; with 5,000 volumes that first switch took
        about 280 ms (``python -m bench --only P3 --profile DIR``: the screen's widgets, their CSS and
        its table). Mounted ahead, one per repaint so keys pressed meanwhile wait for one screen at
        most, every switch finds its screen ready. (Textual has no public call that mounts a mode's
        screen without showing it; ``_init_mode`` is the one ``switch_mode`` uses.)
        """
        init = getattr(self, "_init_mode", None)
        if not self._unmounted or self._exit:
            return
        if init is None:
            self._unmounted = []  # a Textual without it: screens are built at their first switch
            return
        mode = self._unmounted.pop(0)
        if mode != self.current_mode and mode not in self._screen_stacks:
            init(mode)
            # its widgets got the stylesheet as they mounted: mark it current, or its first switch
            # would restyle the whole console again (Textual does so for a screen it has not shown)
            for screen in self._screen_stacks.get(mode, []):
                screen._css_update_count = self._css_update_count
        self.call_after_refresh(self._premount)

    def _freeze_long_lived(self, items: int) -> None:
        """Keep Python's full garbage collections short with a big site loaded.

        A full collection walks every object the console holds: with 10,000 uploads that is a pause of
        0.2–0.5 s, often, in the middle of key presses. After the first snapshot (and whenever the site
        has grown by half since), collect once and freeze what survives (``gc.freeze``): the screens and
        their widgets stay, later collections skip them. Snapshots themselves hold no reference cycles, so
        an old one is freed as soon as it is replaced, frozen or not.
        """
        if items > 1.5 * self._frozen_at:
            gc.collect()
            gc.freeze()
            self._frozen_at = max(items, 1)

    def _update_screen(self) -> None:
        """Redraw the current screen from the snapshot. A last refresh can land while the console quits,
        after its screens (or their widgets) are gone: then there is nothing to show."""
        try:
            update = getattr(self.screen, "update_view", None)
            if update is not None:
                update()
        except (ScreenStackError, UnknownModeError, NoMatches):
            pass

    def action_view_as(self) -> None:
        """Ask whose view to show (as ``--as USER``); empty shows every owner again."""
        def chosen(user: str | None) -> None:
            if user is None:
                return
            self.site.as_user = user or None
            self._set_sub_title()
            self.action_refresh_now()

        self.push_screen(ViewAs(self.site.as_user), chosen)

    # ------------------------------------------------------------------ jobs

    def start_import(self, plan: ImportPlan) -> None:
        """Run an approved plan in its own worker (several jobs may run at once)."""
        self.run_worker(self._import(plan), group=f"job-{plan.job_id}", name=f"import {plan.upload.key}",
                        exit_on_error=False)

    async def _import(self, plan: ImportPlan) -> None:
        def listener(job: JobRecord) -> None:
            self.post_message(JobProgress(job))

        try:
            job = await self.site.approve(plan, listener)
        finally:
            self.refresh_site()
        self.say(f"{job.key} → {job.final} on {job.dom0}", title="Imported")

    def start_download(self, request) -> None:
        """Run a download (a :class:`~screens.modals.DownloadRequest`) in its own worker (several may run at
        once); its progress reaches the Jobs screen, its outcome a notification, a refusal or failure the
        one error modal."""
        from backend.download import shown_url

        self.run_worker(self._download(request), group="download", name=f"download {shown_url(request.url)}",
                        exit_on_error=False)

    async def _download(self, request) -> None:
        from backend import download

        def listener(job: JobRecord) -> None:
            self.post_message(JobProgress(job))

        self.say(f"{request.owner}: downloading {download.shown_url(request.url)}", title="Download")
        try:
            result = await download.download_url(self.site, request.url, request.owner, request.name,
                                                 request.sha256, listener=listener)
        finally:
            self.refresh_site()
        name = download.file_name(download.shown_url(request.url), request.name)
        self.say(f"{request.owner}/{name} sha256 {result.sha256} "
                 f"({'from the cache' if result.cached else 'downloaded'})", title="Downloaded")

    def on_job_progress(self, message: JobProgress) -> None:
        if message.job.kind == "download" and message.job.id not in self.jobs:
            self.refresh_site()  # its part file is on the image host now: show its row (and its progress)
        self.jobs[message.job.id] = message.job
        if isinstance(self.screen, JobsScreen):
            self.screen.update_job(message.job)
        elif isinstance(self.screen, UploadsScreen):
            self.screen.show_progress(message.job)

    # ------------------------------------------------------------------ quitting

    async def action_quit(self) -> None:
        """Quit; with imports running, say so and ask first. Confirmed, every running import is stopped
        and rolled back (its staging volume detached and removed, the upload untouched, audited) before
        the console exits: nothing is left ``importing``."""
        running = list(self.site.active.values())
        if not running:
            self.exit(0)
            return
        names = "\n".join(f"{r.job.key} ← {r.job.url} (download)" if r.job.kind == "download"
                           else f"{r.job.key} → {r.job.dom0} ({r.job.phase})" for r in running)

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.stop_imports_and_quit()

        self.push_screen(ConfirmText(f"{len(running)} import(s) running",
                                     f"{names}\n\nQuitting stops them and rolls them back: their staging volumes "
                                     "are detached and removed, the uploads stay as they are (a download is "
                                     "stopped and its part file removed). Quit?",
                                     "Stop and quit"), confirmed)

    def cancel_import(self, job_id: str) -> None:
        """Stop one running import of this console: it rolls back (its staging volume detached and removed)
        and is audited as failed, "cancelled by the console"."""
        for worker in list(self.workers):
            if worker.group == f"job-{job_id}":
                worker.cancel()
                self.notify(f"job {job_id}: cancelled; rolling back", title="Cancel")

    @work(group="quit", exclusive=True)
    async def stop_imports_and_quit(self) -> None:
        """Cancel every import worker, wait until each has rolled back, then exit."""
        self.notify("stopping the running imports and rolling them back…", title="Quitting")
        for worker in list(self.workers):
            if worker.group.startswith("job-") or worker.group == "download":
                worker.cancel()
        for _ in range(1200):  # a rollback waits for a detach at most (detach_timeout), then gives up
            if not self.site.active:
                break
            await asyncio.sleep(0.1)
        self.exit(0)

    # ------------------------------------------------------------------ errors and help

    def say(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
            timeout: float | None = None) -> None:
        """Notify under the display rule: ``message`` and ``title`` escaped (:func:`backend.text.printable`;
        the message keeps its line breaks) and never parsed as markup."""
        self.notify(printable(message, keep_newlines=True), title=printable(title), severity=severity,
                    timeout=timeout, markup=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one handler of worker errors (every worker runs with ``exit_on_error=False``)."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.show_error(event.worker.error)

    def show_error(self, exc: BaseException) -> None:
        """Show a failure in one :class:`ErrorModal`: an :class:`IsoadminError` with its title and message;
        anything else as "Unexpected error" with the path of the crash report it writes to the state dir."""
        if isinstance(exc, IsoadminError):
            self.push_screen(ErrorModal(exc.title, exc.message))
            return
        try:
            where = f"crash report: {write_crash_report(exc, self.site.config.state_dir)}"
        except OSError as report_exc:
            where = f"no crash report ({report_exc})"
        self.push_screen(ErrorModal("Unexpected error", f"{one_line(exc)}\n{where}\nThe console keeps running."))

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Show a notification (never parsed as markup), keep it in the message log, and keep at most
        :attr:`MAX_TOASTS` on screen (the oldest go first)."""
        message, title = printable(message, keep_newlines=True), printable(title)  # the display rule, always
        self.messages.append((time.time(), str(severity), title, message))
        del self.messages[:-500]
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)
        self.call_later(self._cap_toasts)

    def _cap_toasts(self) -> None:
        shown = list(self._notifications)
        for old in shown[:-self.MAX_TOASTS]:
            self._unnotify(old, refresh=False)
        if len(shown) > self.MAX_TOASTS:
            self._refresh_notifications()

    def action_notifications(self) -> None:
        """The message log: every notification of this session, newest first."""
        self.push_screen(MessageLog(self.messages))

    def refuse_read_only(self, what: str, target: str = "") -> bool:
        """For a mutating key: in a read-only session say "read-only session" (and put the refused attempt
        on the audit log); return True when refused."""
        if not self.read_only:
            return False
        self.notify(f"read-only session: {what} is not allowed", title="Read-only", severity="warning")
        self.run_worker(self.site.audit_refusal(what, target, "read-only session"), group="refusal")
        return True

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.read_only))
