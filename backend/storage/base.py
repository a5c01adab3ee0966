"""The storage driver interface: list, create, rename, remove volumes on one dom0."""

from __future__ import annotations

import abc
import json

from ..commands import Command
from ..config import Dom0Config
from ..errors import CapacityShort
from ..models import StorageReport, Volume
from ..ssh import Host

CREATED_BY = "isoadmin"


def round_up(size: int, unit: int) -> int:
    """Round ``size`` bytes up to a whole number of ``unit`` bytes (at least one unit)."""
    return max(1, -(-size // unit)) * unit


def encode_meta(meta: dict) -> str:
    """Serialise volume metadata as one line of JSON (sorted keys, ASCII only)."""
    return json.dumps(meta, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


class StorageDriver(abc.ABC):
    """Volumes of one dom0, reached through its :class:`~backend.ssh.Host`.

    Every method sends at most one command per call except where noted; every mutating command is a
    ``mutating`` :class:`~backend.commands.Command`, so read-only sessions refuse it before sending.
    A volume's metadata (see :class:`~backend.models.Volume`) is stored with it so the dom0 describes
    itself.
    """

    kind = "?"

    def __init__(self, dom0: Dom0Config, host: Host) -> None:
        self.dom0 = dom0
        self.host = host

    def namespace(self, name: str) -> str:
        """``staging``, ``final`` or ``other`` by the configured prefixes."""
        if name.startswith(self.dom0.staging_prefix):
            return "staging"
        if name.startswith(self.dom0.final_prefix):
            return "final"
        return "other"

    def owns(self, volume: Volume) -> bool:
        """True when isoadmin created ``volume`` (prefix and the ``created_by`` mark both match)."""
        return volume.namespace in ("staging", "final") and volume.meta.get("created_by") == CREATED_BY

    @abc.abstractmethod
    async def report(self) -> StorageReport:
        """List capacity, free space and volumes with one command.

        Raises:
            HostError: the dom0 is unreachable or the listing failed.
        """

    @abc.abstractmethod
    def device_path(self, name: str) -> str:
        """The path on the dom0 through which the volume's bytes are reached (hot-plug source)."""

    @abc.abstractmethod
    def create_command(self, name: str, size: int, meta: dict) -> tuple[Command, bytes | None]:
        """The command (and its stdin) that creates volume ``name`` of ``size`` bytes with ``meta``."""

    @abc.abstractmethod
    def rename_command(self, old: str, new: str, meta: dict) -> tuple[Command, bytes | None]:
        """The command (and its stdin) that renames ``old`` to ``new`` and replaces its metadata."""

    @abc.abstractmethod
    def remove_command(self, name: str) -> Command:
        """The command that removes volume ``name``."""

    async def check_capacity(self, size: int, report: StorageReport | None = None) -> int:
        """Return ``size`` rounded up to the allocation unit if it fits, else raise.

        ``report`` is a fresh :meth:`report` if the caller has one (else one is made).

        Raises:
            CapacityShort: the storage's free space is less than the rounded size (numbers in the
                message); nothing is created.
            HostError: the dom0 cannot be listed.
        """
        report = report or await self.report()
        need = round_up(size, report.unit)
        if need > report.free:
            from humanize import naturalsize

            raise CapacityShort(
                f"{self.dom0.name}: needs {naturalsize(need, binary=True)} ({need} B), "
                f"only {naturalsize(report.free, binary=True)} ({report.free} B) free"
            )
        return need

    async def create(self, name: str, size: int, meta: dict) -> None:
        """Create volume ``name`` of ``size`` bytes (already rounded) carrying ``meta``.

        Raises:
            CommandFailed: it exists already (exit 17) or the dom0 refused.
        """
        command, stdin = self.create_command(name, size, meta)
        await self.host.run(command, input=stdin)

    async def rename(self, old: str, new: str, meta: dict) -> None:
        """Rename ``old`` → ``new`` (never overwriting) and store ``meta`` with it."""
        command, stdin = self.rename_command(old, new, meta)
        await self.host.run(command, input=stdin)

    @abc.abstractmethod
    async def write_meta(self, name: str, meta: dict) -> None:
        """Replace volume ``name``'s metadata with ``meta`` (``repair`` of a volume a crash left without it).

        Raises:
            HostError, CommandFailed: the volume does not exist or the dom0 refused.
        """

    async def remove(self, name: str) -> None:
        """Remove volume ``name``; callers check :meth:`owns` first."""
        await self.host.run(self.remove_command(name))
