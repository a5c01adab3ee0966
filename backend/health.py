"""``isoadmin check`` / ``repair``: find what the hosts show is left over, and fix it.

Like Ganeti's cluster verify (orphan LVs) and Glance's staging cleaner, from the hosts and the site's
ledger: jobs whose lease expired while ``running``, staging volumes of no live job, isoadmin disks still
hot-plugged into an image host with no live job (by their serial, or — hot-plugged without one under
``locate = "new-device"`` — by their source, one of our staging or final volumes), volumes with our prefixes whose metadata is missing,
empty or unreadable, and final volumes whose metadata is incomplete. Nothing protected by a live lease
(any console's, on any workstation) is ever a finding, and :func:`repair` looks at the leases again right
before each fix. :func:`repair` is a dry run unless ``apply`` is true; every applied fix is audited.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import kernels
from .errors import IsoadminError
from .jobs import volume_meta
from .ledger import Books

SERIAL_PREFIX = "isoa"


@dataclass
class Finding:
    """One problem.

    Attributes:
        kind: ``unfinished job``, ``orphan staging volume``, ``attached disk``, ``volume without metadata``,
            ``broken final volume``, ``half-staged kernel set``.
        host: the dom0 (or image host) concerned. target: job id, volume or disk serial.
        detail: what is wrong. fix: what :func:`repair` would do ("" when it needs a person).
        job: the job the fix is based on ("" when none).
        device: for an ``attached disk`` without a serial, its source on the dom0 (the volume's path), by which
            it is detached; else "".
    """

    kind: str
    host: str
    target: str
    detail: str
    fix: str
    job: str = ""
    device: str = ""

    def to_json(self) -> dict:
        """The finding as a JSON object (``check --json``)."""
        return asdict(self)


def _protected(site, books: Books) -> set[str]:
    """Ids of jobs nothing may touch: running in this process, or holding a live lease (any console's,
    a recovery's included)."""
    return set(site.active) | {job for job in books.leases if books.live(job)}


def _no_metadata(v) -> bool:
    return not v.meta or "broken" in v.meta or not v.meta.get("created_by")


async def check(site) -> list[Finding]:
    """Look at the ledger, every dom0 (volumes, hot-plugged disks). Read-only.

    Raises:
        HostError: the ledger or a dom0 cannot be read (a check that cannot see everything says so).
    """
    books = await site.read_books()
    findings = [Finding("unfinished job", j.host if j.kind == "download" else j.dom0, j.id,
                        f"{j.key}: its console stopped during {j.phase} (lease expired)",
                        "stop the download, remove its part file" if j.kind == "download" else
                        "roll the job back (stop the copy, detach, remove its staging volume)", j.id)
                for j in site.orphaned_jobs(books)]
    unfinished = {f.target for f in findings}  # their volumes and disks are the recovery's business
    protected = _protected(site, books) | unfinished
    by_staging = {(j.dom0, j.staging): j for j in books.jobs.values()}
    by_final = {(j.dom0, j.final): j for j in books.jobs.values() if j.state == "done" or j.phase == "rename"}
    for name, storage in site.storage.items():
        report = await storage.report()
        for v in report.volumes:
            if v.namespace == "staging":
                job = by_staging.get((name, v.name))
                job_id = job.id if job else str(v.meta.get("job", ""))
                if job_id in protected:
                    continue
                if _no_metadata(v):
                    findings.append(Finding("volume without metadata", name, v.name,
                                            "staging volume whose metadata is missing or unreadable "
                                            f"(job {job_id or '?'} is not running)", "remove it", job_id))
                elif storage.owns(v):
                    findings.append(Finding("orphan staging volume", name, v.name,
                                            f"{v.owner}/{v.upload}, job {job_id or '?'} is not running",
                                            "detach it if attached, then remove it", job_id))
            elif v.namespace == "final":
                job = by_final.get((name, v.name))
                if _no_metadata(v):
                    fix = f"rebuild its metadata from job {job.id} on the ledger" if job and job.sha256 else ""
                    findings.append(Finding("volume without metadata", name, v.name,
                                            "final volume whose metadata is missing or unreadable"
                                            + ("" if fix else " and no job on the ledger made it"),
                                            fix, job.id if job else ""))
                    continue
                missing = [k for k in ("owner", "upload", "sha256", "size") if not v.meta.get(k)]
                if missing and storage.owns(v):
                    fix = f"rebuild its metadata from job {job.id} on the ledger" if job and job.sha256 else ""
                    findings.append(Finding("broken final volume", name, v.name,
                                            f"metadata missing {', '.join(missing)}", fix, job.id if job else ""))
        for ih in site.config.image_hosts.values():
            domain = ih.domains.get(name)
            if domain is None:
                continue
            for serial in await site.hypervisors[name].attached(domain):
                job = serial[len(SERIAL_PREFIX):]
                if serial.startswith(SERIAL_PREFIX) and job not in protected:
                    findings.append(Finding("attached disk", name, serial,
                                            f"isoadmin disk still hot-plugged into {domain} (job {job})",
                                            f"detach it from {domain}", job))
            ours = {v.path: v for v in report.volumes if v.namespace in ("staging", "final")}
            for source in await site.hypervisors[name].attached_sources(domain):
                v = ours.get(source)
                if v is None:
                    continue  # the image host's own disks, other volumes: not ours to judge
                job = by_staging.get((name, v.name)) if v.namespace == "staging" else by_final.get((name, v.name))
                job_id = job.id if job else str(v.meta.get("job", ""))
                if job_id in protected:
                    continue
                known = f"job {job_id} is not running" if job else "no job record on the ledger"
                fix = f"detach it from {domain}" + (" (the orphan staging volume is removed as its own finding)"
                                                    if v.namespace == "staging" else " (the volume is kept)")
                findings.append(Finding("attached disk", name, v.name,
                                        f"{v.namespace} volume {v.name} ({v.owner or '?'}/{v.upload or '?'}) still "
                                        f"hot-plugged into {domain} without a serial; {known}", fix, job_id, source))
    findings += await _kernel_leftovers(site)
    return findings


async def _kernel_leftovers(site) -> list[Finding]:
    """Kernel sets whose staging never finished (a temporary folder older than a staging takes)."""
    _, leftovers = await kernels.list_sets(site)
    return [Finding("half-staged kernel set", dom0, path,
                    f"temporary folder of a kernel set never finished (older than {kernels.LEFTOVER_MINUTES} min)",
                    "remove it") for dom0, path in leftovers]


async def repair(site, findings: list[Finding], apply: bool = False) -> list[tuple[Finding, str]]:
    """Fix ``findings`` (from :func:`check`). Without ``apply`` nothing is changed. Right before each fix
    the leases are read again: a job that came alive (or a console that started recovering it) is left
    alone (``skipped: …``).

    Returns:
        (finding, outcome) pairs: ``would …`` (dry run), ``done``, ``skipped: reason``, ``failed: reason`` or
        ``needs a person``.
    Raises:
        ReadOnlyError: ``apply`` in a read-only session (nothing is sent; the refusal is audited).
    """
    if apply:
        await site.refuse_if_read_only("repair", f"{len(findings)} findings")
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
            books = await site.read_books()
            if f.kind != "unfinished job" and f.job and f.job in _protected(site, books):
                results.append((f, f"skipped: job {f.job} holds a live lease"))
                continue
            if f.kind == "unfinished job":
                if not recovered:
                    await site.recover()
                    recovered = True
            elif f.kind == "half-staged kernel set":
                await kernels.remove_leftover(site, f.host, f.target)
            elif f.kind == "attached disk":
                domain = next(ih.domains[f.host] for ih in site.config.image_hosts.values() if f.host in ih.domains)
                if f.device:  # hot-plugged without a serial: found by its source
                    await site.hypervisors[f.host].detach(domain, "", site.detach_timeout, device=f.device)
                else:
                    await site.hypervisors[f.host].detach(domain, f.target, site.detach_timeout)
            elif f.target.startswith(site.config.dom0s[f.host].staging_prefix):
                serial = f"{SERIAL_PREFIX}{f.job}"
                for ih in site.config.image_hosts.values():
                    domain = ih.domains.get(f.host)
                    if f.job and domain and serial in await site.hypervisors[f.host].attached(domain):
                        await site.hypervisors[f.host].detach(domain, serial, site.detach_timeout)
                    if domain:  # hot-plugged without a serial (locate = "new-device"): found by its source
                        await site.hypervisors[f.host].detach(domain, "", site.detach_timeout,
                                                              device=site.storage[f.host].device_path(f.target))
                await site.storage[f.host].remove(f.target)
            else:  # a final volume: its metadata again, from the job that made it
                job = books.jobs[f.job]
                await site.storage[f.host].write_meta(f.target, volume_meta(job, state="final", sha256=job.sha256))
            outcome = "done"
        except (IsoadminError, KeyError) as exc:
            outcome = f"failed: {getattr(exc, 'message', exc)}"
        await site.audit.record("repair", f"{f.kind} {f.target}", "done" if outcome == "done" else "failed",
                                outcome if outcome != "done" else f.fix, f.host)
        results.append((f, outcome))
    return results
