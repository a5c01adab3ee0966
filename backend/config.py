"""Site configuration: which image hosts and dom0s make up a site, read from TOML (``tomllib``).

The default file is ``platformdirs.user_config_dir("isoadmin")/site.toml``; ``--config FILE`` overrides
it and ``--lab`` writes its own. See README.md ("Configuration") for a complete example.

The file is validated against a schema (pydantic v2 models, :class:`SiteDocument`; each storage and
hypervisor table against its driver's model): a wrong type, an unknown key, a missing required key or a
bad value is one :class:`~backend.errors.ConfigError` line ``FILE: table.key: what is wrong``. pydantic
rather than msgspec: its errors carry the exact location and kind of every problem (what the one line is
built from), its ``Field`` descriptions feed the generated reference, and strict mode rejects TOML's
near-misses (``"10"`` for a number, a string for a list). The README's
configuration reference is :func:`reference_markdown` (``python -m backend.config`` prints it).
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import platformdirs
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError

from .errors import ConfigError
from .naming import DEFAULT_TEMPLATE, check_template

APP = "isoadmin"
#: ``[dom0s.NAME] locate`` values (see :class:`Dom0Config`).
LOCATE_STRATEGIES = ("serial", "new-device")
#: Where the ledger lives on the first image host unless ``[site] ledger`` says otherwise.
DEFAULT_LEDGER_PATH = "/var/lib/isoadmin"
#: The most a site file may hold, in bytes (a real one is a few KiB).
MAX_SITE_FILE_BYTES = 1 << 20
#: How deep a site file's tables and lists may nest, the document itself being level 1 (a real one needs 5:
#: ``[dom0s.NAME.hypervisor] guest_disk_dirs = { ... }``).
MAX_SITE_DEPTH = 32

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B?)\s*$", re.IGNORECASE)


def parse_size(value: int | str, what: str = "size") -> int:
    """Parse a size given as bytes (int) or as text such as ``"64 GiB"``, ``"512M"``, ``"4096"``.

    Suffixes K, M, G, T, P are binary (powers of 1024) with or without ``iB``, as in ``lvcreate -L``.

    Returns:
        the size in bytes.
    Raises:
        ConfigError: the value is negative or not a size.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected a size, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{what}: size must not be negative")
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ConfigError(f"{what}: {value!r} is not a size (examples: 4096, 512M, 64 GiB)")
    number, unit = float(m.group(1)), m.group(2).upper()
    return int(number * 1024 ** "_KMGTP".index(unit)) if unit else int(number)


@dataclass(frozen=True)
class HostConfig:
    """How to reach one host over SSH. Unset fields fall back to ``~/.ssh/config`` and the agent.

    Attributes:
        name: the name used in the site (and in messages).
        address: host name or IP; defaults to ``name`` (so ``~/.ssh/config`` ``Host`` aliases work).
        port: TCP port, or None for the SSH config's / 22.
        user: login name, or None for the SSH config's / the local user.
        key: path of a private key file, or None for the agent and the SSH config's keys.
        known_hosts: path of a known_hosts file, or None for ``~/.ssh/known_hosts``. Host-key
            checking is always on.
    """

    name: str
    address: str
    port: int | None = None
    user: str | None = None
    key: str | None = None
    known_hosts: str | None = None


@dataclass(frozen=True)
class ImageHostConfig:
    """An image host: the VM that receives owners' uploads over SFTP.

    Attributes:
        ssh: how to reach it.
        uploads_root: the folder holding one folder per owner (``/tmp/cds/<owner>/<file>``).
        domains: for each dom0 name, that hypervisor's name of this VM (the domU name).
        disk_id_dirs: folders of by-id links searched (after ``/sys/block/*/serial``) when locating
            a hot-plugged disk by its serial.
        max_copies: how many copies this console runs at once on this image host (default 2); more
            imports wait their turn before the copy phase.
        sys_block: the image host's ``/sys/block`` (``locate = "new-device"`` lists it before and after
            the attach; the embedded lab points it at a folder of its own).
        dev_dir: where the image host's block device nodes are (``/dev``).
        download_hosts: host names or addresses (``fnmatch`` patterns, e.g. ``*.example.org``; networks such
            as ``10.0.0.0/8``) this image host may download from, for ``download-url`` and every redirect; empty
            (the default): none. See :func:`backend.download.host_allowed`.
        cache_dir: the downloads cache on this image host (default ``/var/cache/isoadmin``).
    """

    ssh: HostConfig
    uploads_root: str = "/tmp/cds"
    domains: dict[str, str] = field(default_factory=dict)
    disk_id_dirs: tuple[str, ...] = ("/dev/disk/by-id",)
    max_copies: int = 2
    sys_block: str = "/sys/block"
    dev_dir: str = "/dev"
    download_hosts: tuple[str, ...] = ()
    cache_dir: str = "/var/cache/isoadmin"

    @property
    def name(self) -> str:
        """The host's name in the site."""
        return self.ssh.name


@dataclass(frozen=True)
class Dom0Config:
    """A dom0: a hypervisor host that holds volumes and hot-plugs them into the image host.

    Attributes:
        ssh: how to reach it.
        storage: driver name (``files``) and its settings (table ``[dom0s.NAME.storage]``).
        hypervisor: driver name (``lab``) and its settings (table ``[dom0s.NAME.hypervisor]``).
        staging_prefix: name prefix of volumes being copied (default ``cdtmp_``).
        final_prefix: name prefix of finished volumes (default ``cd_``).
        locate: how the image host finds a hot-plugged disk (``[dom0s.NAME] locate``): ``serial``
            (default: ``/sys/block/*/serial``, as virtio-blk shows a libvirt ``<serial>``) or ``new-device``
            (the one block device that appeared since the attach with exactly the volume's size: a Xen
            PV disk, xen-blkfront, has no serial).
        domain_owner_pattern: a regular expression with a group ``owner`` read from a domain's name, used
            when the domain carries no isoadmin owner in its libvirt ``<metadata>`` ("" = none).
        kernel_dir: where kernel sets are staged on this dom0 ("" = ``/var/lib/isoadmin/kernels``); one
            folder per owner, one per set (see :mod:`backend.kernels`).
    """

    ssh: HostConfig
    storage: dict[str, Any]
    hypervisor: dict[str, Any]
    staging_prefix: str = "cdtmp_"
    final_prefix: str = "cd_"
    locate: str = "serial"
    domain_owner_pattern: str = ""
    kernel_dir: str = ""

    @property
    def name(self) -> str:
        """The host's name in the site."""
        return self.ssh.name


@dataclass(frozen=True)
class SiteConfig:
    """A whole site.

    Attributes:
        image_hosts: by name.
        dom0s: by name, in file order (the first is the default target of an approval).
        state_dir: the console's own state: caches, crash reports and the host-command log only (the site's
            books are on the ledger).
        read_only: refuse every mutating operation (also set by ``--read-only``).
        settle_seconds: an upload whose mtime is younger than this is still ``writing``.
        refresh_seconds: pause between two inventory refreshes in the TUI.
        gc_days: uploads older than this many days are garbage-collected (``gc``; default 7).
        gc_rejected_days: the same for rejected uploads (default: ``gc_days``).
        kernel_gc_days: kernel sets staged longer ago than this, that no domain boots, are
            garbage-collected (``kernel-gc``; ``[console] kernel_gc_days``, default 30).
        cache_days: downloads cache entries older than this many days are removed by ``gc``
            (``[console] cache_days``, default 30).
        download_stall_seconds: a download that receives nothing for this long is cut off
            (``[downloads] stall_seconds``, default 30).
        download_max_bytes: the most a download may bring when neither the server's length nor the
            owner's quota bounds it (``[downloads] max_bytes``, default 16 GiB).
        quota: default per-owner disk quota in bytes (``[quotas] default``; 0 = unlimited).
        quotas: per-owner overrides in bytes (``[quotas.owners]``).
        owners: extra people who may act for an owner (``[owners] alice = ["helpdesk1"]``), beyond the
            members of the owner folder's group on the image host.
        naming: the template of final volume names (``[naming] template``; see :mod:`backend.naming`).
        ledger: where the site keeps its books, ``HOST:/absolute/path`` (``[site] ledger``); ``""`` means the
            first image host, :data:`DEFAULT_LEDGER_PATH`. See :mod:`backend.ledger`.
        lease_seconds: how long a running job's lease lasts without renewal (``[site] lease_seconds``,
            default 30): after that any console may recover the job.
        keymap: the console's keys remapped by binding id (``[console] keymap = { approve = "A" }``; the ids
            are in the README's key table).
        source: the file this was read from (for messages), or None.
    """

    image_hosts: dict[str, ImageHostConfig]
    dom0s: dict[str, Dom0Config]
    state_dir: Path
    read_only: bool = False
    settle_seconds: float = 10.0
    refresh_seconds: float = 3.0
    gc_days: float = 7.0
    gc_rejected_days: float = 7.0
    kernel_gc_days: float = 30.0
    cache_days: float = 30.0
    download_stall_seconds: float = 30.0
    download_max_bytes: int = 16 << 30
    quota: int = 0
    quotas: dict[str, int] = field(default_factory=dict)
    owners: dict[str, tuple[str, ...]] = field(default_factory=dict)
    naming: str = DEFAULT_TEMPLATE
    ledger: str = ""
    lease_seconds: float = 30.0
    keymap: dict[str, str] = field(default_factory=dict)
    source: Path | None = None

    def ledger_location(self) -> tuple[str, str]:
        """``(host name, absolute path)`` of the ledger: ``[site] ledger``, or the first image host's
        :data:`DEFAULT_LEDGER_PATH`."""
        if self.ledger:
            host, _, path = self.ledger.partition(":")
            return host, path
        return next(iter(self.image_hosts)), DEFAULT_LEDGER_PATH


def pick_driver(dom0: "Dom0Config", table: str, drivers: dict[str, Any]) -> Any:
    """The driver class that ``[dom0s.NAME.<table>] driver`` names.

    Raises:
        ConfigError: the name is not one of ``drivers``.
    """
    name = getattr(dom0, table).get("driver")
    if name not in drivers:
        raise ConfigError(f"dom0s.{dom0.name}.{table}.driver: unknown driver {name!r} (known: {', '.join(drivers)})")
    return drivers[name]


def default_config_path() -> Path:
    """Return the default site file: ``<user config dir>/site.toml`` (platformdirs)."""
    return Path(platformdirs.user_config_dir(APP)) / "site.toml"


def default_state_dir() -> Path:
    """Return the console's default state dir (platformdirs ``user_state_dir``)."""
    return Path(platformdirs.user_state_dir(APP))


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+_.-]{0,31}$")
_LEDGER_RE = re.compile(r"^(?P<host>[^:/\s]+):(?P<path>/.*)$")


# ---------------------------------------------------------------------- the schema (pydantic v2)
#
# The site file is validated as a whole against these models (unknown keys are errors), then turned into
# the dataclasses above. Each field's description is the README's configuration reference
# (:func:`reference_markdown`; a test keeps the two equal).


def _size_value(value: Any) -> int:
    try:
        return parse_size(value)
    except ConfigError as exc:
        raise ValueError(exc.message.removeprefix("size: ")) from None


def _absolute(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r} must be an absolute path")
    return value


def _members(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _owner_pattern(value: str) -> str:
    if value:
        try:
            groups = re.compile(value).groupindex
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if "owner" not in groups:
            raise ValueError("needs a group (?P<owner>...)")
    return value


def _nonblank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip().lower()


#: Folders a configured folder may lie below but never be: the root, the system's own folders and the
#: shared ones every user writes to. Every folder above one of them is in the set too (only ``/`` and
#: these are), so "is one of these" is also "is not above one of them".
SYSTEM_DIRS: frozenset[str] = frozenset({
    "/", "/bin", "/boot", "/dev", "/dev/shm", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
    "/lost+found", "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/run/shm", "/run/user", "/sbin", "/snap",
    "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/include", "/usr/lib", "/usr/lib32", "/usr/lib64",
    "/usr/libexec", "/usr/local", "/usr/local/bin", "/usr/local/etc", "/usr/local/lib", "/usr/local/sbin",
    "/usr/local/share", "/usr/sbin", "/usr/share", "/usr/src", "/var", "/var/backups", "/var/cache", "/var/lib",
    "/var/local", "/var/lock", "/var/log", "/var/mail", "/var/opt", "/var/run", "/var/spool", "/var/tmp",
    "/var/www",
})


def safe_folder(value: str, example: str) -> str:
    """Check a configured folder that isoadmin writes to or removes from (uploads, caches, kernels, the
    ledger, the state dir): absolute, without ``..``, and neither ``/`` nor a system folder
    (:data:`SYSTEM_DIRS`); a folder below one (``/var/cache/isoadmin``, ``/tmp/cds``) is fine.

    ``..`` is refused rather than resolved: ``/var/cache/..`` reads as a folder below ``/var/cache`` and is
    ``/var``. ``.`` components and repeated or trailing slashes are dropped.

    Args:
        value: the path as written. example: a good value, named in the message.
    Returns:
        the normalised path (``/srv//cds/.`` → ``/srv/cds``).
    Raises:
        ValueError: one line saying what is wrong and what to write instead.
    """
    if not value.startswith("/"):
        raise ValueError(f"{value!r} must be an absolute path, such as {example}")
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{value!r} must not contain '..': write the folder it means, such as {example}")
    path = "/" + "/".join(parts)
    if path in SYSTEM_DIRS or any(d.startswith(path + "/") for d in SYSTEM_DIRS):
        what = "the root folder" if path == "/" else "a system folder"
        raise ValueError(f"{value!r} is {what}, which isoadmin must never write to or clean up: give a folder "
                         f"of its own below it, such as {example}")
    return path


def _uploads_root(value: str) -> str:
    return safe_folder(value, "/srv/cds")


def _kernel_dir(value: str) -> str:
    return value and safe_folder(value, "/var/lib/isoadmin/kernels")


def _cache_dir(value: str) -> str:
    return safe_folder(value, "/var/cache/isoadmin")


def _state_dir(value: str) -> str:
    return safe_folder(os.path.expanduser(value), "~/.local/state/isoadmin")


def _keys(value: str) -> str:
    """``[console] keymap`` values: Textual key names, comma-separated, none empty (Textual ignores an empty
    value and would bind a key with a space to nothing)."""
    if any(not key.strip() for key in value.split(",")):
        raise ValueError(f"{value!r} has an empty key: give a key such as \"A\" or \"ctrl+a\" (several: \"A,ctrl+a\")")
    if any(key != key.strip() or " " in key for key in value.split(",")):
        raise ValueError(f"{value!r} has a space: write the keys without any, such as \"A,ctrl+a\"")
    return value


def _ledger(value: str) -> str:
    if not value:
        return value
    m = _LEDGER_RE.match(value)
    if not m:
        raise ValueError(f"{value!r} must be HOST:/absolute/path")
    return f"{m.group('host')}:{safe_folder(m.group('path'), DEFAULT_LEDGER_PATH)}"


Size = Annotated[int, BeforeValidator(_size_value)]
AbsPath = Annotated[str, AfterValidator(_absolute)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ConsoleTable(_Table):
    """``[console]``"""

    state_dir: Annotated[str, AfterValidator(_state_dir)] | None = Field(
        None, description="the console's own state: caches, crash reports, the host-command log (the site's books "
        "are on the ledger); created with mode 0700; an absolute path or `~/...`, not a system folder. Default: "
        "the user state dir")
    read_only: bool = Field(False, description="refuse every mutating operation (as `--read-only`)")
    settle_seconds: float = Field(10.0, ge=0, description="an upload younger than this is still `writing`")
    refresh_seconds: float = Field(3.0, gt=0, description="pause between two inventory refreshes in the console")
    gc_days: float = Field(7.0, ge=0, description="`gc` removes uploads older than this many days")
    gc_rejected_days: float | None = Field(None, ge=0, description="... and rejected ones older than this. "
                                           "Default: `gc_days`")
    kernel_gc_days: float = Field(30.0, ge=0, description="`kernel-gc` removes kernel sets no domain boots, "
                                  "staged longer ago than this many days")
    cache_days: float = Field(30.0, ge=0, description="`gc` removes downloads cache entries older than this "
                              "many days")
    keymap: dict[str, Annotated[str, AfterValidator(_keys)]] = Field(
        {}, description="keys remapped by binding id: `{ approve = \"A\" }` (the ids are in the key table); no "
        "empty key, and none another binding active at the same time has")


class QuotasTable(_Table):
    """``[quotas]``"""

    default: Size = Field(0, description="per-owner quota: VM disks + final CD volumes + staging volumes in "
                          "flight; a size (`\"20 GiB\"`, `512M`, bytes); 0 = none")
    owners: dict[str, Size] = Field({}, description="per-owner overrides: `{ alice = \"50 GiB\" }`")


class NamingTable(_Table):
    """``[naming]``"""

    template: Annotated[str, AfterValidator(check_template)] = Field(
        DEFAULT_TEMPLATE, description="names of final volumes: fields `{owner}` `{stem}` `{label}` `{size}` "
        "`{date}`")


class DownloadsTable(_Table):
    """``[downloads]``"""

    stall_seconds: float = Field(30.0, ge=1, le=3600, description="a download that receives nothing for this "
                                 "long is cut off")
    max_bytes: Size = Field(16 << 30, gt=0, description="the most a download may bring when neither the "
                            "server's length nor the owner's quota bounds it (a size)")


class LedgerTable(_Table):
    """``[site]``"""

    ledger: Annotated[str, AfterValidator(_ledger)] = Field(
        "", description="where the site keeps its books (jobs, locks, leases, rejections, the audit log): "
        "`\"HOST:/absolute/path\"`, HOST an image host or dom0 of the site, the path not a system folder. Default: "
        "the first image host, `/var/lib/isoadmin`")
    lease_seconds: float = Field(30.0, ge=2, le=3600, description="a running job's lease: not renewed for this "
                                 "long, any console may recover the job")


class HostTable(_Table):
    """The SSH settings every host table has."""

    address: str | None = Field(None, description="host name or IP. Default: the table's name (so "
                                "`~/.ssh/config` aliases work)")
    port: int | None = Field(None, ge=1, le=65535, description="TCP port. Default: the SSH config's, or 22")
    user: str | None = Field(None, description="login name. Default: the SSH config's, or yours")
    key: str | None = Field(None, description="private key file. Default: the agent and the SSH config's keys")
    known_hosts: str | None = Field(None, description="known_hosts file. Default: `~/.ssh/known_hosts`")


class ImageHostTable(HostTable):
    """``[image_hosts.NAME]``"""

    uploads_root: Annotated[str, AfterValidator(_uploads_root)] = Field(
        "/tmp/cds", description="one folder per owner: `<uploads_root>/<owner>/<file>` (an absolute path, not `/` "
        "or a system folder such as `/tmp` itself)")
    domains: dict[str, str] = Field({}, description="for each dom0, the hypervisor's name of this VM: "
                                    "`{ dom0-a = \"imagehost\" }`")
    disk_id_dirs: list[str] = Field(["/dev/disk/by-id"], description="folders of by-id links searched for a "
                                    "hot-plugged disk (after `/sys/block/*/serial`)")
    max_copies: int = Field(2, ge=1, description="copies this console runs at once on this image host")
    sys_block: AbsPath = Field("/sys/block", description="the image host's `/sys/block` (`locate = \"new-device\"` "
                               "lists it before and after the attach)")
    dev_dir: AbsPath = Field("/dev", description="where the image host's block device nodes are")
    download_hosts: list[Annotated[str, AfterValidator(_nonblank)]] = Field(
        [], description="hosts this image host may download from (`download-url` and every redirect): names or "
        "`fnmatch` patterns of names (`*.example.org`), which never match an address; addresses, networks "
        "(`10.0.0.0/8`) or address patterns (`127.0.0.*`), which never match a name. Default: none (downloads "
        "are off)")
    cache_dir: Annotated[str, AfterValidator(_cache_dir)] = Field(
        "/var/cache/isoadmin", description="the downloads cache on this image host (an absolute path, not a system "
        "folder); created 0700 when missing; an existing one must be the login's own folder that no one else may "
        "write")


class Dom0Table(HostTable):
    """``[dom0s.NAME]``"""

    staging_prefix: str = Field("cdtmp_", pattern=_PREFIX_RE.pattern,
                                description="name prefix of volumes being copied")
    final_prefix: str = Field("cd_", pattern=_PREFIX_RE.pattern, description="name prefix of finished volumes")
    locate: Literal["serial", "new-device"] = Field(
        "serial", description="how the image host finds a hot-plugged disk: `serial` (`/sys/block/*/serial`) or "
        "`new-device` (the one block device that appeared since the attach, with exactly the volume's size: "
        "a Xen PV disk has no serial)")
    domain_owner_pattern: Annotated[str, AfterValidator(_owner_pattern)] = Field(
        "", description="a regular expression with a group `owner` that reads a domain's owner from its name, "
        "when its libvirt `<metadata>` names none")
    kernel_dir: Annotated[str, AfterValidator(_kernel_dir)] = Field(
        "", description="where kernel sets are staged on this dom0 (an absolute path, not a system folder). "
        "Default: `/var/lib/isoadmin/kernels`")
    storage: dict[str, Any] = Field(description="`[dom0s.NAME.storage]`: the storage driver and its settings")
    hypervisor: dict[str, Any] = Field(description="`[dom0s.NAME.hypervisor]`: the hypervisor driver and its "
                                       "settings")


class FilesStorageTable(_Table):
    """``[dom0s.NAME.storage]`` with ``driver = "files"``"""

    driver: Literal["files"] = Field(description="`files`: one sparse file per volume plus a JSON sidecar")
    directory: AbsPath = Field(description="the folder of the volumes")
    capacity: Size = Field(0, description="the space volumes may take (a size)")
    unit: Size = Field(4 << 20, description="volume sizes are rounded up to this (a size)")


class LvmStorageTable(_Table):
    """``[dom0s.NAME.storage]`` with ``driver = "lvm"``"""

    driver: Literal["lvm"] = Field(description="`lvm`: one LV per volume in a volume group")
    vg: str = Field(pattern=r"^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$", description="the volume group")
    vm_disk_pattern: str = Field(r"^d_(?P<owner>[^_]+)_", description="a regex recognising owners' VM disks "
                                 "(listed, never touched); group `owner` names the owner")
    emulate_activation: bool = Field(False, description="only for hosts without device-mapper (the test "
                                     "machines): reach LVs through loop devices on `pv_file`")
    pv_file: str = Field("", description="the PV's backing file, with `emulate_activation`")

    @field_validator("vm_disk_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _pv_file(self) -> "LvmStorageTable":
        if self.emulate_activation and not self.pv_file.startswith("/"):
            raise PydanticCustomError("key:pv_file", "an absolute path is required with emulate_activation")
        return self


class LibvirtHypervisorTable(_Table):
    """``[dom0s.NAME.hypervisor]`` with ``driver = "libvirt"``"""

    driver: Literal["libvirt"] = Field(description="`libvirt`: live hot-plug through libvirt")
    uri: str = Field(min_length=1, description="the libvirt URI, e.g. `xen+ssh://root@dom0-a/system`")
    bus: str = Field("virtio", description="the disk bus of hot-plugged disks (`virtio`, or `xen` for PV guests)")
    target_prefix: str | None = Field(None, description="target device names of hot-plugged disks. Default: `xvd` "
                                      "with the `xen` bus, else `vd`")


class LabHypervisorTable(_Table):
    """``[dom0s.NAME.hypervisor]`` with ``driver = "lab"``"""

    driver: Literal["lab"] = Field(description="`lab`: hot-plug as a by-id link (the embedded lab's)")
    guest_disk_dirs: dict[str, str] = Field(min_length=1, description="for each domain, the folder where its "
                                            "hot-plugged disks appear")
    guest_block_dirs: dict[str, str] = Field({}, description="for each domain, its `/sys/block` stand-in "
                                             "(`locate = \"new-device\"`)")
    guest_dev_dirs: dict[str, str] = Field({}, description="for each domain, its `/dev` stand-in")
    vm_dir: str = Field("", description="the folder of the owners' VMs (domains) on this dom0")


STORAGE_TABLES: dict[str, type[_Table]] = {"files": FilesStorageTable, "lvm": LvmStorageTable}
HYPERVISOR_TABLES: dict[str, type[_Table]] = {"libvirt": LibvirtHypervisorTable, "lab": LabHypervisorTable}


class SiteDocument(_Table):
    """The whole site file."""

    console: ConsoleTable = Field(ConsoleTable(), description="the console")
    quotas: QuotasTable = Field(QuotasTable(), description="disk quotas per owner")
    owners: dict[str, Annotated[list[str], BeforeValidator(_members)]] = Field(
        {}, description="who else may act for an owner, beyond its folder's group: `alice = [\"helpdesk1\"]`")
    naming: NamingTable = Field(NamingTable(), description="names of final volumes")
    downloads: DownloadsTable = Field(DownloadsTable(), description="`download-url`")
    site: LedgerTable = Field(LedgerTable(), description="the site itself")
    image_hosts: dict[str, ImageHostTable] = Field({}, description="the image hosts, by name")
    dom0s: dict[str, Dom0Table] = Field({}, description="the dom0s, by name (the first is the default target)")


# The tables of the reference, in order: (TOML table, model).
REFERENCE_TABLES: list[tuple[str, type[_Table]]] = [
    ("console", ConsoleTable), ("quotas", QuotasTable), ("naming", NamingTable), ("site", LedgerTable),
    ("image_hosts.NAME", ImageHostTable), ("dom0s.NAME", Dom0Table),
    ("dom0s.NAME.storage (files)", FilesStorageTable), ("dom0s.NAME.storage (lvm)", LvmStorageTable),
    ("dom0s.NAME.hypervisor (libvirt)", LibvirtHypervisorTable), ("dom0s.NAME.hypervisor (lab)", LabHypervisorTable),
]


def _default_text(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.default
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f"`\"{value}\"`" if value else "`\"\"`"
    if isinstance(value, (list, dict)):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def reference_markdown() -> str:
    """The configuration reference, generated from the schema: one markdown table row per key.

    Returns:
        markdown text (the README holds exactly this between its ``config-reference`` markers).
    """
    lines = ["| table | key | default | meaning |", "|---|---|---|---|"]
    for table, model in REFERENCE_TABLES:
        for name, info in model.model_fields.items():
            if model is Dom0Table and name in ("storage", "hypervisor"):
                continue
            if model is SiteDocument:
                continue
            lines.append(f"| `[{table}]` | `{name}` | {_default_text(info)} | {info.description} |")
    lines.append("| `[owners]` | any owner | — | " + SiteDocument.model_fields["owners"].description + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- errors: one line each

_KIND = {"model": "a table", "int": "a whole number", "float": "a number", "bool": "true or false", "string": "a string",
         "dict": "a table", "list": "a list", "literal": "one of"}


def _what(error: dict) -> str:
    """What is wrong, in words, from one pydantic error."""
    kind, value = error["type"], error.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a table"
    if kind == "missing":
        return "required key missing"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        base = kind.removesuffix("_type").removesuffix("_parsing")
        return f"expected {_KIND.get(base, base)}, got {shown}"
    if kind == "literal_error":
        return f"{error['msg'].lower()}, got {shown}"
    if kind == "value_error":
        return error["msg"].removeprefix("Value error, ")
    if kind.startswith("key:"):  # a check across keys, reported at the key it is about
        return error["msg"]
    if kind == "string_pattern_mismatch":
        return f"{shown} must match {error['ctx']['pattern']}"
    return f"{error['msg'][:1].lower()}{error['msg'][1:]}, got {shown}"


def _candidates(model: type[BaseModel], path: tuple) -> list[str]:
    """The keys the table at ``path`` (inside ``model``) accepts, for a "did you mean" hint."""
    current: Any = model
    for part in path:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return []
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def did_you_mean(key: str, known: list[str]) -> str | None:
    """The known key ``key`` was probably meant to be: same letters without ``-``/``_`` (``readonly``,
    ``read-only`` → ``read_only``), else the closest by :func:`difflib.get_close_matches`; or None."""
    squashed = {k.replace("_", "").lower(): k for k in known}
    exact = squashed.get(key.replace("-", "").replace("_", "").lower())
    if exact:
        return exact
    close = difflib.get_close_matches(key.replace("-", "_").lower(), known, n=1, cutoff=0.6)
    return close[0] if close else None


def _raise_first(exc: ValidationError, model: type[BaseModel], where: str, prefix: tuple = ()) -> None:
    """Turn the first error of ``exc`` into one ConfigError line: ``FILE: table.key: what is wrong``."""
    error = exc.errors(include_url=False)[0]
    loc = tuple(str(p) for p in error["loc"])
    if error["type"].startswith("key:"):
        loc += (error["type"].removeprefix("key:"),)
    if error["type"] == "extra_forbidden":
        hint = did_you_mean(loc[-1], _candidates(model, loc[:-1]))
        what = "unknown key" + (f"; did you mean {hint}?" if hint else "")
    else:
        what = _what(error)
    path = ".".join(prefix + loc) or "(top level)"
    raise ConfigError(f"{where}: {path}: {what}") from None


def _validate(model: type[_Table], data: Any, where: str, prefix: tuple = ()) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        _raise_first(exc, model, where, prefix)


def _driver_table(table: dict[str, Any], kind: str, drivers: dict[str, type[_Table]], where: str,
                  prefix: tuple) -> None:
    """Validate ``[dom0s.NAME.<kind>]`` against its driver's model."""
    driver = table.get("driver")
    if driver is None:
        raise ConfigError(f"{where}: {'.'.join(prefix)}.driver: required key missing (one of: {', '.join(drivers)})")
    if not isinstance(driver, str) or driver not in drivers:
        raise ConfigError(f"{where}: {'.'.join(prefix)}.driver: unknown driver {driver!r} "
                          f"(known: {', '.join(drivers)})")
    _validate(drivers[driver], table, where, prefix)


def _host(name: str, table: HostTable, where: str) -> HostConfig:
    if not _NAME_RE.match(name):
        raise ConfigError(f"{where}: {name!r} must match [A-Za-z0-9][A-Za-z0-9_.-]* (a host name)")

    def path(value: str | None) -> str | None:
        return None if value is None else str(Path(value).expanduser())

    return HostConfig(name=name, address=table.address or name, port=table.port, user=table.user,
                      key=path(table.key), known_hosts=path(table.known_hosts))


def check_hosts_distinct(image_hosts: dict[str, ImageHostConfig], dom0s: dict[str, Dom0Config], where: str) -> None:
    """Refuse a site where two tables are one host: every host has one name and one role.

    - A name under both ``[image_hosts]`` and ``[dom0s]``: commands for one role would be sent under the
      other's name (and every list would show two rows of that name).
    - Two tables with the same address and port, after defaults (the address defaults to the table's name,
      compared without case or a final dot; no port is 22), within a role or across roles. Two image-host
      tables for one machine list its uploads twice, under two keys each: two consoles could import (or
      ``gc`` remove) one file as two. Two dom0 tables list one volume group twice, so quotas count each volume
      twice and a capacity check counts the free space twice. An image host that is also a dom0 would get
      dom0 commands on the image host and the other way round: an image host is a domU of its dom0s, never
      the dom0 itself, and nothing in the code or the embedded lab needs it (the lab's hosts share
      127.0.0.1, each with its own port, which stays allowed). Names that only resolve to one address
      (an alias and its IP) are not found: that would need DNS.

    Args:
        image_hosts, dom0s: the site's hosts by name. where: the site file, for the message.
    Raises:
        ConfigError: one line naming the second table and the first.
    """
    for name in dom0s:
        if name in image_hosts:
            raise ConfigError(f"{where}: dom0s.{name}: {name!r} is also the name of an image host: give each host "
                              "one name and one role")
    seen: dict[tuple[str, int], str] = {}
    for table, hosts in (("image_hosts", image_hosts), ("dom0s", dom0s)):
        for name, host in hosts.items():
            address, port = host.ssh.address.lower().rstrip("."), host.ssh.port or 22
            if (address, port) in seen:
                raise ConfigError(f"{where}: {table}.{name}: the same host as {seen[address, port]} ({address} "
                                  f"port {port}): list each host once, under one name")
            seen[address, port] = f"{table}.{name}"


def nesting_depth(doc: Any, limit: int = MAX_SITE_DEPTH) -> int:
    """How deep tables and lists nest in ``doc`` (a scalar is 0, ``{}`` 1, ``{"a": [1]}`` 2), counted
    without recursion and only up to ``limit + 1``: past that it stops and returns ``limit + 1``.

    Args:
        doc: a parsed TOML document (dicts, lists, scalars). limit: the depth that is still fine.
    Returns:
        the depth, at most ``limit + 1``.
    """
    deepest = 0
    stack = [(doc, 1)] if isinstance(doc, (dict, list)) else []
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return limit + 1
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return deepest


def _too_deep(where: str) -> ConfigError:
    return ConfigError(f"{where}: (top level): tables or lists nested more than {MAX_SITE_DEPTH} levels deep "
                       "(a site file needs 5): is this the right file?")


def parse_config(doc: dict[str, Any], source: Path | None = None) -> SiteConfig:
    """Build a :class:`SiteConfig` from a parsed TOML document, validated against the schema
    (:class:`SiteDocument`; storage and hypervisor tables against their driver's model).

    Args:
        doc: the TOML document (``tomllib`` output). source: the file it came from (for messages).
    Returns:
        the site.
    Raises:
        ConfigError: one line ``FILE: table.key: what is wrong`` — an unknown key (with a "did you mean"),
            a wrong type, a missing required key or a bad value; no image host / dom0; one host in
            two tables (:func:`check_hosts_distinct`); or tables and lists nested deeper than
            :data:`MAX_SITE_DEPTH` (checked before anything else).
    """
    where = str(source or "config")
    if nesting_depth(doc) > MAX_SITE_DEPTH:
        raise _too_deep(where)
    parsed: SiteDocument = _validate(SiteDocument, doc, where)
    image_hosts: dict[str, ImageHostConfig] = {}
    for name, table in parsed.image_hosts.items():
        image_hosts[name] = ImageHostConfig(
            ssh=_host(name, table, f"{where}: image_hosts.{name}"),
            uploads_root=table.uploads_root.rstrip("/") or "/",
            domains=dict(table.domains),
            disk_id_dirs=tuple(table.disk_id_dirs),
            max_copies=table.max_copies,
            sys_block=table.sys_block.rstrip("/") or "/",
            dev_dir=table.dev_dir.rstrip("/") or "/",
            download_hosts=tuple(table.download_hosts),
            cache_dir=table.cache_dir,
        )
    dom0s: dict[str, Dom0Config] = {}
    for name, table in parsed.dom0s.items():
        here = ("dom0s", name)
        _driver_table(table.storage, "storage", STORAGE_TABLES, where, here + ("storage",))
        _driver_table(table.hypervisor, "hypervisor", HYPERVISOR_TABLES, where, here + ("hypervisor",))
        staging, final = table.staging_prefix, table.final_prefix
        if staging.startswith(final) or final.startswith(staging):
            raise ConfigError(f"{where}: dom0s.{name}: staging_prefix and final_prefix must not be prefixes of "
                              "each other")
        dom0s[name] = Dom0Config(_host(name, table, f"{where}: dom0s.{name}"), dict(table.storage),
                                 dict(table.hypervisor), staging, final, table.locate, table.domain_owner_pattern,
                                 table.kernel_dir)
    if not image_hosts:
        raise ConfigError(f"{where}: image_hosts: no [image_hosts.NAME] table")
    if not dom0s:
        raise ConfigError(f"{where}: dom0s: no [dom0s.NAME] table")
    check_hosts_distinct(image_hosts, dom0s, where)
    for ih in image_hosts.values():
        for dom0 in ih.domains:
            if dom0 not in dom0s:
                raise ConfigError(f"{where}: image_hosts.{ih.name}.domains: names unknown dom0 {dom0!r}")
    ledger = parsed.site.ledger
    if ledger:
        host = _LEDGER_RE.match(ledger).group("host")
        if host not in image_hosts and host not in dom0s:
            raise ConfigError(f"{where}: site.ledger: {host!r} is not a host of this site "
                              f"(known: {', '.join([*image_hosts, *dom0s])})")
    for ih in image_hosts.values():  # what is root's on an image host is never inside the owners' folders
        books = [("site.ledger", _LEDGER_RE.match(ledger).group("path"))] if ledger and \
            _LEDGER_RE.match(ledger).group("host") == ih.name else []
        if not ledger and ih.name == next(iter(image_hosts)):
            books = [("site.ledger", DEFAULT_LEDGER_PATH)]
        for key, path in [(f"image_hosts.{ih.name}.cache_dir", ih.cache_dir), *books]:
            if path == ih.uploads_root or path.startswith(ih.uploads_root.rstrip("/") + "/") \
                    or ih.uploads_root.startswith(path.rstrip("/") + "/"):
                raise ConfigError(f"{where}: {key}: {path!r} overlaps uploads_root {ih.uploads_root!r}, where "
                                  "owners write: give it a folder of its own outside the uploads root")
    console = parsed.console
    return SiteConfig(
        image_hosts=image_hosts,
        dom0s=dom0s,
        state_dir=Path(console.state_dir).expanduser() if console.state_dir else default_state_dir(),
        read_only=console.read_only,
        settle_seconds=console.settle_seconds,
        refresh_seconds=console.refresh_seconds,
        gc_days=console.gc_days,
        gc_rejected_days=console.gc_days if console.gc_rejected_days is None else console.gc_rejected_days,
        kernel_gc_days=console.kernel_gc_days,
        cache_days=console.cache_days,
        download_stall_seconds=parsed.downloads.stall_seconds,
        download_max_bytes=parsed.downloads.max_bytes,
        quota=parsed.quotas.default,
        quotas=dict(parsed.quotas.owners),
        owners={k: tuple(v) for k, v in parsed.owners.items()},
        naming=parsed.naming.template,
        ledger=ledger,
        lease_seconds=parsed.site.lease_seconds,
        keymap=dict(console.keymap),
        source=source,
    )


def prepare_state_dir(path: Path, source: Path | None = None) -> Path:
    """Check the state dir once, when the site opens: create it (mode 0700) and make sure a file can be
    written there.

    Args:
        path: the state dir. source: the site file (for the message).
    Returns:
        ``path``.
    Raises:
        ConfigError: one line: it is a file, lies under /proc or /sys, cannot be created or is not writable.
    """
    where = f"{source or 'config'}: console.state_dir"
    resolved = Path(os.path.realpath(path))
    for system in ("/proc", "/sys"):
        if resolved == Path(system) or Path(system) in resolved.parents:
            raise ConfigError(f"{where}: {path} is under {system}, which holds no files of ours")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{where}: {path} is not a directory")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{where}: {path} is not usable: {exc.strerror or exc}") from None
    return path


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a fifo"), (stat.S_ISSOCK, "a socket"))


def read_site_file(path: Path) -> str:
    """The text of a site file, read at once and bounded: at most :data:`MAX_SITE_FILE_BYTES` + 1 bytes are
    read, and nothing but a regular file (or a link to one) is read at all — ``/dev/zero`` or a fifo is
    refused without waiting (opened non-blocking, checked with ``fstat`` on the open file).

    Args:
        path: the site file.
    Returns:
        its text (UTF-8).
    Raises:
        ConfigError: missing, unreadable, not a regular file, larger than the limit, or not UTF-8.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"no site file at {path}: write one (see README) or run with --lab") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
            raise ConfigError(f"{path}: {kind}, not a site file: give the site file itself (see README)")
        data = b""
        while len(data) <= MAX_SITE_FILE_BYTES:
            chunk = os.read(fd, MAX_SITE_FILE_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_SITE_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_SITE_FILE_BYTES >> 20} MiB (a site file is a few KiB): is "
                          "this the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def load_config(path: Path | None = None) -> SiteConfig:
    """Read (:func:`read_site_file`) and validate (:func:`parse_config`) a site file (default:
    :func:`default_config_path`).

    Raises:
        ConfigError: the file is missing, unreadable, not a regular file, too large, not valid TOML, nested
            too deep, or describes no usable site.
    """
    path = path or default_config_path()
    text = read_site_file(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested lists and inline tables recursively
        raise _too_deep(str(path)) from None
    return parse_config(doc, path)


if __name__ == "__main__":  # python -m backend.config: the README's configuration reference
    print(reference_markdown(), end="")
