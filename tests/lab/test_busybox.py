"""The host scripts on BusyBox hosts: ``Lab(busybox=...)`` hosts run every command with ``busybox sh`` (ash),
BusyBox's applets first on their ``PATH`` and nothing of this machine's but what
:data:`backend.lab.BUSYBOX_FALLBACK` names. On them: the uploads listing (the same entries as GNU's, hostile
names included), the ledger (jobs, locks, leases, rejections, the audit log appended and verified), an import
end to end, a download (BusyBox wget), kernel staging (from an ISO and from an upload pair), and the reads of
owners' files that cannot open with O_NOFOLLOW there, raced against an owner swapping links."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from backend import catalog, download, health, hosttools, imagehost, kernels
from backend.commands import script
from backend.errors import JobFailed, NotApprovable
from backend.lab import BUSYBOX_FALLBACK, Lab, busybox_path, make_kernel_iso
from backend.ledger import upload_key, verify_chain
from backend.site import Site
from backend.state import JobRecord

from ..conftest import expire_leases, sha256_file

#: rounds of each race against an owner swapping a link in and out
ROUNDS = 100


@pytest.fixture
async def lab(tmp_path):
    """A lab whose every host is a BusyBox system; uploads settle after 1 s."""
    lab = Lab(tmp_path / "lab", busybox=True, settle_seconds=1.0)
    lab.config = await lab.start()
    yield lab
    await lab.stop()


@pytest.fixture
async def site(lab):
    site = Site(lab.config)
    yield site
    await site.close()


def put(lab: Lab, owner: str, name: str, data: bytes, age: float = 3600) -> Path:
    folder = lab.uploads_root / owner
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)
    past = time.time() - age
    os.utime(folder / name, (past, past))
    return folder / name


def gnu_listing(root: Path) -> imagehost.Listing:
    """The uploads listing of ``root`` made here, with this machine's sh and GNU findutils (``find -printf``)."""
    out = subprocess.run(["/bin/sh", "-c", imagehost.LIST_SCRIPT, "isoadmin-list", str(root)],
                         capture_output=True, check=True).stdout
    listing = imagehost.parse_listing(out)
    assert not listing.portable
    return listing


def test_busybox_lab_hosts_must_exist(tmp_path):
    with pytest.raises(ValueError, match="no such lab host"):
        Lab(tmp_path / "lab", busybox=["imagehost", "dom0-z"])


async def test_a_busybox_host_runs_busybox_and_nothing_gnu(lab, site):
    busybox = os.path.realpath(busybox_path())
    folder = Path(lab.paths["imagehost"])
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    assert sorted(p.name for p in folder.iterdir()) == sorted(set(applets) | set(BUSYBOX_FALLBACK))
    assert {os.path.realpath(p) for p in folder.iterdir() if p.name in applets} == {busybox}
    probe = script('readlink /proc/$$/exe; for p in getent openssl curl python3; do command -v "$p"; done; '
                   'find --help 2>&1 | head -n 1; dd --help 2>&1 | head -n 1; stat --help 2>&1 | head -n 1',
                   "probe")
    for host in lab.hosts:
        lines = (await site.hosts[host].run(probe, check=False)).stdout.decode().splitlines()
        assert os.path.realpath(lines[0]) == busybox, lines
        assert all(line.startswith("BusyBox") for line in lines[1:]), lines  # no getent, openssl, curl, python3
    tools = await hosttools.tools(site.hosts["imagehost"])
    assert (tools.sha, tools.dd, tools.curl_protocols, tools.downloader) == \
        ("sha256sum", "busybox", frozenset(), "busybox-wget")


async def test_the_listing_equals_gnus_and_no_name_forges_a_record(lab, site):
    """Names holding a newline and text shaped like a listing line (or a record of the second pass), names that
    are not UTF-8, a folder with a newline in its name, a link whose target holds a newline, a fifo and a hard
    link: the BusyBox listing (find and stat) gives exactly the entries GNU's find -printf gives."""
    folder = lab.uploads_root / "alice"
    hostile = ["x\n81a4 9 1 2000-01-01 00:00:00.0 +0000 1 1 0 forged.iso", "y\nS 81a4 1 1 d t z 1 1 0\n",
               "z\nLforged\n", "ends with a newline\n", "tab\tand \x1b[31mescape", "bad\xff".encode("latin-1"), " "]
    for name in hostile:
        with open(os.path.join(os.fsencode(folder), os.fsencode(name) if isinstance(name, str) else name),
                  "wb") as f:
            f.write(b"hostile")
    (lab.uploads_root / "we\nird").mkdir()
    (lab.uploads_root / "we\nird" / "inside.iso").write_bytes(b"x")
    (folder / "link").symlink_to("/etc/pass\nwd")
    os.mkfifo(folder / "fifo")
    os.link(folder / "tools.iso", lab.uploads_root / "bob" / "hard.iso")
    (lab.uploads_root / "stray").write_bytes(b"")
    result = await site.hosts["imagehost"].run(imagehost.list_command(str(lab.uploads_root)))
    portable = imagehost.parse_listing(result.stdout)
    assert portable.portable and b"\nlisting portable\n--\n" in result.stdout
    gnu = gnu_listing(lab.uploads_root)
    assert sorted(portable.entries, key=lambda e: e.rel) == sorted(gnu.entries, key=lambda e: e.rel)
    rels = [e.rel for e in portable.entries]
    assert len(rels) == len(set(rels)) and not any(r.startswith("forged") or "/forged" in r for r in rels)
    for name in hostile:
        text = name if isinstance(name, str) else name.decode("utf-8", "surrogateescape")
        assert rels.count(f"alice/{text}") == 1
    link = next(e for e in portable.entries if e.rel == "alice/link")
    assert (link.kind, link.target) == ("symlink", "/etc/pass\nwd")
    assert {e.rel: e.kind for e in portable.entries}["alice/fifo"] == "fifo"
    assert next(e for e in portable.entries if e.rel == "bob/hard.iso").nlink == 2
    snap = await site.refresh()
    assert hosttools.is_portable(site.hosts["imagehost"])
    states = {u.key: u.state.value for u in snap.uploads}
    assert states["alice/tools.iso"] == "refused" and states["alice/link"] == "refused"  # two links; a symlink
    assert {u.key: u.iso.volume_id for u in snap.uploads if u.iso}["bob/rescue-boot.iso"] == "RESCUE_BOOT"


async def test_the_ledger_on_a_busybox_host(lab, site):
    """Jobs, the upload lock, leases (renewed, refused to another holder, claimed once expired), rejections, old
    records read by name, and the audit log appended and verified: all on a BusyBox ledger host."""
    await site.refresh()
    done = await site.approve(await site.plan("alice/tools.iso"))
    await site.reject("bob/rescue-boot.iso", "not a rescue disk")
    books = await site.read_books()
    assert books.present and books.jobs[done.id].state == "done" and not books.locks and not books.leases
    assert [(r["path"], r["reason"]) for r in books.rejections] == \
        [(str(lab.uploads_root / "bob" / "rescue-boot.iso"), "not a rescue disk")]
    ledger = site.ledger
    job = dataclasses.replace(JobRecord.from_json(done.to_json()), id="0123456789ab", state="running", phase="copy",
                              path=str(lab.uploads_root / "carol" / "memtest86+ia32.iso"))
    assert await ledger.acquire(job, "console-a", 30) is None
    holder = await ledger.acquire(dataclasses.replace(job, id="ba9876543210"), "console-b", 30)
    assert holder.startswith("0123456789ab ")  # the lock is taken: its holder is told
    assert await ledger.renew(job, "console-a", 30)
    assert not await ledger.renew(job, "console-b", 30)  # someone else's lease
    assert not await ledger.claim(job, "console-b", 30)  # live
    books = await site.read_books()
    key = upload_key(job.host, job.path)
    assert books.locks == {key: job.id} and books.live(job.id) and books.leases[job.id].holder == "console-a"
    assert expire_leases(lab.ledger_dir, job.id) == [job.id]
    assert await ledger.claim(job, "console-b", 30)
    await ledger.release(dataclasses.replace(job, state="failed"))
    books = await site.read_books()
    assert not books.locks and not books.leases and books.jobs[job.id].state == "failed"
    # records older than two days are named only, then fetched once by a console that has not seen them
    past = time.time() - 3 * 86400
    for record in (lab.ledger_dir / "jobs").iterdir():
        os.utime(record, (past, past))
    fresh = Site(lab.config)
    try:
        assert set((await fresh.read_books()).jobs) == {done.id, job.id}
        entries = await fresh.audit.entries()
        assert [e.action for e in entries if e.outcome == "done"][:2] == ["approve", "reject"]
        assert await fresh.audit.verify() is None
        lines, count, digest = await fresh.ledger.audit()
        assert count == len(lines) == len(entries) and verify_chain(lines, count, digest) is None
    finally:
        await fresh.close()
    with open(lab.ledger_dir / "audit.jsonl", "r+b") as f:  # an edited entry is found
        f.seek(10)
        f.write(b"X")
    assert (await site.audit.verify()).entry == 1


async def test_an_import_end_to_end_on_busybox_hosts(lab, site):
    """Listed, its header read, held open (refused), copied (BusyBox dd: no O_DIRECT, each segment fsynced),
    verified, detached, renamed; the volume's bytes are the upload's; a disk left hot-plugged is a finding, a
    volume in a VM's CD-ROM drive cannot be deleted (the lab hypervisor's links, read on a BusyBox dom0)."""
    await site.refresh()
    path = lab.uploads_root / "alice" / "tools.iso"
    with open(path, "ab"):  # as an SFTP server still writing it holds it
        with pytest.raises(NotApprovable, match="still open"):
            await site.plan("alice/tools.iso")
    job = await site.approve(await site.plan("alice/tools.iso"))
    assert (job.state, job.sha256) == ("done", sha256_file(path))
    volume = lab.volumes_dir("dom0-a") / f"{job.final}.img"
    assert sha256_file(volume, job.size) == job.sha256
    await site.refresh()
    assert (await catalog.verify_volume(site, job.final)).name == job.final
    assert [r["sha256"] for r in catalog.catalog(await site.all_volumes())] == [job.sha256]
    assert await health.check(site) == []
    (lab.by_id / "virtio-isoa0123456789ab").symlink_to(volume)  # a disk left behind by a console that died
    assert [(f.kind, f.target) for f in await health.check(site)] == [("attached disk", "isoa0123456789ab")]
    (lab.by_id / "virtio-isoa0123456789ab").unlink()
    (lab.vm_dir("dom0-a") / "bob-vm" / "cdrom").symlink_to(volume)
    with pytest.raises(NotApprovable, match="attached to bob-vm"):
        await site.delete_volume(f"dom0-a:{job.final}")
    assert hosttools.is_portable(site.hosts["dom0-a"])  # learnt from its find, which has no -printf


async def test_the_copy_never_opens_a_link_in_the_uploads_place(lab, site, tmp_path):
    """The copy's own refusal, without O_NOFOLLOW: an upload that is a link (to a file outside) is never read,
    nothing is written to the disk; a changed upload fails the import and rolls it back."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"S" * 70000)
    disk = tmp_path / "disk"
    disk.write_bytes(b"\0" * 70000)
    link = lab.uploads_root / "alice" / "linked.iso"
    link.symlink_to(secret)
    out = (await site.hosts["imagehost"].run(imagehost.copy_command(str(link), str(disk), "sha256sum", "busybox", 1),
                                             check=False)).stdout
    assert b"\nopen 1\n" in out and b"upload " not in out and disk.read_bytes() == b"\0" * 70000
    await site.refresh()
    plan = await site.plan("alice/memtest86+x64.iso")
    upload = lab.uploads_root / "alice" / "memtest86+x64.iso"
    upload.rename(upload.with_name("moved"))
    upload.symlink_to(secret)  # the owner's swap, after the approval
    with pytest.raises(JobFailed):
        await site.approve(plan)
    assert list(lab.volumes_dir("dom0-a").iterdir()) == [] and not list(lab.by_id.iterdir())


class Swapper:
    """An owner's shell swapping entry ``name`` of ``folder`` between a link to ``target`` and a hard link to
    ``real`` (each moved in with one rename), until stopped: this machine's sh and GNU mv, as the owner's SFTP
    session would do."""

    SWAP = ('cd "$1" || exit 1\nwhile :; do\n  rm -f .s; ln -s "$3" .s && mv -T -f .s "$4"\n'
            '  rm -f .s; ln "$2" .s && mv -T -f .s "$4"\ndone\n')

    def __init__(self, folder: Path, name: str, target: Path, real: Path) -> None:
        self.argv = ["/bin/sh", "-c", self.SWAP, "swap", str(folder), str(real), str(target), name]
        self.folder = folder

    def __enter__(self) -> "Swapper":
        self.proc = subprocess.Popen(self.argv, start_new_session=True)
        return self

    def __exit__(self, *exc) -> None:
        os.killpg(self.proc.pid, 9)
        self.proc.wait()
        (self.folder / ".s").unlink(missing_ok=True)


async def test_reads_of_owners_files_never_follow_a_link_swapped_in(lab, site, tmp_path):
    """BusyBox dd has no O_NOFOLLOW: the header read and an uploaded kernel's send open the file once and read
    it only when it is the regular file the path named. Raced ROUNDS times each against the owner swapping a
    link to a secret in and out: no byte of the secret is ever read, and some reads do succeed."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"SECRET" * 20000)
    folder = lab.uploads_root / "carol"
    await site.refresh()
    host = site.hosts["imagehost"]
    assert hosttools.is_portable(host)
    real = folder / ".real"
    real.write_bytes(b"K" * 8192)
    name = folder / "vmlinuz-race"
    os.link(real, name)
    sent, headers = {"read": 0, "refused": 0}, {"read": 0, "refused": 0}
    with Swapper(folder, name.name, secret, real):
        for _ in range(ROUNDS):
            result = await host.run(script(kernels._SEND_PORTABLE, "isoadmin-send", str(name)), check=False)
            assert b"SECRET" not in result.stdout
            if result.exit_status == 0:
                assert result.stdout == b"K" * 8192
            sent["read" if result.exit_status == 0 else "refused"] += 1
            got = (await imagehost.read_headers(host, [str(name)]))[str(name)]
            assert b"SECRET" not in got and got in (b"", b"K" * 8192 + b"\0" * (65536 - 8192))
            headers["read" if got else "refused"] += 1
    assert sent["read"] and headers["read"], (sent, headers)


async def test_a_download_on_a_busybox_image_host(lab, site):
    await site.refresh()
    src = lab.web.folder / "ipxe.iso"
    got = await download.download_url(site, lab.web.url("/iso/ipxe.iso"), "carol", "net.iso")
    assert got.sha256 == sha256_file(src) == sha256_file(lab.uploads_root / "carol" / "net.iso")
    again = await download.download_url(site, lab.web.url("/iso/ipxe.iso"), "bob", "net.iso")
    assert again.cached and again.sha256 == got.sha256
    with pytest.raises(download.DownloadFailed, match="sha256 mismatch"):
        await download.download_url(site, lab.web.url("/iso/memtest86+x64.iso"), "alice", "mt.iso", sha256="0" * 64)
    assert not (lab.uploads_root / "alice" / "mt.iso").exists()
    assert [e.url for e in await download.cache_list(site)] == [lab.web.url("/iso/ipxe.iso")]
    assert not list((lab.uploads_root / download.WORK_DIR).iterdir()) and not list((lab.cache_dir / "tmp").iterdir())
    books = await site.read_books()
    assert not books.locks and not books.leases and {j.state for j in books.jobs.values()} == {"done", "failed"}


def kernel_bytes() -> bytes:
    """A kernel image with the x86 boot protocol header (Documentation/arch/x86/boot.rst)."""
    data = bytearray(os.urandom(300_000))
    data[0x1FE:0x200] = b"\x55\xaa"
    data[0x202:0x206] = b"HdrS"
    data[0x206:0x208] = bytes([15, 2])
    data[0x20E:0x210] = (0x400 - 0x200).to_bytes(2, "little")
    data[0x400:0x420] = b"6.1.0-busybox (lab) #1 SMP\0".ljust(32, b"\0")
    return bytes(data)


async def test_kernel_staging_on_busybox_hosts(lab, site):
    """From an imported ISO (dd skip_bytes,count_bytes out of the volume, on a BusyBox dom0) and from an upload
    pair (sent by the BusyBox image host, received by the BusyBox dom0 with dd count_bytes: BusyBox head -c
    would read the ramdisk's bytes ahead); listed, a leftover found and removed, a set a VM boots kept."""
    kernel, ramdisk = os.urandom(300_000), os.urandom(120_000)
    put(lab, "alice", "live.iso", make_kernel_iso("LIVE", kernel, ramdisk, "console=ttyS0"))
    pair_kernel, pair_ramdisk = kernel_bytes(), gzip.compress(os.urandom(100_000))
    put(lab, "dave", "vmlinuz-6.1.0", pair_kernel)
    put(lab, "dave", "initrd.img-6.1.0", pair_ramdisk)
    await site.refresh()
    await site.approve(await site.plan("alice/live.iso", "dom0-a"))
    from_iso = await kernels.stage(site, "alice/live.iso", "1")
    iso_set = Path(from_iso.path)
    assert (iso_set / "kernel").read_bytes() == kernel and (iso_set / "ramdisk").read_bytes() == ramdisk
    assert (iso_set / "cmdline").read_text() == "console=ttyS0\n"
    from_pair = await kernels.stage(site, "dave/vmlinuz-6.1.0", "1", "dom0-b", cmdline="quiet")
    pair_set = Path(from_pair.path)
    assert (pair_set / "kernel").read_bytes() == pair_kernel and (pair_set / "ramdisk").read_bytes() == pair_ramdisk
    assert (pair_set / "SHA256SUMS").read_text() == (f"{hashlib.sha256(pair_kernel).hexdigest()}  kernel\n"
                                                     f"{hashlib.sha256(pair_ramdisk).hexdigest()}  ramdisk\n")
    # the receiving end alone, its whole input at once (the console's two files and its confirming line):
    # exactly the listed sizes are taken from the one stream, whatever was written ahead
    sums = f"{hashlib.sha256(pair_kernel).hexdigest()} {hashlib.sha256(pair_ramdisk).hexdigest()}\n".encode()
    result = await site.hosts["dom0-b"].run(
        script(kernels._RECEIVE, "isoadmin-stage-kernel", str(lab.dir / "dom0-b" / "kernels" / "erin"), "set",
               str(len(pair_kernel)), str(len(pair_ramdisk)), "", "{}", mutating=True),
        input=pair_kernel + pair_ramdisk + sums)
    landed = Path(result.stdout.decode().split()[-1])
    assert (landed / "kernel").read_bytes() == pair_kernel and (landed / "ramdisk").read_bytes() == pair_ramdisk
    leftover = lab.dir / "dom0-b" / "kernels" / "dave" / ".staging-old-1"
    leftover.mkdir()
    past = time.time() - 3600
    os.utime(leftover, (past, past))
    sets, leftovers = await kernels.list_sets(site)
    assert sorted(s.path for s in sets) == sorted([from_iso.path, from_pair.path, str(landed)])
    assert leftovers == [("dom0-b", str(leftover))]
    await kernels.remove_leftover(site, "dom0-b", str(leftover))
    assert not leftover.exists()
    (lab.vm_dir("dom0-a") / "alice-vm" / "kernel").symlink_to(iso_set / "kernel")
    with pytest.raises(NotApprovable, match="alice-vm"):
        await kernels.delete_set(site, from_iso.ref)
    await kernels.delete_set(site, from_pair.ref)
    assert not pair_set.exists() and iso_set.exists()


def test_a_malformed_portable_listing_is_skipped_not_raised():
    """Records cut short or garbled (a connection dropped mid-listing) are left out; the rest is read."""
    good = b"81a4 3 1700000000 2023-11-14 22:13:20.5 +0000 12 1 0 ./alice/a.iso"
    body = b"\n".join([good, b"81a4 3 x", b"zz 3 1 d t.1 z 1 1 0 ./b", b"81a4 3 1 d t.1 z 1 1 0 no-dot-slash"])
    data = (b"1700000001\ngroup root:x:0:\nlisting portable\n--\n" + body + b"\0"
            + b"S 81a4 1 1 d t.2 z 13 1 0\n./alice/x\ny\0" + b"S broken\0" + b"L./alice/a.iso\0")
    listing = imagehost.parse_listing(data)
    assert listing.portable and listing.now == 1700000001
    assert [(e.rel, e.kind, e.mtime, e.group, e.depth) for e in listing.entries] == [
        ("alice/a.iso", "file", 1700000000.5, "root", 2), ("alice/x\ny", "file", 1.2, "root", 2)]
