"""ISO inspection on real Debian boot ISOs and on bad input (nothing may raise)."""

from __future__ import annotations

import asyncio
import os
import random
import struct

import pytest
from pycdlib.pycdlibexception import PyCdlibInvalidISO

from backend.crash import one_line
from backend.errors import HostError, NotApprovable, NotFound, Unreadable, owner_bytes
from backend.isoinfo import HEADER_BYTES, inspect_header, linux_kernel, ramdisk_content
from backend.lab import floppy_image, make_iso

from ..conftest import DEBIAN_ISOS

EXPECTED_VOLUME_IDS = {
    "ipxe.iso": "ISOIMAGE",
    "grub-rescue-cdrom.iso": "ISOIMAGE",
    "memtest86+x64.iso": "MT86PLUS_64",
    "memtest86+ia32.iso": "MT86PLUS_32",
}


@pytest.mark.parametrize("name", sorted(DEBIAN_ISOS))
def test_real_debian_isos_are_bootable_iso9660(name):
    path = DEBIAN_ISOS[name]
    assert path.is_file(), f"{path} missing: `make test` installs it (Debian package)"
    facts = inspect_header(path.read_bytes()[:HEADER_BYTES])
    assert facts.is_iso9660 and facts.problem is None
    assert facts.volume_id == EXPECTED_VOLUME_IDS[name]
    assert facts.bootable is True
    assert facts.hybrid_mbr is True  # all four are isohybrid images
    assert 0 < facts.volume_bytes <= path.stat().st_size


def test_generated_isos_bootable_or_not():
    plain = inspect_header(make_iso("PLAIN", {"A.TXT;1": b"a"})[:HEADER_BYTES])
    boot = inspect_header(make_iso("BOOT", {"A.TXT;1": b"a"}, bootable=True)[:HEADER_BYTES])
    assert (plain.is_iso9660, plain.volume_id, plain.bootable, plain.hybrid_mbr) == (True, "PLAIN", False, False)
    assert (boot.is_iso9660, boot.volume_id, boot.bootable) == (True, "BOOT", True)


def test_floppy_is_boot_media_but_not_iso():
    facts = inspect_header(floppy_image()[:HEADER_BYTES])
    assert not facts.is_iso9660 and facts.hybrid_mbr and facts.kind == "boot-image"
    assert facts.to_json() is None


@pytest.mark.parametrize("data, problem", [
    (b"", "empty file"),
    (b"x" * 1000, "too short"),
    (random.Random(1).randbytes(HEADER_BYTES), "no ISO 9660 primary volume descriptor"),
    (b"\0" * HEADER_BYTES, "no ISO 9660 primary volume descriptor"),
], ids=["empty", "short", "random", "zeros"])
def test_garbage_gives_a_clear_result(data, problem):
    facts = inspect_header(data)
    assert not facts.is_iso9660 and problem in facts.problem


def test_truncated_iso_header():
    real = DEBIAN_ISOS["ipxe.iso"].read_bytes()[:HEADER_BYTES]
    assert "too short" in inspect_header(real[:16 * 2048 + 100]).problem
    assert inspect_header(real[:17 * 2048]).volume_id == "ISOIMAGE"  # PVD only: still ISO 9660


def test_lying_descriptors_do_not_raise():
    real = bytearray(DEBIAN_ISOS["ipxe.iso"].read_bytes()[:HEADER_BYTES])
    real[16 * 2048 + 80:16 * 2048 + 88] = b"\x01\0\0\0\0\0\0\x02"  # space size LE/BE disagree
    assert not inspect_header(bytes(real)).is_iso9660
    huge = bytearray(DEBIAN_ISOS["ipxe.iso"].read_bytes()[:HEADER_BYTES])
    huge[16 * 2048 + 80:16 * 2048 + 88] = b"\xff" * 8  # a 8 TiB volume in a 2 MiB file
    facts = inspect_header(bytes(huge), file_size=2097152)
    assert facts.is_iso9660 and "exceeds the file" in facts.problem
    boot = bytearray(DEBIAN_ISOS["ipxe.iso"].read_bytes()[:HEADER_BYTES])
    boot[17 * 2048 + 71:17 * 2048 + 75] = b"\xff\xff\xff\x7f"  # boot catalog far outside the volume
    facts = inspect_header(bytes(boot))
    assert facts.is_iso9660 and not facts.bootable and "outside the volume" in facts.problem


def test_a_linux_kernel_and_ramdisks_are_recognised_by_their_first_bytes(tmp_path):
    import gzip

    from ..lab.test_kernels import kernel_image, ramdisk_image

    kernel = inspect_header(kernel_image()[:HEADER_BYTES])
    assert (kernel.is_iso9660, kernel.kind, kernel.is_kernel) == (False, "linux-kernel", True)
    assert kernel.kernel_version and kernel.summary.startswith("Linux kernel ")
    assert "kernel set" in kernel.problem
    ramdisk = inspect_header(ramdisk_image(tmp_path)[:HEADER_BYTES])
    assert (ramdisk.kind, ramdisk.is_ramdisk, ramdisk.summary) == ("gzip", True, "not ISO (gzip)")
    assert inspect_header(b"070701" + b"0" * 200).kind == "cpio"
    assert inspect_header(b"\x28\xb5\x2f\xfd" + b"\0" * 100).kind == "zstd"
    assert inspect_header(gzip.compress(b"x")).kind == "gzip" and inspect_header(b"hello" * 20).kind == "data"
    no_header = bytearray(kernel_image()[:4096])
    no_header[0x202:0x206] = b"XXXX"  # the boot flag alone is a boot sector, not a kernel
    assert inspect_header(bytes(no_header)).kind == "boot-image"


@pytest.mark.parametrize("exc", [
    ValueError("bad length"), IndexError("index out of range"), KeyError("x"), struct.error("unpack requires 4"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), RecursionError("maximum recursion depth"),
    MemoryError(), PyCdlibInvalidISO("Invalid RR version 24!")])
def test_owner_bytes_turns_any_parser_failure_into_one_unreadable_naming_the_file(exc):
    with pytest.raises(Unreadable) as caught:
        with owner_bytes("alice/live.iso"):
            raise exc
    assert caught.value.exit_code == 6 and isinstance(caught.value, NotApprovable)
    assert caught.value.message == f"alice/live.iso: cannot be read as ISO 9660: {one_line(exc)}"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # the parser's frames are let go


@pytest.mark.parametrize("exc", [HostError("dom0-a", "down"), NotFound("x"), KeyboardInterrupt(),
                                 asyncio.CancelledError()])
def test_owner_bytes_lets_domain_errors_interrupts_and_cancellation_through(exc):
    with pytest.raises(type(exc)):
        with owner_bytes("alice/live.iso"):
            raise exc


def test_header_parsers_report_rather_than_raise():
    assert inspect_header(b"").problem == "empty file"
    assert linux_kernel(b"\0" * 0x1FE + b"\x55\xaa" + b"\0\0HdrS\xff\xff" + b"\0" * 6 + b"\xff\xff") == ("255.255", "")
    assert ramdisk_content(b"") is None and ramdisk_content(b"\x1f\x8b\x08") == "gzip"
