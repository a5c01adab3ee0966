"""Storage driver ``lvm``: volumes are logical volumes (LVs) of one volume group (VG) on the dom0.

Reads use ``vgs`` / ``lvs --reportformat json --units b --nosuffix`` (lvs(8), vgs(8)): one command per
refresh, JSON only (every value is a string; LVM prints warnings on stderr, which is ignored). An LV's
metadata lives in its LV tags (lvm(8) "VALID NAMES": tags allow ``[A-Za-z0-9_+.-/=!:&#]``, at most 128
characters): ``isoadmin:KEY=VALUE``, values outside that alphabet encoded as base32 (a leading ``!`` marks them)
and long values split over numbered tags (``isoadmin:KEY.0=…``, ``isoadmin:KEY.1=…``).

Settings (``[dom0s.NAME.storage]``):
    ``vg``: the volume group (required).
    ``vm_disk_pattern``: a regular expression with a named group ``owner`` recognising the owners' VM
        disks among the other LVs (default ``^d_(?P<owner>[^_]+)_``, Invirt's ``d_<machine>_<disk>``).
        They are listed (namespace ``vmdisk``), never touched.
    ``emulate_activation``: for hosts without device-mapper only (off by default). LVM then runs with
        activation disabled, and isoadmin makes ``/dev/VG/LV`` itself: a loop device over the PV file at
        the LV's extent offset (single-segment LVs only; create the VG with ``--alloc contiguous``).
        ``pv_file`` is the file behind the VG's physical volume (PV).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re

from ..commands import Command, cmd, script
from ..errors import ConfigError, HostError
from ..hostscripts import load
from ..models import StorageReport, Volume
from .base import CREATED_BY, StorageDriver

TAG_PREFIX = "isoadmin:"
_TAG_OK = re.compile(r"^[A-Za-z0-9_+.\-/=!:&#]*$")
_TAG_MAX = 128

# backend/sh/lvm-*.sh: the report, and the emulated activation of hosts without device-mapper.
_REPORT = load("lvm-report.sh")
_LOOP_UP = load("lvm-loop-up.sh")
_LOOP_DOWN = load("lvm-loop-down.sh")


def _plain_ok(value) -> str | None:
    """The value as plain tag text when that round-trips unambiguously, else None."""
    if isinstance(value, str):
        try:
            json.loads(value)
            return None  # would read back as a number / bool / null
        except ValueError:
            text = value
    else:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if _TAG_OK.match(text) and not text.startswith("!") else None


def encode_tags(meta: dict) -> list[str]:
    """Metadata → LV tags (see module docstring). Every tag is valid for LVM and ≤ 128 characters."""
    tags = []
    for key, value in sorted(meta.items()):
        text = _plain_ok(value)
        if text is None:
            raw = json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogateescape")
            text = "!" + base64.b32encode(raw).decode().rstrip("=")
        head = f"{TAG_PREFIX}{key}="
        if len(head) + len(text) <= _TAG_MAX:
            tags.append(head + text)
            continue
        room = _TAG_MAX - len(head) - 4
        for i in range(0, len(text), room):
            tags.append(f"{TAG_PREFIX}{key}.{i // room}={text[i:i + room]}")
    return tags


def decode_tags(tags: list[str]) -> dict:
    """LV tags → metadata: the inverse of :func:`encode_tags`; other tags are ignored."""
    parts: dict[str, dict[int, str]] = {}
    for tag in tags:
        if not tag.startswith(TAG_PREFIX) or "=" not in tag:
            continue
        key, _, text = tag[len(TAG_PREFIX):].partition("=")
        name, dot, index = key.rpartition(".")
        if dot and index.isdigit():
            parts.setdefault(name, {})[int(index)] = text
        else:
            parts.setdefault(key, {})[0] = text
    meta = {}
    for key, chunks in parts.items():
        text = "".join(chunks[i] for i in sorted(chunks))
        try:
            if text.startswith("!"):
                raw = text[1:]
                meta[key] = json.loads(base64.b32decode(raw + "=" * (-len(raw) % 8)).decode("utf-8", "surrogateescape"))
            else:
                meta[key] = json.loads(text)
        except ValueError:
            meta[key] = text
    return meta


class LvmStorage(StorageDriver):
    """LVs of one VG (see module docstring)."""

    kind = "lvm"

    def __init__(self, dom0, host) -> None:
        super().__init__(dom0, host)
        settings = dom0.storage
        self.vg = str(settings.get("vg", ""))
        if not re.match(r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$", self.vg):
            raise ConfigError(f"dom0s.{dom0.name}.storage.vg must name a volume group")
        try:
            self.vm_disks = re.compile(str(settings.get("vm_disk_pattern", r"^d_(?P<owner>[^_]+)_")))
        except re.error as exc:
            raise ConfigError(f"dom0s.{dom0.name}.storage.vm_disk_pattern: {exc}") from None
        self.emulate = bool(settings.get("emulate_activation", False))
        self.pv_file = str(settings.get("pv_file", ""))
        if self.emulate and not self.pv_file.startswith("/"):
            raise ConfigError(f"dom0s.{dom0.name}.storage.pv_file (absolute) is required with emulate_activation")

    def device_path(self, name: str) -> str:
        return f"/dev/{self.vg}/{name}"

    async def report(self) -> StorageReport:
        result = await self.host.run(script(_REPORT, "isoadmin-lvs", self.vg), check=False)
        return await asyncio.to_thread(self._parse, result)  # thousands of LVs: off the event loop

    def _parse(self, result) -> StorageReport:
        text = result.stdout.decode("utf-8", "replace")
        docs, pos, decoder = [], 0, json.JSONDecoder()
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            try:
                doc, pos = decoder.raw_decode(text, pos)
            except ValueError:
                break
            docs.append(doc)
        if result.exit_status != 0 or len(docs) != 2:
            raise HostError(self.host.name, f"cannot list VG {self.vg}: {result.stderr.strip()[-300:]}")
        vg = docs[0]["report"][0]["vg"][0]
        volumes = []
        for lv in docs[1]["report"][0]["lv"]:
            name = lv["lv_name"]
            meta = decode_tags([t for t in lv.get("lv_tags", "").split(",") if t])
            namespace = self.namespace(name)
            if namespace == "other":
                m = self.vm_disks.search(name)
                if m:
                    namespace = "vmdisk"
                    meta.setdefault("owner", m.groupdict().get("owner", ""))
            volumes.append(Volume(self.dom0.name, name, namespace, int(lv["lv_size"]),
                                  self.device_path(name), meta))
        return StorageReport(int(vg["vg_size"]), int(vg["vg_free"]), int(vg["vg_extent_size"]), volumes)

    def _tag_args(self, flag: str, meta: dict) -> list[str]:
        args = []
        for tag in encode_tags(meta):
            args += [flag, tag]
        return args

    def create_command(self, name: str, size: int, meta: dict) -> tuple[Command, bytes | None]:
        argv = ["lvcreate", "--yes", "--wipesignatures", "n", "-L", f"{size}b", "-n", name,
                *self._tag_args("--addtag", meta), self.vg]
        return Command(tuple(argv), mutating=True, label="lvcreate"), None

    async def create(self, name: str, size: int, meta: dict) -> None:
        await super().create(name, size, meta)
        if self.emulate:
            try:
                await self.host.run(script(_LOOP_UP, "isoadmin-lvloop-up", self.vg, name, self.pv_file,
                                           mutating=True))
            except Exception:
                await self.host.run(cmd("lvremove", "--yes", f"{self.vg}/{name}", mutating=True), check=False)
                raise

    def rename_command(self, old: str, new: str, meta: dict) -> tuple[Command, bytes | None]:
        return cmd("lvrename", self.vg, old, new, mutating=True), None

    async def rename(self, old: str, new: str, meta: dict) -> None:
        """Replace the tags (still under the staging name), then ``lvrename`` (never overwriting)."""
        report = await self.report()
        current = next((v for v in report.volumes if v.name == old), None)
        if current is None:
            raise HostError(self.host.name, f"LV {self.vg}/{old} does not exist")
        if any(v.name == new for v in report.volumes):
            raise HostError(self.host.name, f"LV {self.vg}/{new} exists already")
        await self._retag(old, current, meta)
        if self.emulate:
            await self.host.run(script(_LOOP_DOWN, "isoadmin-lvloop-down", self.vg, old, mutating=True))
        command, _ = self.rename_command(old, new, meta)
        await self.host.run(command)
        if self.emulate:
            await self.host.run(script(_LOOP_UP, "isoadmin-lvloop-up", self.vg, new, self.pv_file, mutating=True))

    def remove_command(self, name: str) -> Command:
        return cmd("lvremove", "--yes", f"{self.vg}/{name}", mutating=True)

    async def write_meta(self, name: str, meta: dict) -> None:
        """Replace the LV's ``isoadmin:`` tags with ``meta``'s, in one ``lvchange`` (LVM applies it whole)."""
        report = await self.report()
        current = next((v for v in report.volumes if v.name == name), None)
        if current is None:
            raise HostError(self.host.name, f"LV {self.vg}/{name} does not exist")
        await self._retag(name, current, meta)

    async def _retag(self, name: str, current: Volume, meta: dict) -> None:
        old_tags = set(encode_tags(current.meta))
        new_tags = set(encode_tags(meta))
        args: list[str] = []
        for tag in sorted(old_tags - new_tags):
            args += ["--deltag", tag]
        for tag in sorted(new_tags - old_tags):
            args += ["--addtag", tag]
        if args:
            await self.host.run(Command(("lvchange", *args, f"{self.vg}/{name}"), mutating=True, label="lvchange"))

    async def remove(self, name: str) -> None:
        if self.emulate:
            await self.host.run(script(_LOOP_DOWN, "isoadmin-lvloop-down", self.vg, name, mutating=True))
        await super().remove(name)


__all__ = ["LvmStorage", "encode_tags", "decode_tags", "CREATED_BY"]
