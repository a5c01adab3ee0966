"""Kernel sets through the CLI (``kernels``, ``stage-kernel``, ``kernel-sets``, ``delete-kernel``,
``kernel-gc``, ``catalog``), in this process (:func:`tui.cli.amain`), on one lab served for the whole module:
each test has owners of its own in it and looks only at what is theirs."""

from __future__ import annotations

import hashlib
import json

import pytest

from backend.lab import make_kernel_iso, make_live_iso
from backend.site import Site

from ..conftest import isoadmin
from .conftest import new_owner, put_upload
from .test_kernels import (CMDLINE, HOSTILE_ENTRIES, KERNEL, LINKS, RAMDISK, kernel_image, put_symlinked_iso,
                           ramdisk_image)

# every test here runs in the module's event loop: the one serving ``shared_lab``
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def contents(tmp_path_factory) -> dict[str, bytes]:
    """A kernel image and a ramdisk (a gzip-compressed cpio archive)."""
    return {"kernel": kernel_image(), "ramdisk": ramdisk_image(tmp_path_factory.mktemp("ramdisk"))}


async def test_cli_kernels_stage_list_catalog_delete(shared_lab):
    lab, owner = shared_lab, new_owner(shared_lab, "k")
    put_upload(lab, owner, "live.iso", make_kernel_iso("LIVE", KERNEL, RAMDISK, CMDLINE))
    config = lab.config_path
    assert (await isoadmin("approve", f"{owner}/live.iso", "--yes", config=config)).returncode == 0
    listed = await isoadmin("kernels", f"{owner}/live.iso", "--json", config=config)
    assert listed.returncode == 0, listed.stderr
    assert [e["cmdline"] for e in json.loads(listed.stdout)] == [CMDLINE]
    staged = await isoadmin("stage-kernel", f"{owner}/live.iso", "1", config=config)
    assert staged.returncode == 0 and "staged" in staged.stdout, staged.stderr
    sets = [s for s in json.loads((await isoadmin("kernel-sets", "--json", config=config)).stdout)
            if s["owner"] == owner]  # the lab's other owners are other tests'
    assert [(s["owner"], s["size"]) for s in sets] == [(owner, len(KERNEL) + len(RAMDISK))]
    catalog = json.loads((await isoadmin("catalog", "--json", config=config)).stdout)
    assert sorted(r["type"] for r in catalog if r["owner"] == owner) == ["cd", "kernel", "ramdisk"]
    assert (await isoadmin("kernel-gc", config=config)).returncode == 0
    gone = await isoadmin("delete-kernel", sets[0]["ref"], "--yes", config=config)
    assert gone.returncode == 0, gone.stderr
    assert [s for s in json.loads((await isoadmin("kernel-sets", "--json", config=config)).stdout)
            if s["owner"] == owner] == []
    assert (await isoadmin("stage-kernel", f"{owner}/none.iso", "1", config=config)).returncode == 5
    assert (await isoadmin("kernels", f"{owner}/none.iso", config=config)).returncode == 5


async def test_cli_refuses_a_pair_with_exit_6_and_leaves_nothing(shared_lab, contents):
    lab, owner = shared_lab, new_owner(shared_lab, "pair")
    put_upload(lab, owner, "vmlinuz-6.1.0-amd64", contents["kernel"])
    put_upload(lab, owner, "initrd.img-5.10.0-amd64", contents["ramdisk"])
    shown = await isoadmin("kernels", f"{owner}/vmlinuz-6.1.0-amd64", config=lab.config_path)
    assert shown.returncode == 6 and "no ramdisk of version 6.1.0-amd64" in shown.stderr, shown.stderr
    staged = await isoadmin("stage-kernel", f"{owner}/vmlinuz-6.1.0-amd64", "1", "--dom0", "dom0-a",
                            config=lab.config_path)
    assert staged.returncode == 6 and "no ramdisk of version 6.1.0-amd64" in staged.stderr, staged.stderr
    assert not (lab.dir / "dom0-a" / "kernels" / owner).exists()


async def test_cli_stage_kernel_from_an_upload_pair(shared_lab, contents):
    lab, owner = shared_lab, new_owner(shared_lab, "pk")
    config = lab.config_path
    kernel, ramdisk = contents["kernel"], contents["ramdisk"]
    put_upload(lab, owner, "vmlinuz-6.1.0-amd64", kernel)
    put_upload(lab, owner, "initrd.img-6.1.0-amd64", ramdisk)
    uploads = {u["name"]: u for u in json.loads((await isoadmin("uploads", "--json", config=config)).stdout)
               if u["owner"] == owner}
    assert uploads["vmlinuz-6.1.0-amd64"]["content"] == "linux-kernel"
    assert uploads["initrd.img-6.1.0-amd64"]["content"] == "gzip"
    table = (await isoadmin("uploads", config=config)).stdout
    assert "kernel" in next(line for line in table.splitlines() if line.startswith(f"{owner}\tvmlinuz-6.1.0-amd64\t"))
    shown = await isoadmin("kernels", f"{owner}/vmlinuz-6.1.0-amd64", "--json", config=config)
    assert shown.returncode == 0, shown.stderr
    assert [(e["source"], e["ramdisk"].rsplit("/", 1)[-1]) for e in json.loads(shown.stdout)] == [
        ("upload pair", "initrd.img-6.1.0-amd64")]
    staged = await isoadmin("stage-kernel", f"{owner}/vmlinuz-6.1.0-amd64", "1", "--dom0", "dom0-b", "--cmdline",
                            "console=ttyS0", config=config)
    assert staged.returncode == 0 and "staged" in staged.stdout, staged.stderr
    sets = [s for s in json.loads((await isoadmin("kernel-sets", "--json", config=config)).stdout)
            if s["owner"] == owner]  # the lab's other owners are other tests'
    assert [(s["dom0"], s["cmdline"], s["sha256"]) for s in sets] == [
        ("dom0-b", "console=ttyS0", {"kernel": hashlib.sha256(kernel).hexdigest(),
                                     "ramdisk": hashlib.sha256(ramdisk).hexdigest()})]
    rejected = await isoadmin("reject", f"{owner}/initrd.img-6.1.0-amd64", "--reason", "not ours", config=config)
    assert rejected.returncode == 0, rejected.stderr
    refused = await isoadmin("stage-kernel", f"{owner}/vmlinuz-6.1.0-amd64", "1", "--dom0", "dom0-a", config=config)
    assert refused.returncode == 6 and "is rejected: not ours" in refused.stderr, refused.stderr


async def test_cli_lists_and_stages_a_symlinked_kernel_and_names_skipped_entries(shared_lab):
    lab, owner = shared_lab, new_owner(shared_lab, "sl")
    config = lab.config_path
    put_symlinked_iso(lab, owner, links=LINKS, entries=HOSTILE_ENTRIES)
    approved = await isoadmin("approve", f"{owner}/debian-live.iso", "--yes", config=config)
    assert approved.returncode == 0, approved.stderr
    listed = await isoadmin("kernels", f"{owner}/debian-live.iso", "--json", config=config)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert [(e["kernel"], e["kernel_size"]) for e in json.loads(listed.stdout)] == [
        ("/live/vmlinuz", len(KERNEL)), ("/boot/live/vmlinuz", len(KERNEL))]
    assert [line.split(": entry skipped: ")[1] for line in listed.stderr.splitlines()] == [
        "loop (from /isolinux/isolinux.cfg): /live/loop-a: symbolic link loop (more than 8 links followed)",
        "escape (from /isolinux/isolinux.cfg): /live/escape: a symbolic link points outside the ISO",
        "gone (from /isolinux/isolinux.cfg): /live/gone: its target /live/vmlinuz-7.0 is not a file in the ISO"]
    table = await isoadmin("kernels", f"{owner}/debian-live.iso", config=config)
    assert table.returncode == 0 and "/live/vmlinuz" in table.stdout and "Traceback" not in table.stderr
    staged = await isoadmin("stage-kernel", f"{owner}/debian-live.iso", "Live system", config=config)
    assert staged.returncode == 0 and "Traceback" not in staged.stderr, staged.stderr
    (folder,) = (lab.dir / "dom0-a" / "kernels" / owner).iterdir()
    assert (folder / "kernel").read_bytes() == KERNEL and (folder / "ramdisk").read_bytes() == RAMDISK
    refused = await isoadmin("stage-kernel", f"{owner}/debian-live.iso", "escape", config=config)
    assert refused.returncode == 6 and "points outside the ISO" in refused.stderr, refused.stderr


async def test_cli_on_an_iso_whose_directory_records_are_cut_says_so_in_one_line(shared_lab):
    lab, owner = shared_lab, new_owner(shared_lab, "cut")
    data = bytearray(make_live_iso("LIVE", KERNEL, RAMDISK, CMDLINE))
    root = int.from_bytes(data[16 * 2048 + 156 + 2:16 * 2048 + 156 + 6], "little")  # ECMA-119 9.1.3
    dot = data[root * 2048]  # the root's "." record; ".." follows it
    data[root * 2048 + dot] = 0xFF  # the ".." record claims more bytes than it has: cut records
    put_upload(lab, owner, "cut.iso", bytes(data))
    site = Site(lab.config)
    await site.refresh()
    await site.approve(await site.plan(f"{owner}/cut.iso", "dom0-a"))  # its header is a valid ISO 9660 one
    await site.close()
    for args in (("kernels", f"{owner}/cut.iso"), ("stage-kernel", f"{owner}/cut.iso", "1")):
        done = await isoadmin(*args, config=lab.config_path)
        assert done.returncode == 6 and "Traceback" not in done.stderr, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"isoadmin: {owner}/cut.iso (dom0-a:cd_{owner}_cut") and \
            "): cannot be read as ISO 9660: " in line, line
