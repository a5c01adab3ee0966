"""What the first 64 KiB of an upload say about it: ISO 9660, El Torito, hybrid MBR.

Sources: ECMA-119 (ISO 9660) section 8 for the volume descriptors (they start at logical sector 16,
2048 bytes each, ended by the set terminator, type 255); the El Torito Bootable CD-ROM Format
Specification 1.0 for the boot record (type 0, boot system id ``EL TORITO SPECIFICATION``, first
four bytes of its boot system use field = LBA of the boot catalog); an MBR boot signature is 0x55 0xAA at
offset 510. The descriptors themselves are parsed by pycdlib's ECMA-119 parsers.

Nothing here raises on bad input: garbage, truncated or empty headers give an :class:`IsoFacts` with
``is_iso9660 = False`` and a ``problem`` text.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass

from pycdlib import headervd

HEADER_BYTES = 64 * 1024
SECTOR = 2048
_FIRST_VD = 16
_EL_TORITO_ID = b"EL TORITO SPECIFICATION"


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
    """

    is_iso9660: bool
    volume_id: str | None = None
    volume_bytes: int | None = None
    bootable: bool = False
    hybrid_mbr: bool = False
    problem: str | None = None

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
        return "boot-image" if self.hybrid_mbr else "data"


def inspect_header(data: bytes, file_size: int | None = None) -> IsoFacts:
    """Inspect the first bytes of a file (normally :data:`HEADER_BYTES` of them, fewer if it is short).

    Args:
        data: the header bytes; any length, any content.
        file_size: the whole file's size in bytes, if known: a volume larger than the file is reported
            as a problem (truncated upload, or a lying descriptor).
    Returns:
        :class:`IsoFacts`; never raises for bad input.
    """
    hybrid = len(data) >= 512 and data[510:512] == b"\x55\xaa"
    start = _FIRST_VD * SECTOR
    if len(data) < start + SECTOR:
        return IsoFacts(False, hybrid_mbr=hybrid, problem=_short(len(data)))
    pvd = headervd.PrimaryOrSupplementaryVD(headervd.VOLUME_DESCRIPTOR_TYPE_PRIMARY)
    try:
        pvd.parse(data[start:start + SECTOR], _FIRST_VD)
    except Exception as exc:  # pycdlib raises PyCdlibInvalidISO, struct.error ... on garbage
        return IsoFacts(False, hybrid_mbr=hybrid, problem=f"no ISO 9660 primary volume descriptor ({exc})")
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


def _short(n: int) -> str:
    return "empty file" if n == 0 else f"too short for ISO 9660 ({n} bytes)"


def _text(raw: bytes) -> str:
    return raw.decode("ascii", "replace").rstrip(" \0")
