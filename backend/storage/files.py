"""Storage driver ``files``: one sparse file per volume in a folder of the dom0, metadata in a sidecar.

Settings (``[dom0s.NAME.storage]``): ``directory`` (absolute path), ``capacity`` (bytes or ``"64 GiB"``;
0 = the file system's size), ``unit`` (allocation unit, default 4 MiB like an LVM extent).
Volume ``N`` is ``DIR/N.img``; its metadata is one line of JSON in ``DIR/N.meta``.
"""

from __future__ import annotations

import asyncio
import json

from ..commands import Command, cmd, script
from ..config import parse_size
from ..errors import ConfigError, HostError
from ..hostscripts import load
from ..models import StorageReport, Volume
from .base import StorageDriver, encode_meta

# The ``files`` storage's scripts (backend/sh/files-*.sh); those that write metadata start with lib-put-meta.sh.
_LIST = load("files-list.sh")
_PUT_META = load("lib-put-meta.sh")
_CREATE = load("lib-put-meta.sh", "files-create.sh")
_RENAME = load("lib-put-meta.sh", "files-rename.sh")
_WRITE_META = load("lib-put-meta.sh", "files-write-meta.sh")


class FilesStorage(StorageDriver):
    """Sparse files in a folder of the dom0 (the embedded lab's storage; also usable on a real host)."""

    kind = "files"

    def __init__(self, dom0, host) -> None:
        super().__init__(dom0, host)
        settings = dom0.storage
        directory = str(settings.get("directory", ""))
        if not directory.startswith("/"):
            raise ConfigError(f"dom0s.{dom0.name}.storage.directory must be an absolute path")
        self.directory = directory.rstrip("/")
        self.capacity = parse_size(settings.get("capacity", 0), f"dom0s.{dom0.name}.storage.capacity")
        self.unit = parse_size(settings.get("unit", 4 << 20), f"dom0s.{dom0.name}.storage.unit") or 1
        self._metas: dict[str, dict] = {}

    def device_path(self, name: str) -> str:
        return f"{self.directory}/{name}.img"

    def _decoded(self, text: str) -> dict:
        """The metadata dict of one ``.meta`` line, parsed once per distinct text (a big dom0 lists
        thousands at every refresh). The dict is shared between snapshots: treat it as read-only."""
        meta = self._metas.get(text)
        if meta is None:
            try:
                meta = json.loads(text)
            except ValueError:
                meta = None
            if not isinstance(meta, dict):
                meta = {"broken": text[:200]}
            if len(self._metas) > 100_000:
                self._metas.clear()
            self._metas[text] = meta
        return meta

    async def report(self) -> StorageReport:
        result = await self.host.run(script(_LIST, "isoadmin-volumes", self.directory))
        return await asyncio.to_thread(self._parse, result.stdout)  # thousands of volumes: off the event loop

    def _parse(self, stdout: bytes) -> StorageReport:
        fs_size = fs_avail = 0
        sizes: dict[str, int] = {}
        metas: dict[str, dict] = {}
        for raw in stdout.decode("utf-8", "replace").splitlines():
            kind, _, rest = raw.partition(" ")
            if kind == "df":
                fs_size, fs_avail = (int(x) for x in rest.split())
            elif kind == "img":
                size, _, fname = rest.partition(" ")
                sizes[fname.removeprefix("./")[:-4]] = int(size)
            elif kind == "meta" and rest.startswith("./"):
                fname, _, text = rest[2:].partition(":")
                metas[fname[:-5]] = self._decoded(text)
        if not fs_size and not sizes:
            raise HostError(self.host.name, f"cannot list {self.directory}")
        volumes = [
            Volume(self.dom0.name, name, self.namespace(name), size, self.device_path(name), metas.get(name, {}))
            for name, size in sorted(sizes.items())
        ]
        used = sum(sizes.values())
        capacity = self.capacity or fs_size
        free = max(0, min(capacity - used, fs_avail))
        return StorageReport(capacity, free, self.unit, volumes)

    def create_command(self, name: str, size: int, meta: dict) -> tuple[Command, bytes | None]:
        return (script(_CREATE, "isoadmin-create", self.directory, name, str(size), encode_meta(meta),
                       mutating=True), None)

    def rename_command(self, old: str, new: str, meta: dict) -> tuple[Command, bytes | None]:
        return (script(_RENAME, "isoadmin-rename", self.directory, old, new, encode_meta(meta), mutating=True),
                None)

    async def write_meta(self, name: str, meta: dict) -> None:
        await self.host.run(script(_WRITE_META, "isoadmin-meta", self.directory, name, encode_meta(meta),
                                   mutating=True))

    def remove_command(self, name: str) -> Command:
        return cmd("rm", "-f", "--", self.device_path(name), f"{self.directory}/{name}.meta",
                   mutating=True, label="remove")
