"""The live inventory over the lab's SSH servers: states, ISO facts, one command per host per refresh."""

from __future__ import annotations

import os
import time

from backend.config import HostConfig, parse_config
from backend.lab import Lab
from backend.models import UploadState
from backend.site import Site


def by_key(snap):
    return {u.key: u for u in snap.uploads}


async def test_seeded_lab_states_and_iso_facts(site):
    snap = await site.refresh()
    assert all(h.up for h in snap.hosts), [h.error for h in snap.hosts]
    uploads = by_key(snap)
    ipxe = uploads["alice/ipxe.iso"]
    assert ipxe.state == UploadState.PENDING and ipxe.size == 2097152
    assert (ipxe.iso.volume_id, ipxe.iso.bootable) == ("ISOIMAGE", True)
    assert uploads["bob/rescue-boot.iso"].iso.bootable and not uploads["alice/tools.iso"].iso.bootable
    floppy = uploads["bob/boot-floppy.img"]
    assert floppy.state == UploadState.PENDING and not floppy.iso.is_iso9660 and floppy.to_json()["iso"] is None
    link = uploads["alice/passwd.iso"]
    assert link.state == UploadState.REFUSED and link.kind == "symlink" and link.iso is None
    assert uploads["carol/incoming.iso"].state == UploadState.WRITING
    item = ipxe.to_json()
    assert {"owner", "name", "host", "path", "size", "state", "iso"} <= set(item)
    assert item["path"].endswith("/cds/alice/ipxe.iso") and item["iso"]["volume_id"] == "ISOIMAGE"


async def test_refused_kinds_are_never_opened(lab, site):
    owner = lab.uploads_root / "dave"
    owner.mkdir()
    os.mkfifo(owner / "pipe.iso")
    (owner / "subdir.iso").mkdir()
    (owner / "real.iso").write_bytes(b"x" * 4096)
    os.link(owner / "real.iso", owner / "hardlink.iso")
    (lab.uploads_root / "stray.iso").write_bytes(b"y")
    snap = await site.refresh()  # would hang on the fifo if it were opened
    uploads = by_key(snap)
    assert uploads["dave/pipe.iso"].reason.startswith("fifo")
    assert uploads["dave/subdir.iso"].reason.startswith("directory")
    assert uploads["dave/hardlink.iso"].reason == "has 2 hard links"
    assert uploads["dave/real.iso"].reason == "has 2 hard links"
    assert uploads["/stray.iso"].reason == "not inside an owner folder"
    for key in ("dave/pipe.iso", "dave/subdir.iso", "dave/hardlink.iso", "/stray.iso"):
        assert uploads[key].state == UploadState.REFUSED and uploads[key].iso is None


async def test_writing_until_settled(lab, site):
    path = lab.uploads_root / "carol" / "new.iso"
    path.write_bytes(b"\0" * 4096)
    assert by_key(await site.refresh())["carol/new.iso"].state == UploadState.WRITING  # too young
    old = time.time() - 600
    os.utime(path, (old, old))
    assert by_key(await site.refresh())["carol/new.iso"].state == UploadState.WRITING  # mtime changed
    assert by_key(await site.refresh())["carol/new.iso"].state == UploadState.PENDING  # stable now
    with open(path, "ab") as f:
        f.write(b"more")
    os.utime(path, (old, old))
    assert by_key(await site.refresh())["carol/new.iso"].state == UploadState.WRITING  # size changed


async def test_one_command_per_host_per_refresh_and_headers_cached(lab, site):
    await site.refresh()
    await site.refresh()  # the growing upload settles its header read here or later
    lab.writer.cancel()
    await site.refresh()
    site.log.clear()
    await site.refresh()
    hosts = [r.host for r in site.log]
    assert sorted(hosts) == ["dom0-a", "dom0-b", "imagehost"], hosts  # steady state: one each
    assert not any(r.mutating for r in site.log)
    new = lab.uploads_root / "alice" / "later.iso"
    new.write_bytes((lab.uploads_root / "alice" / "tools.iso").read_bytes())
    old = time.time() - 600
    os.utime(new, (old, old))
    site.log.clear()
    snap = await site.refresh()
    image_cmds = [r for r in site.log if r.host == "imagehost"]
    assert len(image_cmds) == 2  # the listing + one header read for the new file only
    assert image_cmds[1].argv[-1].endswith("/alice/later.iso") and len(image_cmds[1].argv) == 6
    assert by_key(snap)["alice/later.iso"].iso.volume_id == "TOOLS"


async def test_host_down_is_reported_and_others_keep_working(tmp_path):
    lab = Lab(tmp_path / "lab")
    config = await lab.start()
    try:
        dead = HostConfig("dom0-b", "127.0.0.1", port=1, user="lab", key=config.dom0s["dom0-b"].ssh.key,
                          known_hosts=config.dom0s["dom0-b"].ssh.known_hosts)
        broken = config.dom0s["dom0-b"].__class__(dead, **{k: getattr(config.dom0s["dom0-b"], k) for k in
                                                           ("storage", "hypervisor", "staging_prefix", "final_prefix")})
        config.dom0s["dom0-b"] = broken
        site = Site(config)
        snap = await site.refresh()
        status = {h.name: h for h in snap.hosts}
        assert not status["dom0-b"].up and "cannot connect" in status["dom0-b"].error
        assert status["imagehost"].up and status["dom0-a"].up
        assert by_key(snap)["alice/ipxe.iso"].state == UploadState.PENDING
        await site.close()
    finally:
        await lab.stop()


def site_with_known_hosts(lab, tmp_path, lines: list[str]) -> Site:
    """A Site on the lab's image host and dom0-a that trusts only the known_hosts ``lines``."""
    known = tmp_path / "known_hosts"
    known.write_text("".join(f"{line}\n" for line in lines))
    ih = lab.config.image_hosts["imagehost"]
    ssh = {"address": "127.0.0.1", "user": "lab", "key": ih.ssh.key, "known_hosts": str(known)}
    return Site(parse_config({
        "console": {"state_dir": str(tmp_path / "state")},
        "image_hosts": {"imagehost": {**ssh, "port": ih.ssh.port, "uploads_root": ih.uploads_root,
                                      "domains": {"dom0-a": "imagehost"}}},
        "dom0s": {"dom0-a": {**ssh, "port": lab.ports["dom0-a"],
                             "storage": {"driver": "files", "directory": str(lab.volumes_dir("dom0-a"))},
                             "hypervisor": {"driver": "lab", "guest_disk_dirs": {"imagehost": str(lab.by_id)}}}},
    }))


def pinned_key(lab, host: str) -> str:
    return (lab.dir / "keys" / f"known_hosts-{host}").read_text().split(maxsplit=1)[1].strip()


async def test_unknown_host_key_is_refused(tmp_path, lab):
    site = site_with_known_hosts(lab, tmp_path, [])
    snap = await site.refresh()
    assert not any(h.up for h in snap.hosts)
    assert all("host key not trusted" in h.error for h in snap.hosts)
    # the message shows the offered key's fingerprint and the exact known_hosts line to check
    error = {h.name: h.error for h in snap.hosts}["imagehost"]
    port = lab.ports["imagehost"]
    assert "SHA256:" in error and f"[127.0.0.1]:{port} {pinned_key(lab, 'imagehost')}" in error, error
    await site.close()


async def test_changed_host_key_is_refused(tmp_path, lab):
    dom0_key = pinned_key(lab, "dom0-a")
    site = site_with_known_hosts(lab, tmp_path, [
        f"[127.0.0.1]:{lab.ports['imagehost']} {dom0_key}",  # imagehost listed with dom0-a's key: a changed key
        f"[127.0.0.1]:{lab.ports['dom0-a']} {dom0_key}"])
    snap = await site.refresh()
    status = {h.name: h for h in snap.hosts}
    assert not status["imagehost"].up and "host key not trusted" in status["imagehost"].error
    assert status["dom0-a"].up
    await site.close()


async def test_header_reads_stay_aligned_whatever_the_files_are(lab, site):
    """One command reads many headers as one unencoded stream; short, vanished, fifo, symlink and
    hostile-named entries must not shift the headers of the files after them."""
    from backend import imagehost

    root = lab.uploads_root / "alice"
    short = root / "short.iso"
    short.write_bytes(b"S" * 1000)
    big = root / "big.iso"
    big.write_bytes(bytes(range(256)) * 1024)  # 256 KiB
    tricky = root / "records\n1+0 records out\nF\n.iso"
    tricky.write_bytes(b"T" * 70000)
    fifo = root / "pipe.iso"
    os.mkfifo(fifo)
    link = root / "link.iso"
    link.symlink_to(big)
    paths = [short, root / "gone.iso", fifo, big, link, tricky, root / "ipxe.iso"]
    headers = await imagehost.read_headers(site.hosts["imagehost"], [str(p) for p in paths])
    assert headers[str(short)] == b"S" * 1000 + bytes(65536 - 1000)  # padded: callers cut to the size
    assert headers[str(root / "gone.iso")] == b"" and headers[str(fifo)] == b"" and headers[str(link)] == b""
    assert headers[str(big)] == (bytes(range(256)) * 1024)[:65536]
    assert headers[str(tricky)] == b"T" * 65536
    assert headers[str(root / "ipxe.iso")] == (root / "ipxe.iso").read_bytes()[:65536]


async def test_many_headers_are_read_in_bounded_commands(lab, site):
    """A cold start with thousands of new files reads their headers HEADER_BATCH at a time, and hands
    each command's headers over as it arrives (never all of them in memory at once)."""
    from backend import imagehost

    root = lab.uploads_root / "bob"
    paths = []
    for i in range(imagehost.HEADER_BATCH + 44):
        path = root / f"m{i:03d}.iso"  # short: the batch bound below must not depend on the tmp path
        path.write_bytes(i.to_bytes(2, "big") * 10)
        paths.append(str(path))
    batches: list[dict] = []
    site.log.clear()
    kept = await imagehost.read_headers(site.hosts["imagehost"], paths, on_batch=batches.append)
    # HEADER_BATCH paths a command, fewer when the paths are long (the temp dir's name varies with the run)
    assert kept == {} and sum(len(b) for b in batches) == imagehost.HEADER_BATCH + 44
    assert max(len(b) for b in batches) <= imagehost.HEADER_BATCH and len(batches) == 2
    assert len([r for r in site.log if "isoadmin-headers" in r.argv]) == 2
    got = {path: header for b in batches for path, header in b.items()}
    assert all(got[p][:20] == i.to_bytes(2, "big") * 10 for i, p in enumerate(paths))
