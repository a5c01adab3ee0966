"""Import job records. They are journaled on the site's ledger (:mod:`backend.ledger`), never only in a
console's state dir: every console of the site sees every job. The hosts stay the source of truth for
volumes: staging / final volumes carry their own metadata.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

PHASES = ("create", "attach", "locate", "copy", "verify", "detach", "rename")


@dataclass
class JobRecord:
    """One import job.

    Attributes:
        id: 12 hex digits. serial: the hot-plug serial (``isoa`` + id, 16 bytes).
        owner, upload: the upload's owner and file name. host, path: where it lives.
        size, mtime, inode: the upload as listed when approved (bytes, epoch seconds).
        dom0, domain: target dom0 and the image host's domain name there.
        staging, final: volume names. alloc: staging volume size (bytes, rounded to the unit).
        approver: who approved. created, updated: epoch seconds.
        phase: current or last phase (see :data:`PHASES`, or ``done``). state: ``running``, ``done``,
        ``failed``. error: the reason when failed. done_bytes/total_bytes: copy progress (bytes written).
        verified_bytes: bytes read back from the disk behind the writer (the verify, in the same pass).
        rate: copy bytes/s. verify_rate: read-back bytes/s.
        sha256: of the upload as copied. device: the disk's path inside the image host.
        created_volume, attached: what rollback must undo. rollback: what rollback did.
        iso: header facts of the upload (volume_id, bootable ...), recorded with the final volume.
        facts: the upload's header facts as the approver saw them (also for a file that is not ISO 9660):
        the landed bytes must show the same.
        console: ``user@workstation:pid`` of the console that started the job (for people; liveness is
        the job's lease on the ledger).
        copy_pid: PID (= process group) of the copy on the image host while it runs, else 0.
        device_before: with ``locate = "new-device"``, the image host's block devices (``/sys/block``
        names) listed right before the attach: the job's disk is the new one.
        kind: ``import`` (the phases above) or ``download`` (``download-url``: one phase, ``download``;
        ``path`` is the file it becomes, ``staging`` its part file's name, ``final`` its name, ``copy_pid``
        the download's PID and process group on the image host, ``total_bytes`` the announced length or 0).
        url: the URL of a download ("" for an import).
    """

    id: str
    serial: str
    owner: str
    upload: str
    host: str
    path: str
    size: int
    mtime: float
    inode: int
    dom0: str
    domain: str
    staging: str
    final: str
    alloc: int
    approver: str
    created: float
    updated: float = 0.0
    phase: str = "create"
    state: str = "running"
    error: str = ""
    done_bytes: int = 0
    verified_bytes: int = 0
    total_bytes: int = 0
    rate: float = 0.0
    verify_rate: float = 0.0
    sha256: str = ""
    device: str = ""
    created_volume: bool = False
    attached: bool = False
    rollback: str = ""
    iso: dict = field(default_factory=dict)
    console: str = ""
    copy_pid: int = 0
    facts: dict = field(default_factory=dict)
    device_before: list = field(default_factory=list)
    kind: str = "import"
    url: str = ""

    @property
    def key(self) -> str:
        """``OWNER/FILE`` of the upload."""
        return f"{self.owner}/{self.upload}"

    @property
    def eta(self) -> float | None:
        """Seconds left in the copy (or the download) at the current rate, or None when unknown."""
        if self.phase not in ("copy", "download") or self.rate <= 0 or self.total_bytes <= 0:
            return None
        return max(0.0, (self.total_bytes - self.done_bytes) / self.rate)

    @property
    def verify_eta(self) -> float | None:
        """Seconds left in the read-back (the verify, behind the copy) at its current rate, or None."""
        if self.phase != "copy" or self.verify_rate <= 0:
            return None
        return max(0.0, (self.total_bytes - self.verified_bytes) / self.verify_rate)

    def to_json(self) -> dict:
        """The record as JSON (the journal file, ``jobs --json``), with ``eta`` and ``verify_eta``."""
        data = asdict(self)
        data["eta"] = self.eta
        data["verify_eta"] = self.verify_eta
        return data

    @classmethod
    def from_json(cls, data: dict) -> "JobRecord":
        """Read a journaled record; unknown keys (from newer versions) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
