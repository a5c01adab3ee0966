"""Imports on the lab: the real CLI end to end, failures with rollback, read-only, reject."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from backend.errors import CapacityShort, JobFailed, NotApprovable, ReadOnlyError
from backend.lab import Lab
from backend.models import UploadState
from backend.site import Site

from ..conftest import cli, isoadmin, sha256_file
from .conftest import until


def volume_files(lab: Lab) -> dict[str, list[str]]:
    return {d: sorted(p.name for p in lab.volumes_dir(d).iterdir()) for d in ("dom0-a", "dom0-b")}


def held_open(path: Path) -> bool:
    """True when a process of this machine has ``path`` open (one of its ``/proc/PID/fd`` links to it)."""
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            if os.readlink(fd) == str(path):
                return True
        except OSError:
            continue  # the process or the descriptor went away meanwhile
    return False


@pytest.mark.process
async def test_cli_imports_a_real_iso_end_to_end(tmp_path):
    """``python -m tui --lab DIR approve``, as a sysadmin runs it: the lab created, the ISO imported; then what
    the CLI lists about it."""
    lab_dir = tmp_path / "lab"
    done = await cli("approve", "alice/ipxe.iso", "--yes", lab_dir=lab_dir)
    assert done.returncode == 0, done.stderr
    upload = lab_dir / "imagehost" / "cds" / "alice" / "ipxe.iso"
    expected = sha256_file(upload)
    assert expected in done.stdout
    listed = await isoadmin("volumes", "--json", lab_dir=lab_dir)
    assert listed.returncode == 0, listed.stderr
    volumes = json.loads(listed.stdout)
    assert [v["namespace"] for v in volumes] == ["final"]
    vol = volumes[0]
    assert (vol["dom0"], vol["owner"], vol["upload"], vol["size"] >= upload.stat().st_size) == \
        ("dom0-a", "alice", "ipxe.iso", True)
    assert vol["sha256"] == expected and vol["name"].startswith("cd_alice_ipxe")
    # the volume's bytes, read here on the "dom0" side, equal the upload
    assert sha256_file(lab_dir / "dom0-a" / "volumes" / f"{vol['name']}.img", upload.stat().st_size) == expected
    assert vol["meta"]["source_path"] == str(upload) and vol["meta"]["iso"]["volume_id"] == "ISOIMAGE"
    assert vol["meta"]["approver"] and vol["meta"]["job"]
    assert not any(p.name.startswith("cdtmp_") for p in (lab_dir / "dom0-a" / "volumes").iterdir())
    assert not list((lab_dir / "imagehost" / "dev" / "disk" / "by-id").iterdir())  # detached
    uploads = {u["owner"] + "/" + u["name"]: u
               for u in json.loads((await isoadmin("uploads", "--json", lab_dir=lab_dir)).stdout)}
    assert uploads["alice/ipxe.iso"]["state"] == "available"
    jobs = json.loads((await isoadmin("jobs", "--json", lab_dir=lab_dir)).stdout)
    assert [(j["state"], j["phase"], j["sha256"]) for j in jobs] == [("done", "done", expected)]
    again = await isoadmin("approve", "alice/ipxe.iso", "--yes", lab_dir=lab_dir)
    assert again.returncode == 6 and "already imported" in again.stderr


async def test_cli_errors_are_one_line_and_non_zero(lab):
    cases = [
        (("approve", "nobody/nothing.iso", "--yes"), 5, "no upload"),
        (("approve", "alice/passwd.iso", "--yes"), 6, "refused"),
        (("approve", "carol/incoming.iso", "--yes"), 6, "still being written"),
        (("approve", "bob/boot-floppy.img", "--yes"), 6, "not ISO 9660"),
        (("--read-only", "approve", "alice/ipxe.iso", "--yes"), 4, "read-only"),
        (("--read-only", "reject", "alice/ipxe.iso", "--reason", "no"), 4, "read-only"),
        (("approve", "alice/ipxe.iso", "--dom0", "nope", "--yes"), 5, "no dom0"),
    ]
    for args, code, text in cases:
        r = await isoadmin(*args, config=lab.config_path)
        assert r.returncode == code, (args, r.returncode, r.stderr)
        assert text in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().count("\n") == 0, r.stderr
    assert volume_files(lab) == {"dom0-a": [], "dom0-b": []}


async def test_config_file_missing_is_a_clear_error(tmp_path):
    r = await isoadmin("uploads", config=tmp_path / "none.toml")
    assert r.returncode == 2 and "no site file" in r.stderr and "Traceback" not in r.stderr


async def test_non_iso_needs_explicit_confirmation(lab, site):
    await site.refresh()
    with pytest.raises(NotApprovable, match="not ISO 9660"):
        await site.plan("bob/boot-floppy.img")
    plan = await site.plan("bob/boot-floppy.img", allow_non_iso=True)
    assert plan.warnings and "not ISO 9660" in plan.warnings[0]
    job = await site.approve(plan)
    assert job.state == "done"
    assert sha256_file(lab.volumes_dir("dom0-a") / f"{job.final}.img", job.size) == \
        sha256_file(lab.uploads_root / "bob" / "boot-floppy.img")


async def test_capacity_short_is_refused_before_anything_is_created(lab, site):
    await site.refresh()
    for key in ("bob/grub-rescue-cdrom.iso", "carol/memtest86+ia32.iso"):  # 8 MiB each: fills dom0-b
        await site.approve(await site.plan(key, "dom0-b"))
    before = volume_files(lab)
    await site.refresh()
    site.log.clear()
    with pytest.raises(CapacityShort, match=r"dom0-b: needs 8\.0 MiB .* only 0 Bytes"):
        await site.plan("alice/memtest86+x64.iso", "dom0-b")
    assert not any(r.mutating for r in site.log)
    assert volume_files(lab) == before


async def test_upload_changing_after_approval_rolls_back(lab, site):
    upload = lab.uploads_root / "alice" / "memtest86+x64.iso"
    original = upload.read_bytes()
    await site.refresh()
    plan = await site.plan("alice/memtest86+x64.iso")
    with open(upload, "ab") as f:  # the owner appends after the approval, before the copy
        f.write(b"appended")
    with pytest.raises(JobFailed) as failure:
        await site.approve(plan)
    assert failure.value.phase == "copy" and "not the file that was approved" in failure.value.reason
    job = site.jobs()[-1]
    assert (job.state, job.phase) == ("failed", "copy")
    assert "detached" in job.rollback and f"removed {plan.staging}" in job.rollback
    assert volume_files(lab)["dom0-a"] == []              # no staging volume left
    assert not list(lab.by_id.iterdir())                  # nothing attached
    assert upload.read_bytes() == original + b"appended"  # the upload is untouched by us


async def test_upload_changing_during_the_copy_rolls_back(lab, site):
    big = lab.uploads_root / "carol" / "big.iso"
    with open(big, "wb") as f:
        f.write((lab.uploads_root / "alice" / "tools.iso").read_bytes())
        f.truncate(400 << 20)  # long enough to be written to while it is copied
    old = time.time() - 600
    os.utime(big, (old, old))
    await site.refresh()

    appending: list[asyncio.Task] = []

    async def append() -> None:  # once the copy reads the upload, the owner appends to it
        await until(lambda: held_open(big), "the copy to open carol/big.iso", timeout=30, interval=0.001)
        with open(big, "ab") as f:
            f.write(b"late bytes")

    async def on_phase(job) -> None:
        if job.phase == "copy":
            appending.append(asyncio.get_running_loop().create_task(append()))

    try:
        with pytest.raises(JobFailed) as failure:
            await site.approve(await site.plan("carol/big.iso"), on_phase=on_phase)
        await appending[0]
    finally:
        for task in appending:
            task.cancel()
    assert failure.value.phase in ("copy", "verify"), failure.value
    assert volume_files(lab)["dom0-a"] == [] and not list(lab.by_id.iterdir())
    assert big.stat().st_size == (400 << 20) + len(b"late bytes")


async def test_upload_removed_before_copy_rolls_back(lab, site):
    upload = lab.uploads_root / "alice" / "tools.iso"
    await site.refresh()
    plan = await site.plan("alice/tools.iso")
    upload.rename(upload.with_name("tools.iso.moved"))
    with pytest.raises(JobFailed):
        await site.approve(plan)
    assert volume_files(lab)["dom0-a"] == [] and not list(lab.by_id.iterdir())
    assert upload.with_name("tools.iso.moved").exists()
    snap = await site.refresh()
    assert "alice/tools.iso" not in {u.key for u in snap.uploads}


async def test_failed_upload_is_shown_failed_and_can_be_approved_again(lab, site):
    await site.refresh()
    plan = await site.plan("alice/ipxe.iso")
    by_id = lab.by_id
    by_id.rmdir()  # the image host's by-id folder vanished: attach fails
    with pytest.raises(JobFailed) as failure:
        await site.approve(plan)
    assert failure.value.phase == "attach"
    by_id.mkdir()
    snap = await site.refresh()
    ipxe = {u.key: u for u in snap.uploads}["alice/ipxe.iso"]
    assert ipxe.state == UploadState.FAILED and ipxe.job == plan.job_id and ipxe.reason
    assert volume_files(lab)["dom0-a"] == []
    job = await site.approve(await site.plan("alice/ipxe.iso"))
    assert job.state == "done"


async def test_read_only_refuses_before_sending(lab):
    log = []
    site = Site(lab.config, read_only=True, listeners=[log.append])
    await site.refresh()
    plan = await site.plan("alice/ipxe.iso")  # looking is allowed
    with pytest.raises(ReadOnlyError):
        await site.approve(plan)
    with pytest.raises(ReadOnlyError):
        await site.reject("alice/ipxe.iso", "no")
    # even a driver called directly is stopped at the host: nothing mutating is ever sent
    with pytest.raises(ReadOnlyError):
        await site.storage["dom0-a"].create("cdtmp_x", 4096, {})
    assert [r for r in log if r.mutating and not r.refused] == []
    assert any(r.refused for r in log)
    assert volume_files(lab) == {"dom0-a": [], "dom0-b": []}
    await site.close()


async def test_reject_keeps_the_file(lab):
    r = await isoadmin("reject", "alice/tools.iso", "--reason", "not a boot CD", config=lab.config_path)
    assert r.returncode == 0, r.stderr
    uploads = {u["owner"] + "/" + u["name"]: u
               for u in json.loads((await isoadmin("uploads", "--json", config=lab.config_path)).stdout)}
    assert uploads["alice/tools.iso"]["state"] == "rejected"
    assert uploads["alice/tools.iso"]["reason"] == "not a boot CD"
    assert (lab.uploads_root / "alice" / "tools.iso").stat().st_size == 51200


async def test_progress_reaches_listeners_at_most_four_times_a_second(lab, site):
    big = lab.uploads_root / "carol" / "big.iso"
    with open(big, "wb") as f:
        f.write((lab.uploads_root / "alice" / "tools.iso").read_bytes())
        f.truncate(300 << 20)  # 300 MiB: a copy long enough for dd to report progress
    old = time.time() - 600
    os.utime(big, (old, old))
    await site.refresh()
    times, seen = [], []

    def on_event(job):
        times.append(time.monotonic())
        seen.append((job.phase, job.done_bytes))

    job = await site.approve(await site.plan("carol/big.iso"), on_event)
    assert job.state == "done" and seen[-1] == ("done", 300 << 20)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(g >= 0.24 for g in gaps), gaps
    assert [p for p, _ in seen][0] == "create"


async def test_upload_held_open_by_a_writer_is_not_approvable(lab, site):
    await site.refresh()
    path = lab.uploads_root / "alice" / "ipxe.iso"
    with open(path, "ab"):  # as the SFTP server holds a file it is still receiving
        with pytest.raises(NotApprovable, match="still open"):
            await site.plan("alice/ipxe.iso")
    assert (await site.plan("alice/ipxe.iso")).upload.key == "alice/ipxe.iso"
