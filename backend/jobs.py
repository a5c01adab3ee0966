"""Import jobs: create → attach → locate → copy → verify → detach → rename, with rollback.

On any failure the job rolls back what it did (detach if attached, remove the staging volume it created),
never touches the upload, and ends ``failed`` with the reason. Progress is reported through a callback at
most :data:`MAX_EVENTS_PER_SECOND` times a second per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import hosttools, imagehost, newdevice
from .errors import CommandFailed, IsoadminError, JobFailed, NotApprovable
from .hypervisor import HypervisorDriver
from .isoinfo import HEADER_BYTES, inspect_header
from .ledger import Ledger
from .models import StorageReport
from .ssh import Host
from .state import JobRecord
from .storage import StorageDriver
from .storage.base import CREATED_BY

MAX_EVENTS_PER_SECOND = 4.0

JobListener = Callable[[JobRecord], None]
PhaseHook = Callable[[JobRecord], Awaitable[None]]


def busy(report: StorageReport, staging: str, dom0: str) -> str:
    """"already importing by WHO (job ID …)" for a staging volume that exists (the lock is taken)."""
    vol = next((v for v in report.volumes if v.name == staging), None)
    meta = vol.meta if vol else {}
    return (f"already importing by {meta.get('approver', 'someone')} (job {meta.get('job', '?')}, "
            f"staging volume {staging} on {dom0})")


class Throttle:
    """Deliver job snapshots to ``listener`` at most ``rate`` times a second, always the latest.

    An update that comes too soon is held and delivered when the interval has passed; :meth:`flush`
    delivers a held one at once (used when the job ends).
    """

    def __init__(self, listener: JobListener | None, rate: float = MAX_EVENTS_PER_SECOND) -> None:
        self.listener = listener
        self.interval = 1.0 / rate
        self.last = 0.0
        self.pending: JobRecord | None = None
        self.timer: asyncio.TimerHandle | None = None

    def __call__(self, job: JobRecord) -> None:
        if self.listener is None:
            return
        self.pending = job
        if self.timer is not None:
            return  # a delivery is already scheduled; it will carry this latest update
        wait = self.last + self.interval - time.monotonic()
        if wait <= 0:
            self._deliver()
        else:
            self.timer = asyncio.get_running_loop().call_later(wait, self._fire)

    def _fire(self) -> None:
        self.timer = None
        wait = self.last + self.interval - time.monotonic()
        if wait > 0:  # woken early: wait out the interval
            self.timer = asyncio.get_running_loop().call_later(wait, self._fire)
        else:
            self._deliver()

    def _deliver(self) -> None:
        job, self.pending = self.pending, None
        if job is not None and self.listener is not None:
            self.last = time.monotonic()
            self.listener(_snapshot(job))

    async def flush(self) -> None:
        """Deliver the held update, waiting out the interval so the rate bound still holds."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.pending is not None:
            wait = self.last + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._deliver()


def _snapshot(job: JobRecord) -> JobRecord:
    return JobRecord.from_json(job.to_json())


@dataclass
class JobContext:
    """What a job needs: the hosts and drivers of its image host and dom0, and the site's ledger.

    ``holder`` is this console's id in the leases it holds; ``lease_seconds`` how long a lease lasts
    without renewal (it is renewed every third of that).
    """

    image_host: Host
    id_dirs: tuple[str, ...]
    storage: StorageDriver
    hypervisor: HypervisorDriver
    ledger: Ledger
    holder: str
    lease_seconds: float = 30.0
    locate_timeout: float = 15.0
    detach_timeout: float = 30.0
    copies: asyncio.Semaphore | None = None  # bounds concurrent copies on the image host
    owner_lock: asyncio.Lock | None = None   # one quota check + create at a time per owner (this console)
    quota: Callable[[int], Awaitable[None]] | None = None  # raises QuotaExceeded; bytes being added
    locate: str = "serial"        # the dom0's ``locate``: ``serial`` or ``new-device`` (see backend.newdevice)
    sys_block: str = "/sys/block"  # the image host's, for ``new-device``
    dev_dir: str = "/dev"
    attach_lock: asyncio.Lock | None = None  # one attach-and-locate at a time per image host (``new-device``)


def volume_meta(job: JobRecord, **extra) -> dict:
    """The metadata a job stores with its volume (owner, upload, size, source, approver, time, job, ISO
    facts) plus ``extra`` (``state``, ``sha256``): what makes a dom0 describe itself, and what ``repair``
    writes back on a final volume whose metadata a crash lost."""
    meta = {
        "created_by": CREATED_BY, "owner": job.owner, "upload": job.upload, "size": job.size,
        "source_host": job.host, "source_path": job.path, "source_mtime": job.mtime,
        "source_inode": job.inode, "approver": job.approver, "time": job.created, "job": job.id,
    }
    if job.iso:
        meta["iso"] = job.iso
    meta.update(extra)
    return meta


class ImportJob:
    """Runs one :class:`JobRecord` to ``done`` or ``failed``.

    Args:
        job: the record (phase ``create``, state ``running``), already journaled by the caller.
        ctx: hosts, drivers and journal.
        listener: told about progress (throttled, see :class:`Throttle`).
        on_phase: awaited, unthrottled, at the start of every phase (after it is journaled); for
            callers that must act at an exact phase boundary (fault-injection tests, audit).
    """

    def __init__(self, job: JobRecord, ctx: JobContext, listener: JobListener | None = None,
                 on_phase: PhaseHook | None = None) -> None:
        self.job = job
        self.ctx = ctx
        self.events = Throttle(listener)
        self.on_phase = on_phase
        self.copy_pid: int | None = None
        self.landed = ""               # sha256 of the bytes read back from the disk during the copy
        self.lost = ""                 # why the lease was lost (the job then stops and rolls back)
        self.ending = False            # rolling back or finishing: the lease keeper no longer stops the job
        self._dirty = False
        self._saver: asyncio.Task | None = None
        self._save_error: IsoadminError | None = None

    def _update(self, **changes) -> None:
        """Change the record; every change but bare progress is journaled on the ledger (in the
        background, in order; :meth:`_flush` waits for it)."""
        for key, value in changes.items():
            setattr(self.job, key, value)
        self.job.updated = time.time()
        if not changes.keys() <= {"done_bytes", "verified_bytes", "rate", "verify_rate"}:
            self._dirty = True
            if self._saver is None or self._saver.done():
                self._saver = asyncio.get_running_loop().create_task(self._saving())
        self.events(self.job)

    async def _saving(self) -> None:
        while self._dirty:
            self._dirty = False
            try:
                await self.ctx.ledger.save(self.job)
            except IsoadminError as exc:
                self._save_error = exc

    async def _flush(self) -> None:
        """Wait until the record as it is now is on the ledger.

        Raises:
            IsoadminError: the ledger could not be written (a job that cannot be journaled stops).
        """
        if self._saver is not None:
            await asyncio.shield(self._saver)
        if self._save_error is not None:
            exc, self._save_error = self._save_error, None
            raise IsoadminError(f"cannot journal the job on the ledger: {exc.message}")

    async def _phase(self, phase: str) -> None:
        self._update(phase=phase)
        await self._flush()
        if self.on_phase is not None:
            await self.on_phase(_snapshot(self.job))

    async def _keep_lease(self, main: asyncio.Task | None) -> None:
        """Renew the job's lease every third of its time. When it is taken over, or cannot be renewed for
        most of its time, stop ``main`` (the job then rolls back): another console may be recovering it."""
        ctx = self.ctx
        self.lost = await ctx.ledger.hold(self.job, ctx.holder, ctx.lease_seconds)
        if main is not None and not self.ending:
            main.cancel()

    async def run(self) -> JobRecord:
        """Run every phase under the job's lease (taken by the caller with the upload's lock); return the
        finished record. The lock and the lease are released when the job ends, done or failed.

        Raises:
            JobFailed: a phase failed; the job was rolled back and journaled as ``failed`` (its
                ``exit_code`` is the cause's when another console won the upload or the quota).
            asyncio.CancelledError: the console stopped the job; it was rolled back first.
        """
        job, ctx = self.job, self.ctx
        keeper = asyncio.get_running_loop().create_task(self._keep_lease(asyncio.current_task()))
        try:
            await self._phase("create")
            async with ctx.owner_lock or contextlib.nullcontext():
                await self._create()

            await self._phase("attach")
            new_device = ctx.locate == "new-device"
            async with (ctx.attach_lock if new_device and ctx.attach_lock else contextlib.nullcontext()):
                if new_device:  # what the image host has before the attach, journaled for recovery
                    before = await newdevice.block_devices(ctx.image_host, ctx.sys_block)
                    self._update(device_before=[d.name for d in before])
                    await self._flush()
                await ctx.hypervisor.attach(job.domain, ctx.storage.device_path(job.staging), job.serial)
                self._update(attached=True)

                await self._phase("locate")
                if new_device:
                    device = await newdevice.locate_new(ctx.image_host, job.device_before, job.alloc,
                                                        ctx.sys_block, ctx.dev_dir, ctx.locate_timeout)
                else:
                    device = await imagehost.locate(ctx.image_host, job.serial, ctx.id_dirs, ctx.locate_timeout)
                self._update(device=device)
            await hosttools.tools(ctx.image_host)  # asked once per host, here: the copy then starts at once

            async with ctx.copies or contextlib.nullcontext():
                await self._phase("copy")
                await self._copy(device)

                await self._phase("verify")
                landed = self.landed or await imagehost.verify(ctx.image_host, device, job.size)
                if landed != job.sha256:
                    raise IsoadminError(f"landed bytes differ from the upload "
                                        f"(sha256 {landed[:12]}… ≠ {job.sha256[:12]}…)")
                await self._check_facts(device)
                await self._phase("detach")  # journaled while the copy slot is still held

            await ctx.hypervisor.detach(job.domain, job.serial, ctx.detach_timeout,
                                        device=ctx.storage.device_path(job.staging))
            self._update(attached=False)

            await self._phase("rename")
            await ctx.storage.rename(job.staging, job.final, self._meta(state="final", sha256=job.sha256))
            self.ending = True
            self._update(created_volume=False, phase="done", state="done")
            try:
                await self._flush()
                await ctx.ledger.release(job)
            except IsoadminError as exc:  # the volume is final and verified: the import is done all the same
                job.rollback = (f"the ledger was not updated ({exc.message}); once the lease expires, any "
                                "console finds the final volume and records the job done")
        except asyncio.CancelledError:
            if not self.lost:
                await asyncio.shield(self._fail("cancelled by the console"))
                raise
            asyncio.current_task().uncancel()
            await self._fail(f"stopped: {self.lost}")
            raise JobFailed(job.id, job.phase, job.error) from None
        except (IsoadminError, OSError) as exc:
            await self._fail(str(exc))
            raise JobFailed(job.id, job.phase, job.error, cause=exc) from None
        finally:
            keeper.cancel()
            await self.events.flush()
        return job

    async def _check_facts(self, device: str) -> None:
        """What was approved is what landed: the ISO facts read again from the landed bytes must be the
        ones the approver saw (an upload rewritten in place after listing, with its size, inode and mtime
        kept, is caught here)."""
        job = self.job
        if not job.facts:
            return
        header = await imagehost.read_device_header(self.ctx.image_host, device, HEADER_BYTES)
        landed = dataclasses.asdict(inspect_header(header[:job.size], job.size))
        if landed != job.facts:
            what = ", ".join(f"{k} {job.facts.get(k)!r} → {landed.get(k)!r}" for k in sorted(landed)
                             if landed.get(k) != job.facts.get(k))
            raise IsoadminError(f"the bytes copied are not the upload that was approved (ISO facts changed: {what})")

    async def _create(self) -> None:
        """Take the lock (the staging volume), within capacity and quota."""
        job, ctx = self.job, self.ctx
        report = await ctx.storage.report()
        if any(v.name == job.staging for v in report.volumes):
            raise NotApprovable(busy(report, job.staging, job.dom0))  # the second guard: the staging name
        await ctx.storage.check_capacity(job.size, report)
        if ctx.quota is not None:
            await ctx.quota(job.alloc)
        try:
            await ctx.storage.create(job.staging, job.alloc, self._meta(state="copying"))
        except CommandFailed:
            # The staging volume is the lock: if another console created it first, say who.
            report = await ctx.storage.report()
            if any(v.name == job.staging for v in report.volumes):
                raise NotApprovable(busy(report, job.staging, job.dom0)) from None
            raise
        self._update(created_volume=True)
        if ctx.quota is not None:
            await ctx.quota(0)  # again, now that every console's staging volumes are on the dom0s

    async def _copy(self, device: str) -> None:
        job, ctx = self.job, self.ctx
        self._update(total_bytes=job.size, done_bytes=0)
        started = time.monotonic()

        def progress(done: int, verified: int) -> None:
            elapsed = time.monotonic() - started
            self._update(done_bytes=done, verified_bytes=verified, rate=done / elapsed if elapsed > 0 else 0.0,
                         verify_rate=verified / elapsed if elapsed > 0 else 0.0)

        def pid(value: int) -> None:
            self.copy_pid = value
            self._update(copy_pid=value)  # journaled: a console that dies mid-copy can still stop it

        result = await imagehost.copy(ctx.image_host, job.path, device, progress, pid)
        self.copy_pid = None
        self._update(copy_pid=0)
        bad = {k: v for k, v in result.statuses.items() if v != 0}
        if bad or set(result.statuses) != {"read", "write", "readback"}:
            raise IsoadminError(f"copy failed ({', '.join(f'{k} exit {v}' for k, v in bad.items()) or 'incomplete'})")
        if result.before != result.after:
            raise IsoadminError("the upload changed during the copy")
        stat = result.before.rsplit(" ", 4)
        if (len(stat) != 5 or not stat[0].startswith("regular") or stat[1:3] != [str(job.size), str(job.inode)]
                or stat[4] != str(int(job.mtime))):
            raise IsoadminError(f"the upload is not the file that was approved (now: {result.before or 'gone'})")
        if result.copied != job.size:
            raise IsoadminError(f"copied {result.copied} bytes, expected {job.size}")
        if not result.sha256 or not result.landed or result.verified != job.size:
            raise IsoadminError("copy printed no checksum" if not result.sha256 else
                                f"read back {result.verified} of {job.size} bytes from the disk")
        self.landed = result.landed
        elapsed = time.monotonic() - started
        rate = job.size / elapsed if elapsed > 0 else 0.0  # written and read back in the same pass
        self._update(sha256=result.sha256, done_bytes=job.size, verified_bytes=job.size, rate=rate, verify_rate=rate)

    def _meta(self, **extra) -> dict:
        return volume_meta(self.job, **extra)

    async def recover(self) -> JobRecord:
        """Finish a job whose console died (the caller has claimed its expired lease): from what the
        hosts show, mark it done (the final volume exists) or roll it back (stop the copy, detach, remove
        its staging volume); then release the upload's lock. The lease is renewed meanwhile.

        Returns:
            the journaled record (``done`` or ``failed``).
        Raises:
            HostError: a host needed for the recovery is down (the job stays ``running``; its lease
                expires again and a later recovery retries).
        """
        job, ctx = self.job, self.ctx
        keeper = asyncio.get_running_loop().create_task(self._keep_lease(None))
        try:
            report = await ctx.storage.report()
            mine = {v.name: v for v in report.volumes if v.meta.get("job") == job.id}
            if job.final in mine and job.staging not in mine:
                self._update(phase="done", state="done", created_volume=False, attached=False,
                             rollback="found final on recovery")
            else:
                self.copy_pid = job.copy_pid or None
                job.attached = (job.serial in await ctx.hypervisor.attached(job.domain)
                                or ctx.storage.device_path(job.staging)
                                in await ctx.hypervisor.attached_sources(job.domain))
                job.created_volume = job.staging in {v.name for v in report.volumes}
                await self._fail(f"its console stopped during {job.phase}; rolled back by {ctx.holder.split(':')[0]}",
                                 release=False)
            await self._flush()
            await ctx.ledger.release(job)
        finally:
            keeper.cancel()
        return job

    async def _fail(self, reason: str, release: bool = True) -> None:
        """Roll back (stop copy, detach, remove staging), journal the job as failed and (unless
        ``release`` is False) release its lease and the upload's lock. Never raises for a host error:
        what could not be undone is said in ``rollback`` and left for ``check``."""
        job, ctx = self.job, self.ctx
        self.ending = True
        notes = []
        if self.copy_pid is not None:
            try:
                await imagehost.kill_group(ctx.image_host, self.copy_pid)
                notes.append("copy stopped")
            except IsoadminError as exc:
                notes.append(f"could not stop the copy: {exc}")
        if job.attached:
            try:
                await ctx.hypervisor.detach(job.domain, job.serial, ctx.detach_timeout,
                                            device=ctx.storage.device_path(job.staging))
                job.attached = False
                notes.append("detached")
            except IsoadminError as exc:
                notes.append(f"detach failed: {exc}")
        if job.created_volume and not job.attached:
            try:
                await ctx.storage.remove(job.staging)
                job.created_volume = False
                notes.append(f"removed {job.staging}")
            except IsoadminError as exc:
                notes.append(f"could not remove {job.staging}: {exc}")
        elif job.created_volume:
            notes.append(f"left {job.staging} in place because it is still attached")
        self._update(state="failed", error=reason, rollback="; ".join(notes), copy_pid=0)
        if release:
            try:
                await self._flush()
                await ctx.ledger.release(job)
            except IsoadminError as exc:
                job.rollback += f"; the ledger was not updated ({exc.message}): its lease expires and any console recovers it"
