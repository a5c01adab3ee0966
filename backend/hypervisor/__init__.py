"""Hypervisor drivers: hot-plug a dom0's volume into the image-host VM. ``lab`` (embedded lab), ``libvirt``."""

from __future__ import annotations

from ..config import Dom0Config, pick_driver
from ..ssh import Host
from .base import HypervisorDriver
from .lab import LabHypervisor
from .libvirt import LibvirtHypervisor

DRIVERS: dict[str, type[HypervisorDriver]] = {"lab": LabHypervisor, "libvirt": LibvirtHypervisor}


def make_hypervisor(dom0: Dom0Config, host: Host) -> HypervisorDriver:
    """Build the hypervisor driver a dom0's config names.

    Raises:
        ConfigError: unknown driver, or its settings are wrong.
    """
    return pick_driver(dom0, "hypervisor", DRIVERS)(dom0, host)


__all__ = ["HypervisorDriver", "LabHypervisor", "LibvirtHypervisor", "make_hypervisor", "DRIVERS"]
