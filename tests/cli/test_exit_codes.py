"""Every exit code of the README's table, for each command that can return it: the CLI's own code
(:func:`tui.cli.amain`, in this process) against a real lab served by the test (``--config`` with the lab's site
file, or a copy with one thing changed: a host's port closed, a host key changed, a quota, a hypervisor folder
that does not exist); a crash's exit 70 from the CLI as a process of its own. Every failure is one line on
stderr, never a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path

import pytest

from backend.lab import Lab, make_iso
from backend.site import Site
from backend.state import JobRecord

from ..conftest import cli, edit_config, isoadmin


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_failure(r, code: int) -> None:
    """Exit ``code``; a failure says why in one line, without a traceback (``check`` finding something,
    exit 9, is a result on stdout, not a failure)."""
    assert r.returncode == code, (r.args[3:], r.returncode, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    if code and code != 9:
        lines = r.stderr.strip().splitlines()
        assert lines, r.stderr
        assert lines[-1].startswith("isoadmin: "), r.stderr


@pytest.fixture
async def lab(tmp_path):
    """A started lab whose upload in progress (``carol/incoming.iso``) is still being written long after the
    tables below have run (4 KiB a second: about nine minutes)."""
    lab = Lab(tmp_path / "lab", writer_chunk=4096)
    lab.config = await lab.start()
    yield lab
    await lab.stop()


def configs(lab, tmp_path: Path) -> dict[str, Path]:
    """The lab's site file and copies of it, each with one thing wrong."""
    changed_key = tmp_path / "known_hosts-changed"
    dom0_key = (lab.dir / "keys" / "known_hosts-dom0-a").read_text()
    changed_key.write_text(dom0_key)  # the image host presents another key than this file pins
    bad = tmp_path / "bad.toml"
    bad.write_text('[console]\nsettle_seconds = "ten"\n')
    return {
        "good": lab.config_path,
        "bad": bad,
        "dom0_down": edit_config(lab, tmp_path / "dom0-down.toml", **{"dom0s.dom0-b": {"port": closed_port()}}),
        "ih_down": edit_config(lab, tmp_path / "ih-down.toml", **{"image_hosts.imagehost": {"port": closed_port()}}),
        "ih_key": edit_config(lab, tmp_path / "ih-key.toml",
                              **{"image_hosts.imagehost": {"known_hosts": str(changed_key)}}),
    }


# (command line, config, expected exit code): nothing here changes the site
READS = [
    *[((cmd,), "good", 0) for cmd in ("uploads", "volumes", "hosts", "owners", "jobs", "audit", "check", "repair",
                                      "gc", "catalog")],
    *[((cmd,), "bad", 2) for cmd in ("uploads", "volumes", "hosts", "owners", "jobs", "audit", "check", "repair",
                                     "gc", "catalog", "approve x/y", "reject x/y --reason r", "verify v",
                                     "delete-volume v --yes")],
    *[((cmd,), "dom0_down", 3) for cmd in ("uploads", "volumes", "hosts", "owners", "catalog")],
    (("approve", "alice/ipxe.iso"), "good", 2),                      # not confirmed, no terminal
    (("approve", "alice/ipxe.iso", "--yes"), "ih_down", 3),
    (("approve", "alice/ipxe.iso", "--yes"), "ih_key", 3),
    (("--read-only", "approve", "alice/ipxe.iso", "--yes"), "good", 4),
    (("approve", "alice/nope.iso", "--yes"), "good", 5),
    (("approve", "alice/ipxe.iso", "--dom0", "nope", "--yes"), "good", 5),
    (("approve", "carol/incoming.iso", "--yes"), "good", 6),         # still being written
    (("approve", "bob/boot-floppy.img", "--yes"), "good", 6),        # not ISO 9660
    (("approve", "alice/passwd.iso", "--yes"), "good", 6),           # a symlink: refused
    (("reject", "alice/ipxe.iso", "--reason", ""), "good", 2),
    (("reject", "alice/ipxe.iso", "--reason", "  "), "good", 2),
    (("reject", "alice/ipxe.iso", "--reason", "x"), "ih_down", 3),
    (("reject", "alice/ipxe.iso", "--reason", "x"), "ih_key", 3),
    (("--read-only", "reject", "alice/ipxe.iso", "--reason", "x"), "good", 4),
    (("reject", "alice/nope.iso", "--reason", "x"), "good", 5),
    (("--read-only", "repair", "--apply"), "good", 4),
    (("--read-only", "gc", "--apply"), "good", 4),
    (("verify", "dom0-a:nope"), "good", 5),
    (("--read-only", "delete-volume", "dom0-a:nope", "--yes"), "good", 4),
    (("delete-volume", "dom0-a:nope", "--yes"), "good", 5),
]


async def test_exit_codes_of_commands_that_change_nothing(lab, tmp_path):
    paths = configs(lab, tmp_path)
    results = []
    for args, config, _ in READS:
        words = [w for a in args for w in (a.split() if " " in a and a.strip() else [a])]
        results.append(await isoadmin(*words, config=paths[config]))
    for (args, config, code), r in zip(READS, results):
        one_line_failure(r, code)
    by_args = {(args, config): r for (args, config, _), r in zip(READS, results)}
    assert "--allow-non-iso" in by_args[(("approve", "bob/boot-floppy.img", "--yes"), "good")].stderr
    assert "still being written" in by_args[(("approve", "carol/incoming.iso", "--yes"), "good")].stderr
    assert "host key" in by_args[(("approve", "alice/ipxe.iso", "--yes"), "ih_key")].stderr
    assert "console.settle_seconds" in by_args[(("jobs",), "bad")].stderr
    assert list(lab.volumes_dir("dom0-a").iterdir()) == [] and list(lab.volumes_dir("dom0-b").iterdir()) == []


async def test_exit_codes_of_commands_that_change_the_site(lab, tmp_path):
    good = lab.config_path
    r = await isoadmin("approve", "alice/tools.iso", "--yes", config=good)
    one_line_failure(r, 0)
    final = r.stdout.split(" -> ")[1].split()[0]
    one_line_failure(await isoadmin("reject", "alice/tools.iso", "--reason", "late", config=good), 6)  # available
    one_line_failure(await isoadmin("reject", "alice/ipxe.iso", "--reason", "no thanks", config=good), 0)
    one_line_failure(await isoadmin("verify", final, config=good), 0)
    with open(lab.volumes_dir("dom0-a") / f"{final.split(':')[1]}.img", "r+b") as f:
        f.write(b"X")
    one_line_failure(await isoadmin("verify", final, config=good), 10)
    one_line_failure(await isoadmin("delete-volume", final, "--yes", config=good), 0)
    (lab.volumes_dir("dom0-a") / "vm-disk.img").write_bytes(b"\0" * 4096)  # not a volume isoadmin made
    one_line_failure(await isoadmin("delete-volume", "dom0-a:vm-disk", "--yes", config=good), 6)
    one_line_failure(await isoadmin("repair", "--apply", config=good), 0)
    one_line_failure(await isoadmin("gc", "--apply", config=good), 0)

    big = lab.uploads_root / "bob" / "big.iso"
    with open(big, "wb") as f:  # larger than dom0-b's 16 MiB
        f.write(make_iso("BIG", {"A.TXT;1": b"a"}))
        f.truncate(24 << 20)
    old = time.time() - 600
    os.utime(big, (old, old))
    one_line_failure(await isoadmin("approve", "bob/big.iso", "--dom0", "dom0-b", "--yes", config=good), 7)
    quota = edit_config(lab, tmp_path / "quota.toml", quotas={"default": "1 KiB"})
    one_line_failure(await isoadmin("approve", "bob/rescue-boot.iso", "--yes", config=quota), 11)
    broken = edit_config(lab, tmp_path / "broken.toml",
                         **{"dom0s.dom0-a.hypervisor": {"guest_disk_dirs": {"imagehost": str(tmp_path / "gone")}}})
    r = await isoadmin("approve", "bob/rescue-boot.iso", "--yes", config=broken)
    one_line_failure(r, 8)
    assert "rolled back" in r.stderr or "failed in" in r.stderr
    assert not [p for p in lab.volumes_dir("dom0-a").iterdir() if p.name.startswith("cdtmp_")]

    one_line_failure(await isoadmin("check", config=good), 0)
    _journal(lab, "orphan", state="running", console=f"{socket.gethostname()}:{2**22 + 1}")  # a dead console's job
    one_line_failure(await isoadmin("check", config=good), 9)


def _journal(lab, job_id: str, **fields) -> Path:
    job = JobRecord(id=job_id, serial=f"isoa{job_id}", owner="alice", upload="ipxe.iso", host="imagehost",
                    path=f"{lab.uploads_root}/alice/ipxe.iso", size=1, mtime=0.0, inode=1, dom0="dom0-a",
                    domain="imagehost", staging=f"cdtmp_{job_id}", final=f"cd_{job_id}", alloc=1,
                    approver="test", created=time.time())
    data = {**job.to_json(), **fields}
    path = lab.ledger_dir / "jobs" / f"{job_id}.json"  # as a console would have journaled it on the ledger
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.process
async def test_an_unexpected_error_writes_a_crash_report_and_exits_70(lab):
    _journal(lab, "good1", state="done")
    _journal(lab, "bad1", state="done", created="yesterday")  # a journal no version of isoadmin wrote
    r = await cli("jobs", config=lab.config_path)
    assert r.returncode == 70, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("isoadmin: unexpected error: TypeError") and "Traceback" not in r.stderr
    report = Path(lines[0].rsplit("crash report: ", 1)[1])
    assert report.parent == lab.dir / "state" and report.name.startswith("crash-")
    text = report.read_text()
    assert "Traceback" in text and "'jobs'" in text and "textual" in text and "pydantic" in text


# Races: the loser of two approvals at once learns why (busy upload: 6; over quota: 11), not "import failed".

async def test_the_loser_of_a_lock_race_exits_6(lab):
    sites = [Site(lab.config), Site(lab.config)]
    plans = []
    for site in sites:
        await site.refresh()
        plans.append(await site.plan("bob/rescue-boot.iso"))
    results = await asyncio.gather(*(s.approve(p) for s, p in zip(sites, plans)), return_exceptions=True)
    for site in sites:
        await site.close()
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and errors[0].exit_code == 6, errors


async def test_the_loser_of_a_quota_race_exits_11(lab):
    import dataclasses

    config = dataclasses.replace(lab.config, quota=6 << 20)  # room for one of alice's 4 MiB volumes, not two
    sites = [Site(config), Site(config)]
    plans = []
    for site, key in zip(sites, ("alice/tools.iso", "alice/ipxe.iso")):
        await site.refresh()
        plans.append(await site.plan(key))
    results = await asyncio.gather(*(s.approve(p) for s, p in zip(sites, plans)), return_exceptions=True)
    for site in sites:
        await site.close()
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and errors[0].exit_code == 11, errors
