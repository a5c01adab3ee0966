"""Garbage collection of old uploads, the site's catalog of final volumes, and re-verification.

* :func:`gc_plan` / :func:`gc_apply`: uploads older than ``gc_days`` (``gc_rejected_days`` for rejected
  ones) are removed from the image host — never one that is importing, still being written or held open,
  never a directory, device, fifo or socket, and never a file that changed since it was listed (checked on
  the host just before ``rm``). Final volumes are never garbage-collected.
* :func:`catalog`: every final volume of every dom0 with what it records about itself — rebuilt from the
  hosts alone, so it is complete even without the console's state dir.
* :func:`verify_volume`: re-read a volume on its dom0 and compare with its recorded sha256.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from . import imagehost
from .commands import script
from .errors import IsoadminError, NotFound, VerifyFailed
from .hostscripts import load
from .ledger import upload_key
from .models import UploadState, Volume

DAY = 86400.0

_REMOVE = load("catalog-gc-remove.sh")


@dataclass
class GcItem:
    """An upload garbage collection would remove, and why. ``age`` in days."""

    host: str
    owner: str
    name: str
    path: str
    state: str
    age: float
    reason: str

    def to_json(self) -> dict:
        """The ``gc --json`` item."""
        return asdict(self)


def gc_plan(site) -> list[GcItem]:
    """What :func:`gc_apply` would remove, from the last refresh (call ``site.refresh()`` first)."""
    items = []
    cfg = site.config
    for u in site.snapshot.uploads:
        if u.kind not in ("file", "symlink") or not u.owner:
            continue  # directories, devices, fifos, sockets and stray entries are left to a person
        if u.state in (UploadState.IMPORTING, UploadState.WRITING):
            continue
        host_now, _ = site.host_clock.get(u.host, (time.time(), time.time()))
        age = (host_now - u.mtime) / DAY
        limit = cfg.gc_rejected_days if u.state == UploadState.REJECTED else cfg.gc_days
        if age > limit:
            items.append(GcItem(u.host, u.owner, u.name, u.path, u.state.value, round(age, 2),
                                f"{u.state.value} and older than {limit:g} days"))
    return items


async def gc_apply(site, items: list[GcItem]) -> list[tuple[GcItem, str]]:
    """Remove ``items`` (from :func:`gc_plan`); each removal or failure is audited.

    Returns:
        (item, outcome) pairs: ``removed`` or ``kept: reason``.
    Raises:
        ReadOnlyError: in a read-only session (nothing is sent).
    """
    await site.refuse_if_read_only("gc", f"{len(items)} uploads")
    results = []
    uploads = {(u.host, u.path): u for u in site.snapshot.uploads}
    books = await site.read_books()  # an import any console started since the listing holds its lock
    for item in items:
        u = uploads.get((item.host, item.path))
        host = site.hosts[item.host]
        try:
            if u is None:
                raise IsoadminError("no longer listed")
            if (any((r.job.host, r.job.path) == (item.host, item.path) for r in site.active.values())
                    or upload_key(item.host, item.path) in books.locks):
                raise IsoadminError("importing")
            if u.kind == "file" and await imagehost.in_use(host, u.path) is not None:
                raise IsoadminError("held open")
            expected = f"{u.inode} {u.size} {int(u.mtime)}"
            await host.run(script(_REMOVE, "isoadmin-gc", u.path, expected, mutating=True))
            outcome = "removed"
        except IsoadminError as exc:
            outcome = f"kept: {getattr(exc, 'stderr', '').strip() or exc.message}"
        await site.audit.record("gc", f"{item.owner}/{item.name}", "done" if outcome == "removed" else "failed",
                          item.reason if outcome == "removed" else outcome, item.host)
        results.append((item, outcome))
    return results


CATALOG_FIELDS = ("dom0", "volume", "owner", "upload", "volume_id", "bootable", "size", "sha256",
                  "source_host", "source_path", "approver", "time", "type")


def catalog(volumes: list[Volume]) -> list[dict]:
    """The catalog rows (fields :data:`CATALOG_FIELDS`) of every final volume isoadmin made."""
    rows = []
    for v in sorted(volumes, key=lambda v: (v.owner, v.upload, v.dom0, v.name)):
        if v.namespace != "final" or v.meta.get("created_by") != "isoadmin":
            continue
        iso = v.meta.get("iso") or {}
        rows.append({
            "dom0": v.dom0, "volume": v.name, "owner": v.owner, "upload": v.upload,
            "volume_id": iso.get("volume_id"), "bootable": iso.get("bootable"), "size": v.meta.get("size"),
            "sha256": v.sha256, "source_host": v.meta.get("source_host"), "source_path": v.meta.get("source_path"),
            "approver": v.meta.get("approver"), "time": v.meta.get("time"), "type": "cd",
        })
    return rows


async def verify_volume(site, ref: str) -> Volume:
    """Re-read volume ``ref`` (``DOM0:NAME`` or a unique ``NAME``) on its dom0 and compare the sha256 of
    its first ``size`` bytes with the one recorded with it; audited either way.

    Returns:
        the volume (it matches).
    Raises:
        VerifyFailed: it does not match (numbers in the message).
        NotFound: no such volume, or nothing recorded to verify against.
        HostError: the dom0 is down or the read failed.
    """
    dom0, _, name = ref.rpartition(":")
    matches = [v for v in site.snapshot.volumes if v.name == name and (not dom0 or v.dom0 == dom0)]
    if len(matches) != 1:
        raise NotFound(f"no single volume {ref!r}; `isoadmin volumes` lists them")
    vol = matches[0]
    size = vol.meta.get("size")
    if not vol.sha256 or not isinstance(size, int):
        raise NotFound(f"{ref}: no recorded sha256 and size to verify against")
    # the same read as an import's verify (from the disk, not the page cache), run on the dom0
    result = await site.hosts[vol.dom0].run(script(imagehost.VERIFY_SCRIPT, "isoadmin-sha", vol.path, str(size)),
                                            timeout=None)
    now = result.stdout.decode("ascii", "replace").split()[0] if result.stdout.strip() else ""
    target = f"{vol.dom0}:{vol.name}"
    if now != vol.sha256:
        await site.audit.record("verify", target, "failed", f"sha256 now {now}, recorded {vol.sha256}", vol.dom0)
        raise VerifyFailed(f"{target} does not match its recorded sha256 "
                           f"(now {now[:16]}…, recorded {vol.sha256[:16]}…)")
    await site.audit.record("verify", target, "done", f"sha256 {now}", vol.dom0)
    return vol
