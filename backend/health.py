"""``isoadmin check`` / ``repair``: find what the hosts show is left over, and fix it.

Like Ganeti's cluster verify (orphan LVs) and Glance's staging cleaner, from the hosts alone plus the job
journal: staging volumes with no live job, isoadmin disks still hot-plugged into an image host with no live
job, final volumes whose metadata is broken, and jobs a dead console left running. :func:`repair` is a
dry run unless ``apply`` is true; every applied fix is audited.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from .errors import IsoadminError

SERIAL_PREFIX = "isoa"
STALE_SECONDS = 6 * 3600  # a staging volume no journal here knows is stale after this (other consoles)


@dataclass
class Finding:
    """One problem.

    Attributes:
        kind: ``unfinished job``, ``orphan staging volume``, ``attached disk``, ``broken final volume``.
        host: the dom0 (or image host) concerned. target: job id, volume or disk serial.
        detail: what is wrong. fix: what :func:`repair` would do ("" when it needs a person).
    """

    kind: str
    host: str
    target: str
    detail: str
    fix: str

    def to_json(self) -> dict:
        """The finding as a JSON object (``check --json``)."""
        return asdict(self)


def _live_jobs(site) -> set[str]:
    """Ids of jobs that may still be running: in this process, or journaled running by a live console."""
    orphaned = {j.id for j in site.orphaned_jobs()}
    return set(site.active) | {j.id for j in site.store.jobs() if j.state == "running" and j.id not in orphaned}


async def check(site) -> list[Finding]:
    """Look at every dom0 (volumes, hot-plugged disks) and the journal. Read-only.

    Raises:
        HostError: a dom0 cannot be listed (a check that cannot see everything says so).
    """
    findings = [Finding("unfinished job", j.dom0, j.id, f"{j.key}: console died during {j.phase}",
                        "resume or roll back the job (detach, remove its staging volume)")
                for j in site.orphaned_jobs()]
    unfinished = {f.target for f in findings}  # their volumes and disks are the recovery's business
    live = _live_jobs(site)
    journal = {j.id: j for j in site.store.jobs()}
    now = time.time()
    for name, storage in site.storage.items():
        report = await storage.report()
        for v in report.volumes:
            if v.namespace == "staging" and storage.owns(v):
                job = str(v.meta.get("job", ""))
                known = journal.get(job)
                stale = known is not None or now - float(v.meta.get("time", now)) > STALE_SECONDS
                if job not in live and stale and job not in unfinished:
                    findings.append(Finding("orphan staging volume", name, v.name,
                                            f"{v.owner}/{v.upload}, job {job or '?'} is not running",
                                            "detach it if attached, then remove it"))
            elif v.namespace == "final" and v.meta.get("created_by") == "isoadmin":
                missing = [k for k in ("owner", "upload", "sha256", "size") if not v.meta.get(k)]
                if missing or "broken" in v.meta:
                    findings.append(Finding("broken final volume", name, v.name,
                                            f"metadata {'missing ' + ', '.join(missing) if missing else 'unreadable'}",
                                            ""))
        for ih in site.config.image_hosts.values():
            domain = ih.domains.get(name)
            if domain is None:
                continue
            for serial in await site.hypervisors[name].attached(domain):
                job = serial[len(SERIAL_PREFIX):]
                if serial.startswith(SERIAL_PREFIX) and job not in live and job not in unfinished:
                    findings.append(Finding("attached disk", name, serial,
                                            f"isoadmin disk still hot-plugged into {domain} (job {job})",
                                            f"detach it from {domain}"))
    return findings


async def repair(site, findings: list[Finding], apply: bool = False) -> list[tuple[Finding, str]]:
    """Fix ``findings`` (from :func:`check`). Without ``apply`` nothing is changed.

    Returns:
        (finding, outcome) pairs: ``would …`` (dry run), ``done``, ``failed: reason`` or ``needs a person``.
    Raises:
        ReadOnlyError: ``apply`` in a read-only session (nothing is sent).
    """
    from .errors import ReadOnlyError

    if apply and site.read_only:
        site.audit.record("repair", f"{len(findings)} findings", "refused", "read-only session")
        raise ReadOnlyError("read-only session: repair --apply is not allowed")
    results = []
    recovered = False
    for f in findings:
        if not f.fix:
            results.append((f, "needs a person"))
            continue
        if not apply:
            results.append((f, f"would {f.fix}"))
            continue
        try:
            if f.kind == "unfinished job":
                if not recovered:
                    await site.recover()
                    recovered = True
            elif f.kind == "attached disk":
                domain = next(ih.domains[f.host] for ih in site.config.image_hosts.values() if f.host in ih.domains)
                await site.hypervisors[f.host].detach(domain, f.target, site.detach_timeout)
            elif f.kind == "orphan staging volume":
                report = await site.storage[f.host].report()
                vol = next((v for v in report.volumes if v.name == f.target), None)
                if vol is not None:
                    serial = f"{SERIAL_PREFIX}{vol.meta.get('job', '')}"
                    for ih in site.config.image_hosts.values():
                        domain = ih.domains.get(f.host)
                        if domain and serial in await site.hypervisors[f.host].attached(domain):
                            await site.hypervisors[f.host].detach(domain, serial, site.detach_timeout)
                    await site.storage[f.host].remove(f.target)
            outcome = "done"
        except IsoadminError as exc:
            outcome = f"failed: {exc.message}"
        site.audit.record("repair", f"{f.kind} {f.target}", "done" if outcome == "done" else "failed",
                          outcome if outcome != "done" else f.fix, f.host)
        results.append((f, outcome))
    return results
