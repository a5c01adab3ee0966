"""Garbage collection, the catalog rebuilt from the hosts alone, and verify, through the real CLI on the lab."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time

import pytest

from ..conftest import isoadmin, sha256_file


def age(path, days: float) -> None:
    t = time.time() - days * 86400
    os.utime(path, (t, t), follow_symlinks=False)


async def test_gc_dry_run_then_apply_never_touches_young_or_importing(lab):
    config = lab.config_path
    root = lab.uploads_root
    age(root / "alice" / "tools.iso", 8)       # pending, old: goes
    age(root / "alice" / "passwd.iso", 30)     # refused symlink, old: the link goes, never its target
    age(root / "bob" / "rescue-boot.iso", 3)   # young: stays
    (root / "carol" / "subdir").mkdir()
    age(root / "carol" / "subdir", 30)         # a directory: left to a person
    dry = await isoadmin("gc", "--json", config=config)
    assert dry.returncode == 0, dry.stderr
    planned = sorted(f"{i['owner']}/{i['name']}" for i in json.loads(dry.stdout))
    assert planned == ["alice/passwd.iso", "alice/tools.iso"]
    assert (root / "alice" / "tools.iso").exists()  # a dry run changes nothing
    applied = await isoadmin("gc", "--apply", "--json", config=config)
    assert applied.returncode == 0, applied.stderr
    assert [i["outcome"] for i in json.loads(applied.stdout)] == ["removed", "removed"]
    assert not (root / "alice" / "tools.iso").exists() and not (root / "alice" / "passwd.iso").is_symlink()
    assert os.path.exists("/etc/passwd") and (root / "bob" / "rescue-boot.iso").exists()
    assert (root / "carol" / "subdir").is_dir()
    refused = await isoadmin("--read-only", "gc", "--apply", config=config)
    assert refused.returncode == 4
    audit = json.loads((await isoadmin("audit", "--json", config=config)).stdout)
    assert sorted(e["target"] for e in audit if e["action"] == "gc" and e["outcome"] == "done") == \
        ["alice/passwd.iso", "alice/tools.iso"]


async def test_gc_keeps_an_upload_that_is_importing(lab):
    from backend.catalog import gc_apply, gc_plan
    from backend.site import Site

    age(lab.uploads_root / "alice" / "ipxe.iso", 10)
    site = Site(lab.config)
    await site.refresh()
    candidates = gc_plan(site)
    assert [i.name for i in candidates] == ["ipxe.iso"]
    outcomes = []

    async def gc_during_copy(job) -> None:
        if job.phase == "copy":
            assert gc_plan(site) == []  # importing: no longer a candidate
            outcomes.extend(o for _, o in await gc_apply(site, candidates))  # even if asked with the old plan

    job = await site.approve(await site.plan("alice/ipxe.iso"), on_phase=gc_during_copy)
    assert outcomes == ["kept: importing"]
    assert job.state == "done" and (lab.uploads_root / "alice" / "ipxe.iso").exists()
    await site.close()


async def test_catalog_is_rebuilt_from_the_hosts_alone_and_verify_catches_corruption(lab):
    config = lab.config_path
    for key in ("alice/ipxe.iso", "bob/grub-rescue-cdrom.iso"):
        assert (await isoadmin("approve", key, "--yes", config=config)).returncode == 0
    before = json.loads((await isoadmin("catalog", "--json", config=config)).stdout)
    shutil.rmtree(lab.dir / "state")  # the console's own state is gone
    after = json.loads((await isoadmin("catalog", "--json", config=config)).stdout)
    assert after == before and [r["upload"] for r in after] == ["ipxe.iso", "grub-rescue-cdrom.iso"]
    ipxe = after[0]
    assert (ipxe["owner"], ipxe["volume_id"], ipxe["bootable"], ipxe["size"]) == ("alice", "ISOIMAGE", True, 2097152)
    assert ipxe["sha256"] == sha256_file(lab.uploads_root / "alice" / "ipxe.iso")
    rows = list(csv.DictReader(io.StringIO((await isoadmin("catalog", "--csv", config=config)).stdout)))
    assert [r["volume"] for r in rows] == [r["volume"] for r in after]

    ok = await isoadmin("verify", f"dom0-a:{ipxe['volume']}", config=config)
    assert ok.returncode == 0 and ipxe["sha256"] in ok.stdout
    image = lab.volumes_dir("dom0-a") / f"{ipxe['volume']}.img"
    with open(image, "r+b") as f:  # one flipped byte inside the ISO
        f.seek(40000)
        byte = f.read(1)
        f.seek(40000)
        f.write(bytes([byte[0] ^ 0xFF]))
    bad = await isoadmin("verify", ipxe["volume"], config=config)
    assert bad.returncode == 10 and "does not match" in bad.stderr and "Traceback" not in bad.stderr


async def test_delete_volume_is_explicit_refused_while_attached_and_audited(lab):
    from backend.errors import NotApprovable, ReadOnlyError
    from backend.site import Site

    site = Site(lab.config)
    await site.refresh()
    job = await site.approve(await site.plan("alice/ipxe.iso"))
    image = lab.volumes_dir("dom0-a") / f"{job.final}.img"
    link = lab.by_id / "virtio-someguest"
    link.symlink_to(image)  # a VM uses the CD
    try:
        with pytest.raises(NotApprovable, match="attached to imagehost"):
            await site.delete_volume(f"dom0-a:{job.final}")
        with pytest.raises(ReadOnlyError):
            await Site(lab.config, read_only=True).delete_volume(job.final)
    finally:
        link.unlink()
    assert image.exists()
    deleted = await site.delete_volume(job.final)
    assert deleted.name == job.final and not image.exists()
    outcomes = [e.outcome for e in await site.audit.entries() if e.action == "delete volume"]
    assert outcomes == ["refused", "refused", "done"]
    await site.close()


async def test_naming_template_names_final_volumes_and_the_upload_stays_known(lab):
    import dataclasses

    from backend.catalog import catalog
    from backend.models import UploadState
    from backend.site import Site

    site = Site(dataclasses.replace(lab.config, naming="{owner}_{label}_{size}"))
    await site.refresh()
    plan = await site.plan("bob/rescue-boot.iso")
    assert plan.staging.startswith("cdtmp_bob_rescue-boot_")  # the lock's name never follows the template
    assert (await site.approve(plan)).state == "done"
    inventory = await site.refresh()
    (row,) = [r for r in catalog(inventory.volumes) if r["upload"] == "rescue-boot.iso"]
    size = (lab.uploads_root / "bob" / "rescue-boot.iso").stat().st_size
    assert row["volume"] == f"cd_bob_RESCUE_BOOT_{round(size / 1024)}K_{plan.staging[-8:]}"
    assert row["owner"] == "bob" and row["volume_id"] == "RESCUE_BOOT"
    assert [u.state for u in inventory.uploads if u.key == "bob/rescue-boot.iso"] == [UploadState.AVAILABLE]
    await site.close()
