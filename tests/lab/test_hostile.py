"""Hostile input and concurrency on the lab: names chosen by strangers never reach a shell, links are never
followed, two consoles never import the same upload twice, copies per image host are bounded."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

import pytest

from backend.errors import JobFailed
from backend.lab import Lab, make_iso
from backend.models import UploadState
from backend.naming import is_valid_lvm_name
from backend.site import Site

from ..conftest import ROOT, cli, sha256_file
from .conftest import until


CANARY = "isoadmin-canary"


def canaries(*dirs: Path) -> list[Path]:
    """Canary files that a command substitution would have created (relative to a shell's cwd)."""
    return [d / CANARY for d in (*dirs, ROOT, Path("/"), Path.home()) if (d / CANARY).exists()]


def corpus() -> tuple[list[bytes], list[bytes]]:
    """Hostile owner and file names (bytes: some are not UTF-8). A shell that interpreted one would
    create a file named :data:`CANARY` in its working directory."""
    c = CANARY.encode()
    owners = [b"$(touch " + c + b")", b"a b;c", b"-rf", b"\xc3\xbcser", b"new\nline", b"`touch " + c + b"`"]
    files = [
        b"$(touch " + c + b").iso", b"`touch " + c + b"`.iso", b"a;touch " + c + b".iso", b"a|b.iso",
        b"a&b.iso", b"a>b.iso", b"it's.iso", b'say "hi".iso', b"two words.iso", b"new\nline.iso",
        b"tab\tcr\r.iso", b"-rf.iso", b"--.iso", b"...", b"..evil.iso", b"\xef\xac\x81le.iso",
        b"\xef\xbc\xa9\xef\xbc\xb3\xef\xbc\xaf.iso", b"x" * 251 + b".iso", b"*.iso", b"?.iso", b"~root.iso",
        b"\x1b[31mred.iso", b"latin1-\xe9.iso", b"\xff\xfe.iso",
    ]
    return owners, files


def tree(root: Path) -> dict[bytes, str]:
    """Every file under ``root`` (bytes paths) → sha256, links → their target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                out[path] = "link:" + os.fsdecode(os.readlink(path))
            elif os.path.isfile(path):
                out[path] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    return out


async def test_hostile_names_are_imported_byte_identically_or_refused(lab, tmp_path):
    owners, files = corpus()
    lab.writer.cancel()  # the lab's upload in progress would change under the comparison below
    content = make_iso("HOSTILE", {"README.TXT;1": b"hostile\n"})
    root = os.fsencode(lab.uploads_root)
    old = time.time() - 600
    for owner in owners:
        os.makedirs(os.path.join(root, owner), exist_ok=True)
    for i, name in enumerate(files):
        path = os.path.join(root, owners[i % len(owners)], name)
        with open(path, "wb") as f:
            f.write(content + bytes([i]))  # each upload is different
        os.utime(path, (old, old))
    before = tree(lab.uploads_root)
    site = Site(lab.config)
    snap = await site.refresh()
    assert all(h.up for h in snap.hosts), [h.error for h in snap.hosts]
    hostile = [u for u in snap.uploads if os.fsencode(u.owner) in owners]
    assert len(hostile) == len(files)
    imported = refused = 0
    for u in hostile:
        raw_ok = all(_utf8(x) for x in (u.owner, u.name))
        if not raw_ok:
            assert u.state == UploadState.REFUSED and u.reason == "name is not valid UTF-8"
            refused += 1
            continue
        assert u.state == UploadState.PENDING, (u.key, u.state, u.reason)
        job = await site.approve(await site.plan(u.key))
        assert is_valid_lvm_name(job.final) and is_valid_lvm_name(job.staging)
        landed = lab.volumes_dir("dom0-a") / f"{job.final}.img"
        assert sha256_file(landed, u.size) == sha256_file(Path(os.fsdecode(os.path.join(root, os.fsencode(u.owner),
                                                                                          os.fsencode(u.name)))))
        imported += 1
    assert (imported, refused) == (len(files) - 2, 2)  # two names are not UTF-8
    snap = await site.refresh()
    for v in snap.volumes:
        assert is_valid_lvm_name(v.name)
        assert v.namespace == "final" and v.meta["owner"].encode() in owners
    assert canaries(lab.dir, tmp_path) == []
    assert tree(lab.uploads_root) == before  # every upload exactly as it was
    await site.close()


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


async def test_hostile_rejection_reason_is_data(lab, tmp_path):
    site = Site(lab.config)
    await site.refresh()
    await site.reject("alice/tools.iso", f"$(touch {CANARY}); `touch {CANARY}` && rm -rf / \n")
    snap = await site.refresh()
    tools = {u.key: u for u in snap.uploads}["alice/tools.iso"]
    assert tools.state == UploadState.REJECTED and "$(touch" in tools.reason
    assert canaries(lab.dir, tmp_path) == []
    await site.close()


async def test_upload_swapped_for_a_symlink_after_listing_is_not_followed(lab):
    site = Site(lab.config)
    await site.refresh()
    plan = await site.plan("alice/ipxe.iso")
    upload = lab.uploads_root / "alice" / "ipxe.iso"
    secret = lab.dir / "secret.iso"
    upload.rename(secret)
    upload.symlink_to(secret)  # same bytes behind a link: it must still not be opened
    with pytest.raises(JobFailed) as failure:
        await site.approve(plan)
    assert failure.value.phase == "copy"
    assert "not the file that was approved" in failure.value.reason or "copy failed" in failure.value.reason
    assert list(lab.volumes_dir("dom0-a").iterdir()) == [] and list(lab.by_id.iterdir()) == []
    snap = await site.refresh()
    assert {u.key: u for u in snap.uploads}["alice/ipxe.iso"].state == UploadState.REFUSED
    await site.close()


@pytest.mark.process
async def test_two_consoles_approving_the_same_upload_run_one_job(lab):
    """Two workstations (two ``isoadmin`` processes) approve one upload at the same moment: one imports it,
    the other is told it is already importing or imported."""
    put_big(lab, "carol", "big.iso", 300 << 20)
    results = await asyncio.gather(*(cli("approve", "carol/big.iso", "--yes", config=lab.config_path)
                                     for _ in range(2)))
    codes = sorted(r.returncode for r in results)
    assert codes[0] == 0 and codes[1] != 0, [(r.returncode, r.stderr) for r in results]
    loser = next(r.stderr for r in results if r.returncode != 0)
    assert "already importing by" in loser or "already imported" in loser, loser
    names = sorted(p.name for p in lab.volumes_dir("dom0-a").iterdir())
    assert len([n for n in names if n.endswith(".img")]) == 1 and not any(n.startswith("cdtmp_") for n in names)


def put_big(lab: Lab, owner: str, name: str, size: int) -> Path:
    """A settled upload ``owner/name`` of ``size`` bytes (a small ISO, then zeros)."""
    path = lab.uploads_root / owner / name
    with open(path, "wb") as f:
        f.write(make_iso("BIG", {"A.TXT;1": b"a"}))
        f.truncate(size)
    old = time.time() - 600
    os.utime(path, (old, old))
    return path


async def _seed_big(lab: Lab, owner: str, name: str, size: int) -> Path:
    await lab.start()
    await lab.stop()
    return put_big(lab, owner, name, size)


async def test_copies_per_image_host_are_bounded(tmp_path):
    lab = Lab(tmp_path / "lab")
    for i in range(3):
        await _seed_big(lab, "bob", f"big{i}.iso", 64 << 20)
    config = await lab.start()
    try:
        config.image_hosts["imagehost"] = config.image_hosts["imagehost"].__class__(
            **{**config.image_hosts["imagehost"].__dict__, "max_copies": 1})
        site = Site(config)
        await site.refresh()
        spans: dict[str, list[float]] = {}

        async def on_phase(job) -> None:
            if job.phase in ("copy", "detach"):
                spans.setdefault(job.id, []).append(time.monotonic())

        plans = [await site.plan(f"bob/big{i}.iso") for i in range(3)]
        jobs = await asyncio.gather(*(site.approve(p, on_phase=on_phase) for p in plans))
        assert [j.state for j in jobs] == ["done"] * 3
        intervals = sorted(spans.values())
        for (a_start, a_end), (b_start, _) in zip(intervals, intervals[1:]):
            assert b_start >= a_end, intervals  # one copy (+ verify) at a time
        await site.close()
    finally:
        await lab.stop()


async def test_imports_on_different_dom0s_run_in_parallel(tmp_path):
    lab = Lab(tmp_path / "lab")
    for i in range(2):
        await _seed_big(lab, "bob", f"big{i}.iso", 12 << 20)  # fits dom0-b's 16 MiB
    site = Site(await lab.start())
    try:
        await site.refresh()
        spans: dict[str, list[float]] = {}
        copying: set[str] = set()

        async def on_phase(job) -> None:
            spans.setdefault(job.dom0, []).append(time.monotonic())
            if job.phase == "copy":  # each copy waits for the other: imports that run one at a time never get past it
                copying.add(job.dom0)
                await until(lambda: copying == {"dom0-a", "dom0-b"},
                            f"the other dom0's import to reach its copy while {job.dom0}'s waits at its own")

        plans = [await site.plan("bob/big0.iso", "dom0-a"), await site.plan("bob/big1.iso", "dom0-b")]
        jobs = await asyncio.gather(*(site.approve(p, on_phase=on_phase) for p in plans))
        assert [(j.dom0, j.state) for j in jobs] == [("dom0-a", "done"), ("dom0-b", "done")]
        a, b = spans["dom0-a"], spans["dom0-b"]
        assert a[0] < b[-1] and b[0] < a[-1]  # the two jobs' lifetimes overlap
    finally:
        await site.close()
        await lab.stop()
