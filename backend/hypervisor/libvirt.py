"""Hypervisor driver ``libvirt``: live hot-plug of a volume into the image-host domU with libvirt-python.

Settings (``[dom0s.NAME.hypervisor]``): ``uri``, the libvirt connection URI of that dom0
(``xen+ssh://root@dom0/system``, ``qemu+ssh://…``, ``qemu+libssh://…?known_hosts=…``, ``qemu:///system``);
``bus`` (default ``virtio``; ``xen`` for Xen PV).

libvirt calls block, so each runs in a worker thread (``asyncio.to_thread``), never in the event loop.
Attach is ``virDomainAttachDeviceFlags(xml, VIR_DOMAIN_AFFECT_LIVE)`` of a ``<disk>`` whose ``<serial>``
is the job's serial. Detach (``virDomainDetachDeviceFlags``) is asynchronous — it can return before the
guest lets go — so :meth:`LibvirtHypervisor.detach` polls the live domain XML until the disk is gone.
Every call is first passed through the dom0 :class:`~backend.ssh.Host`'s guard as the equivalent
``virsh`` command, so read-only sessions refuse it and the command log shows it.
"""

from __future__ import annotations

import asyncio
import threading
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

from ..commands import cmd
from ..errors import ConfigError, HostError
from .base import HypervisorDriver


def disk_xml(device: str, target: str, serial: str, bus: str = "virtio") -> str:
    """The ``<disk>`` element for a raw volume at ``device`` (a block device, or a file if not in /dev)."""
    kind, attr = ("block", "dev") if device.startswith("/dev/") else ("file", "file")
    return (f"<disk type='{kind}' device='disk'><driver name='qemu' type='raw' cache='none'/>"
            f"<source {attr}={quoteattr(device)}/><target dev={quoteattr(target)} bus={quoteattr(bus)}/>"
            f"<serial>{escape(serial)}</serial></disk>")


def disks_by_serial(domain_xml: str) -> dict[str, ET.Element]:
    """Serial → ``<disk>`` element of a domain's XML."""
    out = {}
    for disk in ET.fromstring(domain_xml).iter("disk"):
        serial = disk.findtext("serial")
        if serial:
            out[serial] = disk
    return out


class LibvirtHypervisor(HypervisorDriver):
    """Hot-plug through libvirt (see module docstring)."""

    kind = "libvirt"

    def __init__(self, dom0, host) -> None:
        super().__init__(dom0, host)
        self.uri = str(dom0.hypervisor.get("uri", ""))
        if not self.uri:
            raise ConfigError(f"dom0s.{dom0.name}.hypervisor.uri is required (e.g. xen+ssh://root@{dom0.name}/system)")
        self.bus = str(dom0.hypervisor.get("bus", "virtio"))
        self._conn = None
        self._lock = threading.Lock()

    def _connection(self):
        import libvirt  # imported here: only sites that use this driver need the bindings

        with self._lock:
            if self._conn is None or not self._conn.isAlive():
                try:
                    self._conn = libvirt.open(self.uri)
                except libvirt.libvirtError as exc:
                    raise HostError(self.host.name, f"libvirt {self.uri}: {exc.get_error_message()}") from None
            return self._conn

    def _domain(self, name: str):
        import libvirt

        try:
            return self._connection().lookupByName(name)
        except libvirt.libvirtError as exc:
            raise HostError(self.host.name, f"libvirt: domain {name}: {exc.get_error_message()}") from None

    def describe_attach(self, domain: str, device: str, serial: str) -> str:
        return str(cmd("virsh", "-c", self.uri, "attach-disk", domain, device, "vdX", "--targetbus", self.bus,
                       "--serial", serial, "--cache", "none", "--live"))

    def describe_detach(self, domain: str, serial: str) -> str:
        return str(cmd("virsh", "-c", self.uri, "detach-disk", domain, f"<disk with serial {serial}>", "--live"))

    async def attach(self, domain: str, device: str, serial: str) -> None:
        self.host.guard(cmd("virsh", "attach-disk", domain, device, "--serial", serial, mutating=True,
                            label="attach"))
        await asyncio.to_thread(self._attach, domain, device, serial)

    def _attach(self, domain: str, device: str, serial: str) -> None:
        import libvirt

        dom = self._domain(domain)
        xml = dom.XMLDesc(0)
        used = {t.get("dev") for t in ET.fromstring(xml).iter("target")}
        prefix = "xvd" if self.bus == "xen" else "vd"
        target = next((f"{prefix}{c}" for c in "bcdefghijklmnopqrstuvwxyz" if f"{prefix}{c}" not in used), None)
        if target is None:
            raise HostError(self.host.name, f"domain {domain} has no free disk target")
        if serial in disks_by_serial(xml):
            raise HostError(self.host.name, f"a disk with serial {serial} is already attached to {domain}")
        try:
            dom.attachDeviceFlags(disk_xml(device, target, serial, self.bus), libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as exc:
            raise HostError(self.host.name, f"attach to {domain} failed: {exc.get_error_message()}") from None

    async def detach(self, domain: str, serial: str, timeout: float = 30.0) -> None:
        self.host.guard(cmd("virsh", "detach-disk", domain, serial, mutating=True, label="detach"))
        await asyncio.to_thread(self._detach, domain, serial, timeout)

    def _detach(self, domain: str, serial: str, timeout: float) -> None:
        import libvirt

        dom = self._domain(domain)
        disk = disks_by_serial(dom.XMLDesc(0)).get(serial)
        if disk is None:
            return  # not attached: nothing to do
        try:
            dom.detachDeviceFlags(ET.tostring(disk, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as exc:
            if serial in disks_by_serial(dom.XMLDesc(0)):
                raise HostError(self.host.name, f"detach from {domain} failed: {exc.get_error_message()}") from None
        deadline = time.monotonic() + timeout
        while serial in disks_by_serial(dom.XMLDesc(0)):
            if time.monotonic() > deadline:
                raise HostError(self.host.name, f"disk {serial} still attached to {domain} after "
                                                f"{timeout:.0f} s: guest is busy")
            time.sleep(0.1)

    async def attached(self, domain: str) -> list[str]:
        xml = await asyncio.to_thread(lambda: self._domain(domain).XMLDesc(0))
        return list(disks_by_serial(xml))

    async def users(self, device: str) -> list[str]:
        """Domains (running or defined) whose XML has a disk with ``device`` as its source."""
        def scan() -> list[str]:
            import libvirt

            found = []
            for dom in self._connection().listAllDomains(0):
                try:
                    xml = dom.XMLDesc(0)
                except libvirt.libvirtError:
                    continue
                for source in ET.fromstring(xml).iter("source"):
                    if device in (source.get("dev"), source.get("file")):
                        found.append(dom.name())
                        break
            return found
        return await asyncio.to_thread(scan)
