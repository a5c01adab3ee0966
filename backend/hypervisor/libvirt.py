"""Hypervisor driver ``libvirt``: live hot-plug of a volume into the image-host domU with libvirt-python.

Settings (``[dom0s.NAME.hypervisor]``): ``uri``, the libvirt connection URI of that dom0
(``xen+ssh://root@dom0/system``, ``qemu+ssh://…``, ``qemu+libssh://…?known_hosts=…``, ``qemu:///system``);
``bus`` (default ``virtio``; ``xen`` for Xen PV); ``target_prefix`` (default ``xvd`` for the ``xen`` bus,
``vd`` otherwise).

With ``[dom0s.NAME] locate = "new-device"`` the ``<disk>`` carries no ``<serial>`` (what a Xen PV disk
looks like to its guest) and the disk is found again, for detach, by its ``<source>``.

CD-ROM drives of owners' VMs: :meth:`LibvirtHypervisor.insert_cd` / :meth:`~LibvirtHypervisor.eject_cd`
change the ``<source>`` of the domain's ``<disk device='cdrom'>`` with ``virDomainUpdateDeviceFlags``,
``VIR_DOMAIN_AFFECT_CONFIG`` (the persistent definition) plus ``VIR_DOMAIN_AFFECT_LIVE`` when the domain runs.
A domain's owner is read from its libvirt ``<metadata>``: an element ``<owner>`` in the namespace
:data:`OWNER_NS` (``virsh metadata DOMAIN --uri urn:isoadmin:domain --key isoadmin --set
'<owner>alice</owner>'`` writes it).

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


#: Namespace of isoadmin's element in a domain's libvirt ``<metadata>`` (``<owner>NAME</owner>``).
OWNER_NS = "urn:isoadmin:domain"


def disk_xml(device: str, target: str, serial: str, bus: str = "virtio") -> str:
    """The ``<disk>`` element (libvirt domain XML) for a raw volume at ``device`` (a block device, or a file
    if not in /dev); no ``<serial>`` element when ``serial`` is ""."""
    kind, attr = ("block", "dev") if device.startswith("/dev/") else ("file", "file")
    return (f"<disk type='{kind}' device='disk'><driver name='qemu' type='raw' cache='none'/>"
            f"<source {attr}={quoteattr(device)}/><target dev={quoteattr(target)} bus={quoteattr(bus)}/>"
            + (f"<serial>{escape(serial)}</serial>" if serial else "") + "</disk>")


def source_of(disk: ET.Element) -> str:
    """A ``<disk>`` element's source path (``dev`` or ``file``), "" when it has none (an empty drive)."""
    source = disk.find("source")
    return "" if source is None else (source.get("dev") or source.get("file") or "")


def disk_by_source(domain_xml: str, device: str) -> ET.Element | None:
    """The ``<disk device='disk'>`` of a domain's XML whose source is ``device``, or None."""
    for disk in ET.fromstring(domain_xml).iter("disk"):
        if disk.get("device", "disk") == "disk" and source_of(disk) == device:
            return disk
    return None


def cdrom_xml(drive: ET.Element, device: str) -> str:
    """The CD-ROM ``<disk>`` element ``drive`` with its source set to ``device`` ("" = empty drive), for
    ``virDomainUpdateDeviceFlags`` (libvirt matches the drive by its ``<target>``)."""
    disk = ET.fromstring(ET.tostring(drive, encoding="unicode"))
    for old in disk.findall("source"):
        disk.remove(old)
    if device:
        kind, attr = ("block", "dev") if device.startswith("/dev/") else ("file", "file")
        disk.set("type", kind)
        source = ET.Element("source", {attr: device})
        disk.insert(1 if disk.find("driver") is not None else 0, source)
    if disk.find("readonly") is None:
        ET.SubElement(disk, "readonly")
    return ET.tostring(disk, encoding="unicode")


def cdrom_drive(domain_xml: str) -> ET.Element | None:
    """The first ``<disk device='cdrom'>`` of a domain's XML, or None."""
    return next((d for d in ET.fromstring(domain_xml).iter("disk") if d.get("device") == "cdrom"), None)


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
        self.prefix = str(dom0.hypervisor.get("target_prefix", "xvd" if self.bus == "xen" else "vd"))
        if not self.prefix.isalpha():
            raise ConfigError(f"dom0s.{dom0.name}.hypervisor.target_prefix must be letters (vd, xvd, sd)")
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
        return str(cmd("virsh", "-c", self.uri, "attach-disk", domain, device, f"{self.prefix}X",
                       "--targetbus", self.bus, *(("--serial", serial) if self.with_serial else ()),
                       "--cache", "none", "--live"))

    def describe_detach(self, domain: str, serial: str) -> str:
        what = f"<disk with serial {serial}>" if self.with_serial else "<disk with that source>"
        return str(cmd("virsh", "-c", self.uri, "detach-disk", domain, what, "--live"))

    async def attach(self, domain: str, device: str, serial: str) -> None:
        self.host.guard(cmd("virsh", "attach-disk", domain, device, "--serial", serial, mutating=True,
                            label="attach"))
        await asyncio.to_thread(self._attach, domain, device, serial)

    def _attach(self, domain: str, device: str, serial: str) -> None:
        import libvirt

        dom = self._domain(domain)
        xml = dom.XMLDesc(0)
        used = {t.get("dev") for t in ET.fromstring(xml).iter("target")}
        prefix = self.prefix
        target = next((f"{prefix}{c}" for c in "bcdefghijklmnopqrstuvwxyz" if f"{prefix}{c}" not in used), None)
        if target is None:
            raise HostError(self.host.name, f"domain {domain} has no free disk target")
        if serial in disks_by_serial(xml):
            raise HostError(self.host.name, f"a disk with serial {serial} is already attached to {domain}")
        if disk_by_source(xml, device) is not None:
            raise HostError(self.host.name, f"{device} is already attached to {domain}")
        try:
            dom.attachDeviceFlags(disk_xml(device, target, serial if self.with_serial else "", self.bus),
                                  libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as exc:
            raise HostError(self.host.name, f"attach to {domain} failed: {exc.get_error_message()}") from None

    async def detach(self, domain: str, serial: str, timeout: float = 30.0, device: str = "") -> None:
        self.host.guard(cmd("virsh", "detach-disk", domain, serial or device, mutating=True, label="detach"))
        await asyncio.to_thread(self._detach, domain, serial, timeout, device)

    def _detach(self, domain: str, serial: str, timeout: float, device: str = "") -> None:
        import libvirt

        def find(xml: str) -> ET.Element | None:
            disk = disks_by_serial(xml).get(serial) if serial else None
            if disk is None and device:
                disk = disk_by_source(xml, device)
                if disk is not None and disk.findtext("serial"):
                    return None  # another job's disk (it has a serial): never ours without one
            return disk

        dom = self._domain(domain)
        disk = find(dom.XMLDesc(0))
        if disk is None:
            return  # not attached: nothing to do
        try:
            dom.detachDeviceFlags(ET.tostring(disk, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as exc:
            if find(dom.XMLDesc(0)) is not None:
                raise HostError(self.host.name, f"detach from {domain} failed: {exc.get_error_message()}") from None
        deadline = time.monotonic() + timeout
        while find(dom.XMLDesc(0)) is not None:
            if time.monotonic() > deadline:
                raise HostError(self.host.name, f"disk {serial or device} still attached to {domain} after "
                                                f"{timeout:.0f} s: guest is busy")
            time.sleep(0.1)

    async def attached(self, domain: str) -> list[str]:
        xml = await asyncio.to_thread(lambda: self._domain(domain).XMLDesc(0))
        return list(disks_by_serial(xml))

    async def attached_sources(self, domain: str) -> list[str]:
        """Sources of ``domain``'s disks (not CD-ROMs) that have no serial."""
        xml = await asyncio.to_thread(lambda: self._domain(domain).XMLDesc(0))
        return [source_of(d) for d in ET.fromstring(xml).iter("disk")
                if d.get("device", "disk") == "disk" and not d.findtext("serial") and source_of(d)]

    def _domain_xmls(self) -> list[tuple[str, list]]:
        """Every domain (running or defined) with its live and, when both exist, persistent XML, parsed.
        Blocking: call it in a thread."""
        import libvirt

        out = []
        for dom in self._connection().listAllDomains(0):
            try:
                xmls = [dom.XMLDesc(0)]
                if dom.isActive() and dom.isPersistent():
                    xmls.append(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            except libvirt.libvirtError:
                continue
            out.append((dom.name(), [ET.fromstring(xml) for xml in xmls]))
        return out

    async def users(self, device: str) -> list[str]:
        """Domains (running or defined) whose XML — live or persistent — has a disk or CD-ROM with
        ``device`` as its source."""
        def scan() -> list[str]:
            return [name for name, trees in self._domain_xmls()
                    if any(device in (s.get("dev"), s.get("file")) for t in trees for s in t.iter("source"))]
        return await asyncio.to_thread(scan)

    async def boot_users(self, prefix: str) -> list[str]:
        """Domains whose live or persistent ``<os><kernel>`` or ``<initrd>`` starts with ``prefix``."""
        def scan() -> list[str]:
            return [name for name, trees in self._domain_xmls()
                    if any((os_.findtext(tag) or "").startswith(prefix)
                           for t in trees for os_ in t.iter("os") for tag in ("kernel", "initrd"))]
        return await asyncio.to_thread(scan)

    async def domains(self) -> list[str]:
        """Every domain of the dom0, running or defined."""
        return await asyncio.to_thread(lambda: sorted(d.name() for d in self._connection().listAllDomains(0)))

    async def domain_owner(self, domain: str) -> str:
        """The ``<owner>`` of :data:`OWNER_NS` in ``domain``'s ``<metadata>``, "" when there is none."""
        def read() -> str:
            import libvirt

            dom = self._domain(domain)
            try:
                text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, OWNER_NS, 0)
            except libvirt.libvirtError:
                return ""  # no such element
            try:
                return (ET.fromstring(text).text or "").strip()
            except ET.ParseError:
                return ""
        return await asyncio.to_thread(read)

    def _persistent_cdrom(self, domain: str):
        import libvirt

        dom = self._domain(domain)
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if dom.isPersistent() else 0
        drive = cdrom_drive(dom.XMLDesc(flags))
        if drive is None:
            raise HostError(self.host.name, f"domain {domain} has no CD-ROM drive")
        return dom, drive

    async def cdrom(self, domain: str) -> str:
        """Source of ``domain``'s CD-ROM drive as its live XML (running) or definition shows it."""
        def read() -> str:
            dom = self._domain(domain)
            drive = cdrom_drive(dom.XMLDesc(0))
            if drive is None:
                raise HostError(self.host.name, f"domain {domain} has no CD-ROM drive")
            return source_of(drive)
        return await asyncio.to_thread(read)

    def _update_cdrom(self, domain: str, device: str) -> str:
        import libvirt

        dom, drive = self._persistent_cdrom(domain)
        flags = 0
        if dom.isPersistent():
            flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
        if dom.isActive():
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
            live = cdrom_drive(dom.XMLDesc(0))
            drive = live if live is not None else drive
        before = source_of(drive)
        try:
            dom.updateDeviceFlags(cdrom_xml(drive, device), flags)
        except libvirt.libvirtError as exc:
            raise HostError(self.host.name, f"CD-ROM of {domain}: {exc.get_error_message()}") from None
        return before

    async def insert_cd(self, domain: str, device: str) -> None:
        self.host.guard(cmd("virsh", "change-media", domain, "CDROM", device, "--insert", "--live", "--config",
                            mutating=True, label="insert-cd"))
        await asyncio.to_thread(self._update_cdrom, domain, device)

    async def eject_cd(self, domain: str) -> str:
        self.host.guard(cmd("virsh", "change-media", domain, "CDROM", "--eject", "--live", "--config",
                            mutating=True, label="eject-cd"))
        return await asyncio.to_thread(self._update_cdrom, domain, "")
