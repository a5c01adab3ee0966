"""The audit log: every action, refusal and failure of every console of the site, on the ledger.

It lives on the site's ledger (``audit.jsonl``, see :mod:`backend.ledger`), so an auditor's console on
another workstation reads what every admin did. It is append-only and hash-chained: each line records the
sha256 of the line before it (``prev``), and ``audit.head`` the count and the hash of the last line, so
``isoadmin audit --verify`` names the first torn, edited, reordered or removed entry.

Each entry: ``time`` (epoch seconds, the console's clock), ``who`` (``user@workstation``), ``key`` (the
fingerprint of the SSH key that authenticated to the ledger host), ``action`` (approve, reject, repair,
recover ...), ``target`` (``OWNER/FILE``, a volume, a disk), ``host``, ``outcome`` (``started``,
``done``, ``failed``, ``refused``), ``reason`` and ``read_only``. Read-only sessions append their refused
attempts too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

from .ledger import AuditProblem, Ledger, verify_chain


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log (see module docstring). ``prev`` is the sha256 of the line before it."""

    time: float
    who: str
    action: str
    target: str
    host: str
    outcome: str
    reason: str = ""
    read_only: bool = False
    key: str = ""
    prev: str = ""

    def to_json(self) -> dict:
        """The entry as a JSON object (``audit --json``)."""
        return asdict(self)


_FIELDS = {f.name for f in fields(AuditEntry)}


class AuditLog:
    """The site's audit log on ``ledger``.

    Args:
        ledger: where it lives. who: the person recorded with every entry (``user@workstation``).
        read_only: marks entries of a read-only session. key: returns the fingerprint of the SSH key that
            authenticated to the ledger host ("" before the first connection).
    """

    def __init__(self, ledger: Ledger, who: str, read_only: bool = False,
                 key: Callable[[], str] | None = None) -> None:
        self.ledger = ledger
        self.who = who
        self.read_only = read_only
        self.key = key or (lambda: "")

    async def record(self, action: str, target: str, outcome: str, reason: str = "", host: str = "") -> AuditEntry:
        """Append one entry to the ledger's audit log, fsynced there before this returns.

        Raises:
            HostError: the ledger host is down or the log stayed locked (an action that cannot be audited
                must not pass silently).
        """
        await self.ledger.host.connection()  # so the key that authenticates is known
        entry = AuditEntry(time.time(), self.who, action, target, host, outcome, reason, self.read_only, self.key())
        data = asdict(entry)
        data.pop("prev")
        await self.ledger.append_audit(data)
        return entry

    async def entries(self) -> list[AuditEntry]:
        """Every readable entry, oldest first (a torn or edited line is left out here; :meth:`verify` names it).

        Raises:
            HostError: the ledger host is down.
        """
        lines, _, _ = await self.ledger.audit()
        out = []
        for line in lines:
            try:
                data = json.loads(line)
                out.append(AuditEntry(**{k: v for k, v in data.items() if k in _FIELDS}))
            except (ValueError, TypeError, AttributeError):
                continue
        return out

    async def verify(self) -> AuditProblem | None:
        """Check the hash chain (see :func:`backend.ledger.verify_chain`).

        Returns:
            None when intact, else the first bad entry.
        Raises:
            HostError: the ledger host is down.
        """
        lines, count, digest = await self.ledger.audit()
        return verify_chain(lines, count, digest)
