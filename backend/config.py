"""Site configuration: which image hosts and dom0s make up a site, read from TOML (``tomllib``).

The default file is ``platformdirs.user_config_dir("isoadmin")/site.toml``; ``--config FILE`` overrides
it and ``--lab`` writes its own. See README.md ("Configuration") for a complete example.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from .errors import ConfigError
from .naming import DEFAULT_TEMPLATE, check_template

APP = "isoadmin"
#: Where the ledger lives on the first image host unless ``[site] ledger`` says otherwise.
DEFAULT_LEDGER_PATH = "/var/lib/isoadmin"

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
        download_hosts: host names or addresses (``fnmatch`` patterns, e.g. ``*.example.org``) this image
            host may download from, for ``download-url`` and every redirect; empty (the default): none.
        cache_dir: the downloads cache on this image host (default ``/var/cache/isoadmin``).
    """

    ssh: HostConfig
    uploads_root: str = "/tmp/cds"
    domains: dict[str, str] = field(default_factory=dict)
    disk_id_dirs: tuple[str, ...] = ("/dev/disk/by-id",)
    max_copies: int = 2
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
    """

    ssh: HostConfig
    storage: dict[str, Any]
    hypervisor: dict[str, Any]
    staging_prefix: str = "cdtmp_"
    final_prefix: str = "cd_"

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
        state_dir: the console's own state (job journal, rejections).
        read_only: refuse every mutating operation (also set by ``--read-only``).
        settle_seconds: an upload whose mtime is younger than this is still ``writing``.
        refresh_seconds: pause between two inventory refreshes in the TUI.
        gc_days: uploads older than this many days are garbage-collected (``gc``; default 7).
        gc_rejected_days: the same for rejected uploads (default: ``gc_days``).
        quota: default per-owner disk quota in bytes (``[quotas] default``; 0 = unlimited).
        quotas: per-owner overrides in bytes (``[quotas.owners]``).
        owners: extra people who may act for an owner (``[owners] alice = ["helpdesk1"]``), beyond the
            members of the owner folder's group on the image host.
        naming: the template of final volume names (``[naming] template``; see :mod:`backend.naming`).
        ledger: where the site keeps its books, ``HOST:/path`` (``[site] ledger``); "" means the first
            image host, :data:`DEFAULT_LEDGER_PATH`. See :mod:`backend.ledger`.
        lease_seconds: how long a running job's lease lasts without renewal (``[site] lease_seconds``,
            default 30): after that any console may recover the job.
        cache_days: downloads cache entries older than this many days are removed by ``gc``
            (``[console] cache_days``, default 30).
        download_stall_seconds: a download that receives nothing for this long is cut off
            (``[downloads] stall_seconds``, default 30).
        download_max_bytes: the most a download may bring when neither the server's length nor the
            owner's quota bounds it (``[downloads] max_bytes``, default 16 GiB).
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
    quota: int = 0
    quotas: dict[str, int] = field(default_factory=dict)
    owners: dict[str, tuple[str, ...]] = field(default_factory=dict)
    naming: str = DEFAULT_TEMPLATE
    ledger: str = ""
    lease_seconds: float = 30.0
    cache_days: float = 30.0
    download_stall_seconds: float = 30.0
    download_max_bytes: int = 16 << 30
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


def _host(name: str, table: dict[str, Any], where: str) -> HostConfig:
    if not _NAME_RE.match(name):
        raise ConfigError(f"{where}: host name {name!r} must match [A-Za-z0-9][A-Za-z0-9_.-]*")
    port = table.get("port")
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        raise ConfigError(f"{where}.port: expected a TCP port, got {port!r}")

    def path(key: str) -> str | None:
        value = table.get(key)
        return None if value is None else str(Path(str(value)).expanduser())

    return HostConfig(
        name=name,
        address=str(table.get("address", name)),
        port=port,
        user=table.get("user"),
        key=path("key"),
        known_hosts=path("known_hosts"),
    )


def _positive(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: expected a whole number ≥ 1, got {value!r}")
    return value


def _table(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def parse_config(doc: dict[str, Any], source: Path | None = None) -> SiteConfig:
    """Build a :class:`SiteConfig` from a parsed TOML document.

    Raises:
        ConfigError: a required table is missing or a value is malformed (message names the key).
    """
    where = str(source or "config")
    console = _table(doc, "console", where)
    image_hosts: dict[str, ImageHostConfig] = {}
    for name, table in _table(doc, "image_hosts", where).items():
        here = f"{where}: image_hosts.{name}"
        domains = table.get("domains", {})
        if not isinstance(domains, dict):
            raise ConfigError(f"{here}.domains must map dom0 names to domain names")
        root = str(table.get("uploads_root", "/tmp/cds"))
        if not root.startswith("/"):
            raise ConfigError(f"{here}.uploads_root must be an absolute path")
        hosts = table.get("download_hosts", [])
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h.strip() for h in hosts):
            raise ConfigError(f"{here}.download_hosts: expected a list of host names or patterns, got {hosts!r}")
        cache_dir = str(table.get("cache_dir", "/var/cache/isoadmin"))
        if not cache_dir.startswith("/") or cache_dir.rstrip("/") == "":
            raise ConfigError(f"{here}.cache_dir: expected an absolute path other than /, got {cache_dir!r}")
        image_hosts[name] = ImageHostConfig(
            ssh=_host(name, table, here),
            uploads_root=root.rstrip("/") or "/",
            domains={str(k): str(v) for k, v in domains.items()},
            disk_id_dirs=tuple(str(d) for d in table.get("disk_id_dirs", ["/dev/disk/by-id"])),
            max_copies=_positive(table.get("max_copies", 2), f"{here}.max_copies"),
            download_hosts=tuple(h.strip().lower() for h in hosts),
            cache_dir=cache_dir.rstrip("/"),
        )
    dom0s: dict[str, Dom0Config] = {}
    for name, table in _table(doc, "dom0s", where).items():
        here = f"{where}: dom0s.{name}"
        storage = dict(table.get("storage", {}))
        hypervisor = dict(table.get("hypervisor", {}))
        if "driver" not in storage:
            raise ConfigError(f"{here}.storage.driver is required (files)")
        if "driver" not in hypervisor:
            raise ConfigError(f"{here}.hypervisor.driver is required (lab)")
        staging = str(table.get("staging_prefix", "cdtmp_"))
        final = str(table.get("final_prefix", "cd_"))
        for key, prefix in (("staging_prefix", staging), ("final_prefix", final)):
            if not _PREFIX_RE.match(prefix):
                raise ConfigError(f"{here}.{key} {prefix!r} must match [A-Za-z0-9][A-Za-z0-9+_.-]* (LVM names)")
        if staging.startswith(final) or final.startswith(staging):
            raise ConfigError(f"{here}: staging_prefix and final_prefix must not be prefixes of each other")
        dom0s[name] = Dom0Config(_host(name, table, here), storage, hypervisor, staging, final)
    if not image_hosts:
        raise ConfigError(f"{where}: no [image_hosts.NAME] table")
    if not dom0s:
        raise ConfigError(f"{where}: no [dom0s.NAME] table")
    for ih in image_hosts.values():
        for dom0 in ih.domains:
            if dom0 not in dom0s:
                raise ConfigError(f"{where}: image_hosts.{ih.name}.domains names unknown dom0 {dom0!r}")
    state_dir = console.get("state_dir")
    site = _table(doc, "site", where)
    ledger = site.get("ledger", "")
    if ledger:
        host, _, path = str(ledger).partition(":")
        if not path.startswith("/") or (host not in image_hosts and host not in dom0s):
            raise ConfigError(f"{where}: site.ledger: expected \"HOST:/absolute/path\" with HOST an image host "
                              f"or dom0 of this site, got {ledger!r}")
    lease = site.get("lease_seconds", 30)
    if isinstance(lease, bool) or not isinstance(lease, (int, float)) or not 2 <= lease <= 3600:
        raise ConfigError(f"{where}: site.lease_seconds: expected seconds from 2 to 3600, got {lease!r}")
    downloads = _table(doc, "downloads", where)
    stall = downloads.get("stall_seconds", 30)
    if isinstance(stall, bool) or not isinstance(stall, (int, float)) or not 1 <= stall <= 3600:
        raise ConfigError(f"{where}: downloads.stall_seconds: expected seconds from 1 to 3600, got {stall!r}")
    cache_days = console.get("cache_days", 30)
    if isinstance(cache_days, bool) or not isinstance(cache_days, (int, float)) or cache_days < 0:
        raise ConfigError(f"{where}: console.cache_days: expected a number of days ≥ 0, got {cache_days!r}")
    max_bytes = parse_size(downloads.get("max_bytes", "16 GiB"), "downloads.max_bytes")
    if max_bytes <= 0:
        raise ConfigError(f"{where}: downloads.max_bytes: must be more than 0")
    try:
        naming = check_template(str(_table(doc, "naming", where).get("template", DEFAULT_TEMPLATE)))
    except ValueError as exc:
        raise ConfigError(f"{where}: naming.template: {exc}") from None
    return SiteConfig(
        image_hosts=image_hosts,
        dom0s=dom0s,
        state_dir=Path(str(state_dir)).expanduser() if state_dir else default_state_dir(),
        read_only=bool(console.get("read_only", False)),
        settle_seconds=float(console.get("settle_seconds", 10.0)),
        refresh_seconds=float(console.get("refresh_seconds", 3.0)),
        gc_days=float(console.get("gc_days", 7.0)),
        gc_rejected_days=float(console.get("gc_rejected_days", console.get("gc_days", 7.0))),
        quota=parse_size(_table(doc, "quotas", where).get("default", 0), "quotas.default"),
        quotas={str(k): parse_size(v, f"quotas.owners.{k}")
                for k, v in _table(_table(doc, "quotas", where), "owners", where).items()},
        owners={str(k): tuple(str(m) for m in (v if isinstance(v, list) else [v]))
                for k, v in _table(doc, "owners", where).items()},
        naming=naming,
        ledger=str(ledger),
        lease_seconds=float(lease),
        cache_days=float(cache_days),
        download_stall_seconds=float(stall),
        download_max_bytes=max_bytes,
        source=source,
    )


def load_config(path: Path | None = None) -> SiteConfig:
    """Read and validate a site file (default: :func:`default_config_path`).

    Raises:
        ConfigError: the file is missing, is not valid TOML, or describes no usable site.
    """
    path = path or default_config_path()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no site file at {path}: write one (see README) or run with --lab") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(doc, path)
