"""What the first 64 KiB of an upload say about it: ISO 9660, El Torito, hybrid MBR; for a file that is not
ISO 9660, whether it is a Linux kernel or starts as a ramdisk does.

Sources: ECMA-119 (ISO 9660) section 8 for the volume descriptors (they start at logical sector 16,
2048 bytes each, ended by the set terminator, type 255); the El Torito Bootable CD-ROM Format
Specification 1.0 for the boot record (type 0, boot system id ``EL TORITO SPECIFICATION``, first
four bytes of its boot system use field = LBA of the boot catalog); an MBR boot signature is 0x55 0xAA at
offset 510. The descriptors themselves are parsed by pycdlib's ECMA-119 parsers.

A Linux kernel (``vmlinuz``, ``bzImage``) is recognised by the x86 boot protocol's real-mode header
(the kernel's ``Documentation/arch/x86/boot.rst``, "The real-mode kernel header"): ``boot_flag`` 0xAA55 at
0x1FE, ``header`` "HdrS" at 0x202, ``version`` (the protocol, major.minor bytes) at 0x206, and, from protocol
2.00, ``kernel_version`` at 0x20E: when not zero, the offset (less 0x200) of the NUL-terminated version
string. A ramdisk is a cpio archive (``070701`` newc, ``070702`` newc with CRC, ``070707`` odc, or the binary
0x71C7) or data compressed in a format the kernel unpacks an initramfs from (gzip ``1F 8B``, zstd
``28 B5 2F FD``, xz ``FD 37 7A 58 5A 00``, lzma ``5D 00 00``, bzip2 ``BZh``, lz4 ``02 21 4C 18``, lzo
``89 4C 5A 4F``); only the magic is checked (see ``Documentation/driver-api/early-userspace/buffer-format.rst``
and the kernel's ``lib/decompress.c``).

Nothing here raises on bad input: garbage, truncated or empty headers give an :class:`IsoFacts` with
``is_iso9660 = False`` and a ``problem`` text. Every parse runs under :func:`backend.errors.owner_bytes`: an
exception from any parser (pycdlib's, ``struct``, decoding ...) becomes that ``problem`` (``cannot be read as
ISO 9660: ...``), never an error of the listing.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass

from pycdlib import headervd

from .errors import Unreadable, owner_bytes

HEADER_BYTES = 64 * 1024
SECTOR = 2048
_FIRST_VD = 16
_EL_TORITO_ID = b"EL TORITO SPECIFICATION"
#: Leading bytes → :attr:`IsoFacts.content` of a ramdisk (checked in this order).
RAMDISK_MAGIC = (
    (b"070701", "cpio"), (b"070702", "cpio"), (b"070707", "cpio"), (b"\xc7\x71", "cpio"),
    (b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\xfd7zXZ\x00", "xz"), (b"\x5d\x00\x00", "lzma"),
    (b"BZh", "bzip2"), (b"\x02\x21\x4c\x18", "lz4"), (b"\x89LZO", "lzo"),
)
#: :attr:`IsoFacts.content` words of ramdisks.
RAMDISK_CONTENTS = frozenset(word for _, word in RAMDISK_MAGIC)


@dataclass(frozen=True)
class IsoFacts:
    """Facts read from an upload's header.

    Attributes:
        is_iso9660: a valid ISO 9660 primary volume descriptor was found at sector 16.
        volume_id: the PVD's volume identifier (trailing spaces removed), or None.
        volume_bytes: volume space size × logical block size from the PVD, in bytes, or None.
        bootable: an El Torito boot record points at a boot catalog inside the volume.
        hybrid_mbr: the first sector ends with the MBR boot signature 0x55AA (isohybrid images,
            boot floppies and disk images).
        problem: why the header is not ISO 9660 (or what is odd about it), else None.
        content: for a file that is not ISO 9660, what its first bytes show: ``linux-kernel`` (the x86 boot
            protocol header), ``cpio``, ``gzip``, ``zstd``, ``xz``, ``lzma``, ``bzip2``, ``lz4``, ``lzo``, or
            None when nothing is recognised.
        kernel_version: a kernel's version string (``6.1.0-28-amd64 (debian-kernel@...) #1 SMP ...``),
            None when not a kernel or it records none.
    """

    is_iso9660: bool
    volume_id: str | None = None
    volume_bytes: int | None = None
    bootable: bool = False
    hybrid_mbr: bool = False
    problem: str | None = None
    content: str | None = None
    kernel_version: str | None = None

    def to_json(self) -> dict | None:
        """The ``iso`` object of ``uploads --json``: None unless ISO 9660."""
        if not self.is_iso9660:
            return None
        return {k: v for k, v in asdict(self).items() if k != "is_iso9660"}

    @property
    def kind(self) -> str:
        """A one-word description for tables: ``iso9660``, ``boot-image`` (MBR only) or ``data``."""
        if self.is_iso9660:
            return "iso9660"
        if self.content:
            return self.content
        return "boot-image" if self.hybrid_mbr else "data"

    @property
    def summary(self) -> str:
        """A few words for tables: the volume id of an ISO; ``Linux kernel 6.1.0-28-amd64``; ``not ISO (gzip)``;
        ``not ISO``."""
        if self.is_iso9660:
            return self.volume_id or ""
        if self.is_kernel:
            return "Linux kernel" + (f" {self.kernel_version.split()[0]}" if self.kernel_version else "")
        return f"not ISO ({self.content})" if self.content else "not ISO"

    @property
    def is_kernel(self) -> bool:
        """The file starts with a Linux x86 boot protocol header."""
        return self.content == "linux-kernel"

    @property
    def is_ramdisk(self) -> bool:
        """The file starts as a ramdisk does (cpio, or a compression format the kernel unpacks)."""
        return self.content in RAMDISK_CONTENTS


def inspect_header(data: bytes, file_size: int | None = None) -> IsoFacts:
    """Inspect the first bytes of a file (normally :data:`HEADER_BYTES` of them, fewer if it is short).

    Args:
        data: the header bytes; any length, any content.
        file_size: the whole file's size in bytes, if known: a volume larger than the file is reported
            as a problem (truncated upload, or a lying descriptor).
    Returns:
        :class:`IsoFacts`; never raises for bad input (a parser's failure is its ``problem``).
    """
    try:
        with owner_bytes(""):
            return _inspect(data, file_size)
    except Unreadable as exc:
        return IsoFacts(False, hybrid_mbr=len(data) >= 512 and data[510:512] == b"\x55\xaa", problem=exc.message)


def _inspect(data: bytes, file_size: int | None) -> IsoFacts:
    hybrid = len(data) >= 512 and data[510:512] == b"\x55\xaa"
    start = _FIRST_VD * SECTOR
    if len(data) < start + SECTOR:
        return _not_iso(data, hybrid, _short(len(data)))
    pvd = headervd.PrimaryOrSupplementaryVD(headervd.VOLUME_DESCRIPTOR_TYPE_PRIMARY)
    try:
        pvd.parse(data[start:start + SECTOR], _FIRST_VD)
    except Exception as exc:  # pycdlib raises PyCdlibInvalidISO, struct.error ... on garbage
        return _not_iso(data, hybrid, f"no ISO 9660 primary volume descriptor ({exc})")
    volume_id = _text(pvd.volume_identifier)
    volume_bytes = pvd.space_size * pvd.log_block_size
    bootable = False
    problem = None
    # Walk the rest of the descriptor set (ECMA-119 8.1) within the header, looking for El Torito.
    for sector in range(_FIRST_VD + 1, len(data) // SECTOR):
        vd = data[sector * SECTOR:(sector + 1) * SECTOR]
        if vd[1:6] != b"CD001":
            problem = f"volume descriptor set not terminated (sector {sector})"
            break
        if vd[0] == headervd.VOLUME_DESCRIPTOR_TYPE_SET_TERMINATOR:
            break
        if vd[0] == headervd.VOLUME_DESCRIPTOR_TYPE_BOOT_RECORD:
            record = headervd.BootRecord()
            try:
                record.parse(vd, sector)
            except Exception as exc:
                problem = f"bad boot record ({exc})"
                continue
            if record.boot_system_identifier.rstrip(b"\0 ") == _EL_TORITO_ID:
                (catalog_lba,) = struct.unpack_from("<L", record.boot_system_use, 0)
                if 0 < catalog_lba < pvd.space_size:
                    bootable = True
                else:
                    problem = f"El Torito boot catalog at sector {catalog_lba} lies outside the volume"
    if file_size is not None and volume_bytes > file_size and problem is None:
        problem = f"volume space size ({volume_bytes} B) exceeds the file ({file_size} B): truncated?"
    return IsoFacts(True, volume_id, volume_bytes, bootable, hybrid, problem)


def linux_kernel(data: bytes) -> tuple[str, str] | None:
    """The x86 boot protocol header of a Linux kernel image (see the module docstring).

    Args:
        data: the file's first bytes (the header is in its first 0x268 bytes; the version string is in the
            real-mode setup code, within the first 64 KiB).
    Returns:
        (protocol version ``2.15``, kernel version string or ""), or None when ``data`` is not a kernel (or its
        header cannot be parsed).
    """
    try:
        with owner_bytes("", "not a Linux kernel header"):
            return _linux_kernel(data)
    except Unreadable:
        return None


def _linux_kernel(data: bytes) -> tuple[str, str] | None:
    if len(data) < 0x210 or data[0x1FE:0x200] != b"\x55\xaa" or data[0x202:0x206] != b"HdrS":
        return None
    minor, major = data[0x206], data[0x207]
    (pointer,) = struct.unpack_from("<H", data, 0x20E)
    version = ""
    if major >= 2 and pointer and 0x200 + pointer < len(data):
        raw = data[0x200 + pointer:0x200 + pointer + 256].split(b"\0", 1)[0]
        version = raw.decode("ascii", "replace").strip()
    return f"{major}.{minor:02d}", version


def _not_iso(data: bytes, hybrid: bool, why: str) -> IsoFacts:
    """Facts of a file that is not ISO 9660: a kernel, a ramdisk or plain data."""
    kernel = linux_kernel(data)
    if kernel is not None:
        protocol, version = kernel
        return IsoFacts(False, hybrid_mbr=hybrid, content="linux-kernel", kernel_version=version or None,
                        problem=f"a Linux kernel (x86 boot protocol {protocol}): stage it with its ramdisk as a "
                                "kernel set (`isoadmin kernels`)")
    word = ramdisk_content(data)
    if word:
        return IsoFacts(False, hybrid_mbr=hybrid, content=word, problem=f"{word} data, not ISO 9660 ({why})")
    return IsoFacts(False, hybrid_mbr=hybrid, problem=why)


def ramdisk_content(data: bytes) -> str | None:
    """What the first bytes of a ramdisk are (:data:`RAMDISK_MAGIC`: ``cpio``, ``gzip``, ``zstd`` ...), or None.

    Args:
        data: the file's first bytes (any length, any content).
    Returns:
        the :attr:`IsoFacts.content` word, None when no magic matches or ``data`` is not bytes-like.
    """
    try:
        with owner_bytes("", "not a ramdisk header"):
            return next((word for magic, word in RAMDISK_MAGIC if bytes(data[:len(magic)]) == magic), None)
    except Unreadable:
        return None


def _short(n: int) -> str:
    return "empty file" if n == 0 else f"too short for ISO 9660 ({n} bytes)"


def _text(raw: bytes) -> str:
    return raw.decode("ascii", "replace").rstrip(" \0")
