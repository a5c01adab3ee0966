"""Kernel sets on the embedded lab: entries found in an imported ISO, staged on the dom0, quota, catalog,
delete, gc and leftovers."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pycdlib
import pytest

from backend import health, kernels
from backend.config import parse_config
from backend.errors import NotApprovable, NotFound, QuotaExceeded, ReadOnlyError
from backend.isoinfo import HEADER_BYTES, inspect_header
from backend.kernels import ReadBudgetSpent, _grub, _syslinux
from backend.lab import make_kernel_iso, make_live_iso
from backend.models import Upload, UploadState
from backend.site import Site, Snapshot

from .conftest import put_upload

KERNEL = os.urandom(300_000)
RAMDISK = os.urandom(120_000)
CMDLINE = "console=ttyS0 quiet boot=casper"


def put_live_iso(lab_dir, owner: str = "alice", name: str = "live.iso") -> None:
    folder = lab_dir / "imagehost" / "cds" / owner
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(make_kernel_iso("LIVE", KERNEL, RAMDISK, CMDLINE))
    past = time.time() - 3600
    os.utime(folder / name, (past, past))


def test_syslinux_and_grub_configs_are_read():
    cfg = ("DEFAULT install\nLABEL install\n  MENU LABEL ^Install\n  KERNEL vmlinuz\n"
           "  APPEND vga=788 initrd=initrd.gz,extra.gz --- quiet\nLABEL rescue\n  LINUX /install/vmlinuz\n"
           "  INITRD /install/initrd.gz\n  APPEND rescue/enable=true\nLABEL hd\n  KERNEL chain.c32\n")
    assert _syslinux(cfg, "/install.amd/isolinux.cfg") == [
        {"label": "Install", "kernel": "/install.amd/vmlinuz", "ramdisk": "/install.amd/initrd.gz",
         "cmdline": "vga=788 --- quiet", "source": "/install.amd/isolinux.cfg"},
        {"label": "rescue", "kernel": "/install/vmlinuz", "ramdisk": "/install/initrd.gz",
         "cmdline": "rescue/enable=true", "source": "/install.amd/isolinux.cfg"}]
    grub = ("menuentry \"Try it\" --class os {\n  linux /casper/vmlinuz boot=casper quiet ---\n"
            "  initrd /casper/initrd\n}\nmenuentry 'Vars' {\n  linux $kernel\n}\n")
    assert _grub(grub, "/boot/grub/grub.cfg") == [
        {"label": "Try it", "kernel": "/casper/vmlinuz", "ramdisk": "/casper/initrd",
         "cmdline": "boot=casper quiet ---", "source": "/boot/grub/grub.cfg"}]


async def test_kernel_set_staged_listed_catalogued_deleted_and_collected(lab):
    put_live_iso(lab.dir)
    site = Site(lab.config)
    await site.refresh()
    job = await site.approve(await site.plan("alice/live.iso", "dom0-a"))
    vol, entries = await kernels.kernels(site, "alice/live.iso")
    assert vol.name == job.final
    assert [(e.kernel, e.ramdisk, e.cmdline, e.kernel_size, e.ramdisk_size) for e in entries] == \
        [("/casper/vmlinuz", "/casper/initrd.gz", CMDLINE, len(KERNEL), len(RAMDISK))]
    with pytest.raises(NotFound, match="no kernel entry '7'"):
        await kernels.stage(site, "alice/live.iso", "7")
    with pytest.raises(NotApprovable, match="import it onto dom0-b first"):
        await kernels.stage(site, "alice/live.iso", "1", "dom0-b")
    staged = await kernels.stage(site, "alice/live.iso", "1")
    folder = lab.dir / "dom0-a" / "kernels" / "alice" / staged.name
    assert staged.path == str(folder) and staged.name.endswith(hashlib.sha256(KERNEL).hexdigest()[:8])
    assert (folder / "kernel").read_bytes() == KERNEL and (folder / "ramdisk").read_bytes() == RAMDISK
    assert (folder / "cmdline").read_text() == CMDLINE + "\n"
    assert (folder / "SHA256SUMS").read_text() == (f"{hashlib.sha256(KERNEL).hexdigest()}  kernel\n"
                                                   f"{hashlib.sha256(RAMDISK).hexdigest()}  ramdisk\n")
    meta = json.loads((folder / "isoadmin.json").read_text())
    assert (meta["owner"], meta["volume"], meta["kernel_path"]) == ("alice", job.final, "/casper/vmlinuz")
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    again = await kernels.stage(site, "alice/live.iso", "Live system (GRUB)")  # by label: the same set
    assert again.path == staged.path
    rows = kernels.catalog_rows((await kernels.list_sets(site))[0])
    assert [(r["type"], r["size"], r["sha256"]) for r in rows] == [
        ("kernel", len(KERNEL), hashlib.sha256(KERNEL).hexdigest()),
        ("ramdisk", len(RAMDISK), hashlib.sha256(RAMDISK).hexdigest())]
    # a domain that boots the set keeps it from delete and gc
    vm = lab.vm_dir("dom0-a") / "alice-vm"
    (vm / "kernel").symlink_to(folder / "kernel")
    with pytest.raises(NotApprovable, match="kernel of alice-vm"):
        await kernels.delete_set(site, staged.ref)
    assert await kernels.gc_plan(site, now=time.time() + 40 * 86400) == []
    (vm / "kernel").unlink()
    assert await kernels.gc_plan(site) == []  # too young
    plan = await kernels.gc_plan(site, now=time.time() + 40 * 86400)
    assert [s.path for s, _ in plan] == [staged.path]
    assert [o for _, o in await kernels.gc_apply(site, plan)] == ["removed"]
    assert not folder.exists()
    actions = [(e.action, e.outcome) for e in await site.audit.entries() if "kernel" in e.action]
    assert actions == [("stage kernel", "refused"), ("stage kernel", "refused"), ("stage kernel", "done"),
                       ("stage kernel", "done"), ("delete kernel", "refused"), ("delete kernel", "done")]
    await site.close()


async def test_kernel_sets_count_against_the_quota(lab):
    put_live_iso(lab.dir)
    site = Site(lab.config)
    await site.refresh()
    job = await site.approve(await site.plan("alice/live.iso", "dom0-a"))
    volume = next(v for v in await site.all_volumes() if v.name == job.final)
    tight = dataclasses.replace(lab.config, quotas={"alice": volume.size + 1000})
    site2 = Site(tight)
    await site2.refresh()
    with pytest.raises(QuotaExceeded):
        await kernels.stage(site2, "alice/live.iso", "1")
    assert not (lab.dir / "dom0-a" / "kernels" / "alice").exists() or \
        not list((lab.dir / "dom0-a" / "kernels" / "alice").iterdir())
    await site.close()
    await site2.close()


async def test_half_staged_set_is_found_by_check_and_removed_by_repair(lab):
    left = lab.dir / "dom0-a" / "kernels" / "bob" / ".staging-x-123"
    left.mkdir(parents=True)
    (left / "kernel").write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(left, (old, old))
    site = Site(lab.config)
    await site.refresh()
    findings = [f for f in await health.check(site) if f.kind == "half-staged kernel set"]
    assert [(f.host, f.target) for f in findings] == [("dom0-a", str(left))]
    assert (await kernels.list_sets(site))[0] == []  # never taken for a set
    results = await health.repair(site, findings, apply=True)
    assert [o for _, o in results] == ["done"] and not left.exists()
    await site.close()


async def test_read_only_refuses_staging_and_deleting(lab):
    site = Site(lab.config, read_only=True)
    await site.refresh()
    with pytest.raises(ReadOnlyError):
        await kernels.stage(site, "alice/live.iso", "1")
    with pytest.raises(ReadOnlyError):
        await kernels.delete_set(site, "dom0-a:alice/x")
    await site.close()


# ----------------------------------------------------------------------------- kernel sets from an upload pair

REAL_KERNEL = Path("/boot/ipxe.lkrn")  # Debian's ipxe: a kernel image with the x86 boot protocol header


def kernel_image() -> bytes:
    """A real kernel image when the ipxe package is installed, else one built with a valid x86 boot protocol
    header (Documentation/arch/x86/boot.rst: 0xAA55 at 0x1FE, "HdrS" at 0x202, protocol 2.15, kernel_version)."""
    if REAL_KERNEL.is_file():
        return REAL_KERNEL.read_bytes()
    data = bytearray(os.urandom(200_000))
    data[0x1FE:0x200] = b"\x55\xaa"
    data[0x202:0x206] = b"HdrS"
    data[0x206:0x208] = bytes([15, 2])
    data[0x20E:0x210] = (0x400 - 0x200).to_bytes(2, "little")
    data[0x400:0x420] = b"6.1.0-test (lab) #1 SMP\0".ljust(32, b"\0")
    return bytes(data)


def ramdisk_image(tmp: Path) -> bytes:
    """A real initramfs: a newc cpio archive of a few files made by ``cpio``, gzip-compressed."""
    root = tmp / "initramfs"
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "init").write_text("#!/bin/sh\necho lab\n")
    (root / "bin" / "data").write_bytes(os.urandom(50_000))
    listing = subprocess.run(["find", ".", "-print"], cwd=root, capture_output=True, check=True).stdout
    archive = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=listing,
                             capture_output=True, check=True).stdout
    return gzip.compress(archive)


def test_versions_in_kernel_and_ramdisk_names():
    assert kernels.kernel_version("vmlinuz-6.1.0-28-amd64") == "6.1.0-28-amd64"
    assert kernels.kernel_version("vmlinuz") == ""
    assert kernels.ramdisk_version("initrd.img-6.1.0-28-amd64") == "6.1.0-28-amd64"
    assert kernels.ramdisk_version("initramfs-6.1.0-28-amd64.img") == "6.1.0-28-amd64"
    assert kernels.ramdisk_version("initrd-6.1.0.cpio.gz") == "6.1.0"
    assert kernels.ramdisk_version("initrd.gz") == ""


async def test_upload_pair_is_listed_and_staged_byte_identical_on_any_dom0(lab, tmp_path):
    kernel, ramdisk = kernel_image(), ramdisk_image(tmp_path)
    other_ramdisk = ramdisk_image(tmp_path) + b"other"
    put_upload(lab, "dave", "vmlinuz-6.1.0-amd64", kernel)
    put_upload(lab, "dave", "initrd.img-6.1.0-amd64", ramdisk)
    put_upload(lab, "dave", "vmlinuz-5.10.0-amd64", kernel[:-7])
    put_upload(lab, "dave", "initramfs-5.10.0-amd64.img", other_ramdisk)
    site = Site(lab.config)
    await site.refresh()
    facts = {u.name: u.iso for u in site.snapshot.uploads if u.owner == "dave"}
    assert facts["vmlinuz-6.1.0-amd64"].kind == "linux-kernel" and facts["vmlinuz-6.1.0-amd64"].kernel_version
    assert facts["initrd.img-6.1.0-amd64"].kind == "gzip"
    source, entries = await kernels.kernels(site, "dave/vmlinuz-6.1.0-amd64")
    assert source.key == "dave/vmlinuz-6.1.0-amd64"
    root = lab.uploads_root / "dave"
    assert [(e.number, e.label, e.kernel, e.ramdisk, e.cmdline, e.kernel_size, e.ramdisk_size) for e in entries] == [
        (1, "vmlinuz-6.1.0-amd64", str(root / "vmlinuz-6.1.0-amd64"), str(root / "initrd.img-6.1.0-amd64"), "",
         len(kernel), len(ramdisk))]
    _, older = await kernels.kernels(site, "dave/vmlinuz-5.10.0-amd64")
    assert older[0].ramdisk == str(root / "initramfs-5.10.0-amd64.img")
    with pytest.raises(NotApprovable, match="is a ramdisk: name its kernel"):
        await kernels.kernels(site, "dave/initrd.img-6.1.0-amd64")
    # dom0-b holds nothing of dave's: the bytes go image host -> console -> dom0-b
    staged = await kernels.stage(site, "dave/vmlinuz-6.1.0-amd64", "1", "dom0-b", cmdline="console=ttyS0 quiet")
    folder = lab.dir / "dom0-b" / "kernels" / "dave" / staged.name
    assert staged.path == str(folder) and staged.name == f"vmlinuz-6.1.0-amd64-{hashlib.sha256(kernel).hexdigest()[:8]}"
    assert hashlib.sha256((folder / "kernel").read_bytes()).hexdigest() == hashlib.sha256(kernel).hexdigest()
    assert hashlib.sha256((folder / "ramdisk").read_bytes()).hexdigest() == hashlib.sha256(ramdisk).hexdigest()
    assert (folder / "SHA256SUMS").read_text() == (f"{hashlib.sha256(kernel).hexdigest()}  kernel\n"
                                                   f"{hashlib.sha256(ramdisk).hexdigest()}  ramdisk\n")
    assert (folder / "cmdline").read_text() == "console=ttyS0 quiet\n"
    meta = json.loads((folder / "isoadmin.json").read_text())
    assert (meta["source"], meta["upload"], meta["ramdisk_upload"]) == \
        ("upload pair", "vmlinuz-6.1.0-amd64", "initrd.img-6.1.0-amd64")
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]
    assert (await kernels.stage(site, "dave/vmlinuz-6.1.0-amd64", "vmlinuz-6.1.0-amd64", "dom0-b",
                                cmdline="console=ttyS0 quiet")).path == staged.path  # the same set again
    other = await kernels.stage(site, "dave/vmlinuz-6.1.0-amd64", "1", "dom0-b")  # another command line
    assert other.path == staged.path + ".2" and other.cmdline == ""
    rows = [r for r in kernels.catalog_rows((await kernels.list_sets(site))[0])
            if r["volume"].startswith(staged.path + "/")]
    assert [(r["type"], r["upload"], r["source_host"], r["sha256"]) for r in rows] == [
        ("kernel", "vmlinuz-6.1.0-amd64", "imagehost", hashlib.sha256(kernel).hexdigest()),
        ("ramdisk", "initrd.img-6.1.0-amd64", "imagehost", hashlib.sha256(ramdisk).hexdigest())]
    # the staged bytes count against dave's quota
    used = sum(s.size for s in (await kernels.list_sets(site))[0] if s.owner == "dave")
    assert used == 2 * (len(kernel) + len(ramdisk))
    tight = dataclasses.replace(lab.config, quotas={"dave": used + len(kernel)})
    site2 = Site(tight)
    await site2.refresh()
    with pytest.raises(QuotaExceeded):
        await kernels.stage(site2, "dave/vmlinuz-5.10.0-amd64", "1", "dom0-a")
    assert not (lab.dir / "dom0-a" / "kernels" / "dave").exists()
    actions = [(e.action, e.outcome) for e in await site.audit.entries() if e.action == "stage kernel"]
    assert actions == [("stage kernel", "done")] * 3 + [("stage kernel", "refused")]
    await site.close()
    await site2.close()


def site_of(*uploads: Upload) -> Site:
    """A Site (no host is asked anything) whose last refresh listed ``uploads``."""
    site = Site(parse_config({
        "image_hosts": {"imagehost": {"uploads_root": "/srv/cds", "domains": {"dom0-a": "imagehost"}}},
        "dom0s": {"dom0-a": {"storage": {"driver": "files", "directory": "/srv/volumes"},
                             "hypervisor": {"driver": "lab", "guest_disk_dirs": {"imagehost": "/srv/by-id"}}}}}))
    site.snapshot = Snapshot(uploads=list(uploads))
    return site


def listed(owner: str, name: str, data: bytes, inode: int) -> Upload:
    """Upload ``owner/name`` as a refresh lists a settled file holding ``data`` (its header read as a refresh
    reads it)."""
    return Upload("imagehost", owner, name, f"/srv/cds/{owner}/{name}", "file", len(data), 1_700_000_000.0, inode,
                  1, iso=inspect_header(data[:HEADER_BYTES], len(data)), state=UploadState.PENDING)


@pytest.fixture(scope="module")
def contents(tmp_path_factory) -> dict[str, bytes]:
    """A kernel image, a ramdisk (a gzip-compressed cpio archive) and a text file."""
    return {"kernel": kernel_image(), "ramdisk": ramdisk_image(tmp_path_factory.mktemp("ramdisk")),
            "text": b"not a ramdisk\n" * 100}


@pytest.mark.parametrize("files, ramdisk", [
    ({"vmlinuz-6.1.0-amd64": "kernel", "initrd.img-6.1.0-amd64": "ramdisk", "initrd.img-5.10.0-amd64": "ramdisk"},
     "initrd.img-6.1.0-amd64"),
    ({"vmlinuz-6.1.0-amd64": "kernel", "initrd-6.1.0-amd64": "ramdisk", "initrd.img-5.10": "ramdisk"},
     "initrd-6.1.0-amd64"),
    ({"vmlinuz-6.1.0-amd64": "kernel", "initramfs-6.1.0-amd64.img": "ramdisk"}, "initramfs-6.1.0-amd64.img"),
    ({"vmlinuz": "kernel", "initrd.gz": "ramdisk"}, "initrd.gz"),  # the folder's only kernel and ramdisk
    ({"vmlinuz-6.1.0": "kernel", "initrd.img": "ramdisk"}, "initrd.img"),  # only one of them names a version
    ({"vmlinuz-6.1.0": "kernel", "vmlinuz-5.10": "kernel", "initrd.img-6.1.0": "ramdisk", "notes.txt": "text"},
     "initrd.img-6.1.0"),
], ids=["same version", "initrd-VERSION", "initramfs-VERSION.img", "lone pair", "one version", "two kernels"])
def test_a_kernel_upload_is_paired_with_the_ramdisk_of_its_version_or_the_lone_one(contents, files, ramdisk):
    site = site_of(*(listed("erin", name, contents[kind], n) for n, (name, kind) in enumerate(files.items())))
    kernel = kernels.kernel_upload(site, f"erin/{next(iter(files))}")
    assert kernel is not None and kernel.iso.is_kernel
    chosen, entry = kernels.pair(site, kernel)
    assert chosen.name == ramdisk
    assert (entry.number, entry.label, entry.kernel, entry.ramdisk, entry.cmdline, entry.source) == \
        (1, kernel.name, kernel.path, chosen.path, "", "upload pair")
    assert (entry.kernel_size, entry.ramdisk_size) == (len(contents["kernel"]), len(contents["ramdisk"]))


@pytest.mark.parametrize("files, error", [
    ({"vmlinuz-6.1.0-amd64": "kernel", "initrd.img-5.10.0-amd64": "ramdisk"}, "no ramdisk of version 6.1.0-amd64"),
    ({"vmlinuz": "kernel", "initrd.img-a": "ramdisk", "initrd.img-b": "ramdisk"}, "cannot tell which ramdisk"),
    ({"vmlinuz-6.1": "kernel", "initrd.img-6.1": "ramdisk", "initramfs-6.1.img": "ramdisk"},
     "2 ramdisks could go with it"),
    ({"vmlinuz-6.1": "kernel"}, "no ramdisk"),
    ({"vmlinuz-6.1": "kernel", "initrd.img-6.1": "text"}, "does not start as a ramdisk does"),
], ids=["other version", "cannot tell", "two of its version", "none", "not a ramdisk"])
async def test_a_mismatched_or_ambiguous_pair_is_refused_naming_what_was_found(contents, files, error):
    site = site_of(*(listed("erin", name, contents[kind], n) for n, (name, kind) in enumerate(files.items())))
    kernel = next(n for n, k in files.items() if k == "kernel")
    with pytest.raises(NotApprovable, match=re.escape(error)):
        kernels.pair(site, kernels.kernel_upload(site, f"erin/{kernel}"))
    with pytest.raises(NotApprovable, match=re.escape(error)):  # what `isoadmin kernels` lists
        await kernels.kernels(site, f"erin/{kernel}")


async def test_lone_kernel_and_ramdisk_pair_and_a_changed_upload_leaves_nothing(lab, tmp_path):
    kernel, ramdisk = kernel_image(), ramdisk_image(tmp_path)
    put_upload(lab, "frank", "vmlinuz", kernel)
    path = put_upload(lab, "frank", "initrd.gz", ramdisk)
    site = Site(lab.config)
    await site.refresh()
    _, entries = await kernels.kernels(site, "frank/vmlinuz")
    assert entries[0].ramdisk == str(path)
    with open(path, "ab") as f:  # changed after the admin saw the listing
        f.write(b"more")
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    with pytest.raises(NotApprovable, match="changed since it was listed"):
        await kernels.stage(site, "frank/vmlinuz", "1", "dom0-a")
    root = lab.dir / "dom0-a" / "kernels" / "frank"
    assert not root.exists() or list(root.iterdir()) == []  # the kernel's bytes that went over are removed
    await site.refresh()
    await site.refresh()  # the first refresh after the change sees it still being written
    staged = await kernels.stage(site, "frank/vmlinuz", "1", "dom0-a")
    assert (Path(staged.path) / "ramdisk").read_bytes() == path.read_bytes()
    await site.close()


async def test_facts_cached_before_kernels_were_recognised_are_read_again(lab):
    put_upload(lab, "dave", "vmlinuz-6.1", kernel_image())
    first = Site(lab.config)
    await first.refresh()
    await first.close()
    cache = json.loads(first.facts_cache.read_text())
    (key,) = [k for k in cache if k.endswith("/dave/vmlinuz-6.1")]
    for field_name in ("content", "kernel_version"):  # as an older console wrote it
        del cache[key][3][field_name]
    cache[key][3]["problem"] = "no ISO 9660 primary volume descriptor"
    first.facts_cache.write_text(json.dumps(cache))
    second = Site(lab.config)
    snap = await second.refresh()
    assert next(u for u in snap.uploads if u.key == "dave/vmlinuz-6.1").iso.kind == "linux-kernel"
    await second.close()


# ----------------------------------------------------------------------------- symbolic links inside an ISO

LINKS = {"/live/loop-a": "loop-b", "/live/loop-b": "loop-a",  # a loop
         "/live/escape": "../../../etc/passwd",  # above the ISO's root: outside it
         "/live/gone": "/live/vmlinuz-7.0",  # absolute, to nothing
         "/boot/live": "/live"}  # a folder
HOSTILE_ENTRIES = [("loop", "/live/loop-a", ""), ("escape", "/live/escape", "/live/initrd.img"),
                   ("gone", "/live/gone", ""), ("through-folder", "/boot/live/vmlinuz", "/boot/live/initrd.img")]


def put_symlinked_iso(lab, owner: str = "alice", name: str = "debian-live.iso", **kwargs) -> None:
    data = make_live_iso("DEBIAN_LIVE", KERNEL, RAMDISK, CMDLINE, **kwargs)
    put_upload(lab, owner, name, data)


async def test_symlinked_kernel_is_listed_and_staged_byte_identical_and_bad_links_are_skipped(lab):
    put_symlinked_iso(lab, links=LINKS, entries=HOSTILE_ENTRIES)
    site = Site(lab.config)
    await site.refresh()
    await site.approve(await site.plan("alice/debian-live.iso", "dom0-a"))
    _, entries = await kernels.kernels(site, "alice/debian-live.iso")
    assert [(e.label, e.kernel, e.ramdisk, e.kernel_size, e.ramdisk_size) for e in entries] == [
        ("Live system", "/live/vmlinuz", "/live/initrd.img", len(KERNEL), len(RAMDISK)),
        ("through-folder", "/boot/live/vmlinuz", "/boot/live/initrd.img", len(KERNEL), len(RAMDISK))]
    assert [(s.label, s.path, s.reason) for s in entries.skipped] == [
        ("loop", "/live/loop-a", "symbolic link loop (more than 8 links followed)"),
        ("escape", "/live/escape", "a symbolic link points outside the ISO"),
        ("gone", "/live/gone", "its target /live/vmlinuz-7.0 is not a file in the ISO")]
    staged = await kernels.stage(site, "alice/debian-live.iso", "1")
    folder = Path(staged.path)
    assert (folder / "kernel").read_bytes() == KERNEL and (folder / "ramdisk").read_bytes() == RAMDISK
    assert (folder / "cmdline").read_text() == CMDLINE + "\n"
    with pytest.raises(NotApprovable, match="entry 'loop' is skipped: /live/loop-a: symbolic link loop"):
        await kernels.stage(site, "alice/debian-live.iso", "loop")
    await site.close()


def test_a_listing_reads_no_more_than_its_budget():
    data = make_live_iso("LIVE", KERNEL, RAMDISK, CMDLINE)
    iso = pycdlib.PyCdlib()
    with pytest.raises(ReadBudgetSpent, match=r"^alice/live.iso: more than 40000 bytes of its directory records"):
        iso.open_fp(kernels._Budget(io.BytesIO(data), "alice/live.iso", budget=40_000))
    assert len(kernels.entries_in(io.BytesIO(data), "alice/live.iso")) == 1  # within the real budget
