"""Storage drivers: where a dom0 keeps volumes. ``files`` (sparse files; the embedded lab), ``lvm`` (LVs)."""

from __future__ import annotations

from ..config import Dom0Config, pick_driver
from ..ssh import Host
from .base import StorageDriver
from .files import FilesStorage
from .lvm import LvmStorage

DRIVERS: dict[str, type[StorageDriver]] = {"files": FilesStorage, "lvm": LvmStorage}


def make_storage(dom0: Dom0Config, host: Host) -> StorageDriver:
    """Build the storage driver a dom0's config names.

    Raises:
        ConfigError: unknown driver, or its settings are wrong.
    """
    return pick_driver(dom0, "storage", DRIVERS)(dom0, host)


__all__ = ["StorageDriver", "FilesStorage", "LvmStorage", "make_storage", "DRIVERS"]
