"""The import workflow against the real stack: OpenSSH, LVM, libvirtd and a qemu guest as image host."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest

from backend.errors import JobFailed
from backend.site import Site
from backend.storage.lvm import decode_tags

from ..conftest import DEBIAN_ISOS, sha256_file

pytestmark = pytest.mark.reallab


def lvm(reallab, *argv: str) -> str:
    """Run an LVM command on this machine (the dom0) and return stdout."""
    return subprocess.run(list(argv), capture_output=True, text=True, check=True, env=reallab.env).stdout


def lvs(reallab) -> dict[str, dict]:
    out = lvm(reallab, "lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
              "-o", "lv_name,lv_size,lv_tags", reallab.facts["VG"])
    return {lv["lv_name"]: lv for lv in json.loads(out)["report"][0]["lv"]}


def lv_sha256(reallab, name: str, length: int) -> str:
    """sha256 of an LV's first ``length`` bytes, read from the PV file at the LV's extent offset —
    independently of isoadmin's own activation."""
    ranges = lvm(reallab, "lvs", "--noheadings", "--segments", "-o", "seg_pe_ranges",
                 f"{reallab.facts['VG']}/{name}").split()
    assert len(ranges) == 1, ranges
    first_pe = int(ranges[0].rsplit(":", 1)[1].split("-")[0])
    pe_start = int(lvm(reallab, "pvs", "--noheadings", "--nosuffix", "--units", "b", "-o", "pe_start",
                       reallab.facts["PV_LOOP"]).strip())
    extent = int(lvm(reallab, "vgs", "--noheadings", "--nosuffix", "--units", "b", "-o", "vg_extent_size",
                     reallab.facts["VG"]).strip())
    h = hashlib.sha256()
    with open(reallab.facts["PV_FILE"], "rb") as f:
        f.seek(pe_start + first_pe * extent)
        left = length
        while left:
            chunk = f.read(min(left, 1 << 20))
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


async def upload(guest, local: Path, owner: str, name: str) -> str:
    """Upload a file into the guest over SFTP as an owner would; return its path there."""
    await guest.run(f"mkdir -p /tmp/cds/{owner}", check=True)
    path = f"/tmp/cds/{owner}/{name}"
    async with guest.start_sftp_client() as sftp:
        await sftp.put(str(local), path)
        await sftp.utime(path, (time.time() - 60, time.time() - 60))  # uploaded a minute ago: settled
    return path


async def guest_serials(guest) -> str:
    return (await guest.run("cat /sys/block/*/serial 2>/dev/null; true")).stdout


async def ready_site(config) -> Site:
    site = Site(config)
    snap = await site.refresh()
    assert all(h.up for h in snap.hosts), [h.error for h in snap.hosts]
    return site


async def test_import_real_isos_through_the_real_stack_at_once(reallab, real_config, guest):
    """Every Debian ISO uploaded, then all approved at the same time: each lands byte-identical on its own LV
    (read from the PV file), with its tags, detached from the guest and from the domain, and no staging LV
    left. (One import's phases, one after the other, are what every other real-stack test runs.)"""
    expected = {name: sha256_file(local) for name, local in DEBIAN_ISOS.items()}
    for name, local in DEBIAN_ISOS.items():
        await upload(guest, local, "alice", name)
    site = await ready_site(real_config)
    plans = {name: await site.plan(f"alice/{name}") for name in DEBIAN_ISOS}
    jobs = dict(zip(plans, await asyncio.gather(*(site.approve(plan) for plan in plans.values()))))
    volumes = lvs(reallab)
    assert not [n for n in volumes if n.startswith("cdtmp_")]
    serials = await guest_serials(guest)
    attached = await site.hypervisors["dom0"].attached(reallab.facts["DOMAIN"])
    for name, job in jobs.items():
        plan, size = plans[name], DEBIAN_ISOS[name].stat().st_size
        assert (job.state, job.sha256) == ("done", expected[name])
        assert lv_sha256(reallab, plan.final, size) == expected[name]  # the LV's bytes, read on the dom0 side
        lv_size = int(volumes[plan.final]["lv_size"])
        assert lv_size % (4 << 20) == 0 and lv_size >= size
        meta = decode_tags(volumes[plan.final]["lv_tags"].split(","))
        assert (meta["owner"], meta["upload"], meta["sha256"], meta["size"]) == ("alice", name, expected[name], size)
        assert meta["source_path"] == f"/tmp/cds/alice/{name}" and meta["state"] == "final"
        assert job.serial not in serials  # the guest no longer sees the disk
        assert job.serial not in attached
    snap = await site.refresh()
    states = {u.key: u.state.value for u in snap.uploads}
    assert {name: states[f"alice/{name}"] for name in DEBIAN_ISOS} == dict.fromkeys(DEBIAN_ISOS, "available")
    await site.close()


async def big_upload(guest, owner: str, mib: int) -> tuple[str, str]:
    path = f"/tmp/cds/{owner}/big.iso"
    await guest.run(f"mkdir -p /tmp/cds/{owner} && head -c {mib}M /dev/urandom > {path}", check=True)
    async with guest.start_sftp_client() as sftp:
        await sftp.utime(path, (time.time() - 3600, time.time() - 3600))
    digest = (await guest.run(f"sha256sum {path}", check=True)).stdout.split()[0]
    return path, digest


async def approve_and_interfere(site: Site, key: str, phase: str, action) -> JobFailed:
    """Approve ``key`` and run ``action()`` when the job starts ``phase``; return the JobFailed.

    ``action`` runs as a task beside the job (so it can act while the phase runs).
    """
    fired = []

    async def on_phase(job) -> None:
        if job.phase == phase and not fired:
            fired.append(asyncio.get_running_loop().create_task(action()))
            await asyncio.sleep(0)

    with pytest.raises(JobFailed) as failure:
        await site.approve(await site.plan(key, allow_non_iso=True), on_phase=on_phase)
    assert fired, f"the job never reached {phase}"
    await fired[0]
    return failure.value


#: pkill/pgrep patterns for the copy inside the guest (backend/sh/imagehost-copy.sh): its shell and any dd, and
#: the writer alone (the dd with an ``of=``; on a guest whose dd has no O_NOFOLLOW it reads the upload through
#: /proc/self/fd/7, so the upload's path is not on its command line).
COPY_PROCESSES = "'[i]soadmin-copy|[d]d if='"
COPY_WRITER = "'[d]d if=[^ ]* of=/dev/'"


async def assert_rolled_back(reallab, guest, site, job_id: str, path: str, digest: str) -> None:
    job = next(j for j in site.jobs() if j.id == job_id)
    assert job.state == "failed" and "detached" in job.rollback and "removed" in job.rollback
    assert not [n for n in lvs(reallab) if n.startswith(("cdtmp_", "cd_bob", "cd_carol"))]
    assert job.serial not in await guest_serials(guest)
    left = (await guest.run(f"pgrep -f {COPY_PROCESSES} || true")).stdout.strip()
    assert left == "", f"copy processes left running in the image host: {left}"
    assert (await guest.run(f"sha256sum {path}", check=True)).stdout.split()[0] == digest  # upload intact


async def test_copy_killed_inside_the_guest_rolls_back(reallab, real_config, guest):
    path, digest = await big_upload(guest, "bob", 96)
    site = await ready_site(real_config)

    async def kill_copy() -> None:
        await asyncio.sleep(0.5)
        await guest.run(f"pkill -f {COPY_WRITER}")

    failure = await approve_and_interfere(site, "bob/big.iso", "copy", kill_copy)
    assert failure.phase == "copy"
    await assert_rolled_back(reallab, guest, site, failure.job_id, path, digest)
    await site.close()
    await guest.run(f"rm -f {path}")  # the guest keeps its files in RAM


async def test_ssh_drop_during_copy_stops_the_copy_and_rolls_back(reallab, real_config, guest):
    path, digest = await big_upload(guest, "carol", 96)
    site = await ready_site(real_config)

    async def drop() -> None:
        await asyncio.sleep(0.5)
        await site.hosts["imagehost"].drop()

    failure = await approve_and_interfere(site, "carol/big.iso", "copy", drop)
    assert failure.phase == "copy" and "interrupted" in failure.reason
    job = next(j for j in site.jobs() if j.id == failure.job_id)
    assert "copy stopped" in job.rollback
    await assert_rolled_back(reallab, guest, site, failure.job_id, path, digest)
    await site.close()
    await guest.run(f"rm -f {path}")  # the guest keeps its files in RAM


async def test_detach_that_does_not_complete_leaves_the_volume_staging(reallab, real_config, guest, tmp_path):
    """The guest paused during the detach: the job fails "guest is busy" and the volume stays staging. The
    site's books are on the dom0 here: with the ledger inside the paused guest, every journal write of the
    rollback would first wait out the ledger's own timeout (what that leaves is the fencing tests' subject)."""
    import dataclasses

    import libvirt

    local = DEBIAN_ISOS["ipxe.iso"]
    await upload(guest, local, "dave", "slow.iso")
    site = await ready_site(dataclasses.replace(real_config, ledger=f"dom0:{tmp_path}/ledger"))
    site.detach_timeout = 4.0
    domain = libvirt.open("qemu:///system").lookupByName(reallab.facts["DOMAIN"])

    async def pause_guest() -> None:
        domain.suspend()  # at once, before the detach request is sent

    try:
        failure = await approve_and_interfere(site, "dave/slow.iso", "detach", pause_guest)
        assert failure.phase == "detach" and "guest is busy" in failure.reason
        job = next(j for j in site.jobs() if j.id == failure.job_id)
        assert "still attached" in job.rollback
        volumes = lvs(reallab)
        assert job.staging in volumes and job.final not in volumes  # reported, never renamed
    finally:
        await asyncio.to_thread(domain.resume)
    # once the guest runs again the unplug completes; clean up the staging volume it left
    hyper = site.hypervisors["dom0"]
    await hyper.detach(reallab.facts["DOMAIN"], job.serial, timeout=30)
    await site.storage["dom0"].remove(job.staging)
    assert job.staging not in lvs(reallab)
    await site.close()


async def test_lvs_without_metadata_and_the_ledger_in_the_guest(reallab, real_config, guest):
    """Volumes with our prefixes but no isoadmin tags are `check` findings on LVM too (a staging one is
    removed by `repair`, a final one needs a person); the ledger lives in the image-host guest and a
    second console (its own state dir) sees the first one's books."""
    import dataclasses

    from backend import health

    vg = reallab.facts["VG"]
    lvm(reallab, "lvcreate", "--yes", "--wipesignatures", "n", "-L", "4m", "-n", "cdtmp_bare_00000000", vg)
    lvm(reallab, "lvcreate", "--yes", "--wipesignatures", "n", "-L", "4m", "-n", "cd_bare_11111111", vg)
    try:
        site = await ready_site(real_config)
        found = {f.target: f for f in await health.check(site)}
        assert found["cdtmp_bare_00000000"].kind == "volume without metadata"
        assert found["cdtmp_bare_00000000"].fix == "remove it"
        assert found["cd_bare_11111111"].kind == "volume without metadata" and found["cd_bare_11111111"].fix == ""
        results = dict((f.target, outcome) for f, outcome in await health.repair(site, list(found.values()), apply=True))
        assert results["cdtmp_bare_00000000"] == "done" and results["cd_bare_11111111"] == "needs a person"
        assert "cdtmp_bare_00000000" not in lvs(reallab)
        await site.audit.record("test", "marker", "done", "written by the first console")
        await site.close()
        other = Site(dataclasses.replace(real_config, state_dir=reallab.dir / "second-console-state"))
        entries = await other.audit.entries()
        assert entries[-1].reason == "written by the first console" and await other.audit.verify() is None
        ledger = (await guest.run("ls -ld /var/lib/isoadmin /var/lib/isoadmin/audit.jsonl", check=True)).stdout
        assert ledger.count("rw-------") == 1 and "drwx------" in ledger
        await other.close()
    finally:
        for name in ("cdtmp_bare_00000000", "cd_bare_11111111"):
            subprocess.run(["lvremove", "--yes", f"{vg}/{name}"], capture_output=True, env=reallab.env)
