"""`isoadmin check` / `repair` on the lab: leftovers found from the hosts, dry run by default, fixed with --apply."""

from __future__ import annotations

import json
import os
import shutil
import time

from backend.lab import Lab

from ..conftest import run_cli
from ..consoles.test_crash import LEASE, kill_console


def findings(lab_dir, *extra):
    r = run_cli(*extra, "check", "--json", lab_dir=lab_dir)
    assert r.returncode in (0, 9), r.stderr
    return r.returncode, sorted((f["kind"], f["host"]) for f in json.loads(r.stdout)), json.loads(r.stdout)


async def test_check_finds_leftovers_and_repair_fixes_them(tmp_path):
    lab_dir = tmp_path / "lab"
    lab = Lab(lab_dir)
    await lab.start()
    await lab.stop()
    # staging volume created and attached, console dead; its lease (8 s) is still live for a moment
    kill_console(lab_dir, "alice/ipxe.iso", "copy", lease=8)
    killed = time.monotonic()
    vols = lab.volumes_dir("dom0-b")
    (vols / "cd_bob_broken_00000000.img").write_bytes(b"\0" * 4096)
    (vols / "cd_bob_broken_00000000.meta").write_text('{"created_by":"isoadmin","owner":"bob"}\n')
    (vols / "cd_bob_nometa_22222222.img").write_bytes(b"\0" * 4096)          # a crash lost its metadata
    (vols / "cdtmp_carol_nometa_11111111.img").write_bytes(b"\0" * 4096)     # likewise, staging

    code, kinds, found = findings(lab_dir, "--read-only")
    if time.monotonic() - killed < 6:  # the killed console's lease is live: its job, volume and disk are left alone
        assert code == 9 and kinds == [("broken final volume", "dom0-b"), ("volume without metadata", "dom0-b"),
                                       ("volume without metadata", "dom0-b")], found
    time.sleep(max(0.0, killed + 10 - time.monotonic()))  # the lease expires
    code, kinds, found = findings(lab_dir, "--read-only")
    assert code == 9 and kinds == [("broken final volume", "dom0-b"), ("unfinished job", "dom0-a"),
                                   ("volume without metadata", "dom0-b"), ("volume without metadata", "dom0-b")]
    fixes = {f["target"]: f["fix"] for f in found}
    assert fixes["cdtmp_carol_nometa_11111111"] == "remove it" and fixes["cd_bob_nometa_22222222"] == ""

    # The workstation's state dir holds no books: deleting it changes nothing.
    shutil.rmtree(lab_dir / "state", ignore_errors=True)
    assert findings(lab_dir, "--read-only")[2] == found

    refused = run_cli("--read-only", "repair", "--apply", lab_dir=lab_dir)
    assert refused.returncode == 4 and "read-only" in refused.stderr
    dry = run_cli("repair", lab_dir=lab_dir)
    assert dry.returncode == 0 and "dry run" in dry.stderr
    assert findings(lab_dir)[2] == found  # the dry run changed nothing
    applied = run_cli("repair", "--apply", "--json", lab_dir=lab_dir)
    assert applied.returncode == 0, applied.stderr
    outcomes = {r["target"]: r["outcome"] for r in json.loads(applied.stdout)}
    assert sorted(outcomes.values()) == ["done", "done", "needs a person", "needs a person"], outcomes
    code, kinds, _ = findings(lab_dir)
    assert code == 9 and kinds == [("broken final volume", "dom0-b"), ("volume without metadata", "dom0-b")]
    assert list(lab.volumes_dir("dom0-a").iterdir()) == [] and list(lab.by_id.iterdir()) == []
    assert not (vols / "cdtmp_carol_nometa_11111111.img").exists()
    audit = json.loads(run_cli("audit", "--json", lab_dir=lab_dir).stdout)
    assert [e["outcome"] for e in audit if e["action"] == "repair"] == ["refused", "done", "done"]
    assert any(e["outcome"] == "refused" and e["read_only"] for e in audit)
    assert any(e["action"] == "recover" for e in audit)


async def test_a_final_volume_without_metadata_is_rebuilt_from_its_job(tmp_path):
    lab_dir = tmp_path / "lab"
    r = run_cli("approve", "alice/tools.iso", "--yes", lab_dir=lab_dir)
    assert r.returncode == 0, r.stderr
    lab = Lab(lab_dir)
    meta = next(lab.volumes_dir("dom0-a").glob("cd_*.meta"))
    before = json.loads(meta.read_text())
    meta.write_text("")  # what a kill in the middle of writing it used to leave
    code, kinds, found = findings(lab_dir)
    assert code == 9 and kinds == [("volume without metadata", "dom0-a")]
    assert found[0]["fix"].startswith("rebuild its metadata from job")
    assert run_cli("repair", "--apply", lab_dir=lab_dir).returncode == 0
    assert json.loads(meta.read_text()) == before
    assert findings(lab_dir)[0] == 0


async def test_unfinished_jobs_are_recovered_by_the_next_command(tmp_path):
    lab_dir = tmp_path / "lab"
    lab = Lab(lab_dir)
    await lab.start()
    await lab.stop()
    kill_console(lab_dir, "alice/ipxe.iso", "verify")
    time.sleep(LEASE + 1.5)  # its lease expires
    r = run_cli("uploads", "--json", lab_dir=lab_dir)
    assert r.returncode == 0 and "recovered job" in r.stderr
    assert {u["name"]: u["state"] for u in json.loads(r.stdout)}["ipxe.iso"] == "failed"
    assert findings(lab_dir)[0] == 0


async def test_disks_hot_plugged_without_a_serial_and_no_job_are_found_and_detached(tmp_path):
    from backend import health
    from backend.site import Site

    lab = Lab(tmp_path / "lab", locate={"dom0-a": "new-device"})
    config = await lab.start()
    try:
        site = Site(config)
        await site.refresh()
        job = await site.approve(await site.plan("alice/ipxe.iso", "dom0-a"))
        (lab.ledger_dir / "jobs" / f"{job.id}.json").unlink()  # its record lost
        storage, hyper = site.storage["dom0-a"], site.hypervisors["dom0-a"]
        vols = lab.volumes_dir("dom0-a")
        staging = "cdtmp_dave_lost_12345678"
        (vols / f"{staging}.img").write_bytes(b"\0" * 8192)
        (vols / f"{staging}.meta").write_text('{"created_by":"isoadmin","owner":"dave","upload":"lost.iso",'
                                              '"job":"0badc0ffee00"}\n')
        (vols / "foreign.img").write_bytes(b"\0" * 4096)  # not ours: never a finding
        for name in (job.final, staging, "foreign"):
            await hyper.attach("imagehost", storage.device_path(name), "")  # as a crash would leave them
        assert sorted(p.name for p in lab.dev_dir.glob("xvd*")) == ["xvdb", "xvdc", "xvdd"]

        site2 = Site(config)
        await site2.refresh()
        found = await health.check(site2)
        attached = {f.target: f for f in found if f.kind == "attached disk"}
        assert sorted(attached) == sorted([job.final, staging])
        assert attached[job.final].device == storage.device_path(job.final)
        assert "without a serial; no job record on the ledger" in attached[job.final].detail
        assert attached[job.final].fix == "detach it from imagehost (the volume is kept)"
        assert [f.target for f in found if f.kind == "orphan staging volume"] == [staging]
        dry = await health.repair(site2, found)
        assert all(o.startswith("would ") for _, o in dry) and len(list(lab.dev_dir.glob("xvd*"))) == 3
        results = await health.repair(site2, found, apply=True)
        assert [o for _, o in results] == ["done"] * len(found), results
        left = [os.readlink(p) for p in lab.dev_dir.glob("xvd*")]
        assert left == [storage.device_path("foreign")]  # ours detached, the foreign disk untouched
        assert (vols / f"{job.final}.img").exists() and not (vols / f"{staging}.img").exists()
        assert not [f for f in await health.check(site2) if f.kind == "attached disk"]
        await site.close()
        await site2.close()
    finally:
        await lab.stop()
