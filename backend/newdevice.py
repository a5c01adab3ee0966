"""Locating a hot-plugged disk that has no serial (``[dom0s.NAME] locate = "new-device"``).

A Xen PV disk (xen-blkfront) shows its guest no serial, so ``/sys/block/*/serial`` cannot name it. Instead
the image host's block devices are listed (``/sys/block``, one entry per whole disk; partitions are
below their disk) right before the attach; after the attach the disk is the one block device that was not
there before and whose size (``/sys/block/X/size``, always in 512-byte sectors whatever the disk's logical
block size, see the kernel's Documentation/ABI/stable/sysfs-block) is exactly the volume's. No new device,
or more than one of that size, fails the job with the names and sizes seen, and the job rolls back.

The listing taken before the attach is recorded in the job (``JobRecord.device_before``) so a console that
recovers the job knows which device was the job's. The console runs one attach-and-locate at a time per
image host; two consoles attaching same-sized disks to one image host at the same moment see two
candidates and fail rather than guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from .commands import script
from .errors import CommandFailed, HostError
from .hostscripts import load
from .ssh import Host

# backend/sh/newdevice-*.sh
_LIST = load("newdevice-list.sh")
_LOCATE_NEW = load("newdevice-locate.sh")


@dataclass(frozen=True, slots=True)
class BlockDevice:
    """One entry of the image host's ``/sys/block``: ``name`` (``vdb``, ``xvdb``; ``!`` stands for ``/``
    as in ``cciss!c0d0``) and ``size`` in bytes."""

    name: str
    size: int

    def path(self, dev_dir: str = "/dev") -> str:
        """The device node, e.g. ``/dev/xvdb``."""
        return f"{dev_dir.rstrip('/')}/{self.name.replace('!', '/')}"


def _parse(stdout: bytes) -> list[BlockDevice]:
    out = []
    for line in stdout.decode("utf-8", "surrogateescape").splitlines():
        name, _, size = line.partition(" ")
        if name and size.strip().isdigit():
            out.append(BlockDevice(name, int(size)))
    return out


async def block_devices(host: Host, sys_block: str = "/sys/block") -> list[BlockDevice]:
    """The image host's whole-disk block devices now (one command).

    Args:
        sys_block: the host's ``/sys/block`` (a folder of the embedded lab there).
    Returns:
        one :class:`BlockDevice` per entry with a readable ``size`` (sizes in bytes).
    Raises:
        HostError: the host is unreachable.
    """
    result = await host.run(script(_LIST, "isoadmin-block-devices", sys_block), check=False)
    if result.exit_status not in (0, None):
        raise HostError(host.name, f"cannot list {sys_block}")
    return [BlockDevice(d.name, d.size * 512) for d in _parse(result.stdout)]


async def locate_new(host: Host, before: list[str], size: int, sys_block: str = "/sys/block",
                     dev_dir: str = "/dev", timeout: float = 15.0) -> str:
    """Find the disk hot-plugged since ``before`` was listed: the one new block device of exactly ``size``.

    Polls every 0.1 s for ``timeout`` seconds until a new device of that size shows, then looks once more.

    Args:
        before: the device names listed before the attach (:func:`block_devices`).
        size: the volume's size in bytes (what the guest sees: the LV or file size).
    Returns:
        the device path inside the image host (``/dev/xvdb`` …).
    Raises:
        HostError: no new device of that size appeared in time, or several did (names and sizes given).
    """
    tries = max(1, int(timeout / 0.1))
    try:
        result = await host.run(script(_LOCATE_NEW, "isoadmin-locate-new", sys_block, str(size), str(tries),
                                       *before), timeout=timeout + 30)
    except CommandFailed as exc:
        raise HostError(host.name, f"cannot look for the new disk: {exc}") from None
    new = _parse(result.stdout)
    hits = [d for d in new if d.size == size]
    if len(hits) == 1:
        return hits[0].path(dev_dir)
    seen = ", ".join(f"{d.name} ({d.size} B)" for d in new) or "none"
    if not hits:
        raise HostError(host.name, f"no new block device of exactly {size} B appeared within {timeout:.0f} s "
                                   f"(new devices: {seen})")
    raise HostError(host.name, f"{len(hits)} new block devices of {size} B appeared ({seen}): cannot tell "
                               "which one is this job's disk")
