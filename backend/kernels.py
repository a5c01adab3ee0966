"""Kernel sets: a bootable kernel, its ramdisk and its command line, taken out of an imported ISO and staged
on a dom0 so a VM can boot them directly (libvirt ``<kernel>``, ``<initrd>``, ``<cmdline>``; Xen PV
``kernel=``/``ramdisk=``).

**Finding the entries.** The ISO is read through pycdlib (ISO 9660 / ECMA-119, with Rock Ridge or Joliet
names when present) from its **final volume on the dom0**: pycdlib's reads become ``dd`` reads of 64 KiB
blocks of that volume over the dom0's SSH connection (only directory records and the small boot
configs are fetched, never the kernel). The entries come from

* isolinux / syslinux configs (every ``*.cfg`` in an ``isolinux`` or ``syslinux`` folder: ``LABEL``,
  ``MENU LABEL``, ``KERNEL``/``LINUX``, ``INITRD``, ``APPEND`` with its ``initrd=``; syntax of the syslinux
  project's config documentation; relative paths are relative to the config's folder);
* GRUB 2 configs (``grub.cfg`` and ``loopback.cfg`` anywhere): ``menuentry 'TITLE' { linux PATH ARGS;
  initrd PATH }`` (also ``linux16``/``linuxefi``; paths with GRUB variables are skipped);
* the usual places when no config names them: ``vmlinuz*``/``linux``/``bzImage`` with ``initrd*`` or
  ``initramfs*`` beside it in ``/install*/``, ``/casper/``, ``/live/``, ``/boot/`` (empty command line).

Rock Ridge symbolic links (IEEE P1282 ``SL`` entries, as live CDs have: ``/live/vmlinuz -> vmlinuz-6.1.0``) are
followed inside the ISO only (:meth:`IsoTree.resolve`: relative targets against the link's folder, absolute ones
against the ISO's root, at most :data:`MAX_LINKS` links), so the entry's bytes are its target's extent. An
owner's ISO is hostile ground: pycdlib's open, the walk of the tree and every config and entry run under
:func:`backend.errors.owner_bytes`. An ISO that cannot be opened is one :class:`~backend.errors.Unreadable`
naming the volume; an entry that cannot be read (a link loop, a target outside the ISO or missing, a file in
pieces or outside the image, a command line too long) or a config that cannot be read is left out and named
with its reason in :attr:`Entries.skipped`; at most :data:`READ_BUDGET` bytes of the image are read.

**Where the bytes come from.** A set is staged on the dom0 that holds the ISO's final volume: a constant
``sh`` script there copies the kernel and the ramdisk out of the volume with ``dd`` at their byte extents
(pycdlib ``get_file_byte_extents``), so the bytes never leave the dom0 and come from the verified, landed
ISO (not from the upload, which may change or be garbage-collected). To boot a kernel on another dom0,
import the ISO onto that dom0 (``approve --dom0``): dom0s share no storage and nothing is sent through the
console.

**From an upload pair.** An owner may upload a bare kernel and ramdisk instead of an ISO, e.g.
``vmlinuz-6.1.0-28-amd64`` and ``initrd.img-6.1.0-28-amd64`` (also ``initrd-*``, ``initramfs-*``). The kernel
is recognised by its header (the x86 boot protocol, :func:`backend.isoinfo.linux_kernel`), whatever its name;
a ramdisk is a file of the same owner folder whose name starts with ``initrd`` or ``initramfs`` and whose
first bytes are cpio or a compression format the kernel unpacks. ``kernels OWNER/KERNEL`` shows the one
entry, paired by :func:`pair`:

1. the ramdisk whose version (its name without ``initrd.img`` / ``initrd`` / ``initramfs``, separators and
   ``.img`` / ``.gz`` / ``.zst`` ... endings) equals the kernel's (its name without ``vmlinuz`` / ``vmlinux`` /
   ``bzImage`` / ``kernel`` / ``linux`` and separators): ``vmlinuz-6.1.0`` goes with ``initrd.img-6.1.0``,
   ``initrd-6.1.0`` or ``initramfs-6.1.0.img``;
2. else, when the folder holds exactly one kernel and exactly one ramdisk and their names do not carry two
   different versions (``vmlinuz`` + ``initrd.gz``, ``vmlinuz-6.1.0`` + ``initrd.img``), those two;
3. else the pair is refused (:class:`~backend.errors.NotApprovable`, exit 6) naming what was found: no
   ramdisk, ramdisks of other versions only, or several that could go with it.

Its command line is empty unless ``stage-kernel --cmdline`` gives one (a VM's definition may also carry
one). Staging streams both files from the image host to the dom0 over the console's two SSH connections
(the image host's ``dd`` → the console → the dom0's ``dd``; dom0s and image hosts share no storage),
hashing them on the way; the dom0 hashes what landed and renames the set into place only when both digests
equal those of the bytes read from the upload, and the upload's size, mtime and inode were the same before
and after the read as in the listing the admin saw. Any dom0 can be the target (``--dom0``; default the
image host's first domain's dom0).

**On the dom0.** ``kernel_dir`` (per dom0, default :data:`DEFAULT_KERNEL_DIR`) holds
``<owner>/<name>-<sha8>/`` with ``kernel``, ``ramdisk`` (when the entry has one), ``cmdline`` (one line),
``SHA256SUMS`` (``sha256sum`` format) and ``isoadmin.json`` (owner, volume, entry, paths in the ISO, time).
The set is written under a temporary name (``.staging-…``) and renamed into place only once complete, so a
half-staged set never looks like one; ``check`` reports temporary folders older than ten minutes and
``repair --apply`` removes them. Sets count against their owner's quota, appear in the catalog as types
``kernel`` and ``ramdisk``, can be deleted (refused while a domain boots from them) and are
garbage-collected after ``kernel_gc_days`` when no domain refers to them.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import posixpath
import re
import time
from dataclasses import asdict, dataclass, field

import asyncssh
import pycdlib

from . import hosttools, imagehost, quota
from .commands import script
from .errors import HostError, IsoadminError, NotApprovable, NotFound, Unreadable, UsageError, owner_bytes
from .hostscripts import load
from .models import Upload, UploadState, Volume
from .text import printable

#: Where kernel sets go on a dom0 unless ``[dom0s.NAME] kernel_dir`` says otherwise.
DEFAULT_KERNEL_DIR = "/var/lib/isoadmin/kernels"
#: A temporary ``.staging-*`` folder older than this (minutes) is a leftover, not a staging in flight.
LEFTOVER_MINUTES = 10
BLOCK = 65536
_NAME_OK = re.compile(r"[^A-Za-z0-9._+-]+")


@dataclass
class KernelEntry:
    """One bootable entry of an ISO.

    Attributes:
        number: 1-based position in the list (``stage-kernel`` accepts it or the label).
        label: the entry's name (syslinux ``LABEL`` / GRUB ``menuentry`` title / the kernel's file name).
        kernel, ramdisk: absolute paths inside the ISO (ramdisk "" when the entry has none); for an upload
        pair, the uploads' paths on the image host.
        cmdline: the kernel command line (without ``initrd=``). source: the config it came from,
        ``usual place``, or ``upload pair``. kernel_size, ramdisk_size: bytes.
    """

    number: int
    label: str
    kernel: str
    ramdisk: str
    cmdline: str
    source: str
    kernel_size: int = 0
    ramdisk_size: int = 0

    def to_json(self) -> dict:
        """The ``kernels --json`` item."""
        return asdict(self)


@dataclass
class KernelSet:
    """A kernel set staged on a dom0.

    Attributes:
        dom0, owner, name: where it is (``kernel_dir/<owner>/<name>``). path: its folder on the dom0.
        kernel_size, ramdisk_size: bytes. sha256: file name → hex digest (``SHA256SUMS``).
        cmdline: the command line. meta: ``isoadmin.json`` (volume, entry, ISO paths, time, ...).
    """

    dom0: str
    owner: str
    name: str
    path: str
    kernel_size: int
    ramdisk_size: int
    sha256: dict = field(default_factory=dict)
    cmdline: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Bytes counted against the owner's quota (kernel + ramdisk)."""
        return self.kernel_size + self.ramdisk_size

    @property
    def ref(self) -> str:
        """``DOM0:OWNER/NAME``, as ``delete-kernel`` takes it."""
        return f"{self.dom0}:{self.owner}/{self.name}"

    def to_json(self) -> dict:
        """The ``kernel-sets --json`` item."""
        return {**asdict(self), "size": self.size, "ref": self.ref}


# --------------------------------------------------------------------------- reading the ISO on the dom0

_READ = load("kernels-read-iso.sh")


class RemoteImage(io.RawIOBase):
    """A read-only, seekable file over a volume on a dom0: each read fetches the 64 KiB blocks it needs with
    one ``dd`` over SSH (cached). Used from a worker thread: every read waits for the event loop ``loop``.

    Args:
        host: the dom0. path: the volume's path there. size: bytes of the image (its recorded size).
    """

    def __init__(self, host, path: str, size: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.host, self.path, self.size, self.loop = host, path, size, loop
        self.pos = 0
        self.blocks: dict[int, bytes] = {}
        self.commands = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def _fetch(self, first: int, count: int) -> None:
        self.commands += 1
        future = asyncio.run_coroutine_threadsafe(
            self.host.run(script(_READ, "isoadmin-read-iso", self.path, str(first), str(count))), self.loop)
        try:
            data = future.result(timeout=120).stdout
        except TimeoutError:
            future.cancel()
            raise HostError(self.host.name, f"reading {self.path} took more than 120 s") from None
        for i in range(count):
            self.blocks[first + i] = data[i * BLOCK:(i + 1) * BLOCK]

    def read(self, n: int = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self.pos + n)
        if end <= self.pos:
            return b""
        first, last = self.pos // BLOCK, (end - 1) // BLOCK
        missing = [b for b in range(first, last + 1) if b not in self.blocks]
        if missing:
            self._fetch(missing[0], missing[-1] - missing[0] + 1)
        data = b"".join(self.blocks.get(b, b"") for b in range(first, last + 1))
        out = data[self.pos - first * BLOCK:end - first * BLOCK]
        self.pos += len(out)
        return out

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


#: At most this many symbolic links are followed to resolve one path inside an ISO (more is taken for a loop).
MAX_LINKS = 8
#: At most this many bytes of an ISO are read to list its entries (volume descriptors, path tables, directory
#: records, Rock Ridge continuation areas, boot configs): an image that needs more is refused, not read on.
READ_BUDGET = 32 << 20
#: At most this many bytes of one boot config are parsed.
CONFIG_LIMIT = 1 << 20
#: At most this many entries are listed (the rest are named as skipped).
MAX_ENTRIES = 256
#: An entry whose command line is longer is skipped (x86 Linux takes 2048 bytes, a few arches 4096).
CMDLINE_LIMIT = 4096


class ReadBudgetSpent(Unreadable):
    """An ISO would need more than :data:`READ_BUDGET` bytes read to be listed (records claiming absurd sizes, or
    sending pycdlib round in circles): the listing stops, nothing is listed."""


class _Budget(io.RawIOBase):
    """A read-only file over ``image`` that raises :class:`ReadBudgetSpent` once more than ``budget`` bytes were
    read through it (``what`` names the ISO in the message)."""

    def __init__(self, image, what: str, budget: int = READ_BUDGET) -> None:
        super().__init__()
        self.image, self.what, self.left, self.budget = image, what, budget, budget

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.image.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.image.seek(offset, whence)

    def read(self, n: int = -1) -> bytes:
        if n is not None and n > self.left:
            n = self.left + 1  # one byte over: enough to know the budget is spent
        data = self.image.read(n if n is not None and n >= 0 else self.left + 1)
        self.left -= len(data)
        if self.left < 0:
            size = f"{self.budget >> 20} MiB" if self.budget >= 1 << 20 else f"{self.budget} bytes"
            raise ReadBudgetSpent(f"{self.what}: more than {size} of its directory records and configs would be "
                                  "read; not listed")
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


@dataclass(frozen=True)
class Skipped:
    """A boot entry (or a boot config) left out of a listing, and why.

    Attributes:
        label: the entry's label ("" for a config that could not be read). path: the path in the ISO that failed
        (the kernel, the ramdisk or the config). source: the config the entry came from, or ``usual place``.
        reason: why, for people (``symbolic link loop (more than 8 links followed)``, ``not a file in the ISO`` ...).
    """

    label: str
    path: str
    source: str
    reason: str

    def __str__(self) -> str:
        """``LABEL (from SOURCE): PATH: REASON`` (without what is empty)."""
        what = f"{self.label} (from {self.source})" if self.label else self.source or self.path
        return ": ".join(p for p in (what, self.path if self.path != what else "", self.reason) if p)

    def to_json(self) -> dict:
        """``{label, path, source, reason}``."""
        return asdict(self)


class Entries(list):
    """The :class:`KernelEntry` list of a listing (a ``list``), with what was left out of it.

    Attributes:
        skipped: the :class:`Skipped` entries and configs, in the order met.
        extents: an entry's kernel or ramdisk path (as the entry names it) → (byte offset in the image, length)
            of the file its bytes come from (a symbolic link's target).
    """

    def __init__(self, items=(), skipped: list[Skipped] | None = None,
                 extents: dict[str, tuple[int, int]] | None = None) -> None:
        super().__init__(items)
        self.skipped: list[Skipped] = skipped if skipped is not None else []
        self.extents: dict[str, tuple[int, int]] = extents if extents is not None else {}


class IsoTree:
    """The files of an opened ISO by lower-case path (``/casper/vmlinuz``), with the name pycdlib wants
    (Rock Ridge, else Joliet, else ISO 9660 without its ``;1``), and its symbolic links.

    Symbolic links exist in the Rock Ridge names only (IEEE P1282, the ``SL`` entry of a directory record's
    System Use area, SUSP IEEE P1281); Joliet and plain ISO 9660 (ECMA-119) have none, and UDF's are not read
    (the tree is never read through UDF). A link is followed inside the ISO only (:meth:`resolve`).

    Args:
        iso: an opened pycdlib image. size: the image's size in bytes (None: unknown, extents not checked).
    Attributes:
        kind: ``rr_path``, ``joliet_path`` or ``iso_path``. files: lower-case path → pycdlib's path, of regular
        files. links: lower-case path → the link's target as recorded (relative or absolute). broken: lower-case
        path → why its Rock Ridge entry could not be read.
    Raises:
        any pycdlib error, ``UnicodeDecodeError`` (a name that is not UTF-8): callers run it under
        :func:`backend.errors.owner_bytes`.
    """

    def __init__(self, iso: pycdlib.PyCdlib, size: int | None = None) -> None:
        self.iso, self.size = iso, size
        self.kind = "rr_path" if iso.has_rock_ridge() else "joliet_path" if iso.has_joliet() else "iso_path"
        self.files: dict[str, str] = {}
        self.links: dict[str, str] = {}
        self.broken: dict[str, str] = {}
        for top, _dirs, names in iso.walk(**{self.kind: "/"}):
            for name in names:
                real = posixpath.join(top, name)
                key = self.norm(real)
                if self.kind != "rr_path":
                    self.files[key] = real
                    continue
                try:
                    with owner_bytes("", "unreadable Rock Ridge entry"):
                        rr = iso.get_record(rr_path=real).rock_ridge
                        if rr is not None and rr.is_symlink():
                            self.links[key] = rr.symlink_path().decode("utf-8", "surrogateescape")
                        else:
                            self.files[key] = real
                except Unreadable as exc:
                    self.broken[key] = exc.message

    @staticmethod
    def norm(path: str) -> str:
        """``/ISOLINUX/ISOLINUX.CFG;1`` → ``/isolinux/isolinux.cfg``."""
        path = "/" + path.strip().lstrip("/")
        path = re.sub(r";\d*$", "", path)
        return posixpath.normpath(path.rstrip(".") or "/").lower()

    def names(self) -> list[str]:
        """Every path of the tree that is not a directory (files, links, unreadable entries), sorted."""
        return sorted({*self.files, *self.links, *self.broken})

    def resolve(self, path: str) -> str:
        """The regular file ``path`` ends at, its symbolic links followed inside the ISO: a relative target
        against the link's folder, an absolute one against the ISO's root, at most :data:`MAX_LINKS` links.

        Args:
            path: a path in the ISO (any case, ``;1`` version and trailing dot allowed).
        Returns:
            the file's key in :attr:`files`.
        Raises:
            Unreadable: a loop (more than :data:`MAX_LINKS` links), a target above the ISO's root, an entry that
                could not be read, or no such file (the message says which, without the path).
        """
        todo = self._parts(path)
        here: list[str] = []
        hops = 0
        while todo:
            name = todo.pop(0)
            if name == "..":
                if here:
                    here.pop()
                elif hops:
                    raise Unreadable("a symbolic link points outside the ISO")
                continue
            at = "/" + "/".join([*here, name])
            if at in self.broken:
                raise Unreadable(self.broken[at])
            target = self.links.get(at)
            if target is None:
                here.append(name)
                continue
            hops += 1
            if hops > MAX_LINKS:
                raise Unreadable(f"symbolic link loop (more than {MAX_LINKS} links followed)")
            if target.startswith("/"):
                here = []
            todo = self._parts(target) + todo
        found = "/" + "/".join(here)
        if found not in self.files:
            raise Unreadable(f"its target {found} is not a file in the ISO" if hops else "not a file in the ISO")
        return found

    @staticmethod
    def _parts(path: str) -> list[str]:
        path = re.sub(r";\d*$", "", path.strip())
        parts = [p for p in path.lower().split("/") if p and p != "."]
        if parts and parts[-1] != "..":
            parts[-1] = parts[-1].rstrip(".") or parts[-1]
        return parts

    def read(self, path: str, limit: int = CONFIG_LIMIT) -> str:
        """The first ``limit`` bytes of file ``path`` (links followed), as text (UTF-8, bad bytes replaced).

        Raises:
            Unreadable: see :meth:`resolve`; pycdlib's errors.
        """
        with self.iso.open_file_from_iso(**{self.kind: self.files[self.resolve(path)]}) as f:
            return f.read(limit).decode("utf-8", "replace")

    def extent(self, path: str) -> tuple[int, int]:
        """(byte offset in the image, length) of file ``path`` (links followed) stored in one contiguous run.

        Raises:
            Unreadable: see :meth:`resolve`; the file is split over several extents, or its extent does not lie
                within the image. pycdlib's errors.
        """
        runs = self.iso.get_file_byte_extents(**{self.kind: self.files[self.resolve(path)]})
        if len(runs) != 1:
            raise Unreadable(f"stored in {len(runs)} pieces in the ISO; not staged")
        offset, length = int(runs[0][0]), int(runs[0][1])
        if offset < 0 or length < 0 or (self.size is not None and offset + length > self.size):
            raise Unreadable(f"its extent ({length} bytes at {offset}) lies outside the image ({self.size} bytes)")
        return offset, length


def _syslinux(text: str, cfg: str) -> list[dict]:
    entries, cur = [], None
    folder = posixpath.dirname(cfg)
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word, rest = word.lower(), rest.strip()
        if word == "label":
            cur = {"label": rest, "kernel": "", "initrd": "", "append": "", "title": ""}
            entries.append(cur)
        elif cur is None:
            continue
        elif word in ("kernel", "linux"):
            cur["kernel"] = rest.split()[0] if rest else ""
        elif word == "initrd":
            cur["initrd"] = rest.split(",")[0].strip()
        elif word == "append":
            cur["append"] = rest
        elif word == "menu" and rest.lower().startswith("label "):
            cur["title"] = rest[6:].strip().replace("^", "")
    out = []
    for e in entries:
        words = []
        for w in e["append"].split():
            if w.lower().startswith("initrd="):
                e["initrd"] = e["initrd"] or w[7:].split(",")[0]
            else:
                words.append(w)
        if not e["kernel"] or e["kernel"].lower().endswith((".c32", ".bin", ".0")):
            continue  # a menu module, a chain loader or PXE image, not a Linux kernel
        resolve = lambda p: p if p.startswith("/") else posixpath.join(folder, p)  # noqa: E731
        out.append({"label": e["title"] or e["label"], "kernel": resolve(e["kernel"]),
                    "ramdisk": resolve(e["initrd"]) if e["initrd"] else "", "cmdline": " ".join(words),
                    "source": cfg})
    return out


_MENUENTRY = re.compile(r"""^\s*menuentry\s+(?:'([^']*)'|"([^"]*)"|(\S+))""")
_LINUX = re.compile(r"^\s*(?:linux|linuxefi|linux16)\s+(\S+)\s*(.*)$")
_INITRD = re.compile(r"^\s*(?:initrd|initrdefi|initrd16)\s+(\S+)")


def _grub(text: str, cfg: str) -> list[dict]:
    out, cur = [], None
    for line in text.splitlines():
        m = _MENUENTRY.match(line)
        if m:
            cur = {"label": next(g for g in m.groups() if g is not None), "kernel": "", "ramdisk": "",
                   "cmdline": "", "source": cfg}
            out.append(cur)
            continue
        if cur is None:
            continue
        m = _LINUX.match(line)
        if m:
            cur["kernel"], cur["cmdline"] = m.group(1), m.group(2).strip()
            continue
        m = _INITRD.match(line)
        if m:
            cur["ramdisk"] = m.group(1)
        elif line.strip() == "}":
            cur = None
    return [e for e in out if e["kernel"].startswith("/") and "$" not in e["kernel"] + e["ramdisk"]
            and (not e["ramdisk"] or e["ramdisk"].startswith("/"))]


_KERNEL_NAME = re.compile(r"^(vmlinuz.*|linux|bzimage|vmlinux.*)$")
_RAMDISK_NAME = re.compile(r"^(initrd.*|initramfs.*)$")


def _usual_places(tree: IsoTree) -> list[dict]:
    out = []
    folders: dict[str, list[str]] = {}
    for path in tree.names():
        folders.setdefault(posixpath.dirname(path), []).append(posixpath.basename(path))
    for folder, names in sorted(folders.items()):
        top = folder.split("/")[1] if folder != "/" else ""
        if not (top.startswith("install") or top in ("casper", "live", "boot")):
            continue
        kernels = sorted(n for n in names if _KERNEL_NAME.match(n))
        ramdisks = sorted(n for n in names if _RAMDISK_NAME.match(n))
        for k in kernels:
            suffix = k[len("vmlinuz"):] if k.startswith("vmlinuz") else ""
            match = [r for r in ramdisks if suffix and r.endswith(suffix)] or ramdisks[:1]
            out.append({"label": posixpath.join(folder, k), "kernel": posixpath.join(folder, k),
                        "ramdisk": posixpath.join(folder, match[0]) if match else "", "cmdline": "",
                        "source": "usual place"})
    return out


def find_entries(tree: IsoTree) -> Entries:
    """The bootable kernel entries of an ISO (see the module docstring): those whose kernel (and ramdisk, if
    named) are files in it, symbolic links followed inside it (:meth:`IsoTree.resolve`), without duplicates
    (the same kernel, ramdisk and command line), numbered from 1.

    Every config and every entry is read under :func:`backend.errors.owner_bytes`: one that cannot be read
    (a config pycdlib cannot read, a link loop or a target outside the ISO, a file missing, in pieces or outside
    the image, a command line over :data:`CMDLINE_LIMIT`) is left out with its reason in
    :attr:`Entries.skipped`, the others are listed (at most :data:`MAX_ENTRIES`).

    Args:
        tree: the opened ISO.
    Returns:
        :class:`Entries` with their :attr:`~Entries.extents`.
    Raises:
        nothing for bad owner bytes (an :class:`~backend.errors.IsoadminError` of the image's reader, such as a
        :class:`~backend.errors.HostError` or the read budget, passes).
    """
    found: list[dict] = []
    out = Entries()
    for path in tree.names():
        parts = path.split("/")
        if path.endswith(".cfg") and any(p in ("isolinux", "syslinux") for p in parts[:-1]):
            parse = _syslinux
        elif parts[-1] in ("grub.cfg", "loopback.cfg"):
            parse = _grub
        else:
            continue
        try:
            with owner_bytes("", "boot config not read"):
                found += parse(tree.read(path), path)
        except ReadBudgetSpent:
            raise
        except Unreadable as exc:
            out.skipped.append(Skipped("", path, path, exc.message))
    if not found:
        found = _usual_places(tree)
    seen = set()
    for e in found:
        if len(out) == MAX_ENTRIES:
            out.skipped.append(Skipped("", "", e["source"], f"more than {MAX_ENTRIES} entries: the rest not listed"))
            break
        files, extents, failed = [], {}, e["kernel"]
        try:
            if len(e["cmdline"]) > CMDLINE_LIMIT:
                raise Unreadable(f"a command line of {len(e['cmdline'])} characters (more than {CMDLINE_LIMIT})")
            for failed in (p for p in (e["kernel"], e["ramdisk"]) if p):
                with owner_bytes("", "cannot be read"):
                    files.append(tree.resolve(failed))
                    extents[tree.norm(failed)] = tree.extent(files[-1])
        except ReadBudgetSpent:
            raise
        except Unreadable as exc:
            skip = Skipped(e["label"], tree.norm(failed), e["source"], exc.message)
            if skip not in out.skipped:
                out.skipped.append(skip)
            continue
        key = (*files, e["cmdline"]) if e["ramdisk"] else (files[0], "", e["cmdline"])
        if key in seen:
            continue
        seen.add(key)
        kernel, ramdisk = tree.norm(e["kernel"]), tree.norm(e["ramdisk"]) if e["ramdisk"] else ""
        out.extents.update(extents)
        out.append(KernelEntry(len(out) + 1, e["label"], kernel, ramdisk, e["cmdline"], e["source"],
                               extents[kernel][1], extents[ramdisk][1] if ramdisk else 0))
    return out


def _open(image, what: str = "the image") -> tuple[pycdlib.PyCdlib, IsoTree]:
    """Open ``image`` with pycdlib (within :data:`READ_BUDGET`) and read its tree.

    Raises:
        Unreadable: ``WHAT: cannot be read as ISO 9660: ...`` (pycdlib refused it, or anything else failed);
            ReadBudgetSpent.
    """
    iso = pycdlib.PyCdlib()
    with owner_bytes(what):
        size = image.seek(0, 2)
        image.seek(0)
        iso.open_fp(_Budget(image, what))
        try:
            return iso, IsoTree(iso, size)
        except BaseException:
            _close(iso)
            raise


def _close(iso: pycdlib.PyCdlib) -> None:
    try:
        iso.close()
    except Exception:  # noqa: BLE001 - closing a half-read hostile image must not hide why it failed
        pass


def entries_in(image, what: str) -> Entries:
    """The kernel entries of the ISO in file object ``image`` (seekable, read-only), the whole read under
    :func:`backend.errors.owner_bytes`: ISO 9660 (ECMA-119) volume descriptors, path tables and directory
    records, Rock Ridge (IEEE P1282 over SUSP P1281) names and symbolic links, Joliet names, the boot configs.

    Args:
        image: the ISO's bytes (a :class:`RemoteImage`, or any seekable binary file). what: the ISO, for
            messages (``OWNER/FILE (DOM0:VOLUME)``).
    Returns:
        :class:`Entries` (possibly empty, with what was skipped and why).
    Raises:
        Unreadable: the image is not ISO 9660 pycdlib can open (``WHAT: cannot be read as ISO 9660: ...``);
            ReadBudgetSpent: more than :data:`READ_BUDGET` bytes would be read. HostError: reading it failed.
    """
    iso, tree = _open(image, what)
    try:
        with owner_bytes(what):
            return find_entries(tree)
    finally:
        _close(iso)


# --------------------------------------------------------------------------- the site's side

def kernel_dir(site, dom0: str) -> str:
    """``[dom0s.NAME] kernel_dir`` of ``dom0`` (default :data:`DEFAULT_KERNEL_DIR`)."""
    return site.config.dom0s[dom0].kernel_dir or DEFAULT_KERNEL_DIR


async def iso_volume(site, key: str) -> Volume:
    """The final volume imported from upload ``OWNER/FILE`` (or named ``[DOM0:]VOLUME``).

    Raises:
        NotFound: no final volume of that upload (import it first). HostError: a dom0 is down.
    """
    volumes = [v for v in await site.all_volumes() if v.namespace == "final" and v.sha256]
    dom0, _, name = key.rpartition(":")
    by_name = [v for v in volumes if v.name == name and (not dom0 or v.dom0 == dom0)]
    matches = by_name or [v for v in volumes if f"{v.owner}/{v.upload}" == key]
    if not matches:
        raise NotFound(f"no imported ISO {key!r}: approve the upload first (`isoadmin volumes` lists them)")
    return sorted(matches, key=lambda v: (v.dom0, v.name))[0]


async def _entries_of(site, vol: Volume) -> tuple[Entries, dict[str, tuple[int, int]]]:
    size = vol.meta.get("size")
    if not isinstance(size, int):
        raise NotFound(f"{vol.dom0}:{vol.name} records no size")
    loop = asyncio.get_running_loop()

    def work() -> Entries:
        return entries_in(RemoteImage(site.hosts[vol.dom0], vol.path, size, loop),
                          f"{vol.owner}/{vol.upload} ({vol.dom0}:{vol.name})")

    entries = await asyncio.to_thread(work)
    return entries, entries.extents


# --------------------------------------------------------------------------- upload pairs

_KERNEL_PREFIX = re.compile(r"^(vmlinuz|vmlinux|bzimage|kernel|linux)", re.I)
_RAMDISK_PREFIX = re.compile(r"^(initrd\.img|initramfs|initrd)", re.I)
_RAMDISK_ENDING = re.compile(r"\.(img|cpio|gz|zst|xz|lzma|bz2|lz4|lzo)$", re.I)


def kernel_version(name: str) -> str:
    """The version a kernel upload's name carries: ``vmlinuz-6.1.0-28-amd64`` → ``6.1.0-28-amd64``,
    ``vmlinuz`` → "" (a name without a known prefix is its own version)."""
    return _KERNEL_PREFIX.sub("", name, count=1).lstrip("-._")


def ramdisk_version(name: str) -> str:
    """The version a ramdisk upload's name carries: ``initrd.img-6.1.0-28-amd64`` and
    ``initramfs-6.1.0-28-amd64.img`` → ``6.1.0-28-amd64``; ``initrd.gz`` → ""."""
    rest = _RAMDISK_PREFIX.sub("", name, count=1)
    while _RAMDISK_ENDING.search(rest):
        rest = _RAMDISK_ENDING.sub("", rest)
    return rest.lstrip("-._")


def is_ramdisk_name(name: str) -> bool:
    """A name an owner gives a ramdisk: it starts with ``initrd`` or ``initramfs``."""
    return bool(_RAMDISK_PREFIX.match(name))


def kernel_upload(site, key: str) -> Upload | None:
    """The upload ``OWNER/FILE`` of the last refresh when its header shows a Linux kernel, else None.

    Raises:
        NotApprovable: ``key`` is a ramdisk upload (its kernel is named, not it).
    """
    up = next((u for u in site.snapshot.uploads if u.key == key and u.kind == "file"), None)
    if up is None or up.iso is None or not site.may_act_for(up.owner):
        return None
    if up.iso.is_ramdisk and is_ramdisk_name(up.name):
        raise NotApprovable(f"{key} is a ramdisk: name its kernel (`isoadmin kernels {up.owner}/vmlinuz…`)")
    return up if up.iso.is_kernel else None


def pair(site, kernel: Upload) -> tuple[Upload, KernelEntry]:
    """The ramdisk that goes with kernel upload ``kernel`` (the rules of the module docstring), and the one
    entry they make (number 1, labelled with the kernel's file name, empty command line).

    Returns:
        (the ramdisk upload, the entry).
    Raises:
        NotApprovable: no ramdisk, ramdisks of other versions only, several candidates, or the chosen ramdisk
            is still being written, refused, rejected, or does not start as a ramdisk does.
    """
    folder = [u for u in site.snapshot.uploads if u.host == kernel.host and u.owner == kernel.owner
              and u.kind == "file"]
    ramdisks = sorted((u for u in folder if is_ramdisk_name(u.name)), key=lambda u: u.name)
    kernels_here = [u for u in folder if u.iso is not None and u.iso.is_kernel]
    version = kernel_version(kernel.name)
    same = [u for u in ramdisks if version and ramdisk_version(u.name) == version]
    names = ", ".join(u.name for u in ramdisks)
    if len(same) > 1:
        raise NotApprovable(f"{kernel.key}: {len(same)} ramdisks could go with it ({', '.join(u.name for u in same)});"
                            f" keep one")
    if same:
        ramdisk = same[0]
    elif len(kernels_here) == 1 and len(ramdisks) == 1 and not (version and ramdisk_version(ramdisks[0].name)):
        ramdisk = ramdisks[0]  # the folder's only kernel and only ramdisk, their names not of two versions
    elif not ramdisks:
        raise NotApprovable(f"{kernel.key}: no ramdisk (initrd*, initramfs*) beside it in {kernel.owner}'s folder")
    elif version and all(ramdisk_version(u.name) for u in ramdisks):
        raise NotApprovable(f"{kernel.key}: no ramdisk of version {version} (found {names}: for other kernels); "
                            f"upload initrd.img-{version}")
    else:
        raise NotApprovable(f"{kernel.key}: cannot tell which ramdisk goes with it ({len(kernels_here)} kernels, "
                            f"ramdisks {names}); name them vmlinuz-VERSION and initrd.img-VERSION")
    _stageable(ramdisk)
    if ramdisk.iso is None or not ramdisk.iso.is_ramdisk:
        what = ramdisk.iso.problem if ramdisk.iso else "header not read"
        raise NotApprovable(f"{ramdisk.key} does not start as a ramdisk does (cpio, gzip, zstd, xz, lzma, bzip2, "
                            f"lz4, lzo): {what}")
    entry = KernelEntry(1, kernel.name, kernel.path, ramdisk.path, "", "upload pair", kernel.size, ramdisk.size)
    return ramdisk, entry


def _stageable(u: Upload) -> None:
    """Raise :class:`NotApprovable` when upload ``u`` is still being written, refused, or rejected by an admin
    (a rejection on the ledger stands for its kernel set too)."""
    if u.state == UploadState.WRITING:
        raise NotApprovable(f"{u.key} is still being written")
    if u.state in (UploadState.REFUSED, UploadState.REJECTED):
        raise NotApprovable(f"{u.key} is {u.state.value}: {u.reason}")


def source_title(source: Volume | Upload) -> str:
    """Where entries came from, for people: ``alice/live.iso (dom0-a)`` or ``alice/vmlinuz-6.1 (imagehost)``."""
    if isinstance(source, Upload):
        return f"{source.key} ({source.host})"
    return f"{source.owner}/{source.upload} ({source.dom0})"


async def kernels(site, key: str) -> tuple[Volume | Upload, Entries]:
    """The bootable kernel entries of ``key``: an upload ``OWNER/FILE`` that is a Linux kernel (one entry, with
    the ramdisk :func:`pair` finds; needs a refresh first), else the ISO imported from ``key`` (``OWNER/FILE``
    or ``[DOM0:]VOLUME``), read from its final volume on its dom0.

    Returns:
        (the kernel upload or the ISO's volume, the :class:`Entries`: empty when none is found; an ISO's
        entries that could not be read are in its ``skipped``, with why).
    Raises:
        NotFound, NotApprovable (a pair that cannot be made), Unreadable (not ISO 9660 that can be read: the
        message names the volume), HostError.
    """
    up = kernel_upload(site, key)
    if up is not None:
        return up, Entries([pair(site, up)[1]])
    vol = await iso_volume(site, key)
    if not site.may_act_for(vol.owner):
        raise NotFound(f"no imported ISO {key!r}")
    entries, _ = await _entries_of(site, vol)
    return vol, entries


# Staging, listing and removing kernel sets (backend/sh/kernels-*.sh): kernels-stage.sh and kernels-receive.sh
# share the end of a staging, lib-kernel-finish.sh.
_FINISH_SH = load("lib-kernel-finish.sh")
_STAGE = load("lib-sha256.sh", "lib-kernel-finish.sh", "kernels-stage.sh")
_RECEIVE = load("lib-sha256.sh", "lib-kernel-finish.sh", "kernels-receive.sh")
_SEND = load("kernels-send.sh")
_SEND_PORTABLE = load("lib-open-upload.sh", "kernels-send-portable.sh")
_LIST = load("kernels-list.sh")
_REMOVE = load("kernels-remove.sh")


#: What a kernel command line never holds: C0 controls (a newline would make the one-line ``cmdline`` file two)
#: and DEL.
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def set_name(vol: Volume, entry: KernelEntry) -> str:
    """The set's folder name before ``-<sha8>``: the ISO's stem and the entry's label, LVM-style safe."""
    stem = vol.upload.rsplit(".", 1)[0] if "." in vol.upload else vol.upload
    return (_NAME_OK.sub("_", f"{stem}_{entry.label}").strip("._-") or "kernel")[:80]


async def list_sets(site, dom0s: list[str] | None = None) -> tuple[list[KernelSet], list[tuple[str, str]]]:
    """Every kernel set on the dom0s (one command each), and the temporary folders left by a staging that
    did not finish (older than :data:`LEFTOVER_MINUTES`).

    Returns:
        (sets, [(dom0, path of a leftover)]).
    Raises:
        HostError: a dom0 is down.
    """
    sets, leftovers = [], []
    for dom0 in dom0s or list(site.config.dom0s):
        root = kernel_dir(site, dom0)
        result = await site.hosts[dom0].run(script(_LIST, "isoadmin-kernel-sets", root, str(LEFTOVER_MINUTES)))
        fields = result.stdout.split(b"\0")
        i = 0
        while i < len(fields):
            word = fields[i]
            if word == b"set" and i + 7 <= len(fields):
                rel, ksize, rsize, sums, cmdline, meta = (f.decode("utf-8", "surrogateescape")
                                                          for f in fields[i + 1:i + 7])
                owner, _, name = rel.partition("/")
                try:
                    info = json.loads(meta)
                except ValueError:
                    info = {}
                sha = {}
                for line in sums.splitlines():
                    digest, _, fname = line.partition("  ")
                    sha[fname.strip()] = digest.strip()
                sets.append(KernelSet(dom0, owner, name, f"{root}/{rel}", int(ksize or 0), int(rsize or 0), sha,
                                      cmdline.rstrip("\n"), info if isinstance(info, dict) else {}))
                i += 7
            elif word == b"leftover" and i + 2 <= len(fields):
                rel = fields[i + 1].removeprefix(b"./").decode("utf-8", "surrogateescape")
                leftovers.append((dom0, f"{root}/{rel}"))
                i += 2
            else:
                i += 1
    return sets, leftovers


def _volumes_of_sets(sets: list[KernelSet]) -> list[Volume]:
    """Kernel sets as quota sees them: bytes of their owner, counted with the CDs."""
    return [Volume(s.dom0, s.name, "final", s.size, s.path, {"owner": s.owner}) for s in sets]


async def stage(site, key: str, entry_ref: str, dom0: str | None = None, cmdline: str | None = None) -> KernelSet:
    """Stage entry ``entry_ref`` (its number or label) of ``key`` on ``dom0``: of a kernel upload and its
    ramdisk (:func:`stage_pair`), else of the ISO imported from ``key`` (default dom0: the one holding the ISO's
    final volume, the only one it can be staged on without shared storage).

    Within the owner's quota (kernel + ramdisk bytes); audited, refusals too. Staging the same kernel, ramdisk
    and command line again leaves the existing set in place.

    Args:
        cmdline: the command line to record instead of the entry's (None: the entry's).
    Returns:
        the staged set.
    Raises:
        ReadOnlyError, NotFound (no such ISO or entry), NotApprovable (another dom0; the entry of that label
        was skipped by the listing, with why), Unreadable (the ISO cannot be read), QuotaExceeded, HostError /
        CommandFailed (the copy failed; nothing is left behind).
    """
    if cmdline is not None and _CONTROL.search(cmdline):
        raise UsageError(f"--cmdline: a kernel command line is one line of text, without control characters "
                         f"(a newline …): {printable(cmdline)}")
    await site.refuse_if_read_only("stage kernel", f"{key} {entry_ref}")
    try:
        up = kernel_upload(site, key)
    except NotApprovable as exc:
        await site.audit_refusal("stage kernel", f"{key} entry {entry_ref}", exc.message)
        raise
    if up is not None:
        return await stage_pair(site, up, entry_ref, dom0, cmdline)
    vol = await iso_volume(site, key)
    target = f"{vol.owner}/{vol.upload} entry {entry_ref} -> {dom0 or vol.dom0}"
    try:
        if not site.may_act_for(vol.owner):
            raise NotFound(f"no imported ISO {key!r}")
        if dom0 and dom0 != vol.dom0:
            if dom0 not in site.config.dom0s:
                raise NotFound(f"no dom0 {dom0!r} (known: {', '.join(site.config.dom0s)})")
            raise NotApprovable(f"{vol.owner}/{vol.upload} is imported on {vol.dom0}, not {dom0}: dom0s share no "
                                f"storage, so import it onto {dom0} first (approve --dom0 {dom0})")
        entries, extents = await _entries_of(site, vol)
        entry = next((e for e in entries if str(e.number) == entry_ref), None) or \
            next((e for e in entries if e.label.lower() == entry_ref.lower()), None)
        skipped = next((k for k in entries.skipped if k.label and k.label.lower() == entry_ref.lower()), None)
        if entry is None and skipped is not None:
            raise NotApprovable(f"{vol.owner}/{vol.upload}: entry {entry_ref!r} is skipped: {skipped.path}: "
                                f"{skipped.reason}")
        if entry is None:
            raise NotFound(f"{vol.owner}/{vol.upload} has no kernel entry {entry_ref!r} "
                           f"(`isoadmin kernels {vol.owner}/{vol.upload}` lists {len(entries)})")
        await _check_quota(site, vol.owner, entry.kernel_size + entry.ramdisk_size)
    except IsoadminError as exc:
        await site.audit_refusal("stage kernel", target, exc.message, vol.dom0)
        raise
    if cmdline is not None:
        entry.cmdline = cmdline
    elif _CONTROL.search(entry.cmdline):
        raise NotApprovable(f"entry {entry.number}'s command line holds control characters: "
                            f"{printable(entry.cmdline)}; give one with --cmdline")
    koff, klen = extents[entry.kernel]
    roff, rlen = extents[entry.ramdisk] if entry.ramdisk else (0, 0)
    root = f"{kernel_dir(site, vol.dom0)}/{vol.owner}"
    meta = {"created_by": "isoadmin", "owner": vol.owner, "upload": vol.upload, "dom0": vol.dom0,
            "volume": vol.name, "volume_sha256": vol.sha256, "entry": entry.label, "kernel_path": entry.kernel,
            "ramdisk_path": entry.ramdisk, "cmdline": entry.cmdline, "source": entry.source,
            "staged_by": site.approver, "time": time.time()}
    result = await site.hosts[vol.dom0].run(
        script(_STAGE, "isoadmin-stage-kernel", vol.path, root, set_name(vol, entry), str(koff), str(klen),
               str(roff), str(rlen), entry.cmdline, mutating=True),
        input=json.dumps(meta, sort_keys=True, ensure_ascii=True).encode() + b"\n", timeout=None)
    word, _, path = result.stdout.decode("utf-8", "surrogateescape").strip().rpartition("\n")[-1].partition(" ")
    sets, _ = await list_sets(site, [vol.dom0])
    staged = next((s for s in sets if s.path == path), None)
    if staged is None:
        raise IsoadminError(f"the kernel set did not appear at {path or 'its folder'} on {vol.dom0}")
    await site.audit.record("stage kernel", f"{vol.dom0}:{staged.owner}/{staged.name}",
                            "done", f"{target}; kernel sha256 {staged.sha256.get('kernel', '')}"
                            + ("; already staged" if word == "exists" else ""), vol.dom0)
    return staged


async def _check_quota(site, owner: str, adding: int) -> None:
    if quota.quota_of(site.config, owner):
        sets, _ = await list_sets(site)
        quota.check(site.config, owner, await site.all_volumes() + _volumes_of_sets(sets), adding)


async def stage_pair(site, kernel: Upload, entry_ref: str, dom0: str | None = None,
                     cmdline: str | None = None) -> KernelSet:
    """Stage kernel upload ``kernel`` and the ramdisk :func:`pair` finds on ``dom0`` (default: the image host's
    first domain's dom0), streaming both from the image host to the dom0 through this console (see the module
    docstring). Within the owner's quota; audited, refusals too.

    Args:
        entry_ref: ``1`` or the kernel's file name (the one entry). cmdline: the command line ("" when None).
    Returns:
        the staged set.
    Raises:
        NotFound (no such dom0 or entry), NotApprovable (no pair; an upload still open, or changed while it was
        read), QuotaExceeded, HostError / CommandFailed (the transfer failed; nothing is left behind).
    """
    ih = site.config.image_hosts[kernel.host]
    dom0 = dom0 or next(iter(ih.domains), None) or next(iter(site.config.dom0s))
    target = f"{kernel.key} entry {entry_ref} -> {dom0}"
    line = cmdline or ""
    try:
        if dom0 not in site.config.dom0s:
            raise NotFound(f"no dom0 {dom0!r} (known: {', '.join(site.config.dom0s)})")
        ramdisk, entry = pair(site, kernel)
        if entry_ref not in ("1", entry.label):
            raise NotFound(f"{kernel.key} has one kernel entry, 1 ({entry.label}), not {entry_ref!r}")
        _stageable(kernel)
        host = site.hosts[kernel.host]
        for u in (kernel, ramdisk):
            holder = await imagehost.in_use(host, u.path)
            if holder is not None:
                raise NotApprovable(f"{u.key} is still open (process {holder} on {u.host}: an upload in progress?)")
        await _check_quota(site, kernel.owner, kernel.size + ramdisk.size)
    except IsoadminError as exc:
        await site.audit_refusal("stage kernel", target, exc.message, kernel.host)
        raise
    target = f"{kernel.key} + {ramdisk.name} -> {dom0}"
    meta = {"created_by": "isoadmin", "owner": kernel.owner, "upload": kernel.name, "ramdisk_upload": ramdisk.name,
            "source_host": kernel.host, "dom0": dom0, "entry": entry.label, "kernel_path": kernel.path,
            "ramdisk_path": ramdisk.path, "cmdline": line, "source": entry.source,
            "kernel_version": kernel.iso.kernel_version if kernel.iso else None,
            "staged_by": site.approver, "time": time.time()}
    name = (_NAME_OK.sub("_", kernel.name).strip("._-") or "kernel")[:80]
    root = f"{kernel_dir(site, dom0)}/{kernel.owner}"
    try:
        word, path = await _stream_pair(site, dom0, root, name, kernel, ramdisk, line,
                                        json.dumps(meta, sort_keys=True, ensure_ascii=True))
    except IsoadminError as exc:
        try:
            await site.audit.record("stage kernel", target, "failed", exc.message, dom0)
        except HostError:
            pass  # the failure itself is what the caller is told
        raise
    sets, _ = await list_sets(site, [dom0])
    staged = next((s for s in sets if s.path == path), None)
    if staged is None:
        raise IsoadminError(f"the kernel set did not appear at {path or 'its folder'} on {dom0}")
    await site.audit.record("stage kernel", staged.ref, "done",
                            f"{target}; kernel sha256 {staged.sha256.get('kernel', '')} ramdisk sha256 "
                            f"{staged.sha256.get('ramdisk', '')}" + ("; already staged" if word == "exists" else ""),
                            dom0)
    return staged


async def _stream_pair(site, dom0: str, root: str, name: str, kernel: Upload, ramdisk: Upload, cmdline: str,
                       meta: str) -> tuple[str, str]:
    """Send both uploads from the image host to :data:`_RECEIVE` on the dom0 and confirm their digests.

    Returns:
        (``staged`` or ``exists``, the set's folder on the dom0).
    Raises:
        NotApprovable (an upload changed or shrank while read), HostError, CommandFailed.
    """
    receiver = await site.hosts[dom0].start(script(_RECEIVE, "isoadmin-stage-kernel", root, name, str(kernel.size),
                                                   str(ramdisk.size), cmdline, meta, mutating=True))
    def end_input() -> None:
        try:
            receiver.stdin.write_eof()
        except (OSError, asyncssh.Error):
            pass  # the dom0's side has ended already

    digests = []
    try:
        for u in (kernel, ramdisk):
            digests.append(await _send(site.hosts[u.host], u, receiver))
        receiver.stdin.write(f"{digests[0]} {digests[1]}\n".encode())
    except (OSError, asyncssh.Error):
        pass  # the dom0's side ended early: its exit status and message say why (below)
    except BaseException:
        end_input()  # no confirmation line: the dom0 removes its temporary folder
        await asyncio.shield(receiver.wait())
        raise
    end_input()
    try:
        done = await receiver.wait()
    except (OSError, asyncssh.Error) as exc:
        raise HostError(dom0, f"kernel set transfer interrupted: {exc or type(exc).__name__}") from None
    out = (done.stdout or b"").decode("utf-8", "surrogateescape").strip()
    if done.exit_status != 0:
        err = (done.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise HostError(dom0, f"staging the kernel set failed: {err[-1] if err else f'exit {done.exit_status}'}")
    word, _, path = out.rpartition("\n")[-1].partition(" ")
    return word, path


async def _send(host, u: Upload, receiver) -> str:
    """Stream upload ``u`` into ``receiver``'s stdin; return the sha256 (hex) of the bytes sent.

    Raises:
        NotApprovable: the upload is not ``u.size`` bytes, or its size, mtime or inode changed since the listing
            or while it was read. HostError: the image host failed.
    """
    send = _SEND_PORTABLE if hosttools.is_portable(host) else _SEND  # see backend/hosttools.py
    sender = await host.start(script(send, "isoadmin-send", u.path))
    digest, sent = hashlib.sha256(), 0
    try:
        while chunk := await sender.stdout.read(1 << 20):
            sent += len(chunk)
            if sent > u.size:  # grown since the listing: not what was listed
                sender.close()
                break
            digest.update(chunk)
            receiver.stdin.write(chunk)
            await receiver.stdin.drain()
    except BaseException:
        sender.close()
        raise
    done = await sender.wait()
    stat = {}
    for text in (done.stderr or b"").decode("utf-8", "replace").splitlines():
        word, _, rest = text.partition(" ")
        stat[word] = rest.split()
    listed = [str(u.size), str(int(u.mtime)), str(u.inode)]
    if sent != u.size or stat.get("before") != listed or stat.get("after") != listed:
        raise NotApprovable(f"{u.key} changed since it was listed or while it was read (listed size, mtime, inode "
                            f"{' '.join(listed)}; read {sent} bytes; before {' '.join(stat.get('before', ['?']))}, "
                            f"after {' '.join(stat.get('after', ['?']))}): refresh and stage again")
    return digest.hexdigest()


async def _find_set(site, ref: str) -> KernelSet:
    dom0, _, rest = ref.partition(":")
    if not rest or "/" not in rest:
        raise UsageError(f"expected DOM0:OWNER/NAME, got {ref!r}")
    if dom0 not in site.config.dom0s:
        raise NotFound(f"no dom0 {dom0!r} (known: {', '.join(site.config.dom0s)})")
    sets, _ = await list_sets(site, [dom0])
    found = next((s for s in sets if f"{s.owner}/{s.name}" == rest), None)
    if found is None or not site.may_act_for(found.owner):
        raise NotFound(f"no kernel set {ref!r}; `isoadmin kernel-sets` lists them")
    return found


async def users(site, kset: KernelSet) -> list[str]:
    """Domains of the set's dom0 whose definition (running or not) boots a file of the set."""
    return await site.hypervisors[kset.dom0].boot_users(kset.path + "/")


async def delete_set(site, ref: str) -> KernelSet:
    """Delete kernel set ``DOM0:OWNER/NAME``: refused while a domain refers to it; audited.

    Raises:
        ReadOnlyError, UsageError, NotFound, NotApprovable (in use), HostError.
    """
    await site.refuse_if_read_only("delete kernel", ref)
    kset = await _find_set(site, ref)
    using = await users(site, kset)
    if using:
        exc = NotApprovable(f"{ref} is the kernel of {', '.join(using)}; not deleted")
        await site.audit_refusal("delete kernel", ref, exc.message, kset.dom0)
        raise exc
    await site.hosts[kset.dom0].run(script(_REMOVE, "isoadmin-remove-kernel", kernel_dir(site, kset.dom0),
                                           f"{kset.owner}/{kset.name}", mutating=True))
    await site.audit.record("delete kernel", ref, "done", f"kernel sha256 {kset.sha256.get('kernel', '')}",
                            kset.dom0)
    return kset


async def gc_plan(site, now: float | None = None) -> list[tuple[KernelSet, str]]:
    """Kernel sets older than ``kernel_gc_days`` that no domain refers to, each with why.

    Raises:
        HostError: a dom0 or its hypervisor is down.
    """
    now = time.time() if now is None else now
    days = site.config.kernel_gc_days
    out = []
    sets, _ = await list_sets(site)
    for s in sets:
        age = (now - float(s.meta.get("time", now) or now)) / 86400.0
        if age <= days or not site.may_act_for(s.owner):
            continue
        if await users(site, s):
            continue
        out.append((s, f"staged {age:.1f} days ago (> {days:g}); no domain boots it"))
    return out


async def gc_apply(site, plan: list[tuple[KernelSet, str]]) -> list[tuple[KernelSet, str]]:
    """Remove the sets of :func:`gc_plan` (each checked for users again right before); audited.

    Returns:
        (set, ``removed`` or ``kept: reason``) pairs.
    Raises:
        ReadOnlyError.
    """
    await site.refuse_if_read_only("kernel gc", f"{len(plan)} kernel sets")
    out = []
    for kset, why in plan:
        try:
            await delete_set(site, kset.ref)
            out.append((kset, "removed"))
        except IsoadminError as exc:
            out.append((kset, f"kept: {exc.message}"))
    return out


def catalog_rows(sets: list[KernelSet]) -> list[dict]:
    """Catalog rows (:data:`backend.catalog.CATALOG_FIELDS`) of type ``kernel`` and ``ramdisk`` (an
    instance's images, beside its machine image) for the staged sets: ``volume`` is the file's path on the dom0,
    ``source_path`` the volume and path inside the ISO it came from (for an upload pair: ``source_host`` the image
    host and ``source_path`` the upload's path there, ``upload`` the kernel's or the ramdisk's file name)."""
    rows = []
    for s in sorted(sets, key=lambda s: (s.owner, s.dom0, s.name)):
        for kind, size in (("kernel", s.kernel_size), ("ramdisk", s.ramdisk_size)):
            if kind == "ramdisk" and not size:
                continue
            if s.meta.get("source") == "upload pair":  # from the uploads themselves, on the image host
                upload = s.meta.get("upload" if kind == "kernel" else "ramdisk_upload")
                host, where = s.meta.get("source_host"), s.meta.get(kind + "_path")
            else:
                upload, host = s.meta.get("upload"), s.dom0
                where = f"{s.meta.get('volume')}:{s.meta.get(kind + '_path')}"
            rows.append({"dom0": s.dom0, "volume": f"{s.path}/{kind}", "owner": s.owner,
                         "upload": upload, "volume_id": None, "bootable": None, "size": size,
                         "sha256": s.sha256.get(kind), "source_host": host, "source_path": where,
                         "approver": s.meta.get("staged_by"), "time": s.meta.get("time"), "type": kind})
    return rows


async def remove_leftover(site, dom0: str, path: str) -> None:
    """Remove a temporary folder a staging left (``check`` finds them; ``repair --apply`` calls this).

    Raises:
        HostError, CommandFailed.
    """
    root = kernel_dir(site, dom0)
    await site.hosts[dom0].run(script(_REMOVE, "isoadmin-remove-kernel", root, path[len(root) + 1:], mutating=True))


__all__ = ["KernelEntry", "KernelSet", "Entries", "Skipped", "IsoTree", "ReadBudgetSpent", "find_entries",
           "entries_in", "kernels", "stage", "stage_pair", "pair", "kernel_upload",
           "kernel_version", "ramdisk_version", "source_title", "list_sets", "delete_set", "gc_plan",
           "gc_apply", "catalog_rows", "users", "remove_leftover", "DEFAULT_KERNEL_DIR"]
