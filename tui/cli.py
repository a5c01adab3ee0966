"""The ``isoadmin`` command: the TUI when no command is given, else one CLI command on the same backend.

Exit status: 0 success; otherwise the failing :class:`~backend.errors.IsoadminError`'s ``exit_code``
(2 usage/config, 3 host, 4 read-only, 5 not found, 6 not approvable, 7 capacity short, 8 import failed),
9 when ``check`` finds something, 10 when ``verify`` finds a volume that does not match, 11 quota exceeded,
12 when ``audit --verify`` finds the hash chain broken, 70 an unexpected error (a crash report is written to
the state dir and its path printed), 130 when interrupted. Every failure prints one line on stderr, never a
traceback. Text from hosts and people is printed under the display rule (:mod:`backend.text`).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.metadata
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path

import humanize
import shtab

from backend import catalog, cdrom, download, health, kernels, quota
from backend.config import SiteConfig, default_state_dir, load_config, prepare_state_dir
from backend.crash import EXIT_CRASH, one_line, write_crash_report
from backend.errors import ConfigError, HostError, IsoadminError, UsageError
from backend.lab import Lab, default_lab_dir
from backend.models import Upload
from backend.site import ImportPlan, Site
from backend.state import JobRecord
from backend.text import csv_cell, printable

COMMANDS = ("uploads", "volumes", "jobs", "hosts", "owners", "approve", "reject", "check", "repair", "audit", "gc", "catalog",
            "verify", "delete-volume", "insert-cd", "eject-cd",
            "kernels", "stage-kernel", "kernel-sets", "delete-kernel", "kernel-gc", "download-url", "cache")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also documents every option in ``--help``)."""
    p = argparse.ArgumentParser(
        prog="isoadmin",
        description="Review owners' boot-CD uploads and import them onto dom0 volumes. "
                    "Without a command, opens the console (TUI).",
        epilog="The console logs every host command to "
               f"{Path(default_state_dir()) / LOG_NAME} (in the configured state dir); -v shows the same on "
               "stderr. Shell completion: isoadmin --print-completion bash > "
               "/etc/bash_completion.d/isoadmin (or zsh).")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="log every host command (host, what, exit status, seconds) to stderr")
    shtab.add_argument_to(p, "--print-completion", help="print a bash or zsh completion script")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--lab", metavar="DIR", nargs="?", const="", default=None,
                       help=f"run on the embedded lab site in DIR (default {default_lab_dir()})")
    where.add_argument("--config", metavar="FILE", type=Path, help="site file (default: user config dir/site.toml)")
    p.add_argument("--read-only", action="store_true", help="refuse every change; for auditors")
    p.add_argument("--as", dest="as_user", metavar="USER",
                   help="show only the owners USER may act for (the owner, its folder's group, [owners] in the config)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (("uploads", "list uploads"), ("volumes", "list volumes"),
                       ("owners", "list owners: who may act for them, quota use, uploads, CDs, VM disks"),
                       ("jobs", "list import and download jobs, with bytes, rate and ETA while they run"), ("hosts", "list hosts and their status")):
        s = sub.add_parser(name, help=text, description=text)
        s.add_argument("--json", action="store_true", help="print one JSON array")
    a = sub.add_parser("approve", help="import an upload onto a dom0 volume",
                       description="import OWNER/FILE: create, attach, locate, copy, verify, detach, rename")
    a.add_argument("upload", metavar="OWNER/FILE")
    a.add_argument("--dom0", metavar="NAME", help="target dom0 (default: the image host's first)")
    a.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    a.add_argument("--allow-non-iso", action="store_true", help="confirm importing a file that is not ISO 9660")
    a.add_argument("--override-quota", action="store_true", help="import even over the owner's quota (audited)")
    a.add_argument("--override-rejection", action="store_true",
                   help="import an upload an admin rejected (audited; --yes alone is not enough)")
    r = sub.add_parser("reject", help="reject an upload (the file is kept)")
    r.add_argument("upload", metavar="OWNER/FILE")
    r.add_argument("--reason", required=True, help="why (shown to admins)")
    c = sub.add_parser("check", help="find leftovers: orphan staging volumes, attached disks, broken metadata, "
                                     "unfinished jobs (exit 9 when something is found)")
    c.add_argument("--json", action="store_true", help="print one JSON array")
    f = sub.add_parser("repair", help="fix what `check` finds; a dry run unless --apply")
    f.add_argument("--apply", action="store_true", help="really do it")
    f.add_argument("--json", action="store_true", help="print one JSON array")
    au = sub.add_parser("audit", help="print the site's audit log (on the ledger)")
    au.add_argument("--json", action="store_true", help="print one JSON array")
    au.add_argument("--verify", action="store_true",
                    help="check the log's hash chain; exit 12 naming the first bad entry")
    g = sub.add_parser("gc", help="remove old uploads (older than gc_days; never importing or being written); "
                                  "a dry run unless --apply")
    g.add_argument("--apply", action="store_true", help="really remove them")
    g.add_argument("--json", action="store_true", help="print one JSON array")
    cat = sub.add_parser("catalog", help="every final volume of the site, from the hosts alone")
    fmt = cat.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print one JSON array")
    fmt.add_argument("--csv", action="store_true", help="print CSV with a header line (cells under the display "
                     "rule; a cell starting with = + - @ gets a leading ')")
    v = sub.add_parser("verify", help="re-read a final volume on its dom0 and check its recorded sha256 "
                                      "(exit 10 on a mismatch)")
    v.add_argument("volume", metavar="[DOM0:]VOLUME")
    dl = sub.add_parser("download-url", help="have the owner's image host download an image into the owner's folder "
                                             "(http, https, ftp; sftp where its curl can), through its cache",
                        description="download URL into OWNER's folder on the image host: shown as writing, "
                                    "pending once complete; served from the image host's cache when it holds it")
    dl.add_argument("url", metavar="URL")
    dl.add_argument("--owner", required=True, help="the owner whose folder receives the file")
    dl.add_argument("--name", metavar="FILE", help="file name (default: the URL's last path segment)")
    dl.add_argument("--sha256", metavar="HEX", help="expected sha256; a mismatch removes the file (audited)")
    ca = sub.add_parser("cache", help="list the image hosts' downloads cache (size, hits, age)")
    ca.add_argument("--json", action="store_true", help="print one JSON array")
    d = sub.add_parser("delete-volume", help="delete a final CD volume (refused while a VM has it; audited)")
    d.add_argument("volume", metavar="[DOM0:]VOLUME")
    d.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    ins = sub.add_parser("insert-cd", help="put a final CD volume into the CD-ROM drive of an owner's VM on its "
                                           "dom0 (live and persistent; only a VM of an owner the volume's owner "
                                           "may act for)")
    ins.add_argument("volume", metavar="[DOM0:]VOLUME")
    ins.add_argument("domain", metavar="DOMAIN")
    ej = sub.add_parser("eject-cd", help="empty the CD-ROM drive of a VM (live and persistent)")
    ej.add_argument("domain", metavar="DOM0:DOMAIN")
    k = sub.add_parser("kernels", help="the bootable kernel entries (kernel, ramdisk, command line) of an imported ISO, "
                                       "or the one entry of an uploaded kernel and its ramdisk")
    k.add_argument("upload", metavar="OWNER/FILE")
    k.add_argument("--json", action="store_true", help="print one JSON array")
    sk = sub.add_parser("stage-kernel", help="stage one entry's kernel and ramdisk on the dom0 (kernel_dir), "
                                             "with their sha256 and command line beside them")
    sk.add_argument("upload", metavar="OWNER/FILE")
    sk.add_argument("entry", metavar="ENTRY", help="the entry's number or label (see `kernels`)")
    sk.add_argument("--dom0", metavar="NAME", help="the dom0 (for an ISO: the one that holds its final volume; for "
                                                   "an uploaded kernel: any, default the image host's first)")
    sk.add_argument("--cmdline", metavar="TEXT", help="the kernel command line to record instead of the entry's "
                                                      "(an uploaded kernel's is empty otherwise)")
    ks = sub.add_parser("kernel-sets", help="list the kernel sets staged on the dom0s")
    ks.add_argument("--json", action="store_true", help="print one JSON array")
    dk = sub.add_parser("delete-kernel", help="delete a kernel set (refused while a domain boots from it; audited)")
    dk.add_argument("set", metavar="DOM0:OWNER/NAME")
    dk.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    kg = sub.add_parser("kernel-gc", help="kernel sets older than kernel_gc_days that no domain boots; "
                                          "a dry run unless --apply")
    kg.add_argument("--apply", action="store_true", help="really remove them")
    kg.add_argument("--json", action="store_true", help="print one JSON array")
    return p


def _normalise_lab(argv: list[str]) -> list[str]:
    """``--lab uploads`` means the default lab, not a lab named "uploads"."""
    out = list(argv)
    for i, word in enumerate(out):
        if word == "--lab" and (i + 1 == len(out) or out[i + 1] in COMMANDS or out[i + 1].startswith("-")):
            out[i] = "--lab="
    return out


@asynccontextmanager
async def open_site(args: argparse.Namespace, recover_jobs: bool = True):
    """Start the lab if asked, load the config, recover jobs a killed console left (unless
    ``recover_jobs`` is False: the TUI does it itself), and yield ``(site, lab)``; close both afterwards."""
    lab = None
    try:
        if args.lab is not None:
            lab = Lab(Path(args.lab) if args.lab else None)
            config: SiteConfig = await _start_lab(lab)
        else:
            config = load_config(args.config)
        prepare_state_dir(config.state_dir, config.source)
        _crash_dir[0] = config.state_dir
        site = Site(config, read_only=args.read_only, as_user=args.as_user)
        try:
            if recover_jobs:
                await recover(site)
            yield site, lab
        finally:
            await site.close()
    finally:
        if lab is not None:
            await lab.stop()


_crash_dir: list[Path | None] = [None]  # where a crash report goes: the state dir, once it is known good


async def _start_lab(lab: Lab) -> SiteConfig:
    """Start ``lab``; a folder that cannot hold one is a usage error (one line, exit 2)."""
    if lab.dir.exists() and not lab.dir.is_dir():
        raise UsageError(f"--lab {lab.dir}: not a directory")
    try:
        return await lab.start()
    except OSError as exc:
        raise UsageError(f"--lab {lab.dir}: cannot hold a lab: {exc.strerror or exc}") from None


async def _refresh_for(site: Site, key: str) -> None:
    """Refresh before acting on upload ``key``: when it is not listed because its image host is down (or
    its key changed), that is the host's failure (exit 3), not a missing upload (exit 5)."""
    snap = await site.refresh()
    down = [h for h in snap.hosts if not h.up and h.role == "image host"]
    if down and not any(u.key == key for u in snap.uploads):
        raise HostError(down[0].name, down[0].error.removeprefix(f"{down[0].name}: "))


async def recover(site: Site) -> None:
    """Resume or roll back jobs a killed console left running (a warning per job, never fatal)."""
    try:
        for job in await site.recover():
            say(f"isoadmin: recovered job {job.id} ({job.key}): {job.state}, {job.rollback}")
    except IsoadminError as exc:
        say(f"isoadmin: warning: could not recover unfinished jobs: {exc.message}")


def _print_json(items: list[dict]) -> None:
    json.dump(items, sys.stdout, indent=1, ensure_ascii=True)
    sys.stdout.write("\n")


def say(message: object, file=None) -> None:
    """Print one line for a person (stderr by default) under the display rule: control characters escaped
    (:func:`backend.text.printable`), nothing parsed as markup."""
    print(printable(message), file=file or sys.stderr)


def render_table(headers: list[str], rows: list[list[str]], file=None) -> None:
    """Print a table, every cell escaped by :func:`backend.text.printable` (tabs and newlines included).
    ``file`` defaults to stdout. Not a terminal (piped): full values, tab-separated, a line per row. At a
    terminal: a Rich table of plain-text cells (``rich.text.Text``, never markup) that fold instead of
    being cut, so two different values never shrink to the same text."""
    out = file or sys.stdout
    if not out.isatty():
        for row in [headers, *rows]:
            print("\t".join(printable(cell) for cell in row), file=out)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in headers:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(Text(printable(cell)) for cell in row))
    Console(file=file, highlight=False, markup=False, emoji=False).print(table)


def _size(n: int | None) -> str:
    return "—" if n is None else humanize.naturalsize(n, binary=True)


def uploads_table(snap) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of ``uploads`` (raw strings; :func:`render_table` escapes them)."""
    return ["OWNER", "FILE", "SIZE", "AGE", "VOLUME ID", "BOOT", "STATE", "NOTE"], [
        [u.owner, u.name, _size(u.size), humanize.naturaltime(time.time() - u.mtime),
         u.iso.summary if u.iso else "",
         ("yes" if u.iso.bootable else "no") if u.iso and u.iso.is_iso9660 else "",
         u.state.value, u.reason] for u in sorted(snap.uploads, key=lambda u: u.key)]


def volumes_table(snap) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of ``volumes``."""
    return ["DOM0", "NAMESPACE", "NAME", "OWNER", "UPLOAD", "SIZE", "SHA256"], [
        [v.dom0, v.namespace, v.name, v.owner, v.upload, _size(v.size), v.sha256[:16]]
        for v in sorted(snap.volumes, key=lambda v: (v.dom0, v.namespace, v.name))]


def owners_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of ``owners`` (from :func:`backend.quota.owner_summary`)."""
    return ["OWNER", "GROUP", "MAY ACT", "USED", "QUOTA", "PENDING", "CDS", "VM DISKS"], [
        [r["name"], r["group"], ",".join(r["members"]), _size(r["used"]),
         _size(r["quota"]) if r["quota"] else "none", str(r["pending"]), str(r["cds"]), str(r["vm_disks"])]
        for r in rows]


def hosts_table(snap) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of ``hosts``."""
    return ["HOST", "ROLE", "STATE", "LATENCY", "FREE", "CAPACITY"], [
        [h.name, h.role, "up" if h.up else f"DOWN: {h.error}", f"{h.latency * 1000:.0f} ms",
         _size(h.storage.free) if h.storage else "", _size(h.storage.capacity) if h.storage else ""]
        for h in snap.hosts]


def jobs_table(jobs: list[JobRecord]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of ``jobs``."""
    return ["JOB", "UPLOAD", "DOM0", "VOLUME", "PHASE", "STATE", "NOTE"], [
        [j.id, j.key, j.dom0, j.final if j.state == "done" else j.staging, j.phase, j.state, j.error or _progress(j)]
        for j in jobs]


def _progress(job: JobRecord) -> str:
    """A running job's bytes, rate and ETA (``1.2 MiB of 6.0 MiB, 320.0 KiB/s, ETA 15 s``), or a
    download's URL once it ended."""
    if job.state != "running":
        return job.url
    if not job.done_bytes and not job.total_bytes:
        return job.url
    text = f"{_size(job.done_bytes)} of {_size(job.total_bytes) if job.total_bytes else '?'}"
    if job.rate:
        text += f", {_size(int(job.rate))}/s"
    if job.eta is not None:
        text += f", ETA {job.eta:.0f} s"
    return text


def audit_table(entries: list) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of ``audit``."""
    return ["TIME", "WHO", "ACTION", "TARGET", "OUTCOME", "REASON"], [
        [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.time)), e.who, e.action, e.target,
         e.outcome, e.reason] for e in entries]


def catalog_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of ``catalog``."""
    return ["TYPE", "OWNER", "UPLOAD", "VOLUME ID", "BOOT", "SIZE", "DOM0", "VOLUME", "SHA256"], [
        [r["type"], r["owner"], r["upload"], r["volume_id"] or "",
         ("yes" if r["bootable"] else "no") if r["type"] == "cd" else "", _size(r["size"]),
         r["dom0"], r["volume"], (r["sha256"] or "")[:16]] for r in rows]


async def cmd_list(site: Site, args: argparse.Namespace) -> int:
    snap = await site.refresh()
    for h in snap.hosts:
        if not h.up:
            say(f"isoadmin: warning: {h.error}")
    if args.command == "owners":
        rows = quota.owner_summary(site.config, snap.owners, snap.uploads, snap.volumes)
        if args.json:
            _print_json(rows)
        else:
            render_table(*owners_table(rows))
    elif args.json:
        items = {"uploads": snap.uploads, "volumes": snap.volumes, "hosts": snap.hosts}[args.command]
        _print_json([item.to_json() for item in items])
    else:
        table = {"uploads": uploads_table, "volumes": volumes_table, "hosts": hosts_table}[args.command]
        render_table(*table(snap))
    return 0 if all(h.up for h in snap.hosts) else 3


async def cmd_jobs(site: Site, args: argparse.Namespace) -> int:
    if site.as_user is not None:
        await site.refresh()  # who may act for which owner comes with the listing
    else:
        await site.read_books()
    jobs = [j for j in site.jobs() if site.may_act_for(j.owner)]
    if args.json:
        _print_json([j.to_json() for j in jobs])
    else:
        render_table(*jobs_table(jobs))
    return 0


def _show_plan(plan: ImportPlan) -> None:
    u = plan.upload
    say(f"Import {u.key} ({_size(u.size)}) from {u.host}:{u.path}")
    say(f"  onto {plan.dom0} ({plan.storage}): {plan.staging} -> {plan.final}, "
        f"{_size(plan.alloc)} of {_size(plan.free)} free")
    for step in plan.steps:
        say(f"  {step.phase:7} {step.host:12} {step.command}")
    for w in plan.warnings:
        say(f"  WARNING: {w}")
    if plan.rejection:
        say(f"  REJECTED by {plan.rejection.get('by', '?')}: {plan.rejection.get('reason', '')} "
            "(importing it anyway, as --override-rejection asks)")


async def cmd_approve(site: Site, args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    await site.refuse_if_read_only("approve", args.upload)
    await _refresh_for(site, args.upload)
    plan = await site.plan(args.upload, args.dom0, args.allow_non_iso, args.override_quota, args.override_rejection)
    _show_plan(plan)
    if not args.yes and not _confirmed("Approve?"):
        say("not approved")
        return 1
    # the rate and the time left are the job's own (measured on the image host), not Rich's estimate,
    # which has too few samples at 4 updates a second to say anything but "?"
    columns = (TextColumn("{task.description:8}", markup=False), BarColumn(), DownloadColumn(binary_units=True),
               TextColumn("{task.fields[rate]:>12}", markup=False), TextColumn("{task.fields[eta]:>9}", markup=False))
    def figures(rate: float, eta: float | None) -> dict:
        return {"rate": f"{humanize.naturalsize(rate, binary=True)}/s" if rate else "",
                "eta": f"ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}" if eta is not None else ""}

    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("create", total=plan.upload.size, rate="", eta="")
        verify = None  # the read-back behind the copy: a line of its own once it has bytes

        def on_event(job: JobRecord) -> None:
            nonlocal verify
            progress.update(task, description=job.phase, completed=job.done_bytes, **figures(job.rate, job.eta))
            if verify is None and job.verified_bytes:
                verify = progress.add_task("verify", total=plan.upload.size, rate="", eta="")
            if verify is not None:
                progress.update(verify, completed=job.verified_bytes, **figures(job.verify_rate, job.verify_eta))

        job = await site.approve(plan, on_event)
        progress.update(task, description="done", completed=job.size)
        if verify is not None:
            progress.update(verify, completed=job.size)
    say(f"{job.key} -> {job.dom0}:{job.final} sha256 {job.sha256}", sys.stdout)
    return 0


async def cmd_reject(site: Site, args: argparse.Namespace) -> int:
    if not args.reason.strip():
        raise UsageError("reject: --reason must not be empty (say why the upload is rejected)")
    await _refresh_for(site, args.upload)
    await site.reject(args.upload, args.reason)
    say(f"{args.upload} rejected: {args.reason.strip()}", sys.stdout)
    return 0


async def cmd_check(site: Site, args: argparse.Namespace) -> int:
    findings = await health.check(site)
    if args.command == "check":
        if args.json:
            _print_json([f.to_json() for f in findings])
        else:
            render_table(["KIND", "HOST", "TARGET", "DETAIL", "FIX"],
                   [[f.kind, f.host, f.target, f.detail, f.fix or "needs a person"] for f in findings])
        return 9 if findings else 0
    results = await health.repair(site, findings, apply=args.apply)
    if args.json:
        _print_json([{**f.to_json(), "outcome": outcome} for f, outcome in results])
    else:
        render_table(["KIND", "HOST", "TARGET", "OUTCOME"], [[f.kind, f.host, f.target, o] for f, o in results])
        if not args.apply and any(o.startswith("would") for _, o in results):
            say("dry run: nothing changed; repair --apply does it")
    return 1 if any(o.startswith("failed") for _, o in results) else 0


async def cmd_audit(site: Site, args: argparse.Namespace) -> int:
    if args.verify:
        problem = await site.audit.verify()
        if problem is not None:
            say(f"isoadmin: audit log {site.ledger.where}/audit.jsonl is broken at entry {problem.entry}: "
                f"{problem.detail}")
            return 12
        say(f"audit log intact: {len(await site.audit.entries())} entries, hash chain and head match", sys.stdout)
        return 0
    entries = await site.audit.entries()
    if site.as_user is not None:
        await site.refresh()
        entries = [e for e in entries if "/" in e.target and site.may_act_for(e.target.split("/", 1)[0])]
    if args.json:
        _print_json([asdict(e) for e in entries])
    else:
        render_table(*audit_table(entries))
    return 0


async def cmd_gc(site: Site, args: argparse.Namespace) -> int:
    await site.refresh()
    items = catalog.gc_plan(site)
    if not args.apply:
        if args.json:
            _print_json([i.to_json() for i in items])
        else:
            render_table(["OWNER", "FILE", "STATE", "AGE (DAYS)", "WHY"],
                   [[i.owner, i.name, i.state, f"{i.age:.1f}", i.reason] for i in items])
            say(f"dry run: {len(items)} upload(s) would be removed; gc --apply does it")
        old = await download.cache_gc(site, apply=False)
        if old:
            if not args.json:
                render_table(["CACHE ENTRY", "SIZE", "AGE (DAYS)", "URL"],
                             [[e.sha256[:16], _size(e.size), f"{e.age / 86400:.1f}", e.url] for e in old])
            say(f"dry run: {len(old)} cache entr(ies) older than cache_days would be removed")
        return 0
    results = await catalog.gc_apply(site, items)
    old = await download.cache_gc(site, apply=True)
    if args.json:
        _print_json([{**i.to_json(), "outcome": o} for i, o in results]
                    + [{"cache_entry": e.to_json(), "outcome": "removed"} for e in old])
    else:
        render_table(["OWNER", "FILE", "OUTCOME"], [[i.owner, i.name, o] for i, o in results]
                     + [["(cache)", e.url, "removed"] for e in old])
    return 1 if any(o != "removed" for _, o in results) else 0


async def cmd_download(site: Site, args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    await site.refresh()
    columns = (TextColumn("download"), BarColumn(), DownloadColumn(binary_units=True), TransferSpeedColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("download", total=None)

        def on_progress(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        result = await download.download_url(site, args.url, args.owner, args.name, args.sha256, on_progress)
    name = download.file_name(download.shown_url(args.url), args.name)
    how = "from the cache" if result.cached else "downloaded"
    say(f"{args.owner}/{name} sha256 {result.sha256} ({how})", sys.stdout)
    return 0


async def cmd_cache(site: Site, args: argparse.Namespace) -> int:
    entries = await download.cache_list(site)
    if args.json:
        _print_json([e.to_json() for e in entries])
    else:
        render_table(["HOST", "SHA256", "SIZE", "HITS", "AGE (DAYS)", "URL"],
               [[e.host, e.sha256[:16], _size(e.size), str(e.hits), f"{e.age / 86400:.1f}", e.url] for e in entries])
    return 0


async def cmd_catalog(site: Site, args: argparse.Namespace) -> int:
    snap = await site.refresh()
    down = [h.name for h in snap.hosts if not h.up and h.role == "dom0"]
    if down:
        raise HostError(down[0], "dom0 down: the catalog would be incomplete")
    rows = catalog.catalog(snap.volumes)
    sets, _ = await kernels.list_sets(site)
    rows += kernels.catalog_rows([s for s in sets if site.may_act_for(s.owner)])
    if args.json:
        _print_json(rows)
    elif args.csv:
        out = csv.DictWriter(sys.stdout, fieldnames=catalog.CATALOG_FIELDS)
        out.writeheader()  # every cell under the display rule, no cell a spreadsheet formula
        out.writerows({field: csv_cell(value) for field, value in row.items()} for row in rows)
    else:
        render_table(*catalog_table(rows))
    return 0


async def cmd_verify(site: Site, args: argparse.Namespace) -> int:
    await site.refresh()
    vol = await catalog.verify_volume(site, args.volume)
    say(f"{vol.dom0}:{vol.name} ok sha256 {vol.sha256}", sys.stdout)
    return 0


def _confirmed(question: str) -> bool:
    """Ask ``question`` at the terminal (``[y/N]``).

    Raises:
        UsageError: stdin is not a terminal (pass ``--yes``).
    """
    if not sys.stdin.isatty():
        raise UsageError("not confirmed: pass --yes to do it without a terminal")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


async def cmd_delete_volume(site: Site, args: argparse.Namespace) -> int:
    if not args.yes and not _confirmed(f"Delete {printable(args.volume)}? This cannot be undone."):
        say("not deleted")
        return 1
    vol = await site.delete_volume(args.volume)
    say(f"deleted {vol.dom0}:{vol.name} ({vol.owner}/{vol.upload})", sys.stdout)
    return 0


async def cmd_insert_cd(site: Site, args: argparse.Namespace) -> int:
    await site.refresh()  # who may act for which owner comes with the listing
    vol = await cdrom.insert_cd(site, args.volume, args.domain)
    say(f"{vol.dom0}:{vol.name} ({vol.owner}/{vol.upload}) is in the CD-ROM drive of {args.domain}", sys.stdout)
    return 0


async def cmd_eject_cd(site: Site, args: argparse.Namespace) -> int:
    await site.refresh()
    before = await cdrom.eject_cd(site, args.domain)
    say(f"{args.domain}: ejected {before}" if before else f"{args.domain}: the CD-ROM drive was already empty", sys.stdout)
    return 0


async def cmd_kernels(site: Site, args: argparse.Namespace) -> int:
    await site.refresh()
    source, entries = await kernels.kernels(site, args.upload)
    if args.json:
        _print_json([e.to_json() for e in entries])
    else:
        say(f"{source.key} on {source.host}: an uploaded kernel and its ramdisk" if isinstance(source, Upload)
            else f"{source.owner}/{source.upload} on {source.dom0}:{source.name}")
        render_table(["#", "LABEL", "KERNEL", "RAMDISK", "COMMAND LINE", "FROM"], [
            [str(e.number), e.label, f"{e.kernel} ({_size(e.kernel_size)})",
             f"{e.ramdisk} ({_size(e.ramdisk_size)})" if e.ramdisk else "—", e.cmdline, e.source] for e in entries])
    for skipped in entries.skipped:  # on stderr, with --json too: its array stays the entries
        say(f"{args.upload}: entry skipped: {skipped}")
    return 0


async def cmd_stage_kernel(site: Site, args: argparse.Namespace) -> int:
    await site.refresh()
    staged = await kernels.stage(site, args.upload, args.entry, args.dom0, args.cmdline)
    say(f"{staged.ref} staged at {staged.path} (kernel sha256 {staged.sha256.get('kernel', '')})", sys.stdout)
    return 0


async def cmd_kernel_sets(site: Site, args: argparse.Namespace) -> int:
    await site.refresh()
    sets, leftovers = await kernels.list_sets(site)
    sets = [s for s in sets if site.may_act_for(s.owner)]
    if args.json:
        _print_json([s.to_json() for s in sets])
    else:
        render_table(["DOM0", "OWNER", "SET", "SIZE", "KERNEL SHA256", "COMMAND LINE"], [
            [s.dom0, s.owner, s.name, _size(s.size), s.sha256.get("kernel", "")[:16], s.cmdline] for s in sets])
    for dom0, path in leftovers:
        say(f"isoadmin: warning: {dom0}:{path} is a kernel set that was never finished (`repair` removes it)")
    return 0


async def cmd_delete_kernel(site: Site, args: argparse.Namespace) -> int:
    if not args.yes and not _confirmed(f"Delete {printable(args.set)}?"):
        say("not deleted")
        return 1
    await site.refresh()
    kset = await kernels.delete_set(site, args.set)
    say(f"deleted {kset.ref}", sys.stdout)
    return 0


async def cmd_kernel_gc(site: Site, args: argparse.Namespace) -> int:
    await site.refresh()
    plan = await kernels.gc_plan(site)
    if not args.apply:
        if args.json:
            _print_json([{**s.to_json(), "reason": why} for s, why in plan])
        else:
            render_table(["DOM0", "OWNER", "SET", "WHY"], [[s.dom0, s.owner, s.name, why] for s, why in plan])
            say(f"dry run: {len(plan)} kernel set(s) would be removed; kernel-gc --apply does it")
        return 0
    results = await kernels.gc_apply(site, plan)
    if args.json:
        _print_json([{**s.to_json(), "outcome": o} for s, o in results])
    else:
        render_table(["DOM0", "OWNER", "SET", "OUTCOME"], [[s.dom0, s.owner, s.name, o] for s, o in results])
    return 1 if any(o != "removed" for _, o in results) else 0


HANDLERS: dict[str, Callable[[Site, argparse.Namespace], Awaitable[int]]] = {
    "uploads": cmd_list, "volumes": cmd_list, "hosts": cmd_list, "owners": cmd_list, "jobs": cmd_jobs,
    "approve": cmd_approve, "reject": cmd_reject, "check": cmd_check, "repair": cmd_check, "audit": cmd_audit,
    "gc": cmd_gc, "catalog": cmd_catalog, "verify": cmd_verify, "delete-volume": cmd_delete_volume,
    "insert-cd": cmd_insert_cd, "eject-cd": cmd_eject_cd, "kernels": cmd_kernels, "stage-kernel": cmd_stage_kernel,
    "kernel-sets": cmd_kernel_sets, "delete-kernel": cmd_delete_kernel, "kernel-gc": cmd_kernel_gc,
    "download-url": cmd_download, "cache": cmd_cache,
}


async def run_command(args: argparse.Namespace) -> int:
    """Run one CLI command (``args.command``) and return its exit status."""
    # check / repair / audit look at leftovers as they are; every other command first recovers
    async with open_site(args, recover_jobs=args.command not in ("check", "repair", "audit")) as (site, _lab):
        return await HANDLERS[args.command](site, args)


async def run_tui(args: argparse.Namespace) -> int:
    """Open the console on the site (starting the lab in this event loop if asked)."""
    from .app import IsoadminApp

    from screens.keys import KEYS, keymap_clash

    async with open_site(args, recover_jobs=False) as (site, lab):
        unknown = sorted(set(site.config.keymap) - {k.id for k in KEYS})
        if unknown:
            raise ConfigError(f"{site.config.source or 'config'}: console.keymap: unknown binding id "
                              f"{unknown[0]!r} (the ids are in the README's key table)")
        clash = keymap_clash(site.config.keymap)
        if clash:
            raise ConfigError(f"{site.config.source or 'config'}: console.keymap.{clash[0]}: {clash[1]}")
        log_to_file(site.config.state_dir)
        app = IsoadminApp(site, lab=lab, read_only=site.read_only)
        await app.run_async()
        return app.return_code or 0


def _version() -> str:
    try:
        return importlib.metadata.version("isoadmin")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


#: The host-command log's file name in the state dir (see ``backend.ssh.command_log``).
LOG_NAME = "isoadmin.log"


def setup_logging(args: argparse.Namespace) -> None:
    """``-v``: the host-command log on stderr. The console (no command) always writes it to
    :data:`LOG_NAME` in the state dir, which its help names."""
    log = logging.getLogger("isoadmin")
    log.setLevel(logging.INFO)
    for old in [h for h in log.handlers if getattr(h, "isoadmin_verbose", False)]:
        log.removeHandler(old)  # one -v handler, whatever ran before in this process
    if args.verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("isoadmin: %(message)s"))
        handler.isoadmin_verbose = True
        log.addHandler(handler)


def log_to_file(state_dir: Path) -> Path | None:
    """Also write the host-command log to ``state_dir/isoadmin.log`` (rotated at 5 MiB); None when the
    state dir cannot be written."""
    from logging.handlers import RotatingFileHandler

    path = Path(state_dir) / LOG_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(path, maxBytes=5 << 20, backupCount=2, encoding="utf-8")
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("isoadmin").addHandler(handler)
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``isoadmin``; returns the exit status (:func:`amain` in an event loop of its own;
    ``^C`` is 130).

    Expected failures (:class:`~backend.errors.IsoadminError`) print one line and exit with their code;
    anything else writes a crash report (:func:`backend.crash.write_crash_report`), prints one line with
    its path and exits 70.
    """
    argv = sys.argv[1:] if argv is None else argv
    try:
        return asyncio.run(amain(argv))
    except KeyboardInterrupt:
        say("isoadmin: interrupted")
        return 130


async def amain(argv: list[str]) -> int:
    """``isoadmin ARGV`` in the running event loop: what :func:`main` runs, and what the tests call in-process
    (with ``sys.stdout``, ``sys.stderr`` and ``sys.stdin`` redirected) against a lab this loop serves.

    Args:
        argv: the arguments after the program name.
    Returns:
        the exit status: 0, an :class:`~backend.errors.IsoadminError`'s ``exit_code`` (one line said on
        stderr), 2 for a usage error argparse reports, or 70 for a bug (a crash report is written).
    """
    try:
        args = build_parser().parse_args(_normalise_lab(argv))
    except SystemExit as exc:  # argparse: --help, --version (0), a usage error (2)
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    setup_logging(args)
    _crash_dir[0] = None
    try:
        return await (run_command(args) if args.command else run_tui(args))
    except IsoadminError as exc:
        say(f"isoadmin: {exc.message}")
        return exc.exit_code
    except Exception as exc:  # the last resort: a bug, not a failure we expected
        try:
            where = f"crash report: {write_crash_report(exc, _crash_dir[0], ['isoadmin', *argv])}"
        except OSError as report_exc:
            where = f"no crash report ({report_exc})"
        say(f"isoadmin: unexpected error: {one_line(exc)}; {where}")
        return EXIT_CRASH
