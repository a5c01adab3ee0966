"""Crash safety on the lab: SIGKILL the console at every phase boundary and in the middle of the copy;
on restart the job is resumed or rolled back, the upload is intact, no orphan volume or disk remains."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from backend.lab import Lab
from backend.site import Site
from backend.state import PHASES

from ..conftest import ROOT, sha256_file


def copies_running(lab_dir) -> list[str]:
    """Command lines of copy processes still running on this machine for this lab."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/status") as f:
                zombie = any(line.startswith("State:") and "Z" in line for line in f)
        except OSError:
            continue
        if str(lab_dir) in args and ("isoadmin-copy" in args or args.startswith("dd ")) and not zombie:
            out.append(args[:120])
    return out


#: Lease time (seconds) of the killed consoles' jobs: short, so the tests do not wait long for it to expire.
LEASE = 2.0


def kill_console(lab_dir, key: str, phase: str, delay: float = 0.0, lease: float = LEASE) -> None:
    """Run a console (its own process) that approves ``key`` and is SIGKILLed when the job starts ``phase``."""
    r = subprocess.run([sys.executable, "-m", "tests.consoles.crash_child", str(lab_dir), key, phase, str(delay), str(lease)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == -9 and f"killed in {phase}" in r.stdout, (r.returncode, r.stdout, r.stderr[-2000:])


async def wait_for_orphans(site, count: int = 1, timeout: float = 15.0) -> list:
    """Read the ledger until ``count`` jobs' leases have expired (by the ledger host's clock)."""
    deadline = time.monotonic() + timeout
    while True:
        orphans = site.orphaned_jobs(await site.read_books())
        if len(orphans) >= count or time.monotonic() > deadline:
            return orphans
        await asyncio.sleep(0.25)


@pytest.mark.parametrize("phase", PHASES)
async def test_sigkill_at_each_phase_boundary(tmp_path, phase):
    await check_recovery(tmp_path, "alice/ipxe.iso", phase)


async def test_sigkill_in_the_middle_of_the_copy(tmp_path):
    lab_dir = tmp_path / "lab"
    lab = Lab(lab_dir)
    await lab.start()
    big = lab.uploads_root / "carol" / "big.iso"
    with open(big, "wb") as f:
        f.write(os.urandom(1 << 20))
        f.truncate(400 << 20)  # 400 MiB: the copy outlives the console
    old = time.time() - 600
    os.utime(big, (old, old))
    await lab.stop()
    await check_recovery(tmp_path, "carol/big.iso", "copy", delay=0.5)


async def check_recovery(tmp_path, key: str, phase: str, delay: float = 0.0) -> None:
    lab_dir = tmp_path / "lab"
    lab = Lab(lab_dir)
    upload = lab.uploads_root / key
    if not lab_dir.exists():
        await lab.start()
        await lab.stop()
    before = sha256_file(upload)
    kill_console(lab_dir, key, phase, delay)
    if delay:
        assert copies_running(lab_dir), "the copy should outlive the killed console"
    config = await lab.start()
    try:
        site = Site(config)
        orphans = await wait_for_orphans(site)
        assert [j.phase for j in orphans] == [phase]
        recovered = await site.recover()
        assert len(recovered) == 1 and recovered[0].state == "failed"
        assert f"during {phase}" in recovered[0].error
        snap = await site.refresh()
        assert [v.name for v in snap.volumes if v.namespace == "staging"] == []  # no orphan volume
        assert list(lab.by_id.iterdir()) == []                                 # nothing attached
        for _ in range(100):  # the copy's processes end shortly after the TERM
            if not copies_running(lab_dir):
                break
            time.sleep(0.05)
        assert copies_running(lab_dir) == []                                   # copy stopped
        assert sha256_file(upload) == before                                   # upload intact
        assert {u.key: u.state.value for u in snap.uploads}[key] == "failed"
        assert site.orphaned_jobs(await site.read_books()) == []
        assert any(e.action == "recover" for e in await site.audit.entries())
        # and it can be imported now
        job = await site.approve(await site.plan(key, allow_non_iso=True))
        assert job.state == "done"
        await site.close()
    finally:
        await lab.stop()
