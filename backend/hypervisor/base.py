"""The hypervisor driver interface: attach / detach a volume to / from a domU by serial."""

from __future__ import annotations

import abc

from ..config import Dom0Config
from ..ssh import Host


class HypervisorDriver(abc.ABC):
    """Hot-plug on one dom0.

    A disk is identified by its ``serial`` (at most 20 bytes: virtio-blk cuts longer ones), which the
    guest exposes in ``/sys/block/*/serial`` and ``/dev/disk/by-id``; that is how the image host finds it.
    """

    kind = "?"

    def __init__(self, dom0: Dom0Config, host: Host) -> None:
        self.dom0 = dom0
        self.host = host

    @abc.abstractmethod
    def describe_attach(self, domain: str, device: str, serial: str) -> str:
        """The attach step as a sysadmin would type it (for the approval plan)."""

    @abc.abstractmethod
    def describe_detach(self, domain: str, serial: str) -> str:
        """The detach step as a sysadmin would type it (for the approval plan)."""

    @abc.abstractmethod
    async def attach(self, domain: str, device: str, serial: str) -> None:
        """Hot-plug ``device`` (a path on the dom0) into ``domain`` with ``serial``.

        Raises:
            ReadOnlyError, HostError, CommandFailed: nothing was attached.
        """

    @abc.abstractmethod
    async def detach(self, domain: str, serial: str, timeout: float = 30.0) -> None:
        """Unplug the disk with ``serial`` and return only once it is gone.

        Raises:
            HostError: the disk is still attached after ``timeout`` seconds ("guest is busy").
        """

    @abc.abstractmethod
    async def users(self, device: str) -> list[str]:
        """Names of the domains (any VM, running or defined) that have ``device`` as a disk."""

    @abc.abstractmethod
    async def attached(self, domain: str) -> list[str]:
        """Serials of the disks currently hot-plugged into ``domain`` by this driver's conventions."""
