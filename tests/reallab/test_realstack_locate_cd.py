"""The real stack: a hot-plug without a serial located as the new device (and, left behind, found by `check`),
and a CD volume in an owner's VM."""

from __future__ import annotations

import asyncio
import dataclasses
import xml.etree.ElementTree as ET

import pytest

from backend import cdrom, health
from backend.errors import NotApprovable
from backend.hypervisor.libvirt import OWNER_NS, cdrom_drive, disk_by_source, source_of

from ..conftest import DEBIAN_ISOS, sha256_file
from .test_realstack import guest_serials, lv_sha256, lvs, ready_site, upload

pytestmark = pytest.mark.reallab


async def upload_settled(guest, local, owner: str, name: str) -> str:
    """Upload as an owner would, then date the file an hour back by the guest's own clock (a TCG guest's
    clock drifts from this machine's over a long run)."""
    path = await upload(guest, local, owner, name)
    now = int((await guest.run("date +%s", check=True)).stdout.strip())
    async with guest.start_sftp_client() as sftp:
        await sftp.utime(path, (now - 3600, now - 3600))
    return path


def new_device(config):
    """The real stack's site with its dom0 hot-plugging without a serial (``locate = "new-device"``)."""
    dom0 = dataclasses.replace(config.dom0s["dom0"], locate="new-device")
    return dataclasses.replace(config, dom0s={"dom0": dom0})


async def test_import_located_as_the_new_device_lands_byte_identical(reallab, real_config, guest):
    import libvirt

    local = DEBIAN_ISOS["grub-rescue-cdrom.iso"]
    expected = sha256_file(local)
    await upload_settled(guest, local, "erin", "rescue.iso")
    site = await ready_site(new_device(real_config))
    domain = libvirt.open("qemu:///system").lookupByName(reallab.facts["DOMAIN"])
    seen = {}

    async def look(job) -> None:
        if job.phase == "locate":  # attached: the live domain XML has the disk, without a <serial>
            xml = await asyncio.to_thread(domain.XMLDesc, 0)
            disk = disk_by_source(xml, site.storage["dom0"].device_path(job.staging))
            seen["disk"] = None if disk is None else ET.tostring(disk, encoding="unicode")

    plan = await site.plan("erin/rescue.iso")
    job = await site.approve(plan, on_phase=look)
    assert seen["disk"] and "<serial" not in seen["disk"], seen
    assert (job.state, job.sha256) == ("done", expected)
    assert job.device.startswith("/dev/vd") and job.device[5:] not in job.device_before
    assert lv_sha256(reallab, plan.final, local.stat().st_size) == expected
    assert not [n for n in lvs(reallab) if n.startswith("cdtmp_")]
    assert not await site.hypervisors["dom0"].attached_sources(reallab.facts["DOMAIN"])  # detached
    assert job.serial not in await guest_serials(guest)
    # hot-plugged again without a serial and left so (as a crash would): check finds it by its source, repair
    # detaches it and keeps the volume
    hyper, final_path = site.hypervisors["dom0"], site.storage["dom0"].device_path(plan.final)
    await hyper.attach(reallab.facts["DOMAIN"], final_path, "")
    found = [f for f in await health.check(site) if f.kind == "attached disk" and f.target == plan.final]
    assert [(f.device, f.job) for f in found] == [(final_path, job.id)]
    assert [o for _, o in await health.repair(site, found, apply=True)] == ["done"]
    assert not await hyper.attached_sources(reallab.facts["DOMAIN"]) and plan.final in lvs(reallab)
    await site.storage["dom0"].remove(plan.final)
    await site.close()


def vm_xml(name: str, owner: str) -> str:
    """A small defined domain of ``owner`` (libvirt ``<metadata>``) with an empty IDE CD-ROM drive."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <metadata><isoadmin:owner xmlns:isoadmin='{OWNER_NS}'>{owner}</isoadmin:owner></metadata>
  <memory unit='MiB'>32</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='cdrom'/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='hdc' bus='ide'/><readonly/></disk>
    <controller type='usb' model='none'/><memballoon model='none'/>
  </devices>
</domain>"""


async def test_cd_into_an_owners_domain_live_and_persistent(reallab, real_config, guest):
    import libvirt

    conn = libvirt.open("qemu:///system")
    names = {"frank": "isolab-frank-vm", "grace": "isolab-grace-vm"}
    for owner, name in names.items():
        try:
            old = conn.lookupByName(name)
            if old.isActive():
                old.destroy()
            old.undefine()
        except libvirt.libvirtError:
            pass
    vms = {owner: conn.defineXML(vm_xml(name, owner)) for owner, name in names.items()}
    vms["frank"].createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)  # running (paused): live and config change
    local = DEBIAN_ISOS["ipxe.iso"]
    await upload_settled(guest, local, "frank", "ipxe.iso")
    site = await ready_site(real_config)
    try:
        job = await site.approve(await site.plan("frank/ipxe.iso"))
        ref, path = f"dom0:{job.final}", site.storage["dom0"].device_path(job.final)
        with pytest.raises(NotApprovable, match="belongs to grace"):
            await cdrom.insert_cd(site, ref, names["grace"])
        assert source_of(cdrom_drive(vms["grace"].XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))) == ""
        await cdrom.insert_cd(site, ref, names["frank"])
        for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):  # the running domain and its definition
            assert source_of(cdrom_drive(vms["frank"].XMLDesc(flags))) == path
        with pytest.raises(NotApprovable, match=names["frank"]):
            await site.delete_volume(ref)
        assert job.final in lvs(reallab)
        vms["frank"].destroy()  # stopped, still defined: its definition holds the CD
        with pytest.raises(NotApprovable, match=names["frank"]):
            await site.delete_volume(ref)
        assert await cdrom.eject_cd(site, f"dom0:{names['frank']}") == path
        assert source_of(cdrom_drive(vms["frank"].XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))) == ""
        await site.delete_volume(ref)
        assert job.final not in lvs(reallab)
        entries = [(e.action, e.outcome) for e in await site.audit.entries()]
        assert ("insert cd", "refused") in entries and ("insert cd", "done") in entries
    finally:
        for vm in vms.values():
            if vm.isActive():
                vm.destroy()
            vm.undefine()
        await site.close()
