"""The audit log: every action, refusal and failure, one JSON object per line, fsynced.

It lives in the console's state dir (``audit.jsonl``). Each entry: ``time`` (epoch seconds), ``who``,
``action`` (approve, reject, repair, recover ...), ``target`` (``OWNER/FILE``, a volume, a disk),
``host``, ``outcome`` (``started``, ``done``, ``failed``, ``refused``) and ``reason``. Read-only sessions
are audited too: their refused attempts appear with outcome ``refused``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log (see module docstring)."""

    time: float
    who: str
    action: str
    target: str
    host: str
    outcome: str
    reason: str = ""
    read_only: bool = False


class AuditLog:
    """Append-only audit log at ``state_dir/audit.jsonl``.

    Args:
        state_dir: the console's state folder (created on first write).
        who: the person recorded with every entry (``user@host``).
        read_only: marks entries of a read-only session.
    """

    def __init__(self, state_dir: Path, who: str, read_only: bool = False) -> None:
        self.path = Path(state_dir) / "audit.jsonl"
        self.who = who
        self.read_only = read_only

    def record(self, action: str, target: str, outcome: str, reason: str = "", host: str = "") -> AuditEntry:
        """Append one entry and fsync it before returning.

        Raises:
            OSError: the state dir is not writable (an action that cannot be audited must not pass
                silently).
        """
        entry = AuditEntry(time.time(), self.who, action, target, host, outcome, reason, self.read_only)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(entry), ensure_ascii=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return entry

    def entries(self) -> list[AuditEntry]:
        """Every entry, oldest first; lines that do not parse are skipped."""
        out = []
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return out
        for line in lines:
            try:
                out.append(AuditEntry(**json.loads(line)))
            except (ValueError, TypeError):
                continue
        return out
