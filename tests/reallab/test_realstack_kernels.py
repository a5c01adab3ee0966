"""The real stack: a kernel set taken out of an imported ISO boots a libvirt domain under TCG."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
import time
from pathlib import Path

import pytest

from backend import kernels
from backend.errors import NotApprovable
from backend.lab import make_kernel_iso

from .test_realstack import lvs, ready_site
from .test_realstack_locate_cd import upload_settled

pytestmark = pytest.mark.reallab


async def serial_output(console: Path, marker: str, seconds: float = 120) -> str:
    """The domain's serial console log once it shows ``marker`` and the guest's sshd start (or what it
    shows after ``seconds``)."""
    deadline = time.monotonic() + seconds
    text = ""
    while time.monotonic() < deadline:
        text = console.read_text(errors="replace") if console.exists() else ""
        if marker in text and "reallab: sshd started" in text:
            break
        await asyncio.sleep(0.5)
    return text


def boot_xml(name: str, kset, console: Path) -> str:
    """A domain that boots the staged kernel, ramdisk and command line directly (libvirt ``<os>``)."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>384</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{kset.path}/kernel</kernel>
    <initrd>{kset.path}/ramdisk</initrd><cmdline>{kset.cmdline}</cmdline></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>"""


async def test_staged_kernel_set_boots_a_domain_and_is_kept_while_used(reallab, real_config, guest, tmp_path):
    import libvirt

    image = Path(reallab.facts["GUEST_IMAGE"])  # the image host guest's own kernel and initramfs
    kernel, ramdisk = (image / "vmlinuz").read_bytes(), (image / "initrd.gz").read_bytes()
    marker = f"isoadmin_marker={secrets.token_hex(6)}"
    iso = tmp_path / "live.iso"
    iso.write_bytes(make_kernel_iso("REALLIVE", kernel, ramdisk, f"console=ttyS0 panic=-1 {marker}"))
    path = await upload_settled(guest, iso, "henry", "live.iso")
    dom0 = dataclasses.replace(real_config.dom0s["dom0"], kernel_dir=str(reallab.dir / "kernels"))
    site = await ready_site(dataclasses.replace(real_config, dom0s={"dom0": dom0}))
    conn = libvirt.open("qemu:///system")
    name, console = "isolab-henry-boot", reallab.dir / "henry-boot.log"
    domain = None
    try:
        job = await site.approve(await site.plan("henry/live.iso"))
        vol, entries = await kernels.kernels(site, "henry/live.iso")
        assert [(e.kernel, e.ramdisk) for e in entries] == [("/casper/vmlinuz", "/casper/initrd.gz")]
        kset = await kernels.stage(site, "henry/live.iso", "1")
        assert kset.sha256 == {"kernel": hashlib.sha256(kernel).hexdigest(),
                               "ramdisk": hashlib.sha256(ramdisk).hexdigest()}
        assert Path(kset.path, "kernel").read_bytes() == kernel and marker in kset.cmdline
        domain = conn.defineXML(boot_xml(name, kset, console))
        domain.create()
        text = await serial_output(console, marker)
        # the kernel logs the staged command line, then the staged initramfs's init prints its marker
        assert marker in text and "reallab: sshd started" in text, text[-2000:]
        with pytest.raises(NotApprovable, match=name):
            await kernels.delete_set(site, kset.ref)
        assert await kernels.gc_plan(site, now=time.time() + 365 * 86400) == []
        domain.destroy()
        with pytest.raises(NotApprovable, match=name):  # defined, not running: still its kernel
            await kernels.delete_set(site, kset.ref)
        domain.undefine()
        domain = None
        plan = await kernels.gc_plan(site, now=time.time() + 365 * 86400)
        assert [s.path for s, _ in plan] == [kset.path]
        assert [o for _, o in await kernels.gc_apply(site, plan)] == ["removed"]
        assert not Path(kset.path).exists()
        await site.storage["dom0"].remove(job.final)
        assert job.final not in lvs(reallab)
    finally:
        if domain is not None:
            if domain.isActive():
                domain.destroy()
            domain.undefine()
        await site.close()
        await guest.run(f"rm -f {path}")  # the guest keeps its files in RAM


async def test_uploaded_kernel_and_ramdisk_are_streamed_to_the_dom0_and_boot(reallab, real_config, guest, tmp_path):
    """The guest's own kernel and initramfs uploaded as a bare pair: recognised, paired by version, streamed
    from the image-host guest through the console to the dom0, byte-identical, and booted."""
    import libvirt

    image = Path(reallab.facts["GUEST_IMAGE"])
    kernel, ramdisk = (image / "vmlinuz").read_bytes(), (image / "initrd.gz").read_bytes()
    paths = [await upload_settled(guest, image / "vmlinuz", "irene", "vmlinuz-6.1.0-cloud-amd64"),
             await upload_settled(guest, image / "initrd.gz", "irene", "initrd.img-6.1.0-cloud-amd64")]
    dom0 = dataclasses.replace(real_config.dom0s["dom0"], kernel_dir=str(reallab.dir / "kernels"))
    site = await ready_site(dataclasses.replace(real_config, dom0s={"dom0": dom0}))
    conn = libvirt.open("qemu:///system")
    name, console = "isolab-irene-boot", reallab.dir / "irene-boot.log"
    marker = f"isoadmin_marker={secrets.token_hex(6)}"
    domain = None
    try:
        up = next(u for u in site.snapshot.uploads if u.key == "irene/vmlinuz-6.1.0-cloud-amd64")
        assert up.iso.kind == "linux-kernel" and up.iso.kernel_version
        _, entries = await kernels.kernels(site, up.key)
        assert [(e.source, e.ramdisk) for e in entries] == [("upload pair", paths[1])]
        kset = await kernels.stage(site, up.key, "1", "dom0", cmdline=f"console=ttyS0 panic=-1 {marker}")
        assert kset.sha256 == {"kernel": hashlib.sha256(kernel).hexdigest(),
                               "ramdisk": hashlib.sha256(ramdisk).hexdigest()}
        assert Path(kset.path, "kernel").read_bytes() == kernel and Path(kset.path, "ramdisk").read_bytes() == ramdisk
        assert not [p for p in Path(kset.path).parent.iterdir() if p.name.startswith(".")]
        domain = conn.defineXML(boot_xml(name, kset, console))
        domain.create()
        text = await serial_output(console, marker)
        assert marker in text and "reallab: sshd started" in text, text[-2000:]
        domain.destroy()
        domain.undefine()
        domain = None
        await kernels.delete_set(site, kset.ref)
        assert not Path(kset.path).exists()
    finally:
        if domain is not None:
            if domain.isActive():
                domain.destroy()
            domain.undefine()
        await site.close()
        for path in paths:
            await guest.run(f"rm -f {path}")  # the guest keeps its files in RAM
