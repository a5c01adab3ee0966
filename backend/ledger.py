"""The ledger: the site's own books, in one folder on one host of the site.

Every console of a site, on any workstation, reads and writes the same ledger, so they agree on what is
running, what was rejected and what was done. It holds (see ``docs/ledger.md`` for the layout and what
each kill point leaves behind):

``jobs/ID.json``
    the job record (one line of JSON), rewritten at every phase: temp file, fsync, rename.
``locks/KEY/``
    one lock per upload, taken with ``mkdir`` before any volume is created, whichever dom0 is chosen.
    ``KEY`` is :func:`upload_key` of (image host, path); ``holder`` inside names the job.
``leases/ID``
    a running job's lease. Its holder renews it (rewrites it) every few seconds; its mtime, read against
    the ledger host's own clock, says whether it is live. Content:
    ``HOLDER TTL PHASE DONE TOTAL RATE VERIFIED VERIFY_RATE`` (a reader takes what is there).
``rejections/KEY-TIME.json``
    one file per rejection (never read-modify-written, so concurrent rejections never lose one).
``audit.jsonl``, ``audit.head``
    the audit log, append-only and hash-chained: each line records the sha256 of the line before it
    (``prev``), and ``audit.head`` the count and the sha256 of the last line, so a torn, edited,
    reordered or deleted entry is found by :func:`verify_chain`. Appends are serialised by a ``mkdir``
    lock (``audit.lock``).

Everything on the host is done by constant POSIX ``sh`` scripts (``backend/sh/ledger-*.sh``) using only what
coreutils or BusyBox give (``mkdir`` as a lock, ``dd conv=fsync`` then ``mv`` for atomic writes, ``>>`` for
appends); nothing is installed. The folder is created 0700 and its files 0600 (``umask 077``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field

from .commands import DUMP_SH, Command, script
from .errors import HostError, IsoadminError
from .hostscripts import load
from .ssh import Host
from .state import JobRecord

#: ``prev`` of the first audit entry.
GENESIS = "0" * 64
#: Default lease time (seconds): a job whose lease was not renewed for this long is dead.
LEASE_SECONDS = 30.0


def upload_key(host: str, path: str) -> str:
    """The ledger's name for an upload: 32 hex digits of sha256(image host, NUL, path).

    Args:
        host: the image host's name in the site. path: the upload's absolute path there.
    Returns:
        a name safe in any file system and shell (``[0-9a-f]{32}``).
    """
    return hashlib.sha256(f"{host}\0{path}".encode("utf-8", "surrogateescape")).hexdigest()[:32]


# The ledger's scripts (backend/sh/ledger-*.sh; each file's header says what it does, its inputs and its
# output). Those that write start with lib-put.sh (umask 077 and the atomic ``put``).
_WRITE_SH = load("lib-put.sh")
_DUMP = load("lib-ledger-dump.sh", "ledger-dump.sh")
_FETCH = load("ledger-fetch.sh")
_ACQUIRE = load("lib-put.sh", "ledger-acquire.sh")
_SAVE = load("lib-put.sh", "ledger-save.sh")
_RENEW = load("lib-put.sh", "ledger-renew.sh")
_CLAIM = load("lib-put.sh", "ledger-claim.sh")
_RELEASE = load("lib-put.sh", "ledger-release.sh")
_REJECT = load("lib-put.sh", "ledger-reject.sh")
_AUDIT = load("lib-sha256.sh", "lib-put.sh", "ledger-audit.sh")
_AUDIT_READ = load("ledger-audit-read.sh")


@dataclass(frozen=True)
class Lease:
    """A running job's lease, as the ledger host sees it.

    Attributes:
        job: the job id. renewed: when it was last renewed (epoch seconds, the ledger host's clock).
        holder: the console holding it. ttl: seconds it lasts after a renewal. phase, done, total, rate,
        verified, verify_rate: the job's progress at the last renewal (bytes, bytes per second).
    """

    job: str
    renewed: float
    holder: str
    ttl: float
    phase: str = ""
    done: int = 0
    total: int = 0
    rate: float = 0.0
    verified: int = 0
    verify_rate: float = 0.0

    def live(self, now: float) -> bool:
        """True while ``now`` (the ledger host's clock, epoch seconds) is within the lease."""
        return now - self.renewed <= self.ttl


@dataclass
class Books:
    """What one dump of the ledger shows.

    Attributes:
        now: the ledger host's clock (epoch seconds) when it was read. present: the ledger folder exists.
        jobs: job id → record (every record, recent ones from the dump, older ones from the cache).
        leases: job id → :class:`Lease`. locks: upload key → job id holding it (``""`` when the lock has
        no holder file yet). holders: upload key → who holds it (approver, dom0, owner, upload, time). rejections: every rejection record, oldest first (dicts with host, path,
        owner, name, size, mtime, reason, by, time). audit_count, audit_hash: ``audit.head``.
        error: why the ledger could not be read ("" when it was).
    """

    now: float = 0.0
    present: bool = False
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    locks: dict[str, str] = field(default_factory=dict)
    holders: dict[str, dict] = field(default_factory=dict)
    rejections: list[dict] = field(default_factory=list)
    audit_count: int = 0
    audit_hash: str = GENESIS
    error: str = ""

    def live(self, job_id: str) -> bool:
        """True when job ``job_id`` holds a live lease."""
        lease = self.leases.get(job_id)
        return lease is not None and lease.live(self.now)

    def holder(self, key: str) -> str:
        """Who holds upload ``key``'s lock, for people: ``WHO (job ID, onto DOM0)``, or "" when free."""
        if key not in self.locks:
            return ""
        job_id = self.locks[key]
        job = self.jobs.get(job_id)
        info = self.holders.get(key, {})
        who = job.approver if job else info.get("approver", "another console")
        dom0 = job.dom0 if job else info.get("dom0", "?")
        state = "" if job_id and self.live(job_id) else \
            "; its console stopped: `isoadmin repair --apply` rolls it back"
        return f"{who} (job {job_id or '?'}, onto {dom0}){state}"

    def rejection(self, host: str, path: str) -> dict | None:
        """The newest rejection of upload ``host:path``, or None."""
        found = None
        for r in self.rejections:
            if r.get("host") == host and r.get("path") == path:
                found = r
        return found


@dataclass
class AuditProblem:
    """The first place where the audit log's chain breaks.

    Attributes:
        entry: the 1-based number of the first bad entry (its line in ``audit.jsonl``). detail: what is wrong.
    """

    entry: int
    detail: str


def line_hash(line: bytes) -> str:
    """sha256 (hex) of one audit line, without its newline: what the next entry records as ``prev``."""
    return hashlib.sha256(line).hexdigest()


def verify_chain(lines: list[bytes], head_count: int, head_hash: str) -> AuditProblem | None:
    """Check the audit log's hash chain and its head.

    Each entry must parse as a JSON object whose ``prev`` is the sha256 of the line before it
    (:data:`GENESIS` for the first), and ``audit.head`` must record the number of lines and the sha256 of
    the last. The first entry whose bytes differ from what the chain recorded of them is named: an edited
    or torn entry, one whose ``prev`` was changed, or the last one left before a removal or reordering.

    Args:
        lines: the log's lines without newlines. head_count, head_hash: ``audit.head``.
    Returns:
        None when the chain holds, else the first :class:`AuditProblem`.
    """
    prevs = []
    for i, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError
        except ValueError:
            return AuditProblem(i, "not a JSON object (torn or edited)")
        prevs.append(str(entry.get("prev", "")))
    if prevs and prevs[0] != GENESIS:
        return AuditProblem(1, "its prev is not the start of the chain (edited, or entries before it removed)")
    recorded = prevs[1:] + [head_hash]   # what the chain says each line's hash is
    for i, line in enumerate(lines):
        if line_hash(line) != recorded[i]:
            if i + 1 == len(lines) and head_count != len(lines):
                return AuditProblem(i + 1, f"the head records {head_count} entries, the log has {len(lines)}")
            return AuditProblem(i + 1, "its bytes differ from the hash the chain recorded for it "
                                       "(edited, reordered, or the entry after it removed)")
    if head_count != len(lines):
        return AuditProblem(len(lines) + 1 if head_count > len(lines) else head_count + 1,
                            f"the head records {head_count} entries, the log has {len(lines)}")
    return None


class Ledger:
    """The ledger of a site: a folder on one of its hosts (``[site] ledger = "HOST:/path"``).

    Args:
        host: the host it lives on (its read-only guard applies: a read-only session reads the ledger and
            appends only its refused attempts to the audit log). path: absolute folder there.
    """

    def __init__(self, host: Host, path: str) -> None:
        self.host = host
        self.path = path.rstrip("/") or "/"
        #: seconds a ledger command may take: a ledger host that hangs (a paused guest) must not hang a job
        #: or its rollback; the job then fails, and its lease expires for another console to recover it
        self.timeout = 20.0
        self._records: dict[str, dict] = {}   # "jobs/ID.json" → parsed record (a cache: records never shrink)
        self._audit_raw = b""
        self._audit_lines: list[bytes] = []

    def __repr__(self) -> str:
        return f"Ledger({self.host.name}:{self.path})"

    @property
    def where(self) -> str:
        """``HOST:/path``, for messages."""
        return f"{self.host.name}:{self.path}"

    # ------------------------------------------------------------------ reading

    def dump_command(self) -> Command:
        """The read of the whole ledger as one command (when the ledger is not on an image host)."""
        return script(_DUMP, "isoadmin-ledger", self.path)

    async def read(self) -> Books:
        """Read the ledger with one command (plus one for records this console has not seen yet).

        Raises:
            HostError: the ledger host is down or the folder cannot be read.
        """
        result = await self.host.run(self.dump_command(), timeout=self.timeout)
        return await self.parse(result.stdout)

    async def parse(self, stdout: bytes) -> Books:
        """Turn a dump (:data:`DUMP_SH` output) into :class:`Books`, fetching records named but not yet
        cached (at most once each per console)."""
        books, missing = self.parse_dump(stdout)
        if missing:
            await self.fetch(missing)
            books, _ = self.parse_dump(stdout)
        return books

    def parse_dump(self, stdout: bytes) -> tuple[Books, list[str]]:
        """Parse a dump without any host command.

        Returns:
            (books, the record files named in the dump that are not cached yet).
        """
        books = Books()
        named: list[str] = []
        for raw in stdout.decode("utf-8", "surrogateescape").splitlines():
            word, _, rest = raw.partition(" ")
            if word == "now":
                books.now = _number(rest)
                books.present = True
            elif word in ("absent", "unreadable"):
                books.present = False
                books.error = "" if word == "absent" else f"ledger {self.where} cannot be read"
            elif word == "head":
                count, _, digest = rest.partition(" ")
                books.audit_count, books.audit_hash = int(_number(count)), digest.strip() or GENESIS
            elif word == "file":
                named.append(rest)
            elif word == "data":
                name, _, text = rest.partition(" ")
                try:
                    record = json.loads(text)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    self._records[name] = record
            elif word == "lease":
                parts = rest.split(" ")
                if len(parts) >= 4:
                    books.leases[parts[0]] = Lease(
                        parts[0], _number(parts[1]), parts[2], _number(parts[3]),
                        parts[4] if len(parts) > 4 else "", int(_number(parts[5] if len(parts) > 5 else "0")),
                        int(_number(parts[6] if len(parts) > 6 else "0")), _number(parts[7] if len(parts) > 7 else "0"),
                        int(_number(parts[8] if len(parts) > 8 else "0")), _number(parts[9] if len(parts) > 9 else "0"))
            elif word == "lock":
                key, _, holder = rest.partition(" ")
                job, _, info = holder.partition(" ")
                books.locks[key] = "" if job == "-" else job
                try:
                    who = json.loads(info) if job != "-" else {}
                except ValueError:
                    who = {}
                books.holders[key] = who if isinstance(who, dict) else {}
        missing = [n for n in named if n not in self._records]
        for name in named:
            record = self._records.get(name)
            if record is None:
                continue
            if name.startswith("jobs/"):
                try:
                    job = JobRecord.from_json(record)
                except TypeError:
                    continue
                books.jobs[job.id] = job
            elif name.startswith("rejections/"):
                books.rejections.append(record)
        books.rejections.sort(key=lambda r: float(r.get("time", 0) or 0))
        return books, missing

    async def fetch(self, names: list[str]) -> None:
        """Read record files ``names`` (relative to the ledger) into the cache, 200 per command."""
        for i in range(0, len(names), 200):
            result = await self.host.run(script(_FETCH, "isoadmin-ledger-fetch", self.path, *names[i:i + 200]),
                                         timeout=self.timeout)
            self.parse_dump(result.stdout)

    # ------------------------------------------------------------------ jobs

    async def acquire(self, job: JobRecord, holder: str, ttl: float) -> str | None:
        """Take upload ``(job.host, job.path)``'s lock for ``job``, and journal the job and its lease.

        Args:
            job: the new record. holder: this console's id (first word of the lease). ttl: lease seconds.
        Returns:
            None when taken; else the holder line of the job that holds the lock (``JOB {json}``).
        Raises:
            HostError: the ledger host is down or refused the write.
        """
        key = upload_key(job.host, job.path)
        info = json.dumps({"job": job.id, "approver": job.approver, "dom0": job.dom0, "owner": job.owner,
                           "upload": job.upload, "time": job.created}, ensure_ascii=True)
        result = await self.host.run(script(
            _ACQUIRE, "isoadmin-lock", self.path, key, job.id, f"{job.id} {info}", _record(job),
            _lease(holder, ttl, job), mutating=True), check=False, timeout=self.timeout)
        if result.exit_status == 17:
            return result.stdout.decode("utf-8", "replace").strip() or "? {}"
        if result.exit_status != 0:
            raise HostError(self.host.name, f"cannot write the ledger {self.path}: "
                                            f"{result.stderr.strip()[-200:] or f'exit {result.exit_status}'}")
        return None

    async def save(self, job: JobRecord) -> None:
        """Rewrite ``job``'s record (atomic).

        Raises:
            HostError: the ledger host is down or refused the write.
        """
        await self.host.run(script(_SAVE, "isoadmin-journal", self.path, job.id, _record(job), mutating=True),
                            timeout=self.timeout)

    async def renew(self, job: JobRecord, holder: str, ttl: float) -> bool:
        """Renew ``job``'s lease with its progress.

        Returns:
            False when the lease is gone or held by another console (the job was taken over).
        Raises:
            HostError: the ledger host cannot be reached.
        """
        result = await self.host.run(script(_RENEW, "isoadmin-renew", self.path, job.id, holder,
                                            _lease(holder, ttl, job), mutating=True), check=False, timeout=self.timeout)
        if result.exit_status not in (0, 4):
            raise HostError(self.host.name, f"lease renewal failed (exit {result.exit_status})")
        return result.exit_status == 0

    async def hold(self, job: JobRecord, holder: str, ttl: float) -> str:
        """Renew ``job``'s lease (with its progress as it is then) every third of ``ttl`` seconds until the
        lease is lost, and say why: taken over by another console, or not renewable (the ledger host
        unreachable) for 80 % of ``ttl``. Runs until then (callers run it as a task and cancel it).

        Returns:
            the reason, one line.
        """
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                if await self.renew(job, holder, ttl):
                    last_ok = time.monotonic()
                    continue
                return "its lease was taken over by another console"
            except IsoadminError as exc:
                if time.monotonic() - last_ok < ttl * 0.8:
                    continue
                return f"its lease could not be renewed: {exc.message}"

    async def claim(self, job: JobRecord, holder: str, ttl: float) -> bool:
        """Take over a dead job's lease, for its recovery: only when the lease has expired by the ledger
        host's clock (or is missing).

        Returns:
            True when claimed (this console now holds the lease), False when the lease is live.
        """
        result = await self.host.run(script(_CLAIM, "isoadmin-claim", self.path, job.id,
                                            _lease(holder, ttl, job, "recover"), mutating=True), timeout=self.timeout)
        return result.stdout.strip() == b"claimed"

    async def release(self, job: JobRecord) -> None:
        """Journal ``job``'s final record, drop its lease and the upload's lock (if it holds it)."""
        await self.host.run(script(_RELEASE, "isoadmin-unlock", self.path, upload_key(job.host, job.path),
                                   job.id, _record(job), mutating=True), timeout=self.timeout)

    # ------------------------------------------------------------------ rejections and audit

    async def reject(self, record: dict) -> None:
        """Add one rejection record (host, path, owner, name, size, mtime, reason, by, time)."""
        name = f"{upload_key(record['host'], record['path'])}-{time.time_ns()}-{secrets.token_hex(4)}"
        await self.host.run(script(_REJECT, "isoadmin-reject", self.path, name,
                                   json.dumps(record, ensure_ascii=True, sort_keys=True), mutating=True),
                            timeout=self.timeout)

    def audit_command(self, entry: dict) -> Command:
        """The append of one audit entry (``prev`` is added on the host, under the audit lock).

        Not ``mutating`` in the read-only guard's sense: a read-only session appends its own refusals.
        """
        text = json.dumps(entry, ensure_ascii=True, separators=(",", ":"))
        return Command(("sh", "-c", _AUDIT, "isoadmin-audit", self.path, text), mutating=False, label="isoadmin-audit")

    async def append_audit(self, entry: dict) -> None:
        """Append ``entry`` (a JSON object without ``prev``) to the audit log, fsynced.

        Raises:
            HostError: the ledger host is down, or the audit log stayed locked.
        """
        await self.host.run(self.audit_command(entry), timeout=self.timeout + 15)  # + the audit lock's wait

    async def audit(self) -> tuple[list[bytes], int, str]:
        """The audit log's lines (without newlines) and its head (count, sha256 of the last line). Reads
        only what was appended since the last call (``tail -c``), unless the log shrank.

        Raises:
            HostError: the ledger host is down.
        """
        result = await self.host.run(script(_AUDIT_READ, "isoadmin-audit-read", self.path,
                                            str(len(self._audit_raw) + 1)), timeout=None)
        head, _, body = result.stdout.partition(b"--\n")
        count, digest = 0, GENESIS
        for line in head.decode("ascii", "replace").splitlines():
            if line.startswith("head "):
                c, _, d = line[5:].partition(" ")
                count, digest = int(_number(c)), d.strip()
        if count < len(self._audit_lines) and self._audit_raw:
            self._audit_raw, self._audit_lines = b"", []   # shrank or replaced: read it all again
            return await self.audit()
        self._audit_raw += body
        self._audit_lines = self._audit_raw.split(b"\n")
        if self._audit_lines and self._audit_lines[-1] == b"":
            self._audit_lines.pop()
        return list(self._audit_lines), count, digest


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _record(job: JobRecord) -> str:
    return json.dumps(job.to_json(), ensure_ascii=True, separators=(",", ":"))


def _lease(holder: str, ttl: float, job: JobRecord, phase: str | None = None) -> str:
    return (f"{holder} {int(ttl)} {phase or job.phase} {int(job.done_bytes)} {int(job.total_bytes)} "
            f"{job.rate:.0f} {int(job.verified_bytes)} {job.verify_rate:.0f}")


__all__ = ["Ledger", "Books", "Lease", "AuditProblem", "verify_chain", "upload_key", "line_hash", "GENESIS",
           "LEASE_SECONDS", "DUMP_SH"]
