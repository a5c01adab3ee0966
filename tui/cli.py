"""The ``isoadmin`` command: the TUI when no command is given, else one CLI command on the same backend.

Exit status: 0 success; otherwise the failing :class:`~backend.errors.IsoadminError`'s ``exit_code``
(2 usage/config, 3 host, 4 read-only, 5 not found, 6 not approvable, 7 capacity short, 8 import failed),
9 when ``check`` finds something, 10 when ``verify`` finds a volume that does not match, 11 quota exceeded, 12 when ``audit --verify`` finds the hash chain broken,
130 when interrupted. Expected failures print one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path

import humanize

from backend import catalog, download, health, quota
from backend.config import SiteConfig, load_config
from backend.errors import HostError, IsoadminError, UsageError
from backend.lab import Lab, default_lab_dir
from backend.site import ImportPlan, Site
from backend.state import JobRecord

COMMANDS = ("uploads", "volumes", "jobs", "hosts", "owners", "approve", "reject", "check", "repair", "audit", "gc", "catalog",
            "verify", "delete-volume", "download-url", "cache")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also documents every option in ``--help``)."""
    p = argparse.ArgumentParser(
        prog="isoadmin",
        description="Review owners' boot-CD uploads and import them onto dom0 volumes. "
                    "Without a command, opens the console (TUI).")
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
                       ("jobs", "list import jobs"), ("hosts", "list hosts and their status")):
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
    fmt.add_argument("--csv", action="store_true", help="print CSV with a header line")
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
            config: SiteConfig = await lab.start()
        else:
            config = load_config(args.config)
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


async def recover(site: Site) -> None:
    """Resume or roll back jobs a killed console left running (a warning per job, never fatal)."""
    try:
        for job in await site.recover():
            print(f"isoadmin: recovered job {job.id} ({job.key}): {job.state}, {job.rollback}", file=sys.stderr)
    except IsoadminError as exc:
        print(f"isoadmin: warning: could not recover unfinished jobs: {exc.message}", file=sys.stderr)


def _print_json(items: list[dict]) -> None:
    json.dump(items, sys.stdout, indent=1, ensure_ascii=True)
    sys.stdout.write("\n")


def _table(headers: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, box=None, pad_edge=False, header_style="bold")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def _size(n: int | None) -> str:
    return "—" if n is None else humanize.naturalsize(n, binary=True)


async def cmd_list(site: Site, args: argparse.Namespace) -> int:
    snap = await site.refresh()
    for h in snap.hosts:
        if not h.up:
            print(f"isoadmin: warning: {h.error}", file=sys.stderr)
    if args.command == "uploads":
        if args.json:
            _print_json([u.to_json() for u in snap.uploads])
        else:
            _table(["OWNER", "FILE", "SIZE", "AGE", "VOLUME ID", "BOOT", "STATE", "NOTE"], [
                [u.owner, u.name, _size(u.size), humanize.naturaltime(time.time() - u.mtime),
                 (u.iso.volume_id or "") if u.iso and u.iso.is_iso9660 else ("not ISO" if u.iso else ""),
                 ("yes" if u.iso.bootable else "no") if u.iso and u.iso.is_iso9660 else "",
                 u.state.value, u.reason] for u in sorted(snap.uploads, key=lambda u: u.key)])
    elif args.command == "volumes":
        if args.json:
            _print_json([v.to_json() for v in snap.volumes])
        else:
            _table(["DOM0", "NAMESPACE", "NAME", "OWNER", "UPLOAD", "SIZE", "SHA256"], [
                [v.dom0, v.namespace, v.name, v.owner, v.upload, _size(v.size), v.sha256[:16]]
                for v in sorted(snap.volumes, key=lambda v: (v.dom0, v.namespace, v.name))])
    elif args.command == "owners":
        rows = quota.owner_summary(site.config, snap.owners, snap.uploads, snap.volumes)
        if args.json:
            _print_json(rows)
        else:
            _table(["OWNER", "GROUP", "MAY ACT", "USED", "QUOTA", "PENDING", "CDS", "VM DISKS"], [
                [r["name"], r["group"], ",".join(r["members"]), _size(r["used"]),
                 _size(r["quota"]) if r["quota"] else "none", str(r["pending"]), str(r["cds"]), str(r["vm_disks"])]
                for r in rows])
    elif args.command == "hosts":
        if args.json:
            _print_json([h.to_json() for h in snap.hosts])
        else:
            _table(["HOST", "ROLE", "STATE", "LATENCY", "FREE", "CAPACITY"], [
                [h.name, h.role, "up" if h.up else f"DOWN: {h.error}", f"{h.latency * 1000:.0f} ms",
                 _size(h.storage.free) if h.storage else "", _size(h.storage.capacity) if h.storage else ""]
                for h in snap.hosts])
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
        _table(["JOB", "UPLOAD", "DOM0", "VOLUME", "PHASE", "STATE", "NOTE"], [
            [j.id, j.key, j.dom0, j.final if j.state == "done" else j.staging, j.phase, j.state, j.error]
            for j in jobs])
    return 0


def _show_plan(plan: ImportPlan) -> None:
    u = plan.upload
    print(f"Import {u.key} ({_size(u.size)}) from {u.host}:{u.path}", file=sys.stderr)
    print(f"  onto {plan.dom0} ({plan.storage}): {plan.staging} -> {plan.final}, "
          f"{_size(plan.alloc)} of {_size(plan.free)} free", file=sys.stderr)
    for step in plan.steps:
        print(f"  {step.phase:7} {step.host:12} {step.command}", file=sys.stderr)
    for w in plan.warnings:
        print(f"  WARNING: {w}", file=sys.stderr)
    if plan.rejection:
        print(f"  REJECTED by {plan.rejection.get('by', '?')}: {plan.rejection.get('reason', '')} "
              "(importing it anyway, as --override-rejection asks)", file=sys.stderr)


async def cmd_approve(site: Site, args: argparse.Namespace) -> int:
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    await site.refuse_if_read_only("approve", args.upload)
    await site.refresh()
    plan = await site.plan(args.upload, args.dom0, args.allow_non_iso, args.override_quota, args.override_rejection)
    _show_plan(plan)
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("not confirmed: pass --yes to approve without a terminal")
        if input("Approve? [y/N] ").strip().lower() not in ("y", "yes"):
            print("not approved", file=sys.stderr)
            return 1
    columns = (TextColumn("{task.description:8}"), BarColumn(), DownloadColumn(binary_units=True),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("create", total=plan.upload.size)

        def on_event(job: JobRecord) -> None:
            progress.update(task, description=job.phase, completed=job.done_bytes)

        job = await site.approve(plan, on_event)
        progress.update(task, description="done", completed=job.size)
    print(f"{job.key} -> {job.dom0}:{job.final} sha256 {job.sha256}")
    return 0


async def cmd_reject(site: Site, args: argparse.Namespace) -> int:
    await site.refresh()
    await site.reject(args.upload, args.reason)
    print(f"{args.upload} rejected: {args.reason}")
    return 0


async def cmd_check(site: Site, args: argparse.Namespace) -> int:
    findings = await health.check(site)
    if args.command == "check":
        if args.json:
            _print_json([f.to_json() for f in findings])
        else:
            _table(["KIND", "HOST", "TARGET", "DETAIL", "FIX"],
                   [[f.kind, f.host, f.target, f.detail, f.fix or "needs a person"] for f in findings])
        return 9 if findings else 0
    results = await health.repair(site, findings, apply=args.apply)
    if args.json:
        _print_json([{**f.to_json(), "outcome": outcome} for f, outcome in results])
    else:
        _table(["KIND", "HOST", "TARGET", "OUTCOME"], [[f.kind, f.host, f.target, o] for f, o in results])
        if not args.apply and any(o.startswith("would") for _, o in results):
            print("dry run: nothing changed; repair --apply does it", file=sys.stderr)
    return 1 if any(o.startswith("failed") for _, o in results) else 0


async def cmd_audit(site: Site, args: argparse.Namespace) -> int:
    if args.verify:
        problem = await site.audit.verify()
        if problem is not None:
            print(f"isoadmin: audit log {site.ledger.where}/audit.jsonl is broken at entry {problem.entry}: "
                  f"{problem.detail}", file=sys.stderr)
            return 12
        print(f"audit log intact: {len(await site.audit.entries())} entries, hash chain and head match")
        return 0
    entries = await site.audit.entries()
    if site.as_user is not None:
        await site.refresh()
        entries = [e for e in entries if "/" in e.target and site.may_act_for(e.target.split("/", 1)[0])]
    if args.json:
        _print_json([asdict(e) for e in entries])
    else:
        _table(["TIME", "WHO", "ACTION", "TARGET", "OUTCOME", "REASON"], [
            [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.time)), e.who, e.action, e.target,
             e.outcome, e.reason] for e in entries])
    return 0


async def cmd_gc(site: Site, args: argparse.Namespace) -> int:
    await site.refresh()
    items = catalog.gc_plan(site)
    if not args.apply:
        if args.json:
            _print_json([i.to_json() for i in items])
        else:
            _table(["OWNER", "FILE", "STATE", "AGE (DAYS)", "WHY"],
                   [[i.owner, i.name, i.state, f"{i.age:.1f}", i.reason] for i in items])
            print(f"dry run: {len(items)} upload(s) would be removed; gc --apply does it", file=sys.stderr)
        old = await download.cache_gc(site, apply=False)
        if old:
            if not args.json:
                _table(["CACHE ENTRY", "SIZE", "AGE (DAYS)", "URL"],
                       [[e.sha256[:16], _size(e.size), f"{e.age / 86400:.1f}", e.url] for e in old])
            print(f"dry run: {len(old)} cache entr(ies) older than cache_days would be removed", file=sys.stderr)
        return 0
    results = await catalog.gc_apply(site, items)
    old = await download.cache_gc(site, apply=True)
    if args.json:
        _print_json([{**i.to_json(), "outcome": o} for i, o in results]
                    + [{"cache_entry": e.to_json(), "outcome": "removed"} for e in old])
    else:
        _table(["OWNER", "FILE", "OUTCOME"], [[i.owner, i.name, o] for i, o in results]
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
    name = download.file_name(args.url, args.name)
    how = "from the cache" if result.cached else "downloaded"
    print(f"{args.owner}/{name} sha256 {result.sha256} ({how})")
    return 0


async def cmd_cache(site: Site, args: argparse.Namespace) -> int:
    entries = await download.cache_list(site)
    if args.json:
        _print_json([e.to_json() for e in entries])
    else:
        _table(["HOST", "SHA256", "SIZE", "HITS", "AGE (DAYS)", "URL"],
               [[e.host, e.sha256[:16], _size(e.size), str(e.hits), f"{e.age / 86400:.1f}", e.url] for e in entries])
    return 0


async def cmd_catalog(site: Site, args: argparse.Namespace) -> int:
    snap = await site.refresh()
    down = [h.name for h in snap.hosts if not h.up and h.role == "dom0"]
    if down:
        raise HostError(down[0], "dom0 down: the catalog would be incomplete")
    rows = catalog.catalog(snap.volumes)
    if args.json:
        _print_json(rows)
    elif args.csv:
        out = csv.DictWriter(sys.stdout, fieldnames=catalog.CATALOG_FIELDS)
        out.writeheader()
        out.writerows(rows)
    else:
        _table(["OWNER", "UPLOAD", "VOLUME ID", "BOOT", "SIZE", "DOM0", "VOLUME", "SHA256"], [
            [r["owner"], r["upload"], r["volume_id"] or "", "yes" if r["bootable"] else "no", _size(r["size"]),
             r["dom0"], r["volume"], (r["sha256"] or "")[:16]] for r in rows])
    return 0


async def cmd_verify(site: Site, args: argparse.Namespace) -> int:
    await site.refresh()
    vol = await catalog.verify_volume(site, args.volume)
    print(f"{vol.dom0}:{vol.name} ok sha256 {vol.sha256}")
    return 0


async def cmd_delete_volume(site: Site, args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("not confirmed: pass --yes to delete without a terminal")
        if input(f"Delete {args.volume}? This cannot be undone. [y/N] ").strip().lower() not in ("y", "yes"):
            print("not deleted", file=sys.stderr)
            return 1
    vol = await site.delete_volume(args.volume)
    print(f"deleted {vol.dom0}:{vol.name} ({vol.owner}/{vol.upload})")
    return 0


HANDLERS: dict[str, Callable[[Site, argparse.Namespace], Awaitable[int]]] = {
    "uploads": cmd_list, "volumes": cmd_list, "hosts": cmd_list, "owners": cmd_list, "jobs": cmd_jobs,
    "approve": cmd_approve, "reject": cmd_reject, "check": cmd_check, "repair": cmd_check, "audit": cmd_audit,
    "gc": cmd_gc, "catalog": cmd_catalog, "download-url": cmd_download, "cache": cmd_cache, "verify": cmd_verify, "delete-volume": cmd_delete_volume,
}


async def run_command(args: argparse.Namespace) -> int:
    """Run one CLI command (``args.command``) and return its exit status."""
    # check / repair / audit look at leftovers as they are; every other command first recovers
    async with open_site(args, recover_jobs=args.command not in ("check", "repair", "audit")) as (site, _lab):
        return await HANDLERS[args.command](site, args)


async def run_tui(args: argparse.Namespace) -> int:
    """Open the console on the site (starting the lab in this event loop if asked)."""
    from .app import IsoadminApp

    async with open_site(args, recover_jobs=False) as (site, lab):
        app = IsoadminApp(site, lab=lab, read_only=site.read_only)
        await app.run_async()
        return app.return_code or 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``isoadmin``; returns the exit status."""
    args = build_parser().parse_args(_normalise_lab(sys.argv[1:] if argv is None else argv))
    try:
        return asyncio.run(run_command(args) if args.command else run_tui(args))
    except IsoadminError as exc:
        print(f"isoadmin: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("isoadmin: interrupted", file=sys.stderr)
        return 130
