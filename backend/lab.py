"""The embedded lab: a complete site on this machine, for a first look and for the tests.

``Lab(DIR).start()`` creates (on first use) and serves a site under DIR:

* in-process asyncssh SSH servers on 127.0.0.1 with ephemeral ports — an image host
  (``imagehost``) and dom0s (by default ``dom0-a`` and ``dom0-b``) — each with its own generated host key; a
  generated client key and per-host ``known_hosts`` files pin them. Each runs the commands it receives with
  ``/bin/sh -c`` on this machine, as sshd runs them with the login shell; host paths are real paths
  under DIR. ``Lab(busybox=...)`` makes hosts BusyBox systems instead: ``busybox sh -c``, BusyBox's applets
  first on their ``PATH``.
* storage driver ``files`` on each dom0 and hypervisor driver ``lab`` (hot-plug = a by-id link in
  the image host's ``dev/disk/by-id``): real backends behind the interfaces LVM and libvirt use.
* uploads of three owners: the real boot ISOs Debian packages ship (ipxe, grub-rescue-pc,
  memtest86+) where installed, ISOs generated with pycdlib, a floppy boot image that is not ISO 9660,
  a symlink, and one upload still being written (a task appends to it for a while).

``DIR/site.toml`` is rewritten at each start with the current ports; ``DIR/hosts.log`` records every
command the hosts receive.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import shutil
import signal
import subprocess
import tomllib
import time
from collections.abc import Iterable
from pathlib import Path

import asyncssh
import platformdirs
import pycdlib

from .config import APP, SiteConfig, parse_config
from .labweb import LabFtp, LabWeb

DEBIAN_ISOS = {
    "alice": [("/usr/lib/ipxe/ipxe.iso", "ipxe.iso"),
              ("/usr/lib/memtest86+/memtest86+x64.iso", "memtest86+x64.iso")],
    "bob": [("/usr/lib/grub-rescue/grub-rescue-cdrom.iso", "grub-rescue-cdrom.iso"),
            ("/usr/lib/grub-rescue/grub-rescue-floppy.img", "grub-rescue-floppy.img")],
    "carol": [("/usr/lib/memtest86+/memtest86+ia32.iso", "memtest86+ia32.iso")],
}
WRITING_NAME = ("carol", "incoming.iso")
DOM0_CAPACITY = {"dom0-a": "512 MiB", "dom0-b": "16 MiB"}

#: What a BusyBox lab host (``Lab(busybox=...)``) takes from this machine beyond BusyBox's applets: program name →
#: why the host needs it. Empty: the scripts need nothing BusyBox lacks (no ``getent``: the listing reads
#: ``/etc/group``; no ``openssl``: BusyBox's ``sha256sum``; no ``curl``: BusyBox's ``wget``). A test that wants a
#: BusyBox host with one more program says so with ``programs``.
BUSYBOX_FALLBACK: dict[str, str] = {}


def busybox_path() -> str:
    """This machine's BusyBox binary (``busybox`` on ``PATH``, else ``/bin/busybox``).

    Raises:
        FileNotFoundError: BusyBox is not installed (the Makefile's ``busybox-static``).
    """
    found = shutil.which("busybox") or ("/bin/busybox" if os.access("/bin/busybox", os.X_OK) else None)
    if not found:
        raise FileNotFoundError("busybox is not installed (apt-get install busybox-static)")
    return found


def default_lab_dir() -> Path:
    """The lab's default folder: ``<user data dir>/lab`` (platformdirs)."""
    return Path(platformdirs.user_data_dir(APP)) / "lab"


def make_iso(label: str, files: dict[str, bytes], bootable: bool = False) -> bytes:
    """Build a small ISO 9660 image with pycdlib.

    Args:
        label: the volume id (ISO 9660 d-characters). files: ISO name (``README.TXT;1``) → content.
        bootable: add an El Torito boot catalog with a no-emulation boot image.
    Returns:
        the image bytes.
    """
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=label)
    for name, data in files.items():
        iso.add_fp(io.BytesIO(data), len(data), "/" + name)
    if bootable:
        boot = b"\xeb\xfe" + b"\0" * 2046  # jmp $ : a boot image that halts
        iso.add_fp(io.BytesIO(boot), len(boot), "/BOOT.IMG;1")
        iso.add_eltorito("/BOOT.IMG;1", "/BOOT.CAT;1", media_name="noemul", boot_load_size=4)
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def make_kernel_iso(label: str, kernel: bytes, ramdisk: bytes, cmdline: str) -> bytes:
    """An ISO 9660 image with Rock Ridge names laid out as a live CD: ``/casper/vmlinuz``,
    ``/casper/initrd.gz``, an isolinux config (``/isolinux/isolinux.cfg``: one ``LABEL live`` with ``KERNEL``
    and ``APPEND initrd=… CMDLINE``) and a GRUB config (``/boot/grub/grub.cfg``: the same as a
    ``menuentry``), built with pycdlib.

    Returns:
        the image bytes.
    """
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=label, rock_ridge="1.09")
    for d in ("/CASPER", "/ISOLINUX", "/BOOT", "/BOOT/GRUB"):
        iso.add_directory(d, rr_name=d.rsplit("/", 1)[1].lower())
    isolinux = (f"DEFAULT live\nLABEL live\n  MENU LABEL ^Live system\n  KERNEL /casper/vmlinuz\n"
                f"  APPEND initrd=/casper/initrd.gz {cmdline}\nLABEL hd\n  COM32 chain.c32\n").encode()
    grub = (f"set timeout=5\nmenuentry 'Live system (GRUB)' {{\n  linux /casper/vmlinuz {cmdline}\n"
            f"  initrd /casper/initrd.gz\n}}\n").encode()
    for path, rr, data in (("/CASPER/VMLINUZ.;1", "vmlinuz", kernel), ("/CASPER/INITRD.GZ;1", "initrd.gz", ramdisk),
                           ("/ISOLINUX/ISOLINUX.CFG;1", "isolinux.cfg", isolinux),
                           ("/BOOT/GRUB/GRUB.CFG;1", "grub.cfg", grub)):
        iso.add_fp(io.BytesIO(data), len(data), path, rr_name=rr)
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def make_live_iso(label: str, kernel: bytes, ramdisk: bytes, cmdline: str, links: dict[str, str] | None = None,
                  entries: list[tuple[str, str, str]] | None = None) -> bytes:
    """An ISO 9660 image laid out as a Debian live CD, built with pycdlib: the files ``/live/vmlinuz-6.1.0`` and
    ``/live/initrd.img-6.1.0``, the Rock Ridge symbolic links (IEEE P1282 ``SL``) ``/live/vmlinuz ->
    vmlinuz-6.1.0`` and ``/live/initrd.img -> initrd.img-6.1.0``, and an isolinux config
    (``/isolinux/isolinux.cfg``) whose ``LABEL live`` boots ``/live/vmlinuz`` with ``initrd=/live/initrd.img
    CMDLINE``.

    Args:
        links: more Rock Ridge symbolic links, path in the ISO (``/live/loop-a``; missing folders are made) →
            target as recorded (relative, absolute, anything). entries: more config entries, (label, kernel path,
            ramdisk path or "").
    Returns:
        the image bytes.
    """
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=label, rock_ridge="1.09")
    folders = {"/": "/"}  # Rock Ridge folder → ISO 9660 folder

    def folder(rr: str) -> str:
        if rr not in folders:
            parent = folder(os.path.dirname(rr))
            name = "D%d" % len(folders)
            folders[rr] = parent.rstrip("/") + "/" + name
            iso.add_directory(folders[rr], rr_name=os.path.basename(rr))
        return folders[rr]

    config = (f"DEFAULT live\nLABEL live\n  MENU LABEL ^Live system\n  KERNEL /live/vmlinuz\n"
              f"  APPEND initrd=/live/initrd.img {cmdline}\n")
    for name, k, r in entries or []:
        config += f"LABEL {name}\n  KERNEL {k}\n" + (f"  APPEND initrd={r}\n" if r else "")
    for n, (path, data) in enumerate((("/live/vmlinuz-6.1.0", kernel), ("/live/initrd.img-6.1.0", ramdisk),
                                      ("/isolinux/isolinux.cfg", config.encode()))):
        where = folder(os.path.dirname(path)).rstrip("/")
        iso.add_fp(io.BytesIO(data), len(data), f"{where}/F{n}.;1", rr_name=os.path.basename(path))
    all_links = {"/live/vmlinuz": "vmlinuz-6.1.0", "/live/initrd.img": "initrd.img-6.1.0", **(links or {})}
    for n, (path, target) in enumerate(all_links.items()):
        where = folder(os.path.dirname(path)).rstrip("/")
        iso.add_symlink(f"{where}/L{n}.;1", rr_symlink_name=os.path.basename(path), rr_path=target)
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def floppy_image() -> bytes:
    """A 1.44 MB floppy image with a boot sector (0x55AA signature) and no ISO 9660: legitimate
    boot media that is not an ISO."""
    sector = bytearray(512)
    sector[0:3] = b"\xeb\x3c\x90"
    sector[3:11] = b"ISOADMIN"
    sector[510:512] = b"\x55\xaa"
    return bytes(sector) + b"\0" * (1474560 - 512)


class _Server(asyncssh.SSHServer):
    def __init__(self, connections: set) -> None:
        self.connections = connections
        self.conn = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self.conn)

    def begin_auth(self, username: str) -> bool:
        return True  # key auth only (authorized_client_keys)


class Lab:
    """An embedded lab site under ``directory``.

    Args:
        directory: the lab folder (created). writer_chunk, writer_interval: the writing upload grows by
            ``writer_chunk`` bytes every ``writer_interval`` seconds until complete.
        settle_seconds: the site's settle time (an upload younger than this is ``writing``).
        dom0s: dom0 name → ``files`` capacity (default ``dom0-a`` 512 MiB, ``dom0-b`` 16 MiB).
        seeded: create the owners' demo uploads and run the writer (default); False leaves the uploads
            root empty for the caller to fill (the benchmarks do).
        lease_seconds: the site's lease time (``[site] lease_seconds``).
        locate: dom0 name → its ``locate`` (``serial``, the default, or ``new-device``: hot-plug makes a new
            ``xvdX`` device in the image host's ``sys/block`` and ``dev`` folders, with no serial).
        programs: host name → program name → what that host has under that name: ``None`` hides the
            program (``{"imagehost": {"curl": None}}``: an image host without curl), a path puts that
            program there instead (``{"wget": "/bin/busybox"}``: BusyBox's wget). Such a host runs its
            commands with ``PATH`` set to its own folder (``DIR/path-HOST``) of links to this machine's
            programs, changed as asked; the others use this machine's ``PATH``.
        busybox: the hosts that are BusyBox systems (True: every host): each runs its commands with
            ``busybox sh -c`` (ash), its ``PATH`` a folder (``DIR/path-HOST``) of links to this machine's
            BusyBox for every applet ``busybox --list`` names, then the programs of
            :data:`BUSYBOX_FALLBACK` from this machine, then its ``programs`` changes. (A BusyBox built with
            ``FEATURE_SH_STANDALONE``, as Debian's is, runs its own applets before anything on ``PATH``: hiding
            an applet with ``programs`` does not hide it from such a shell.)

    Each dom0 also has two owners' VMs in ``DIR/<dom0>/vms`` (``alice-vm`` and ``bob-vm``, owned by alice
    and bob), with an empty CD-ROM drive.
    """

    def __init__(self, directory: Path | None = None, *, writer_chunk: int = 64 * 1024,
                 writer_interval: float = 1.0, settle_seconds: float = 5.0,
                 dom0s: dict[str, str] | None = None, seeded: bool = True, lease_seconds: float = 30.0,
                 locate: dict[str, str] | None = None,
                 programs: dict[str, dict[str, str | None]] | None = None,
                 busybox: bool | Iterable[str] = ()) -> None:
        self.dir = Path(directory or default_lab_dir()).absolute()
        self.dom0s = dict(dom0s or DOM0_CAPACITY)
        self.hosts = ("imagehost", *self.dom0s)
        self.seeded = seeded
        self.writer_chunk = writer_chunk
        self.writer_interval = writer_interval
        self.settle_seconds = settle_seconds
        self.lease_seconds = lease_seconds
        self.locate = dict(locate or {})
        self.programs = {host: dict(p) for host, p in (programs or {}).items()}
        #: the hosts that are BusyBox systems (see ``busybox``)
        if isinstance(busybox, str):
            busybox = (busybox,)
        self.busybox = frozenset(self.hosts if busybox is True else (busybox or ()))
        unknown = self.busybox - set(self.hosts)
        if unknown:
            raise ValueError(f"busybox: no such lab host {sorted(unknown)}")
        self._busybox = ""  # this machine's BusyBox, found at start when a host is a BusyBox system
        self.paths: dict[str, str] = {}  # host → the PATH its commands run with (``programs``, BusyBox hosts)
        self.servers: dict[str, asyncssh.SSHAcceptor] = {}
        self.ports: dict[str, int] = {}
        self.children: set[asyncio.subprocess.Process] = set()
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self.writer: asyncio.Task | None = None
        #: the lab's web server on 127.0.0.1 (:mod:`backend.labweb`), serving the Debian ISOs; started by start()
        self.web = LabWeb(self.dir / "www")
        #: the same files over FTP (anonymous, read-only), when pyftpdlib is installed; started by start()
        self.ftp = LabFtp(self.dir / "www")

    # paths
    @property
    def uploads_root(self) -> Path:
        """The image host's uploads root (one folder per owner)."""
        return self.dir / "imagehost" / "cds"

    @property
    def ledger_dir(self) -> Path:
        """The site's ledger, on the image host (``[site] ledger``)."""
        return self.dir / "imagehost" / "ledger"

    @property
    def cache_dir(self) -> Path:
        """The image host's downloads cache (``[image_hosts.imagehost] cache_dir``)."""
        return self.dir / "imagehost" / "cache"

    @property
    def web_port_file(self) -> Path:
        """``DIR/www.port``: the port of the lab's web server on 127.0.0.1, written at each start."""
        return self.dir / "www.port"

    @property
    def by_id(self) -> Path:
        """The image host's ``/dev/disk/by-id``: where the lab hypervisor hot-plugs disks."""
        return self.dir / "imagehost" / "dev" / "disk" / "by-id"

    @property
    def sys_block(self) -> Path:
        """The image host's ``/sys/block``: where a hot-plug without a serial makes a new device."""
        return self.dir / "imagehost" / "sys" / "block"

    @property
    def dev_dir(self) -> Path:
        """The image host's ``/dev`` (block device nodes of ``new-device`` hot-plugs)."""
        return self.dir / "imagehost" / "dev"

    def vm_dir(self, dom0: str) -> Path:
        """The owners' VMs of ``dom0`` (one folder each, see :class:`~backend.hypervisor.lab.LabHypervisor`)."""
        return self.dir / dom0 / "vms"

    def volumes_dir(self, dom0: str) -> Path:
        """The ``files`` storage folder of ``dom0``."""
        return self.dir / dom0 / "volumes"

    @property
    def config_path(self) -> Path:
        """``DIR/site.toml``: the lab's site file, rewritten at each start."""
        return self.dir / "site.toml"

    async def start(self) -> SiteConfig:
        """Create the lab if new, start its SSH servers and the writer, write ``site.toml``.

        Returns:
            the lab's :class:`SiteConfig`.
        Raises:
            OSError: DIR cannot be created or written (FileNotFoundError: a host is to be a BusyBox system and
                this machine has no BusyBox).
        """
        keys = self.dir / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        for d in (self.uploads_root, self.by_id, self.sys_block, *map(self.volumes_dir, self.dom0s),
                  self.dir / "state"):
            d.mkdir(parents=True, exist_ok=True)
        for dom0 in self.dom0s:
            for owner in ("alice", "bob"):
                vm = self.vm_dir(dom0) / f"{owner}-vm"
                if not vm.is_dir():
                    vm.mkdir(parents=True)
                    (vm / "owner").write_text(owner + "\n")
        if self.busybox:
            self._busybox = busybox_path()
        for host in sorted(set(self.programs) | self.busybox):
            changes = self.programs.get(host, {})
            folder = self._busybox_dir(host, changes) if host in self.busybox else self._program_dir(host, changes)
            self.paths[host] = str(folder)
        client = self._key(keys / "client")
        self._write(keys / "authorized_keys", client.export_public_key().decode())
        for name in self.hosts:
            host_key = self._key(keys / f"host-{name}")
            # pinned per host, whatever its (ephemeral) port: consoles sharing this lab never race on it
            self._write(keys / f"known_hosts-{name}",
                        f"[127.0.0.1]:* {host_key.export_public_key().decode().strip()}\n")
            acceptor = await asyncssh.listen(
                "127.0.0.1", 0, server_host_keys=[host_key],
                authorized_client_keys=str(keys / "authorized_keys"),
                process_factory=functools.partial(self._handle, name),
                server_factory=lambda: _Server(self.connections), sftp_factory=True,
                allow_scp=False, keepalive_interval=30, encoding=None)
            self.servers[name] = acceptor
            self.ports[name] = acceptor.get_port()
        if self.seeded and not (self.dir / ".seeded").exists():
            self.seed()
        self.web.folder.mkdir(parents=True, exist_ok=True)
        for items in DEBIAN_ISOS.values():
            for src, name in items:
                if Path(src).is_file() and name.endswith(".iso") and not (self.web.folder / name).exists():
                    shutil.copyfile(src, self.web.folder / name)
        self.web.start()
        self.ftp.start()
        self._write(self.web_port_file, f"{self.web.port}\n")  # for consoles of a served lab (tests)
        text = self._site_toml()
        self._write(self.config_path, text)  # for people; this process uses its own text
        if self.seeded:
            self.writer = asyncio.create_task(self._write_upload())
        return parse_config(tomllib.loads(text), self.config_path)

    def _program_dir(self, host: str, changes: dict[str, str | None]) -> Path:
        """``DIR/path-HOST``: a link to every program on this machine's ``PATH`` (the first of each name),
        except the ones ``changes`` hides (``None``) or points elsewhere (a path). Made anew at each start."""
        folder = self.dir / f"path-{host}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, target in changes.items():
            if target is not None:
                (folder / name).symlink_to(target)
        for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
            try:
                entries = list(os.scandir(d or "."))
            except OSError:
                continue
            for e in entries:
                link = folder / e.name
                if (e.name in changes or link.is_symlink() or e.is_dir()
                        or not os.access(e.path, os.X_OK)):
                    continue
                link.symlink_to(e.path)
        return folder

    def _busybox_dir(self, host: str, changes: dict[str, str | None]) -> Path:
        """``DIR/path-HOST`` for a BusyBox host: a link to this machine's BusyBox for every applet
        ``busybox --list`` names, a link to this machine's program for each name of :data:`BUSYBOX_FALLBACK`
        that BusyBox lacks, then ``changes`` (``None`` removes a name, a path points it there). Made anew at each
        start."""
        busybox = self._busybox
        folder = self.dir / f"path-{host}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
        links = {name: busybox for name in applets if "/" not in name}
        for name in BUSYBOX_FALLBACK:
            if name not in links and (found := shutil.which(name)):
                links[name] = found
        for name, target in changes.items():
            if target is None:
                links.pop(name, None)
            else:
                links[name] = target
        for name, target in links.items():
            (folder / name).symlink_to(target)
        return folder

    @staticmethod
    def _write(path: Path, text: str) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)

    async def stop(self) -> None:
        """Stop the servers, their connections, the writer and any command still running (as a host
        going down would)."""
        if self.writer:
            self.writer.cancel()
        servers = asyncio.gather(asyncio.to_thread(self.web.stop), asyncio.to_thread(self.ftp.stop))
        for acceptor in self.servers.values():
            acceptor.close()
        for conn in list(self.connections):
            conn.close()
        for proc in list(self.children):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for acceptor in self.servers.values():
            await acceptor.wait_closed()
        self.servers.clear()
        await servers

    async def __aenter__(self) -> "Lab":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @staticmethod
    def _key(path: Path) -> asyncssh.SSHKey:
        """Read the key at ``path``, generating it first if missing (two starting consoles agree)."""
        if not path.exists():
            key = asyncssh.generate_private_key("ssh-ed25519")
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            key.write_private_key(tmp)
            tmp.chmod(0o600)
            try:
                os.link(tmp, path)  # atomic: the first writer wins
            except FileExistsError:
                pass
            tmp.unlink()
        return asyncssh.read_private_key(path)

    @property
    def command_log(self) -> Path:
        """Every command the lab's hosts received, one JSON object per line: ``{"host", "command", "time"}``."""
        return self.dir / "hosts.log"

    async def _handle(self, host: str, process: asyncssh.SSHServerProcess) -> None:
        with open(self.command_log, "a", encoding="utf-8") as log:
            log.write(json.dumps({"host": host, "command": process.command, "time": time.time()}) + "\n")
        if not process.command:
            process.stderr.write(b"this lab host runs commands only\n")
            process.exit(1)
            return
        shell = (self._busybox, "sh") if host in self.busybox else ("/bin/sh",)
        proc = await asyncio.create_subprocess_exec(
            *shell, "-c", process.command, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=str(self.dir), start_new_session=True,
            env=dict(os.environ, PATH=self.paths[host]) if host in self.paths else None)
        self.children.add(proc)

        async def feed() -> None:
            try:
                while chunk := await process.stdin.read(65536):
                    proc.stdin.write(chunk)
                    await proc.stdin.drain()
            except (OSError, asyncssh.Error):
                pass
            finally:
                proc.stdin.close()

        async def pump(source: asyncio.StreamReader, sink) -> None:
            while chunk := await source.read(65536):
                sink.write(chunk)
                await sink.drain()

        stdin_task = asyncio.create_task(feed())
        try:
            await asyncio.gather(pump(proc.stdout, process.stdout), pump(proc.stderr, process.stderr))
            status = await proc.wait()
            process.exit(status if status >= 0 else 128 - status)
        except (OSError, asyncssh.Error):
            pass  # the client went away; like sshd without a pty, the command keeps running
        finally:
            stdin_task.cancel()
            self.children.discard(proc)

    def _site_toml(self) -> str:
        keys = self.dir / "keys"

        def q(value: object) -> str:
            return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

        def ssh(host: str) -> str:
            return (f"address = \"127.0.0.1\"\nport = {self.ports[host]}\nuser = \"lab\"\n"
                    f"key = {q(keys / 'client')}\nknown_hosts = {q(keys / f'known_hosts-{host}')}\n")

        out = [
            "# Written by `isoadmin --lab` at each start (ports change); edit a copy, not this file.\n",
            f"[console]\nstate_dir = {q(self.dir / 'state')}\nsettle_seconds = {self.settle_seconds}\n"
            f"refresh_seconds = 2\n",
            f"\n[site]\nledger = {q('imagehost:' + str(self.ledger_dir))}\nlease_seconds = {self.lease_seconds:g}\n",
            f"\n[image_hosts.imagehost]\n{ssh('imagehost')}"
            f"uploads_root = {q(self.uploads_root)}\ndisk_id_dirs = [{q(self.by_id)}]\n"
            f"sys_block = {q(self.sys_block)}\ndev_dir = {q(self.dev_dir)}\n"
            f"download_hosts = [\"127.0.0.1\"]\ncache_dir = {q(self.cache_dir)}\n"
            "domains = { " + ", ".join(f"{q(d)} = \"imagehost\"" for d in self.dom0s) + " }\n",
        ]
        for dom0 in self.dom0s:
            out.append(
                f"\n[dom0s.{dom0}]\n{ssh(dom0)}"
                f"locate = {q(self.locate.get(dom0, 'serial'))}\n"
                f"kernel_dir = {q(self.dir / dom0 / 'kernels')}\n"
                f"[dom0s.{dom0}.storage]\ndriver = \"files\"\ndirectory = {q(self.volumes_dir(dom0))}\n"
                f"capacity = {q(self.dom0s[dom0])}\n"
                f"[dom0s.{dom0}.hypervisor]\ndriver = \"lab\"\n"
                f"guest_disk_dirs = {{ imagehost = {q(self.by_id)} }}\n"
                f"guest_block_dirs = {{ imagehost = {q(self.sys_block)} }}\n"
                f"guest_dev_dirs = {{ imagehost = {q(self.dev_dir)} }}\n"
                f"vm_dir = {q(self.vm_dir(dom0))}\n")
        return "".join(out)

    def seed(self) -> None:
        """Create the owners' uploads (see module docstring). Safe to call again."""
        root = self.uploads_root
        for owner, items in DEBIAN_ISOS.items():
            (root / owner).mkdir(parents=True, exist_ok=True)
            for src, name in items:
                if Path(src).is_file() and not (root / owner / name).exists():
                    shutil.copyfile(src, root / owner / name)
        readme = b"isoadmin lab\n" * 100
        (root / "alice" / "tools.iso").write_bytes(make_iso("TOOLS", {"README.TXT;1": readme}))
        (root / "bob" / "rescue-boot.iso").write_bytes(
            make_iso("RESCUE_BOOT", {"README.TXT;1": readme}, bootable=True))
        (root / "bob" / "boot-floppy.img").write_bytes(floppy_image())
        link = root / "alice" / "passwd.iso"
        if not link.is_symlink():
            link.symlink_to("/etc/passwd")
        past = time.time() - 3600  # uploaded an hour ago: settled
        for path in root.glob("*/*"):
            if not path.is_symlink():
                os.utime(path, (past, past))
        (root / WRITING_NAME[0] / WRITING_NAME[1]).write_bytes(b"")
        (self.dir / ".seeded").write_text("ok\n")

    async def _write_upload(self) -> None:
        """Grow ``carol/incoming.iso`` toward a full ISO, as an SFTP upload in progress would."""
        target = self.uploads_root / WRITING_NAME[0] / WRITING_NAME[1]
        source = make_iso("INCOMING", {"DATA.BIN;1": bytes(range(256)) * 8192}, bootable=True)
        try:
            while target.exists() and not target.is_symlink() and target.stat().st_size < len(source):
                done = target.stat().st_size
                with open(target, "ab") as f:
                    f.write(source[done:done + self.writer_chunk])
                await asyncio.sleep(self.writer_interval)
        except (OSError, asyncio.CancelledError):
            return
