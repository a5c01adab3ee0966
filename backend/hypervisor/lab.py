"""Hypervisor driver ``lab``: hot-plug as the embedded lab does it.

The lab's image host is a folder on the same machine. Attaching volume ``V`` with serial ``S`` makes
``<guest disk dir>/virtio-S`` a symlink to ``V`` — the shape of ``/dev/disk/by-id`` inside a real VM —
and detaching removes it and checks it is gone. The commands run on the dom0 over SSH like every other.

Settings (``[dom0s.NAME.hypervisor]``): ``guest_disk_dirs``: domain name → that guest's by-id folder;
``guest_block_dirs`` / ``guest_dev_dirs``: domain name → that guest's ``/sys/block`` and ``/dev`` folders,
for ``[dom0s.NAME] locate = "new-device"``: attaching then makes a new ``xvdX`` device (``SYS/xvdX/size``
in 512-byte sectors, ``DEV/xvdX`` a symlink to the volume) and no by-id link, as a Xen PV disk shows no
serial; ``vm_dir``: the dom0's owners' VMs, one folder each (``NAME/owner`` holds its owner, the lab's
equivalent of libvirt ``<metadata>``; ``NAME/cdrom`` is a symlink to the volume in its CD-ROM drive;
``NAME/kernel`` and ``NAME/initrd``, links to the files it boots, as libvirt ``<os><kernel>``).
"""

from __future__ import annotations

import asyncio

from .. import hosttools
from ..commands import cmd, script
from ..errors import ConfigError, HostError
from ..hostscripts import load
from .base import HypervisorDriver

# The lab hypervisor's scripts (backend/sh/hv-lab-*.sh).
_DETACH = load("hv-lab-detach.sh")
_ATTACH_NEW = load("hv-lab-attach-new.sh")
_DETACH_NEW = load("hv-lab-detach-new.sh")
_INSERT = load("hv-lab-insert-cd.sh")
_EJECT = load("hv-lab-eject-cd.sh")
_OWNER = load("hv-lab-owner.sh")
_CDROM = load("hv-lab-cdrom.sh")
_LINKS = load("hv-lab-links.sh")


class LabHypervisor(HypervisorDriver):
    """By-id symlinks standing in for virtio disks (see module docstring)."""

    kind = "lab"

    def __init__(self, dom0, host) -> None:
        super().__init__(dom0, host)
        dirs = dom0.hypervisor.get("guest_disk_dirs", {})
        if not isinstance(dirs, dict) or not dirs:
            raise ConfigError(f"dom0s.{dom0.name}.hypervisor.guest_disk_dirs must map domain names to folders")
        self.dirs = {str(k): str(v).rstrip("/") for k, v in dirs.items()}
        self.block_dirs = {str(k): str(v).rstrip("/") for k, v in dom0.hypervisor.get("guest_block_dirs", {}).items()}
        self.dev_dirs = {str(k): str(v).rstrip("/") for k, v in dom0.hypervisor.get("guest_dev_dirs", {}).items()}
        self.vm_dir = str(dom0.hypervisor.get("vm_dir", "")).rstrip("/")

    def _new_device_dirs(self, domain: str) -> tuple[str, str]:
        if domain not in self.block_dirs or domain not in self.dev_dirs:
            raise ConfigError(f"dom0s.{self.dom0.name}.hypervisor.guest_block_dirs and guest_dev_dirs need "
                              f"domain {domain!r} for locate = \"new-device\"")
        return self.block_dirs[domain], self.dev_dirs[domain]

    def _vm(self, domain: str) -> str:
        if not self.vm_dir or "/" in domain or domain in (".", ".."):
            raise HostError(self.host.name, f"no domain {domain!r} on {self.dom0.name}")
        return f"{self.vm_dir}/{domain}"

    def _link(self, domain: str, serial: str) -> str:
        if domain not in self.dirs:
            raise ConfigError(f"dom0s.{self.dom0.name}.hypervisor.guest_disk_dirs has no domain {domain!r}")
        return f"{self.dirs[domain]}/virtio-{serial}"

    def describe_attach(self, domain: str, device: str, serial: str) -> str:
        if not self.with_serial:
            sys_block, dev_dir = self._new_device_dirs(domain)
            return f"new device {dev_dir}/xvdX -> {device}, {sys_block}/xvdX/size (no serial)"
        return str(cmd("ln", "-s", "--", device, self._link(domain, serial)))

    def describe_detach(self, domain: str, serial: str) -> str:
        if not self.with_serial:
            return f"remove the xvd device of the volume from {domain}"
        return str(cmd("rm", "-f", "--", self._link(domain, serial)))

    async def attach(self, domain: str, device: str, serial: str) -> None:
        if not self.with_serial:
            await self.host.run(script(_ATTACH_NEW, "isoadmin-lab-attach", device, *self._new_device_dirs(domain),
                                       mutating=True))
            return
        await self.host.run(cmd("ln", "-s", "--", device, self._link(domain, serial), mutating=True, label="attach"))

    async def detach(self, domain: str, serial: str, timeout: float = 30.0, device: str = "") -> None:
        if device and domain in self.block_dirs and domain in self.dev_dirs:
            await self.host.run(script(_DETACH_NEW, "isoadmin-lab-detach", device, *self._new_device_dirs(domain),
                                       mutating=True))
        if not serial:
            return
        try:
            await asyncio.wait_for(
                self.host.run(script(_DETACH, "isoadmin-detach", self._link(domain, serial), mutating=True)),
                timeout)
        except asyncio.TimeoutError:
            raise HostError(self.host.name, f"detach of {serial} from {domain} did not complete in "
                                            f"{timeout:.0f} s: guest is busy") from None

    async def _gnu_find(self, *argv: str) -> bytes | None:
        """Run ``find ARGV`` (a GNU ``-printf`` listing) on the dom0, unless its ``find`` is known to have no
        ``-printf`` (BusyBox; learnt from its refusal, :func:`~backend.hosttools.set_portable`).

        Returns:
            its stdout, or None when the dom0 needs the portable script (:meth:`_links`) instead.
        """
        if hosttools.is_portable(self.host):
            return None
        result = await self.host.run(cmd("find", *argv), check=False)
        if result.exit_status != 0 and "-printf" in result.stderr:
            hosttools.set_portable(self.host, True)
            return None
        return result.stdout

    async def _links(self, folder: str, depth: int, *patterns: str) -> list[tuple[str, str, str]]:
        """The symlinks in ``folder`` (``depth`` 1) or in its subfolders (2) whose names match a glob of
        ``patterns``, read by ``backend/sh/hv-lab-links.sh`` (never followed): what the ``find -printf``
        listings give, on a dom0 whose ``find`` has no ``-printf``.

        Returns:
            (the name of the folder holding it, its name, its target) for each.
        """
        result = await self.host.run(script(_LINKS, "isoadmin-lab-links", folder, str(depth), *patterns), check=False)
        out = []
        for line in result.stdout.decode("utf-8", "surrogateescape").splitlines():
            parent, _, rest = line.partition(" ")
            name, _, target = rest.partition(" ")
            out.append((parent, name, target))
        return out

    async def attached(self, domain: str) -> list[str]:
        """Serials of this dom0's volumes linked into ``domain`` (links into other dom0s' storage are
        theirs: in the lab every dom0 shares the one image host)."""
        folder = self.dirs.get(domain, "/nonexistent")
        out = await self._gnu_find(folder, "-maxdepth", "1", "-name", "virtio-*", "-printf", "%f %l\\n")
        if out is None:
            links = [(name, target) for _, name, target in await self._links(folder, 1, "virtio-*")]
        else:
            links = [line.partition(" ")[::2] for line in out.decode("utf-8", "replace").splitlines()]
        mine = str(self.dom0.storage.get("directory", "")).rstrip("/") + "/"
        return [name[len("virtio-"):] for name, target in links if target.startswith(mine)]

    async def attached_sources(self, domain: str) -> list[str]:
        """Volumes of this dom0 attached to ``domain`` as ``xvdX`` devices (``locate = "new-device"``)."""
        if domain not in self.dev_dirs:
            return []
        out = await self._gnu_find(self.dev_dirs[domain], "-maxdepth", "1", "-name", "xvd*", "-printf", "%l\\n")
        targets = ([t for _, _, t in await self._links(self.dev_dirs[domain], 1, "xvd*")] if out is None
                   else out.decode("utf-8", "replace").splitlines())
        mine = str(self.dom0.storage.get("directory", "")).rstrip("/") + "/"
        return [t for t in targets if t.startswith(mine)]

    async def users(self, device: str) -> list[str]:
        """Lab domains with a by-id link or an ``xvdX`` device to ``device``, and VMs with it in their
        CD-ROM drive."""
        found = []
        for domain, folder in self.dirs.items():
            folders = (folder, *([self.dev_dirs[domain]] if domain in self.dev_dirs else []))
            out = await self._gnu_find(*folders, "-maxdepth", "1", "(", "-name", "virtio-*", "-o", "-name", "xvd*",
                                       ")", "-printf", "%l\\n")
            if out is None:
                targets = [t for where in folders for _, _, t in await self._links(where, 1, "virtio-*", "xvd*")]
            else:
                targets = out.decode("utf-8", "replace").splitlines()
            if device in targets:
                found.append(domain)
        if self.vm_dir:
            out = await self._gnu_find(self.vm_dir, "-mindepth", "2", "-maxdepth", "2", "-name", "cdrom",
                                       "-printf", "%h %l\\n")
            if out is None:
                drives = [(vm, target) for vm, _, target in await self._links(self.vm_dir, 2, "cdrom")]
            else:
                drives = [(folder.rsplit("/", 1)[-1], target) for folder, _, target in
                          (line.partition(" ") for line in out.decode("utf-8", "surrogateescape").splitlines())]
            found += [vm for vm, target in drives if target == device]
        return found

    async def boot_users(self, prefix: str) -> list[str]:
        """VMs in ``vm_dir`` whose ``kernel`` or ``initrd`` link points under ``prefix``."""
        if not self.vm_dir:
            return []
        out = await self._gnu_find(self.vm_dir, "-mindepth", "2", "-maxdepth", "2", "(", "-name", "kernel", "-o",
                                   "-name", "initrd", ")", "-printf", "%h %l\\n")
        if out is None:
            links = [(vm, target) for vm, _, target in await self._links(self.vm_dir, 2, "kernel", "initrd")]
        else:
            links = [(folder.rsplit("/", 1)[-1], target) for folder, _, target in
                     (line.partition(" ") for line in out.decode("utf-8", "surrogateescape").splitlines())]
        found = []
        for vm, target in links:
            if target.startswith(prefix) and vm not in found:
                found.append(vm)
        return found

    async def domains(self) -> list[str]:
        """The image-host domains and the VMs in ``vm_dir``."""
        names = set(self.dirs)
        if self.vm_dir:
            result = await self.host.run(cmd("find", self.vm_dir, "-mindepth", "1", "-maxdepth", "1", "-type", "d"),
                                         check=False)
            names |= {line.rsplit("/", 1)[-1] for line in result.stdout.decode("utf-8", "surrogateescape").splitlines()}
        return sorted(names)

    async def domain_owner(self, domain: str) -> str:
        """The first line of ``vm_dir/DOMAIN/owner`` ("" when there is none).

        Raises:
            HostError: no such domain.
        """
        result = await self.host.run(script(_OWNER, "isoadmin-lab-owner", self._vm(domain)), check=False)
        if result.exit_status == 3:
            raise HostError(self.host.name, f"no domain {domain!r} on {self.dom0.name}")
        return result.stdout.decode("utf-8", "replace").strip()

    async def cdrom(self, domain: str) -> str:
        result = await self.host.run(script(_CDROM, "isoadmin-lab-cdrom", self._vm(domain)), check=False)
        if result.exit_status == 3:
            raise HostError(self.host.name, f"no domain {domain!r} on {self.dom0.name}")
        return result.stdout.decode("utf-8", "surrogateescape").strip()

    async def insert_cd(self, domain: str, device: str) -> None:
        await self.host.run(script(_INSERT, "isoadmin-insert-cd", self._vm(domain), device, mutating=True))

    async def eject_cd(self, domain: str) -> str:
        result = await self.host.run(script(_EJECT, "isoadmin-eject-cd", self._vm(domain), mutating=True))
        return result.stdout.decode("utf-8", "surrogateescape").strip()
