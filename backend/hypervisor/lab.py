"""Hypervisor driver ``lab``: hot-plug as the embedded lab does it.

The lab's image host is a folder on the same machine. Attaching volume ``V`` with serial ``S`` makes
``<guest disk dir>/virtio-S`` a symlink to ``V`` — the shape of ``/dev/disk/by-id`` inside a real VM —
and detaching removes it and checks it is gone. The commands run on the dom0 over SSH like every other.

Settings (``[dom0s.NAME.hypervisor]``): ``guest_disk_dirs``: domain name → that guest's by-id folder.
"""

from __future__ import annotations

import asyncio

from ..commands import cmd, script
from ..errors import ConfigError, HostError
from .base import HypervisorDriver

_DETACH = r"""
link=$1
rm -f -- "$link"
[ ! -e "$link" ] && [ ! -L "$link" ]
"""


class LabHypervisor(HypervisorDriver):
    """By-id symlinks standing in for virtio disks (see module docstring)."""

    kind = "lab"

    def __init__(self, dom0, host) -> None:
        super().__init__(dom0, host)
        dirs = dom0.hypervisor.get("guest_disk_dirs", {})
        if not isinstance(dirs, dict) or not dirs:
            raise ConfigError(f"dom0s.{dom0.name}.hypervisor.guest_disk_dirs must map domain names to folders")
        self.dirs = {str(k): str(v).rstrip("/") for k, v in dirs.items()}

    def _link(self, domain: str, serial: str) -> str:
        if domain not in self.dirs:
            raise ConfigError(f"dom0s.{self.dom0.name}.hypervisor.guest_disk_dirs has no domain {domain!r}")
        return f"{self.dirs[domain]}/virtio-{serial}"

    def describe_attach(self, domain: str, device: str, serial: str) -> str:
        return str(cmd("ln", "-s", "--", device, self._link(domain, serial)))

    def describe_detach(self, domain: str, serial: str) -> str:
        return str(cmd("rm", "-f", "--", self._link(domain, serial)))

    async def attach(self, domain: str, device: str, serial: str) -> None:
        await self.host.run(cmd("ln", "-s", "--", device, self._link(domain, serial), mutating=True, label="attach"))

    async def detach(self, domain: str, serial: str, timeout: float = 30.0) -> None:
        try:
            await asyncio.wait_for(
                self.host.run(script(_DETACH, "isoadmin-detach", self._link(domain, serial), mutating=True)),
                timeout)
        except asyncio.TimeoutError:
            raise HostError(self.host.name, f"detach of {serial} from {domain} did not complete in "
                                            f"{timeout:.0f} s: guest is busy") from None

    async def attached(self, domain: str) -> list[str]:
        """Serials of this dom0's volumes linked into ``domain`` (links into other dom0s' storage are
        theirs: in the lab every dom0 shares the one image host)."""
        result = await self.host.run(cmd("find", self.dirs.get(domain, "/nonexistent"), "-maxdepth", "1",
                                         "-name", "virtio-*", "-printf", "%f %l\\n"), check=False)
        mine = str(self.dom0.storage.get("directory", "")).rstrip("/") + "/"
        serials = []
        for line in result.stdout.decode("utf-8", "replace").splitlines():
            name, _, target = line.partition(" ")
            if target.startswith(mine):
                serials.append(name[len("virtio-"):])
        return serials

    async def users(self, device: str) -> list[str]:
        """Lab domains with a by-id link to ``device``."""
        found = []
        for domain, folder in self.dirs.items():
            result = await self.host.run(cmd("find", folder, "-maxdepth", "1", "-name", "virtio-*",
                                             "-printf", "%l\\n"), check=False)
            if device in result.stdout.decode("utf-8", "replace").splitlines():
                found.append(domain)
        return found
