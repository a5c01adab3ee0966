"""The console's own state, in the state dir: the job journal and rejections.

Each job is one JSON file ``jobs/<id>.json``, rewritten atomically (write, fsync, rename) at every phase,
so another console process (``isoadmin jobs --json``) and a restart see it. Rejections are one JSON file.
The hosts stay the source of truth for volumes: staging / final volumes carry their own metadata.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

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
        ``failed``. error: the reason when failed. done_bytes/total_bytes: copy progress. rate: bytes/s.
        sha256: of the upload as copied. device: the disk's path inside the image host.
        created_volume, attached: what rollback must undo. rollback: what rollback did.
        iso: header facts of the upload (volume_id, bootable ...), recorded with the final volume.
        console: ``hostname:pid`` of the console process running the job (to detect a dead one).
        copy_pid: PID (= process group) of the copy on the image host while it runs, else 0.
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
    total_bytes: int = 0
    rate: float = 0.0
    sha256: str = ""
    device: str = ""
    created_volume: bool = False
    attached: bool = False
    rollback: str = ""
    iso: dict = field(default_factory=dict)
    console: str = ""
    copy_pid: int = 0

    @property
    def key(self) -> str:
        """``OWNER/FILE`` of the upload."""
        return f"{self.owner}/{self.upload}"

    @property
    def eta(self) -> float | None:
        """Seconds left in the copy at the current rate, or None when unknown."""
        if self.phase != "copy" or self.rate <= 0:
            return None
        return max(0.0, (self.total_bytes - self.done_bytes) / self.rate)

    def to_json(self) -> dict:
        """The record as JSON (the journal file, ``jobs --json``), with ``eta``."""
        data = asdict(self)
        data["eta"] = self.eta
        return data

    @classmethod
    def from_json(cls, data: dict) -> "JobRecord":
        """Read a journaled record; unknown keys (from newer versions) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class StateStore:
    """Job journal and rejections under ``state_dir``.

    Args:
        state_dir: the console's state folder (created on first write).
    """

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)

    def save_job(self, job: JobRecord) -> None:
        """Persist ``job`` (atomic replace + fsync)."""
        _write_atomic(self.dir / "jobs" / f"{job.id}.json", json.dumps(job.to_json(), indent=1))

    def jobs(self) -> list[JobRecord]:
        """Every journaled job, oldest first. Unreadable files are skipped."""
        out = []
        for path in (self.dir / "jobs").glob("*.json"):
            try:
                out.append(JobRecord.from_json(json.loads(path.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(out, key=lambda j: j.created)

    def rejections(self) -> dict[str, dict]:
        """Rejected uploads: ``"host\\0path"`` → {reason, by, time, size, mtime}."""
        try:
            data = json.loads((self.dir / "rejections.json").read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def reject(self, host: str, path: str, record: dict) -> None:
        """Record a rejection of ``host:path`` (replacing an older one)."""
        data = self.rejections()
        data[f"{host}\0{path}"] = record
        _write_atomic(self.dir / "rejections.json", json.dumps(data, indent=1))
