"""Kernel sets on the embedded lab: entries found in an imported ISO, staged on the dom0, quota, catalog,
delete, gc and leftovers."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest

from backend import health, kernels
from backend.errors import NotApprovable, NotFound, QuotaExceeded, ReadOnlyError
from backend.kernels import _grub, _syslinux
from backend.lab import make_kernel_iso
from backend.site import Site

from .conftest import run_cli

KERNEL = os.urandom(300_000)
RAMDISK = os.urandom(120_000)
CMDLINE = "console=ttyS0 quiet boot=casper"


def put_live_iso(lab_dir, owner: str = "alice", name: str = "live.iso") -> None:
    folder = lab_dir / "imagehost" / "cds" / owner
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(make_kernel_iso("LIVE", KERNEL, RAMDISK, CMDLINE))
    past = time.time() - 3600
    os.utime(folder / name, (past, past))


def test_syslinux_and_grub_configs_are_read():
    cfg = ("DEFAULT install\nLABEL install\n  MENU LABEL ^Install\n  KERNEL vmlinuz\n"
           "  APPEND vga=788 initrd=initrd.gz,extra.gz --- quiet\nLABEL rescue\n  LINUX /install/vmlinuz\n"
           "  INITRD /install/initrd.gz\n  APPEND rescue/enable=true\nLABEL hd\n  KERNEL chain.c32\n")
    assert _syslinux(cfg, "/install.amd/isolinux.cfg") == [
        {"label": "Install", "kernel": "/install.amd/vmlinuz", "ramdisk": "/install.amd/initrd.gz",
         "cmdline": "vga=788 --- quiet", "source": "/install.amd/isolinux.cfg"},
        {"label": "rescue", "kernel": "/install/vmlinuz", "ramdisk": "/install/initrd.gz",
         "cmdline": "rescue/enable=true", "source": "/install.amd/isolinux.cfg"}]
    grub = ("menuentry \"Try it\" --class os {\n  linux /casper/vmlinuz boot=casper quiet ---\n"
            "  initrd /casper/initrd\n}\nmenuentry 'Vars' {\n  linux $kernel\n}\n")
    assert _grub(grub, "/boot/grub/grub.cfg") == [
        {"label": "Try it", "kernel": "/casper/vmlinuz", "ramdisk": "/casper/initrd",
         "cmdline": "boot=casper quiet ---", "source": "/boot/grub/grub.cfg"}]


async def test_kernel_set_staged_listed_catalogued_deleted_and_collected(lab):
    put_live_iso(lab.dir)
    site = Site(lab.config)
    await site.refresh()
    job = await site.approve(await site.plan("alice/live.iso", "dom0-a"))
    vol, entries = await kernels.kernels(site, "alice/live.iso")
    assert vol.name == job.final
    assert [(e.kernel, e.ramdisk, e.cmdline, e.kernel_size, e.ramdisk_size) for e in entries] == \
        [("/casper/vmlinuz", "/casper/initrd.gz", CMDLINE, len(KERNEL), len(RAMDISK))]
    with pytest.raises(NotFound, match="no kernel entry '7'"):
        await kernels.stage(site, "alice/live.iso", "7")
    with pytest.raises(NotApprovable, match="import it onto dom0-b first"):
        await kernels.stage(site, "alice/live.iso", "1", "dom0-b")
    staged = await kernels.stage(site, "alice/live.iso", "1")
    folder = lab.dir / "dom0-a" / "kernels" / "alice" / staged.name
    assert staged.path == str(folder) and staged.name.endswith(hashlib.sha256(KERNEL).hexdigest()[:8])
    assert (folder / "kernel").read_bytes() == KERNEL and (folder / "ramdisk").read_bytes() == RAMDISK
    assert (folder / "cmdline").read_text() == CMDLINE + "\n"
    assert (folder / "SHA256SUMS").read_text() == (f"{hashlib.sha256(KERNEL).hexdigest()}  kernel\n"
                                                   f"{hashlib.sha256(RAMDISK).hexdigest()}  ramdisk\n")
    meta = json.loads((folder / "isoadmin.json").read_text())
    assert (meta["owner"], meta["volume"], meta["kernel_path"]) == ("alice", job.final, "/casper/vmlinuz")
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    again = await kernels.stage(site, "alice/live.iso", "Live system (GRUB)")  # by label: the same set
    assert again.path == staged.path
    rows = kernels.catalog_rows((await kernels.list_sets(site))[0])
    assert [(r["type"], r["size"], r["sha256"]) for r in rows] == [
        ("kernel", len(KERNEL), hashlib.sha256(KERNEL).hexdigest()),
        ("ramdisk", len(RAMDISK), hashlib.sha256(RAMDISK).hexdigest())]
    # a domain that boots the set keeps it from delete and gc
    vm = lab.vm_dir("dom0-a") / "alice-vm"
    (vm / "kernel").symlink_to(folder / "kernel")
    with pytest.raises(NotApprovable, match="kernel of alice-vm"):
        await kernels.delete_set(site, staged.ref)
    assert await kernels.gc_plan(site, now=time.time() + 40 * 86400) == []
    (vm / "kernel").unlink()
    assert await kernels.gc_plan(site) == []  # too young
    plan = await kernels.gc_plan(site, now=time.time() + 40 * 86400)
    assert [s.path for s, _ in plan] == [staged.path]
    assert [o for _, o in await kernels.gc_apply(site, plan)] == ["removed"]
    assert not folder.exists()
    actions = [(e.action, e.outcome) for e in await site.audit.entries() if "kernel" in e.action]
    assert actions == [("stage kernel", "refused"), ("stage kernel", "refused"), ("stage kernel", "done"),
                       ("stage kernel", "done"), ("delete kernel", "refused"), ("delete kernel", "done")]
    await site.close()


async def test_kernel_sets_count_against_the_quota(lab):
    import dataclasses

    put_live_iso(lab.dir)
    site = Site(lab.config)
    await site.refresh()
    job = await site.approve(await site.plan("alice/live.iso", "dom0-a"))
    volume = next(v for v in await site.all_volumes() if v.name == job.final)
    tight = dataclasses.replace(lab.config, quotas={"alice": volume.size + 1000})
    site2 = Site(tight)
    await site2.refresh()
    with pytest.raises(QuotaExceeded):
        await kernels.stage(site2, "alice/live.iso", "1")
    assert not (lab.dir / "dom0-a" / "kernels" / "alice").exists() or \
        not list((lab.dir / "dom0-a" / "kernels" / "alice").iterdir())
    await site.close()
    await site2.close()


async def test_half_staged_set_is_found_by_check_and_removed_by_repair(lab):
    left = lab.dir / "dom0-a" / "kernels" / "bob" / ".staging-x-123"
    left.mkdir(parents=True)
    (left / "kernel").write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(left, (old, old))
    site = Site(lab.config)
    await site.refresh()
    findings = [f for f in await health.check(site) if f.kind == "half-staged kernel set"]
    assert [(f.host, f.target) for f in findings] == [("dom0-a", str(left))]
    assert (await kernels.list_sets(site))[0] == []  # never taken for a set
    results = await health.repair(site, findings, apply=True)
    assert [o for _, o in results] == ["done"] and not left.exists()
    await site.close()


async def test_read_only_refuses_staging_and_deleting(lab):
    site = Site(lab.config, read_only=True)
    await site.refresh()
    with pytest.raises(ReadOnlyError):
        await kernels.stage(site, "alice/live.iso", "1")
    with pytest.raises(ReadOnlyError):
        await kernels.delete_set(site, "dom0-a:alice/x")
    await site.close()


def test_cli_kernels_stage_list_catalog_delete(tmp_path):
    lab_dir = tmp_path / "lab"
    assert run_cli("uploads", lab_dir=lab_dir).returncode == 0  # creates the lab
    put_live_iso(lab_dir)
    assert run_cli("approve", "alice/live.iso", "--yes", lab_dir=lab_dir).returncode == 0
    listed = run_cli("kernels", "alice/live.iso", "--json", lab_dir=lab_dir)
    assert listed.returncode == 0, listed.stderr
    assert [e["cmdline"] for e in json.loads(listed.stdout)] == [CMDLINE]
    staged = run_cli("stage-kernel", "alice/live.iso", "1", lab_dir=lab_dir)
    assert staged.returncode == 0 and "staged" in staged.stdout, staged.stderr
    sets = json.loads(run_cli("kernel-sets", "--json", lab_dir=lab_dir).stdout)
    assert [(s["owner"], s["size"]) for s in sets] == [("alice", len(KERNEL) + len(RAMDISK))]
    catalog = json.loads(run_cli("catalog", "--json", lab_dir=lab_dir).stdout)
    assert sorted(r["type"] for r in catalog) == ["cd", "kernel", "ramdisk"]
    assert run_cli("kernel-gc", lab_dir=lab_dir).returncode == 0
    gone = run_cli("delete-kernel", sets[0]["ref"], "--yes", lab_dir=lab_dir)
    assert gone.returncode == 0, gone.stderr
    assert json.loads(run_cli("kernel-sets", "--json", lab_dir=lab_dir).stdout) == []
    assert run_cli("stage-kernel", "bob/none.iso", "1", lab_dir=lab_dir).returncode == 5
