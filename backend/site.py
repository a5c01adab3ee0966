"""The site: every host of a config, its inventory, and the actions on it (plan, approve, reject).

This is the backend's front door; the TUI and the CLI use nothing else for host work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import getpass
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import hosttools, imagehost, quota
from .download import WORK_DIR, part_name, recover_download
from .commands import Command
from .audit import AuditLog
from .config import SiteConfig
from .errors import (CapacityShort, ConfigError, HostError, IsoadminError, JobFailed, NotApprovable, NotFound,
                     QuotaExceeded, ReadOnlyError, UploadRejected, UsageError)
from .hypervisor import HypervisorDriver, make_hypervisor
from .isoinfo import HEADER_BYTES, IsoFacts, inspect_header
from .jobs import ImportJob, JobContext, JobListener, PhaseHook, busy
from .ledger import Books, Ledger, upload_key
from .models import APPROVABLE, HostStatus, Owner, Upload, UploadState, Volume
from .naming import volume_body
from .ssh import CommandListener, Host
from .state import JobRecord
from .storage import StorageDriver, make_storage



@dataclass
class Snapshot:
    """One refresh of the whole site.

    Attributes:
        uploads: every entry of every owner folder. volumes: every volume of every dom0.
        hosts: status of each host (down ones carry the reason). jobs: the journal, oldest first.
        owners: the owners shown (all, or those ``as_user`` may act for).
        time: when the refresh finished (epoch seconds).
        books: the ledger as read by this refresh (leases, locks, rejections, the audit head).
    """

    uploads: list[Upload] = field(default_factory=list)
    volumes: list[Volume] = field(default_factory=list)
    hosts: list[HostStatus] = field(default_factory=list)
    jobs: list[JobRecord] = field(default_factory=list)
    owners: dict[str, Owner] = field(default_factory=dict)
    time: float = 0.0
    books: Books = field(default_factory=Books)


@dataclass
class PlanStep:
    """One step of an import as it will run: phase, host, and the command (compact form)."""

    phase: str
    host: str
    command: str


@dataclass
class ImportPlan:
    """Everything an approval will do, shown before it runs.

    Attributes:
        upload: the upload. dom0: target dom0. domain: the image host's domain name there.
        storage: storage driver kind. staging, final: volume names. alloc: staging size (bytes,
        rounded up to the storage's unit). free: free bytes on the dom0 now. job_id, serial: ids the
        job will use. steps: the host commands. warnings: things the approver must confirm
        (e.g. not ISO 9660).
    """

    upload: Upload
    dom0: str
    domain: str
    storage: str
    staging: str
    final: str
    alloc: int
    free: int
    job_id: str
    serial: str
    steps: list[PlanStep]
    warnings: list[str]
    override_quota: bool = False
    rejection: dict | None = None
    override_rejection: bool = False


def compact(command: Command) -> str:
    """A command as shown to people: ``sh -c`` script bodies are named, not printed."""
    argv = list(command.argv)
    for i, word in enumerate(argv[:-2]):
        if word == "sh" and argv[i + 1] == "-c":
            argv[i + 2] = f"<{argv[i + 3]} script>"
            break
    return str(Command(tuple(argv)))


def default_approver() -> str:
    """``user@host`` of the person running the console (blanks replaced: it is one word in leases)."""
    return f"{getpass.getuser()}@{socket.gethostname()}".replace(" ", "_")


class Site:
    """All hosts of a site and the operations on them.

    Args:
        config: the site. read_only: refuse every mutating operation (also ``config.read_only``).
        approver: recorded with volumes and jobs (default ``user@host``).
        listeners: told about every host command (command log, tests).
        as_user: show only the owners this user may act for (``--as USER``), else every owner.
    """

    def __init__(self, config: SiteConfig, *, read_only: bool = False, approver: str | None = None,
                 listeners: list[CommandListener] | None = None, as_user: str | None = None) -> None:
        self.config = config
        self.as_user = as_user
        self.owners: dict[str, Owner] = {}
        self.read_only = read_only or config.read_only
        self.approver = approver or default_approver()
        self.listeners = listeners if listeners is not None else []
        self.hosts: dict[str, Host] = {}
        for name, ih in config.image_hosts.items():
            self.hosts[name] = Host(ih.ssh, read_only=self.read_only, listeners=self.listeners)
        self.storage: dict[str, StorageDriver] = {}
        self.hypervisors: dict[str, HypervisorDriver] = {}
        for name, d in config.dom0s.items():
            host = Host(d.ssh, read_only=self.read_only, listeners=self.listeners)
            self.hosts[name] = host
            self.storage[name] = make_storage(d, host)
            self.hypervisors[name] = make_hypervisor(d, host)
        ledger_host, ledger_path = config.ledger_location()
        if ledger_host not in self.hosts:
            raise ConfigError(f"site.ledger: {ledger_host!r} is not a host of this site")
        self.ledger = Ledger(self.hosts[ledger_host], ledger_path)
        self.audit = AuditLog(self.ledger, self.approver, self.read_only,
                              key=lambda: self.ledger.host.key_fingerprint)
        #: this console's id in leases: who, which process, and a random part (a PID is reused)
        self.holder = f"{self.approver}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.books = Books()
        self.snapshot = Snapshot()
        self.locate_timeout = 15.0   # seconds for a hot-plugged disk to appear in the image host
        self.detach_timeout = 30.0   # seconds for the guest to let go of a disk
        self.active: dict[str, ImportJob] = {}
        self._owner_locks: dict[str, asyncio.Lock] = {}
        self._attach_locks: dict[str, asyncio.Lock] = {}  # image host → one new-device attach+locate at a time
        self._copies = {name: asyncio.Semaphore(ih.max_copies) for name, ih in config.image_hosts.items()}
        self._headers: dict[tuple[str, str], tuple[tuple, IsoFacts]] = {}
        #: ISO facts kept across restarts (a cache: delete it and they are read again)
        self.facts_cache = Path(config.state_dir) / "cache" / "isofacts.json"
        self._facts_loaded = False
        self._seen: dict[tuple[str, str], tuple[int, float]] = {}
        self._listings: dict[str, imagehost.ListingCache] = {}  # image host → entries parsed before
        self._parser = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="isoadmin-parse")
        self.host_clock: dict[str, tuple[float, float]] = {}  # image host → (its clock, ours) at the last listing

    # ------------------------------------------------------------------ inventory

    async def refresh(self, on_rows: Callable[[Snapshot], None] | None = None) -> Snapshot:
        """Refresh every host concurrently: one listing command per host (plus, on an image host with new
        or changed files, one header read per :data:`~backend.imagehost.HEADER_BATCH` of them).

        Args:
            on_rows: when given and headers must be read (a first start, new uploads), called at once with
                a snapshot whose new uploads have no ISO facts yet; the facts follow in the returned one.
        Returns:
            the new :class:`Snapshot` (also kept as ``self.snapshot``). A host that fails is marked
            down with the reason; the others are unaffected. Never raises :class:`HostError`.
        """
        defer: list | None = [] if on_rows is not None else None
        image_tasks = {n: self._refresh_image_host(n, defer) for n in self.config.image_hosts}
        dom0_tasks = {n: self._refresh_dom0(n) for n in self.config.dom0s}
        ledger_apart = self.ledger.host.name not in self.config.image_hosts
        results = await asyncio.gather(*image_tasks.values(), *dom0_tasks.values(),
                                       *([self._read_books()] if ledger_apart else []))
        if ledger_apart:
            results = results[:-1]
        snap = Snapshot(time=time.time(), books=self.books)
        n_image = len(image_tasks)
        for status, uploads in results[:n_image]:
            snap.hosts.append(status)
            snap.uploads.extend(uploads)
        for status in results[n_image:]:
            snap.hosts.append(status)
            if status.storage:
                snap.volumes.extend(status.storage.volumes)
        snap.jobs = self._jobs(self.books)
        await self._off_loop(self._finish, snap)
        self.snapshot = snap
        if defer:
            on_rows(snap)
            await asyncio.gather(*(self._read_headers(host, uploads) for host, uploads in defer),
                                 return_exceptions=True)
            snap = dataclasses.replace(snap, time=time.time())  # the same rows, with their ISO facts
            self.snapshot = snap
        return snap

    async def _off_loop(self, fn, *args):
        """Run ``fn(*args)`` in the site's one parsing thread: a big site's listings take a few hundred
        milliseconds of Python, which must not stall the caller's event loop (the console's keys). One
        thread, so two refreshes never parse at once."""
        return await asyncio.get_running_loop().run_in_executor(self._parser, fn, *args)

    def _finish(self, snap: Snapshot) -> None:
        self._assign_states(snap)
        snap.uploads.extend(self._download_rows(snap))
        if self.as_user is not None:
            snap.uploads = [u for u in snap.uploads if u.owner and self.may_act_for(u.owner)]
            snap.volumes = [v for v in snap.volumes if v.owner and self.may_act_for(v.owner)]
            snap.jobs = [j for j in snap.jobs if self.may_act_for(j.owner)]
        snap.owners = {k: o for k, o in self.owners.items() if self.may_act_for(k)}

    async def _refresh_image_host(self, name: str, defer: list | None = None) -> tuple[HostStatus, list[Upload]]:
        ih = self.config.image_hosts[name]
        host = self.hosts[name]
        status = HostStatus(name, "image host")
        started = time.monotonic()
        ledger = self.ledger.path if self.ledger.host is host else ""
        try:
            try:
                result = await host.run(imagehost.list_command(ih.uploads_root, ledger))
            except IsoadminError as exc:
                lines = getattr(exc, "stderr", "").strip().splitlines()
                if lines:
                    raise HostError(name, f"cannot list uploads root {ih.uploads_root}: {lines[0][:200]}") from None
                raise
            uploads = await self._off_loop(self._parse_listing, name, ih.uploads_root, result.stdout)
            if ledger:
                self.books = await self.ledger.parse(result.stderr.encode("utf-8", "replace"))
            if defer is not None and await self._off_loop(self._cached_facts, name, uploads):
                defer.append((host, uploads))  # read after the rows are shown (with the facts known so far)
            else:
                await self._read_headers(host, uploads)
            status.up = True
        except IsoadminError as exc:
            status.error = exc.message
            uploads = [u for u in self.snapshot.uploads if u.host == name]
            if ledger:
                self.books = Books(error=f"ledger {self.ledger.where}: {exc.message}")
        status.latency = time.monotonic() - started
        status.checked = time.time()
        return status, uploads

    def _parse_listing(self, name: str, root: str, stdout: bytes) -> list[Upload]:
        """Parse image host ``name``'s listing into uploads (in the parsing thread: only this thread
        touches ``_seen``, ``_listings`` and ``owners`` while a refresh runs)."""
        listing = imagehost.parse_listing(stdout, self._listings.setdefault(name, imagehost.ListingCache()))
        hosttools.set_portable(self.hosts[name], listing.portable)  # the scripts' GNU or portable forms
        self.host_clock[name] = (listing.now, time.time())
        self._owners(name, listing)
        uploads = self._uploads(name, root, listing.entries, listing.now)
        listed = {u.path for u in uploads}
        for key in [k for k in self._seen if k[0] == name and k[1] not in listed]:
            del self._seen[key]  # the file is gone: forget it
        return uploads

    async def _read_books(self) -> None:
        """Read the ledger on its own (when it is not on an image host, whose listing carries it)."""
        try:
            self.books = await self.ledger.read()
        except IsoadminError as exc:
            self.books = Books(error=f"ledger {self.ledger.where}: {exc.message}")

    async def read_books(self) -> Books:
        """A fresh read of the ledger (one command), kept as ``self.books``.

        Raises:
            HostError: the ledger host is down.
        """
        self.books = await self.ledger.read()
        return self.books

    def _jobs(self, books: Books) -> list[JobRecord]:
        """Every job on the ledger, oldest first, with this console's running jobs as they are now and
        other consoles' running jobs with the progress their lease carries."""
        jobs = dict(books.jobs)
        for job_id, lease in books.leases.items():
            job = jobs.get(job_id)
            if job is not None and job.state == "running" and job_id not in self.active and lease.phase != "recover":
                job = JobRecord.from_json(job.to_json())
                job.phase, job.done_bytes, job.rate = lease.phase or job.phase, lease.done, lease.rate
                job.verified_bytes, job.verify_rate = lease.verified, lease.verify_rate
                job.total_bytes = lease.total or job.total_bytes
                jobs[job_id] = job
        for runner in self.active.values():
            jobs[runner.job.id] = runner.job
        return sorted(jobs.values(), key=lambda j: j.created)

    def _owners(self, host: str, listing: imagehost.Listing) -> None:
        for owner in [k for k, o in self.owners.items() if o.host == host]:
            del self.owners[owner]
        for e in listing.entries:
            if e.depth == 1 and e.kind == "directory" and not e.rel.startswith("."):
                members = {e.rel} | listing.groups.get(e.group, set()) | set(self.config.owners.get(e.rel, ()))
                self.owners[e.rel] = Owner(e.rel, host, e.group, members)

    def may_act_for(self, owner: str) -> bool:
        """True when this session's ``as_user`` (if any) may act for ``owner``."""
        if self.as_user is None:
            return True
        known = self.owners.get(owner)
        members = known.members if known else {owner} | set(self.config.owners.get(owner, ()))
        return self.as_user in members

    def _uploads(self, host: str, root: str, entries: list[imagehost.Entry], host_now: float) -> list[Upload]:
        settle = self.config.settle_seconds
        uploads = []
        for e in entries:
            if e.rel == WORK_DIR or e.rel.startswith(WORK_DIR + "/"):
                continue  # root's own folder beside the owners' (downloads being written)
            if e.depth == 1 and e.kind == "directory" and not e.rel.startswith("."):
                continue  # an owner folder
            owner, _, name = e.rel.partition("/") if e.depth == 2 else ("", "", e.rel)
            if owner.startswith("."):
                owner, name = "", e.rel  # a folder whose name starts with a dot is no owner's
            u = Upload(host, owner, name, f"{root}/{e.rel}", e.kind, e.size, e.mtime, e.inode, e.nlink)
            key = (host, u.path)
            seen = self._seen.get(key)
            self._seen[key] = (e.size, e.mtime)
            u.reason = _refusal(u, e)
            if u.reason:
                u.state = UploadState.REFUSED
            elif (seen is not None and seen != (e.size, e.mtime)) or host_now - e.mtime < settle:
                u.state = UploadState.WRITING
            uploads.append(u)
        return uploads

    def _load_facts(self) -> None:
        """Fill the header cache from :attr:`facts_cache` (once per console; a missing or unreadable file
        is an empty cache). Each entry is kept only while the file's size, mtime and inode match; an entry of a
        file that is not ISO 9660 without ``content`` (from an older console) is read again."""
        self._facts_loaded = True
        try:
            data = json.loads(self.facts_cache.read_text(encoding="utf-8"))
            for key, (size, mtime, inode, facts) in data.items():
                if not facts.get("is_iso9660") and "content" not in facts:
                    continue  # written before kernels and ramdisks were recognised: read again
                host, _, path = key.partition("\0")
                self._headers.setdefault((host, path), ((size, mtime, inode), IsoFacts(**facts)))
        except (OSError, ValueError, TypeError, AttributeError):
            pass

    def _save_facts(self) -> None:
        """Write the header cache to :attr:`facts_cache` (atomic; a state dir that cannot be written only
        costs the next start its header reads)."""
        data = {f"{h}\0{p}": [*stamp, dataclasses.asdict(facts)] for (h, p), (stamp, facts) in self._headers.items()}
        try:
            self.facts_cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.facts_cache.with_name(f".{self.facts_cache.name}.{os.getpid()}")
            tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, self.facts_cache)
        except OSError:
            pass

    def _cached_facts(self, host: str, uploads: list[Upload]) -> list[Upload]:
        """Give every upload the ISO facts known for it (same size, mtime and inode); forget the facts of
        files gone from ``host``.

        Returns:
            the uploads whose header must be read.
        """
        if not self._facts_loaded:
            self._load_facts()
        listed = {(u.host, u.path) for u in uploads}
        for key in [k for k in self._headers if k[0] == host and k not in listed]:
            del self._headers[key]  # the file is gone: forget it (``_seen`` is pruned by _parse_listing)
        need = []
        for u in uploads:
            if u.kind != "file" or u.state == UploadState.REFUSED:
                continue
            cached = self._headers.get((u.host, u.path))
            if cached and cached[0] == (u.size, u.mtime, u.inode):
                u.iso = cached[1]
            else:
                need.append(u)
        return need

    async def _read_headers(self, host: Host, uploads: list[Upload]) -> None:
        need = await self._off_loop(self._cached_facts, host.name, uploads)
        if not need:
            return
        by_path = {u.path: u for u in need}

        def parse(headers: dict[str, bytes]) -> None:  # each command's headers, as soon as they arrive
            for path, header in headers.items():
                u = by_path[path]
                u.iso = inspect_header(header[:u.size], u.size)  # a short file comes padded
                self._headers[(u.host, u.path)] = ((u.size, u.mtime, u.inode), u.iso)

        await imagehost.read_headers(host, list(by_path), HEADER_BYTES, on_batch=parse)
        await self._off_loop(self._save_facts)

    async def _refresh_dom0(self, name: str) -> HostStatus:
        status = HostStatus(name, "dom0")
        started = time.monotonic()
        try:
            status.storage = await self.storage[name].report()
            status.up = True
        except IsoadminError as exc:
            status.error = exc.message
        status.latency = time.monotonic() - started
        status.checked = time.time()
        return status

    def _download_rows(self, snap: Snapshot) -> list[Upload]:
        """A row for each running download of the site (any console's, from the ledger): its part name
        (:func:`~backend.download.part_name`) in the owner's folder, ``writing``, "being downloaded", with the
        bytes done so far. The bytes themselves are in root's own folder until complete (never in the owner's)."""
        listed = {(u.host, u.path) for u in snap.uploads}
        rows = []
        for j in snap.jobs:
            if j.kind != "download" or j.state != "running" or (j.host, j.path) in listed:
                continue
            folder = j.path.rpartition("/")[0]
            rows.append(Upload(j.host, j.owner, part_name(j.upload), f"{folder}/{part_name(j.upload)}", "file",
                               j.done_bytes, j.updated or j.created, 0, 1, state=UploadState.WRITING,
                               reason="being downloaded", job=j.id))
        return rows

    def _assign_states(self, snap: Snapshot) -> None:
        by_source: dict[tuple[str, str], list[Volume]] = {}
        for v in snap.volumes:
            src = (str(v.meta.get("source_host", "")), str(v.meta.get("source_path", "")))
            by_source.setdefault(src, []).append(v)
        last_job: dict[tuple[str, str], JobRecord] = {}
        for j in snap.jobs:
            last_job[(j.host, j.path)] = j
        books = snap.books
        active = {(j.job.host, j.job.path): j for j in self.active.values()}
        for u in snap.uploads:
            if u.state == UploadState.REFUSED:
                continue
            vols = [v for v in by_source.get((u.host, u.path), [])
                    if v.meta.get("size") == u.size and v.meta.get("source_mtime") == u.mtime]
            job = last_job.get((u.host, u.path))
            running = active.get((u.host, u.path))
            staging = [v for v in vols if v.namespace == "staging"]
            final = [v for v in vols if v.namespace == "final" and v.sha256]
            rejected = books.rejection(u.host, u.path)
            lock = upload_key(u.host, u.path)
            held = books.locks.get(lock)
            if held is not None and getattr(books.jobs.get(held), "kind", "") == "download":
                held = None  # a download's lock on the file it becomes: the file is being written, not imported
            if running or staging or held is not None:
                u.state = UploadState.IMPORTING
                if running:
                    u.job = running.job.id
                    u.reason = f"by {running.job.approver} (job {running.job.id}, onto {running.job.dom0})"
                elif held is not None:
                    u.job, u.reason = held, f"by {books.holder(lock)}"
                else:
                    u.job = str(staging[0].meta.get("job", ""))
                    u.reason = (f"by {staging[0].meta.get('approver', 'someone')} (job {u.job or '?'}, staging "
                                f"volume {staging[0].name} on {staging[0].dom0})")
            elif final:
                u.state = UploadState.AVAILABLE
                u.reason = f"{final[0].dom0}:{final[0].name}"
            elif u.state == UploadState.WRITING:
                pass
            elif rejected and rejected.get("size") == u.size and rejected.get("mtime") == u.mtime:
                u.state = UploadState.REJECTED
                u.reason = str(rejected.get("reason", ""))
            elif job and job.state == "failed" and job.size == u.size and job.mtime == u.mtime:
                u.state = UploadState.FAILED
                u.reason = job.error
                u.job = job.id
            else:
                u.state = UploadState.PENDING

    def find_upload(self, key: str) -> Upload:
        """Return the upload ``OWNER/FILE`` from the last refresh.

        Raises:
            NotFound: no such upload (the message lists how to see them).
        """
        matches = [u for u in self.snapshot.uploads if u.key == key]
        if not matches:
            down = [h.name for h in self.snapshot.hosts if not h.up and h.role == "image host"]
            extra = f" (image host down: {', '.join(down)})" if down else ""
            raise NotFound(f"no upload {key!r}{extra}; `isoadmin uploads` lists them")
        if len(matches) > 1:
            raise NotFound(f"{key!r} exists on several image hosts: {', '.join(u.host for u in matches)}")
        return matches[0]

    # ------------------------------------------------------------------ actions

    async def refuse_if_read_only(self, action: str, target: str, host: str = "") -> None:
        """The one read-only guard of the site's actions: in a read-only session, audit the refused
        attempt and raise; otherwise do nothing.

        Args:
            action: the audit action (``approve``, ``reject`` ...). target: what it was aimed at.
        Raises:
            ReadOnlyError: always, in a read-only session (after the refusal is on the audit log, when
                the ledger can be reached).
        """
        if not self.read_only:
            return
        await self.audit_refusal(action, target, "read-only session", host)
        raise ReadOnlyError(f"read-only session: {action} {target} is not allowed")

    async def audit_refusal(self, action: str, target: str, reason: str, host: str = "") -> None:
        """Put a refusal on the audit log; a ledger that cannot be reached does not hide the refusal
        itself (it is said on the returned error), so this never raises :class:`HostError`."""
        try:
            await self.audit.record(action, target, "refused", reason, host)
        except HostError:
            pass

    async def plan(self, key: str, dom0: str | None = None, allow_non_iso: bool = False,
                   override_quota: bool = False, override_rejection: bool = False) -> ImportPlan:
        """Work out the import of upload ``OWNER/FILE`` (see :meth:`_plan`); refusals are audited."""
        try:
            return await self._plan(key, dom0, allow_non_iso, override_quota, override_rejection)
        except (NotApprovable, NotFound, CapacityShort, QuotaExceeded) as exc:
            await self.audit_refusal("approve", key, exc.message)
            raise

    async def all_volumes(self) -> list[Volume]:
        """A fresh listing of every dom0's volumes (one command each).

        Raises:
            HostError: a dom0 cannot be listed (a quota cannot be checked on part of the site).
        """
        reports = await asyncio.gather(*(s.report() for s in self.storage.values()))
        return [v for r in reports for v in r.volumes]

    def _quota_checker(self, owner: str):
        async def check(adding: int) -> None:
            quota.check(self.config, owner, await self.all_volumes(), adding)
        return check

    async def _plan(self, key: str, dom0: str | None, allow_non_iso: bool, override_quota: bool,
                    override_rejection: bool = False) -> ImportPlan:
        """Work out the import of upload ``OWNER/FILE``; nothing is changed.

        Args:
            key: ``OWNER/FILE``. dom0: target (default: the image host's first domain mapping).
            allow_non_iso: the approver confirmed importing a file that is not ISO 9660.
            override_quota: import even over the owner's quota (audited).
            override_rejection: the approver confirmed importing an upload an admin rejected.
        Raises:
            NotFound, NotApprovable (state, locked on the ledger by another console's job, rejected without
            ``override_rejection``, not ISO 9660 without ``allow_non_iso``), CapacityShort (the dom0 lacks
            space), QuotaExceeded, HostError.
        """
        upload = self.find_upload(key)
        if upload.state not in APPROVABLE:
            why = {
                UploadState.WRITING: "it is still being written",
                UploadState.IMPORTING: f"it is already importing {upload.reason}",
                UploadState.AVAILABLE: f"it is already imported as {upload.reason}",
                UploadState.REFUSED: f"it is refused: {upload.reason}",
            }.get(upload.state, upload.state.value)
            raise NotApprovable(f"cannot approve {key}: {why}")
        ih = self.config.image_hosts[upload.host]
        targets = list(ih.domains) or list(self.config.dom0s)
        dom0 = dom0 or targets[0]
        if dom0 not in self.config.dom0s:
            raise NotFound(f"no dom0 {dom0!r} (known: {', '.join(self.config.dom0s)})")
        if dom0 not in ih.domains:
            raise NotApprovable(f"image host {ih.name} has no domain on {dom0} (image_hosts.{ih.name}.domains)")
        holder = await imagehost.in_use(self.hosts[upload.host], upload.path)
        if holder is not None:  # still being written comes before what the header says
            raise NotApprovable(f"cannot approve {key}: it is still open (process {holder} on {upload.host}: "
                                f"an upload in progress?)")
        warnings = []
        books = await self.read_books()  # the site-wide lock and rejections, as they are now
        held = books.holder(upload_key(upload.host, upload.path))
        if held:
            raise NotApprovable(f"cannot approve {key}: already importing by {held}")
        rejection = books.rejection(upload.host, upload.path)
        if rejection and (rejection.get("size"), rejection.get("mtime")) != (upload.size, upload.mtime):
            rejection = None  # a rejection of an earlier file of that name
        if rejection:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(rejection.get("time", 0) or 0)))
            text = f"rejected by {rejection.get('by', '?')} on {when}: {rejection.get('reason', '')}"
            if not override_rejection:
                raise UploadRejected(f"cannot approve {key}: {text}; confirm with --override-rejection "
                                     f"to import it anyway", rejection)
            warnings.append(f"rejection overridden: {text}")
        if upload.iso is None or not upload.iso.is_iso9660:
            what = upload.iso.problem if upload.iso else "header not read"
            if not allow_non_iso:
                raise NotApprovable(f"{key} is not ISO 9660 ({what}); pass --allow-non-iso (in the console: "
                                    "confirm) to import it anyway")
            warnings.append(f"not ISO 9660: {what}")
        storage = self.storage[dom0]
        report = await storage.report()
        names = {v.name for v in report.volumes}
        staging = storage.dom0.staging_prefix + volume_body(upload.owner, upload.name)
        if staging in names:  # the lock first: another console's import also takes capacity
            raise NotApprovable(f"cannot approve {key}: {busy(report, staging, dom0)}")
        done = [v for v in report.volumes if v.namespace == "final" and v.sha256
                and (v.meta.get("source_host"), v.meta.get("source_path")) == (upload.host, upload.path)
                and (v.meta.get("size"), v.meta.get("source_mtime")) == (upload.size, upload.mtime)]
        if done:  # imported since the last refresh (by another console)
            raise NotApprovable(f"cannot approve {key}: it is already imported as {dom0}:{done[0].name}")
        alloc = await storage.check_capacity(upload.size, report)
        overridden = False
        if quota.quota_of(self.config, upload.owner):
            try:
                quota.check(self.config, upload.owner, await self.all_volumes(), alloc)
            except QuotaExceeded as exc:
                if not override_quota:
                    raise
                warnings.append(f"quota override: {exc.message}")
                overridden = True
        body = volume_body(upload.owner, upload.name, self.config.naming,
                           upload.iso.volume_id if upload.iso else None, upload.size)
        final, n = storage.dom0.final_prefix + body, 2
        while final in names:
            final, n = f"{storage.dom0.final_prefix}{body}.{n}", n + 1
        job_id = uuid.uuid4().hex[:12]
        serial = f"isoa{job_id}"
        domain = ih.domains[dom0]
        device = storage.device_path(staging)
        host = self.hosts[upload.host]
        steps = [
            PlanStep("create", dom0, compact(storage.create_command(staging, alloc, {})[0])),
            PlanStep("attach", dom0, self.hypervisors[dom0].describe_attach(domain, device, serial)),
            PlanStep("locate", host.name,
                     f"the one new block device in {ih.sys_block} of exactly {alloc} B (listed before the attach)"
                     if self.config.dom0s[dom0].locate == "new-device" else
                     f"find the disk with serial {serial} in /sys/block/*/serial, {', '.join(ih.disk_id_dirs)}"),
            PlanStep("copy", host.name, compact(imagehost.copy_command(upload.path, "/dev/DISK"))),
            PlanStep("verify", host.name, f"sha256 of the first {upload.size} bytes read back from /dev/DISK behind the copy (O_DIRECT)"),
            PlanStep("detach", dom0, self.hypervisors[dom0].describe_detach(domain, serial)),
            PlanStep("rename", dom0, compact(storage.rename_command(staging, final, {})[0])),
        ]
        return ImportPlan(upload, dom0, domain, storage.kind, staging, final, alloc, report.free,
                          job_id, serial, steps, warnings, overridden, rejection, bool(rejection))

    async def approve(self, plan: ImportPlan, listener: JobListener | None = None,
                      on_phase: PhaseHook | None = None) -> JobRecord:
        """Run the import a :class:`ImportPlan` describes.

        ``listener`` gets progress (at most 4 times a second); ``on_phase`` is awaited at the start
        of each phase (see :class:`~backend.jobs.ImportJob`).

        Returns:
            the finished job (state ``done``): the final volume exists and was verified.
        Raises:
            ReadOnlyError: read-only session (nothing sent).
            JobFailed: the job failed and was rolled back (the upload is untouched).
        """
        u = plan.upload
        await self.refuse_if_read_only("approve", u.key, u.host)
        iso = u.iso.to_json() if u.iso and u.iso.is_iso9660 else {}
        job = JobRecord(
            id=plan.job_id, serial=plan.serial, owner=u.owner, upload=u.name, host=u.host, path=u.path,
            size=u.size, mtime=u.mtime, inode=u.inode, dom0=plan.dom0, domain=plan.domain,
            staging=plan.staging, final=plan.final, alloc=plan.alloc, approver=self.approver,
            created=time.time(), total_bytes=u.size, iso=iso or {},
            facts=dataclasses.asdict(u.iso) if u.iso else {}, console=f"{self.approver}:{os.getpid()}",
        )
        job.updated = job.created
        holder = await self.ledger.acquire(job, self.holder, self.config.lease_seconds)
        if holder is not None:  # the site-wide lock on the upload: another console's job has it
            held, _, info = holder.partition(" ")
            try:
                who = json.loads(info)
            except ValueError:
                who = {}
            exc = NotApprovable(f"cannot approve {u.key}: already importing by {who.get('approver', 'another console')} "
                                f"(job {held}, onto {who.get('dom0', '?')})")
            await self.audit_refusal("approve", u.key, exc.message, u.host)
            raise exc
        ctx = self._context(job)
        if quota.quota_of(self.config, u.owner) and not plan.override_quota:
            ctx.quota = self._quota_checker(u.owner)
        ctx.owner_lock = self._owner_locks.setdefault(u.owner, asyncio.Lock())
        if plan.override_quota:
            await self.audit.record("quota override", u.key, "done", "; ".join(plan.warnings), u.host)
        if plan.override_rejection:
            await self.audit.record("rejection override", u.key, "done", "; ".join(plan.warnings), u.host)
        runner = ImportJob(job, ctx, listener, on_phase)
        self.active[job.id] = runner
        u.state, u.job = UploadState.IMPORTING, job.id
        target = f"{u.key} -> {plan.dom0}:{plan.final}"
        try:
            await self.audit.record("approve", target, "started", f"job {job.id}", u.host)
            done = await runner.run()
        except JobFailed as exc:
            await self._audit_quietly("approve", target, "failed",
                                      f"job {job.id}: {exc.message}; rollback: {job.rollback}", u.host)
            raise
        except asyncio.CancelledError:
            await asyncio.shield(self._audit_quietly("approve", target, "failed",
                                                     f"job {job.id}: {job.error}; rollback: {job.rollback}", u.host))
            raise
        except HostError:  # the ledger could not take the audit entry before the job started
            await runner._fail("the audit log could not be written")
            raise
        finally:
            self.active.pop(job.id, None)
            self.books.jobs[job.id] = job  # as this console just wrote it to the ledger
        await self._audit_quietly("approve", target, "done", f"job {job.id} sha256 {done.sha256}", u.host)
        return done

    async def _audit_quietly(self, *args) -> None:
        """Audit an outcome that already happened (a failed audit must not turn it into another error)."""
        try:
            await self.audit.record(*args)
        except HostError:
            pass

    async def reject(self, key: str, reason: str) -> None:
        """Mark upload ``OWNER/FILE`` rejected with ``reason``, on the ledger; the file itself is kept.

        Raises:
            UsageError (an empty reason, checked before anything else), ReadOnlyError, NotFound,
            NotApprovable (importing or already available), HostError (ledger down).
        """
        if not reason.strip():
            raise UsageError(f"cannot reject {key}: a rejection needs a reason")
        await self.refuse_if_read_only("reject", key)
        upload = self.find_upload(key)
        if upload.state in (UploadState.IMPORTING, UploadState.AVAILABLE):
            await self.audit_refusal("reject", key, f"it is {upload.state.value}", upload.host)
            raise NotApprovable(f"cannot reject {key}: it is {upload.state.value}")
        await self.ledger.reject({
            "host": upload.host, "path": upload.path, "owner": upload.owner, "name": upload.name,
            "reason": reason.strip(), "by": self.approver, "time": time.time(),
            "size": upload.size, "mtime": upload.mtime,
        })
        upload.state, upload.reason = UploadState.REJECTED, reason.strip()
        await self.audit.record("reject", key, "done", reason.strip(), upload.host)

    def _context(self, job: JobRecord) -> JobContext:
        ih = self.config.image_hosts[job.host]
        ctx = JobContext(self.hosts[job.host], ih.disk_id_dirs, self.storage[job.dom0],
                         self.hypervisors[job.dom0], self.ledger, self.holder, self.config.lease_seconds,
                         self.locate_timeout, self.detach_timeout, self._copies[job.host])
        ctx.locate, ctx.sys_block, ctx.dev_dir = self.config.dom0s[job.dom0].locate, ih.sys_block, ih.dev_dir
        ctx.attach_lock = self._attach_locks.setdefault(job.host, asyncio.Lock())
        return ctx

    def orphaned_jobs(self, books: Books | None = None) -> list[JobRecord]:
        """Jobs the ledger shows ``running`` whose lease has expired (by the ledger host's clock): their
        console is gone, whoever started it, on any workstation. Jobs of this process are never orphaned.

        Args:
            books: the ledger as read (default: the last read, ``self.books``).
        """
        books = books or self.books
        return [j for j in books.jobs.values()
                if j.state == "running" and j.id not in self.active and not books.live(j.id)]

    async def recover(self) -> list[JobRecord]:
        """Roll back (or mark done) every job whose lease has expired, after claiming its lease (so two
        consoles do not recover one job at once, and never a live one): an import is rolled back; a
        download is stopped on its image host (its process group) and its part file removed
        (:func:`~backend.download.recover_download`). Read-only sessions only report.

        Returns:
            the jobs handled, as journaled afterwards.
        Raises:
            HostError: the ledger or a host needed for the recovery is down (the job stays ``running``).
        """
        books = await self.read_books()
        done = []
        for job in self.orphaned_jobs(books):
            if self.read_only:
                continue
            if not await self.ledger.claim(job, self.holder, self.config.lease_seconds):
                continue  # renewed meanwhile: alive after all
            if job.kind == "download":
                result = await recover_download(self, job)
                await self._audit_quietly("recover", f"{job.key} (download)", result.state,
                                          f"job {job.id}: {job.url}: {result.error or result.rollback}", job.host)
                done.append(result)
                continue
            result = await ImportJob(job, self._context(job)).recover()
            await self._audit_quietly("recover", f"{job.key} ({job.staging})",
                                      result.state, f"job {job.id}: {result.error or result.rollback}", job.host)
            done.append(result)
        if done:
            await self.read_books()
        return done

    async def delete_volume(self, ref: str) -> Volume:
        """Delete final CD volume ``ref`` (``DOM0:NAME`` or a unique ``NAME``): explicit and audited,
        refused while any VM has it as a disk, and only for volumes isoadmin made.

        Returns:
            the deleted volume.
        Raises:
            ReadOnlyError, NotFound, NotApprovable (not a final isoadmin volume, or in use), HostError.
        """
        await self.refuse_if_read_only("delete volume", ref)
        dom0, _, name = ref.rpartition(":")
        matches = [v for v in await self.all_volumes() if v.name == name and (not dom0 or v.dom0 == dom0)]
        if len(matches) != 1:
            raise NotFound(f"no single volume {ref!r}; `isoadmin volumes` lists them")
        vol = matches[0]
        storage = self.storage[vol.dom0]
        try:
            if vol.namespace != "final" or not storage.owns(vol):
                raise NotApprovable(f"{vol.dom0}:{vol.name} is not a CD volume isoadmin made; not deleted")
            users = await self.hypervisors[vol.dom0].users(vol.path)
            if users:
                raise NotApprovable(f"{vol.dom0}:{vol.name} is attached to {', '.join(users)}; detach it first")
        except NotApprovable as exc:
            await self.audit_refusal("delete volume", f"{vol.dom0}:{vol.name}", exc.message, vol.dom0)
            raise
        await storage.remove(vol.name)
        await self.audit.record("delete volume", f"{vol.dom0}:{vol.name}", "done",
                          f"{vol.owner}/{vol.upload} sha256 {vol.sha256}", vol.dom0)
        return vol

    def jobs(self) -> list[JobRecord]:
        """Every job on the ledger as last read (oldest first), with live progress for jobs running in this
        process and the progress other consoles' leases carry."""
        return self._jobs(self.books)

    async def close(self) -> None:
        """Close every SSH connection (and the parsing thread)."""
        await asyncio.gather(*(h.close() for h in self.hosts.values()), return_exceptions=True)
        self._parser.shutdown(wait=False)


def _refusal(u: Upload, e: imagehost.Entry) -> str:
    if e.depth == 1 and e.kind == "directory":
        return "a folder whose name starts with a dot is not an owner's folder"
    if e.depth == 1:
        return "not inside an owner folder"
    if not u.owner:
        return "inside a folder whose name starts with a dot: not an owner's folder"
    if u.kind == "symlink":
        return f"symlink to {e.target}: never followed or opened"
    if u.kind != "file":
        return f"{u.kind}: never followed or opened"
    if e.nlink > 1:
        return f"has {e.nlink} hard links"
    for part in (u.owner, u.name):
        try:
            part.encode("utf-8")
        except UnicodeEncodeError:
            return "name is not valid UTF-8"
    if e.size == 0:
        return "empty file"
    return ""


__all__ = ["Site", "Snapshot", "ImportPlan", "PlanStep", "compact"]
