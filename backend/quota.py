"""Per-owner disk quotas: usage = the owner's VM disks + final CD volumes + staging volumes in flight.

Quotas come from the site config (``[quotas] default`` and ``[quotas.owners]``, bytes or ``"20 GiB"``;
0 or absent = unlimited). The check runs when an import is planned (before anything is created, numbers in
the message) and again right after its staging volume is created, against a fresh listing of every dom0,
so approvals from several consoles at once cannot together exceed the quota: the import that finds the
owner over quota removes its own staging volume and fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import humanize

from .errors import QuotaExceeded
from .models import Volume


@dataclass
class Usage:
    """An owner's usage in bytes: ``vm_disks``, ``cds`` (final volumes), ``staging``; ``quota`` (0 = none)."""

    owner: str
    vm_disks: int = 0
    cds: int = 0
    staging: int = 0
    quota: int = 0

    @property
    def used(self) -> int:
        """Bytes counted against the quota."""
        return self.vm_disks + self.cds + self.staging

    def add(self, v: Volume) -> None:
        """Count volume ``v`` (of this owner) by its namespace; other namespaces do not count."""
        if v.namespace == "vmdisk":
            self.vm_disks += v.size
        elif v.namespace == "final":
            self.cds += v.size
        elif v.namespace == "staging":
            self.staging += v.size


def quota_of(config, owner: str) -> int:
    """The owner's quota in bytes (0 = unlimited)."""
    return config.quotas.get(owner, config.quota)


def usage(config, owner: str, volumes: list[Volume]) -> Usage:
    """Sum the owner's volumes (see module docstring)."""
    u = Usage(owner, quota=quota_of(config, owner))
    for v in volumes:
        if v.owner == owner:
            u.add(v)
    return u


def owner_summary(config, owners: dict, uploads: list, volumes: list[Volume]) -> list[dict]:
    """One row per owner in ``owners`` (name → :class:`~backend.models.Owner`), sorted by name: the owner's
    JSON fields plus ``used`` and ``quota`` (bytes), ``pending`` uploads, ``cds`` (final volumes) and
    ``vm_disks`` (counts). One pass over the uploads and the volumes, whatever the number of owners."""
    use = {name: Usage(name, quota=quota_of(config, name)) for name in owners}
    counts = {name: {"pending": 0, "cds": 0, "vm_disks": 0} for name in owners}
    for u in uploads:
        if u.owner in counts and u.state.value == "pending":
            counts[u.owner]["pending"] += 1
    for v in volumes:
        if v.owner not in use:
            continue
        use[v.owner].add(v)
        if v.namespace == "vmdisk":
            counts[v.owner]["vm_disks"] += 1
        elif v.namespace == "final":
            counts[v.owner]["cds"] += 1
    return [{**owners[name].to_json(), "used": use[name].used, "quota": use[name].quota, **counts[name]}
            for name in sorted(owners)]


def downloads_held(owner: str, jobs: list, uploads: list) -> int:
    """Bytes ``owner``'s downloads hold outside the volumes: a running download's reservation (its announced
    length, or its cap: the job record's ``alloc``) and the file of a finished download that is still in the
    owner's folder and not imported (not ``available`` or ``importing``: then its volume counts instead).

    Args:
        jobs: :class:`~backend.state.JobRecord` of the site (every kind; others are skipped).
        uploads: :class:`~backend.models.Upload` of the last listing.
    Returns:
        bytes.
    """
    listed = {(u.host, u.path): u for u in uploads if u.owner == owner}
    held, counted = 0, set()
    for j in jobs:
        if j.kind != "download" or j.owner != owner:
            continue
        if j.state == "running":
            held += j.alloc or j.total_bytes
        elif j.state == "done" and (j.host, j.path) not in counted:
            u = listed.get((j.host, j.path))
            if u is not None and u.state.value not in ("available", "importing"):
                counted.add((j.host, j.path))
                held += u.size
    return held


def check(config, owner: str, volumes: list[Volume], adding: int) -> Usage:
    """Raise :class:`QuotaExceeded` when ``adding`` bytes would put ``owner`` over quota.

    Returns:
        the usage before adding.
    """
    u = usage(config, owner, volumes)
    if u.quota and u.used + adding > u.quota:
        size = lambda n: humanize.naturalsize(n, binary=True)  # noqa: E731
        raise QuotaExceeded(
            f"{owner} would use {size(u.used + adding)} of a {size(u.quota)} quota "
            f"(VM disks {size(u.vm_disks)}, CDs {size(u.cds)}, in flight {size(u.staging)}, "
            f"this import {size(adding)}); an admin can override the quota explicitly")
    return u
