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
    async def detach(self, domain: str, serial: str, timeout: float = 30.0, device: str = "") -> None:
        """Unplug the disk with ``serial`` (or, for a disk attached without one under
        ``locate = "new-device"``, the disk whose source is ``device``) and return only once it is gone.

        Raises:
            HostError: the disk is still attached after ``timeout`` seconds ("guest is busy").
        """

    @abc.abstractmethod
    async def users(self, device: str) -> list[str]:
        """Names of the domains (any VM, running or defined) that have ``device`` as a disk."""

    @abc.abstractmethod
    async def attached(self, domain: str) -> list[str]:
        """Serials of the disks currently hot-plugged into ``domain`` by this driver's conventions."""

    async def attached_sources(self, domain: str) -> list[str]:
        """Source paths (on the dom0) of the disks hot-plugged into ``domain`` without a serial."""
        return []

    @property
    def with_serial(self) -> bool:
        """False when the dom0's ``locate`` is ``new-device``: disks are hot-plugged without a serial, as a
        Xen PV disk shows its guest."""
        return getattr(self.dom0, "locate", "serial") != "new-device"

    async def boot_users(self, prefix: str) -> list[str]:
        """Domains (running or defined) that boot a kernel or ramdisk whose path starts with ``prefix``
        (libvirt ``<os><kernel>`` / ``<initrd>``)."""
        return []

    # CD-ROM drives of owners' VMs (``insert-cd`` / ``eject-cd``)

    async def domains(self) -> list[str]:
        """Names of the dom0's domains (running or defined)."""
        return []

    async def domain_owner(self, domain: str) -> str:
        """The owner recorded in ``domain`` itself (libvirt ``<metadata>``), or "" when none is.

        Raises:
            HostError: no such domain, or the hypervisor is unreachable.
        """
        return ""

    async def cdrom(self, domain: str) -> str:
        """The source path (on the dom0) of ``domain``'s CD-ROM drive, "" when it is empty.

        Raises:
            HostError: no such domain or it has no CD-ROM drive.
        """
        raise NotImplementedError

    async def insert_cd(self, domain: str, device: str) -> None:
        """Put the volume at ``device`` (a path on the dom0) into ``domain``'s CD-ROM drive, in the running
        domain and in its persistent config.

        Raises:
            ReadOnlyError, HostError: nothing changed.
        """
        raise NotImplementedError

    async def eject_cd(self, domain: str) -> str:
        """Empty ``domain``'s CD-ROM drive (live and persistent); return the source it held ("" if none).

        Raises:
            ReadOnlyError, HostError: nothing changed.
        """
        raise NotImplementedError
