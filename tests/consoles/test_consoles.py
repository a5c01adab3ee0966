"""One site, many consoles: separate workstations (each console its own process, site file and state dir)
against one served lab. The site's books are on its ledger, so every console sees and respects the same
truth: one lock per upload, site-wide; rejections and the audit log shared; leases instead of PIDs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.lab import make_iso
from backend.state import PHASES
from bench.labserver import LabProcess

from ..conftest import ROOT, sha256_file

LEASE = 2.0


@pytest.fixture
def served(tmp_path):
    """A seeded lab served by its own process (short leases), as real hosts would be."""
    with LabProcess(tmp_path / "lab", {"dom0-a": "512 MiB", "dom0-b": "256 MiB"}, seeded=True, lease=LEASE) as server:
        yield server


def console(server: LabProcess, name: str, *args: str, wait: bool = True):
    """Run one CLI command as workstation ``name`` (its own site file and state dir)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    argv = [sys.executable, "-m", "tui", "--config", str(server.console_config(name)), *args]
    if not wait:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)


def add_uploads(server: LabProcess, owner: str, count: int, prefix: str) -> list[str]:
    """``count`` settled ISO uploads of ``owner``, each different."""
    root = server.layout.uploads_root / owner
    old = time.time() - 600
    names = []
    for i in range(count):
        path = root / f"{prefix}{i}.iso"
        path.write_bytes(make_iso(f"R{i}", {"README.TXT;1": f"{prefix} {i}\n".encode()}))
        os.utime(path, (old, old))
        names.append(f"{owner}/{path.name}")
    return names


def final_volumes(server: LabProcess) -> list[dict]:
    out = []
    for dom0 in ("dom0-a", "dom0-b"):
        for meta in server.layout.volumes_dir(dom0).glob("cd_*.meta"):
            out.append({"dom0": dom0, **json.loads(meta.read_text())})
    return out


def test_two_consoles_two_dom0s_import_one_upload_once(served):
    keys = add_uploads(served, "alice", 10, "race")
    for key in keys:
        a = console(served, "a", "approve", key, "--dom0", "dom0-a", "--yes", wait=False)
        b = console(served, "b", "approve", key, "--dom0", "dom0-b", "--yes", wait=False)
        results = [(p.wait(timeout=180), p.stdout.read(), p.stderr.read()) for p in (a, b)]
        codes = sorted(code for code, _, _ in results)
        assert codes == [0, 6], (key, results)
        loser = next(err for code, _, err in results if code == 6)
        assert "already importing by" in loser or "already imported" in loser, loser
    volumes = final_volumes(served)
    for key in keys:
        owner, name = key.split("/")
        assert len([v for v in volumes if v["upload"] == name]) == 1, key  # exactly one import each
    assert [v.name for d in ("dom0-a", "dom0-b") for v in served.layout.volumes_dir(d).glob("cdtmp_*")] == []


def test_concurrent_rejects_from_two_consoles_are_all_kept_and_seen_by_a_third(served):
    keys = add_uploads(served, "bob", 20, "junk")
    procs = [console(served, "ab"[i % 2], "reject", key, "--reason", f"reason {i} [/] \x1b", wait=False)
             for i, key in enumerate(keys)]
    for p in procs:
        assert p.wait(timeout=180) == 0, p.stderr.read()
    third = console(served, "c", "uploads", "--json")
    assert third.returncode == 0, third.stderr
    state = {f"{u['owner']}/{u['name']}": u for u in json.loads(third.stdout)}
    assert all(state[k]["state"] == "rejected" for k in keys)
    assert sorted(state[k]["reason"] for k in keys) == sorted(f"reason {i} [/] \x1b" for i in range(20))
    helpdesk = console(served, "c", "--as", "bob", "uploads", "--json")   # the owner's view shows why, too
    assert {u["name"]: u["reason"] for u in json.loads(helpdesk.stdout)}["junk3.iso"] == "reason 3 [/] \x1b"
    audit = json.loads(console(served, "c", "audit", "--json").stdout)
    assert len([e for e in audit if e["action"] == "reject" and e["outcome"] == "done"]) == 20
    verify = console(served, "c", "audit", "--verify")
    assert verify.returncode == 0 and "intact" in verify.stdout, verify.stderr

    # A rejected upload is approved only on purpose: --yes alone is not enough.
    refused = console(served, "a", "approve", keys[0], "--yes")
    assert refused.returncode == 6 and "rejected by" in refused.stderr and "--override-rejection" in refused.stderr
    done = console(served, "a", "approve", keys[0], "--yes", "--override-rejection")
    assert done.returncode == 0, done.stderr
    assert "REJECTED by" in done.stderr  # the plan shows the rejection
    audit = json.loads(console(served, "c", "--read-only", "audit", "--json").stdout)
    assert any(e["action"] == "rejection override" for e in audit)


def test_repair_in_a_loop_on_another_console_never_touches_a_live_import(served):
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.consoles.crash_child", str(served.console_config("a")), "alice/ipxe.iso", "copy",
         "0", str(LEASE), "6"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert holder.stdout.readline().strip() == "holding in copy"
    ends = time.monotonic() + 6
    rounds = 0
    while time.monotonic() < ends:  # 6 s: three times the lease
        r = console(served, "b", "repair", "--apply", "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == [], r.stdout  # nothing of the live job is a finding
        rounds += 1
    out, err = holder.communicate(timeout=120)
    assert holder.returncode == 0 and "finished: done" in out, (out, err)
    assert rounds >= 2
    volumes = final_volumes(served)
    assert [v["upload"] for v in volumes] == ["ipxe.iso"]
    assert volumes[0]["sha256"] == sha256_file(served.layout.uploads_root / "alice" / "ipxe.iso")


@pytest.mark.parametrize("phase", PHASES)
def test_a_killed_console_is_recovered_by_another_once_its_lease_expires(served, phase):
    key = "bob/rescue-boot.iso"
    upload = served.layout.uploads_root / key
    before = sha256_file(upload)
    r = subprocess.run([sys.executable, "-m", "tests.consoles.crash_child", str(served.console_config("a")), key, phase,
                        "0", str(LEASE)], capture_output=True, text=True, timeout=120, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == -9 and f"killed in {phase}" in r.stdout, r.stderr[-2000:]
    time.sleep(LEASE + 1.5)
    check = console(served, "b", "check", "--json")
    assert check.returncode == 9 and [f["kind"] for f in json.loads(check.stdout)] == ["unfinished job"]
    repair = console(served, "b", "repair", "--apply")
    assert repair.returncode == 0, repair.stderr
    assert console(served, "b", "check").returncode == 0
    assert [p.name for d in ("dom0-a", "dom0-b") for p in served.layout.volumes_dir(d).iterdir()] == []
    assert list(served.layout.by_id.iterdir()) == []
    assert sha256_file(upload) == before
    again = console(served, "c", "approve", key, "--yes")
    assert again.returncode == 0, again.stderr


def test_an_auditor_elsewhere_sees_every_action_and_a_flipped_byte(served):
    assert console(served, "a", "approve", "alice/ipxe.iso", "--yes").returncode == 0
    assert console(served, "b", "reject", "bob/boot-floppy.img", "--reason", "floppy").returncode == 0
    assert console(served, "b", "approve", "alice/ipxe.iso", "--yes").returncode == 6
    auditor = console(served, "auditor", "--read-only", "audit", "--json")
    assert auditor.returncode == 0, auditor.stderr
    entries = json.loads(auditor.stdout)
    seen = [(e["action"], e["outcome"]) for e in entries]
    assert seen == [("approve", "started"), ("approve", "done"), ("reject", "done"), ("approve", "refused")]
    assert all(e["key"].startswith("SHA256:") and "@" in e["who"] for e in entries)
    assert console(served, "auditor", "--read-only", "audit", "--verify").returncode == 0
    ledger = served.layout.ledger_dir  # private to its owner: 0700 folders, 0600 files
    assert all(p.stat().st_mode & 0o777 == (0o700 if p.is_dir() else 0o600)
               for p in [ledger, *ledger.rglob("*")]), {str(p): oct(p.stat().st_mode) for p in ledger.rglob("*")}

    log = served.layout.ledger_dir / "audit.jsonl"
    lines = log.read_bytes().split(b"\n")
    at = lines[2].index(b"floppy")
    lines[2] = lines[2][:at] + b"F" + lines[2][at + 1:]  # one byte of entry 3
    log.write_bytes(b"\n".join(lines))
    broken = console(served, "auditor", "--read-only", "audit", "--verify")
    assert broken.returncode == 12 and "broken at entry 3" in broken.stderr, broken.stderr


def test_an_upload_rewritten_in_place_after_listing_is_not_imported(served):
    upload = served.layout.uploads_root / "alice" / "tools.iso"
    r = subprocess.run(  # a console that has listed (and read the ISO facts) holds in create for 3 s
        [sys.executable, "-c", _REWRITE_CHILD, str(served.console_config("a")), str(upload)],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stderr
    assert "not the upload that was approved" in r.stdout and "ISO facts changed" in r.stdout, r.stdout
    assert final_volumes(served) == []
    assert [p for d in ("dom0-a", "dom0-b") for p in served.layout.volumes_dir(d).iterdir()] == []


# Lists the site (reading the ISO facts), then, as `sftp put -p` would, rewrites the upload in place (same
# size, same inode, mtime restored) with bytes that are no longer ISO 9660, then approves what it listed.
_REWRITE_CHILD = """
import asyncio, os, sys
from pathlib import Path
from backend.config import load_config
from backend.errors import JobFailed
from backend.site import Site

async def main(config, path):
    site = Site(load_config(Path(config)))
    await site.refresh()
    plan = await site.plan("alice/tools.iso")
    assert plan.upload.iso.is_iso9660
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.write(os.urandom(st.st_size))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_ino == st.st_ino
    try:
        await site.approve(plan)
    except JobFailed as exc:
        print(exc.message)
    await site.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_another_console_sees_the_copy_and_the_verify_progress_of_a_running_import(served):
    """A console's Jobs view of another console's import comes from the lease on the ledger: bytes
    copied and bytes read back, each with its own rate."""
    holder = subprocess.Popen(
        [sys.executable, "-m", "tests.consoles.crash_child", str(served.console_config("a")), "alice/ipxe.iso", "verify",
         "0", str(LEASE), "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert holder.stdout.readline().strip() == "holding in verify"
    time.sleep(LEASE / 2)  # at least one renewal with the copy's final figures
    r = console(served, "b", "--read-only", "jobs", "--json")
    assert r.returncode == 0, r.stderr
    size = (served.layout.uploads_root / "alice" / "ipxe.iso").stat().st_size
    [job] = [j for j in json.loads(r.stdout) if j["upload"] == "ipxe.iso"]
    assert job["state"] == "running" and job["phase"] == "verify", job
    assert job["done_bytes"] == job["verified_bytes"] == job["total_bytes"] == size, job
    assert job["rate"] > 0 and job["verify_rate"] > 0, job
    out, err = holder.communicate(timeout=120)
    assert holder.returncode == 0 and "finished: done" in out, (out, err)


def download_jobs(server: LabProcess, name: str) -> list[dict]:
    """The download jobs console ``name`` sees (``jobs --json``)."""
    r = console(server, name, "jobs", "--json")
    assert r.returncode == 0, r.stderr
    return [j for j in json.loads(r.stdout) if j["kind"] == "download"]


def wait_for_running_download(server: LabProcess, name: str, timeout: float = 30) -> dict:
    """Poll console ``name``'s ``jobs --json`` until a download runs with bytes done and its PID journaled."""
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        running = [j for j in download_jobs(server, name)
                   if j["state"] == "running" and j["done_bytes"] > 0 and j["copy_pid"] > 0]
        if running:
            return running[0]
    raise AssertionError("no running download seen")


def alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie does not count: PID 1 may reap late here)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def test_a_download_on_one_console_shows_on_another_with_bytes_rate_and_eta(served):
    src = served.layout.web.folder / "memtest86+x64.iso"
    a = console(served, "a", "download-url", served.web_url("/slow/memtest86+x64.iso"), "--owner", "carol",
                "--name", "slow.iso", wait=False)
    seen = wait_for_running_download(served, "b")
    assert (seen["owner"], seen["upload"], seen["host"], seen["phase"]) == ("carol", "slow.iso", "imagehost", "download")
    assert seen["total_bytes"] == src.stat().st_size and 0 < seen["done_bytes"] < seen["total_bytes"]
    assert seen["rate"] > 0 and seen["eta"] is not None and seen["eta"] > 0
    assert seen["url"].endswith("/slow/memtest86+x64.iso") and seen["approver"]
    table = console(served, "b", "jobs")  # the table says it to people too
    assert "download" in table.stdout and "/s, ETA" in table.stdout, table.stdout
    out, err = a.communicate(timeout=120)
    assert a.returncode == 0, err
    assert sha256_file(served.layout.uploads_root / "carol" / "slow.iso") == sha256_file(src)
    done = [j for j in download_jobs(served, "b") if j["id"] == seen["id"]]
    assert done[0]["state"] == "done" and done[0]["sha256"] == sha256_file(src)


@pytest.mark.parametrize("journaled", [True, False], ids=["pid-journaled", "killed-before-the-pid-was-journaled"])
def test_a_killed_consoles_download_is_stopped_by_another(served, journaled):
    a = console(served, "a", "download-url", served.web_url("/slow/memtest86+x64.iso"), "--owner", "alice",
                "--name", "killed.iso", wait=False)
    job = wait_for_running_download(served, "b")
    part = served.layout.uploads_root / ".isoadmin" / f"{job['id']}.part"  # root's, until it is complete
    a.kill()
    a.wait(timeout=30)
    pid = job["copy_pid"]
    if not journaled:  # as if the console had died before writing the PID: the record as it was before
        record = served.layout.ledger_dir / "jobs" / f"{job['id']}.json"
        data = json.loads(record.read_text())
        assert data["copy_pid"] == pid
        record.write_text(json.dumps(dict(data, copy_pid=0)) + "\n")
    assert alive(pid) and part.exists()  # the image host's download outlives its console
    time.sleep(LEASE + 1.5)
    assert alive(pid)
    check = console(served, "b", "check", "--json")
    assert check.returncode == 9, check.stderr
    findings = json.loads(check.stdout)
    assert [(f["kind"], f["host"], f["fix"]) for f in findings] == [
        ("unfinished job", "imagehost", "stop the download, remove its part file")]
    repair = console(served, "b", "repair", "--apply")
    assert repair.returncode == 0, repair.stderr
    for _ in range(40):  # the process group was sent TERM; the lab server reaps it
        if not alive(pid):
            break
        time.sleep(0.05)
    assert not alive(pid)
    assert not part.exists() and not (served.layout.uploads_root / "alice" / "killed.iso").exists()
    assert list((served.layout.cache_dir / "tmp").iterdir()) == []
    ended = [j for j in download_jobs(served, "c") if j["id"] == job["id"]][0]
    assert ended["state"] == "failed" and "console stopped during the download" in ended["error"]
    assert ended["rollback"] == "download stopped, temporary files removed"
    assert console(served, "b", "check").returncode == 0
    audit = json.loads(console(served, "c", "audit", "--json").stdout)
    assert [e["outcome"] for e in audit if e["action"] == "recover"] == ["failed"]
    # nothing half-written was left: the same file downloads again, whole
    again = console(served, "c", "download-url", served.web_url("/iso/memtest86+x64.iso"), "--owner", "alice",
                    "--name", "killed.iso")
    assert again.returncode == 0, again.stderr
    assert sha256_file(served.layout.uploads_root / "alice" / "killed.iso") == \
        sha256_file(served.layout.web.folder / "memtest86+x64.iso")


async def test_another_consoles_download_on_the_jobs_screen(served):
    import asyncio

    from backend.config import load_config
    from backend.site import Site
    from screens.jobs import JobView
    from tui.app import IsoadminApp

    from ..tui.test_tui import wait_for

    a = console(served, "a", "download-url", served.web_url("/slow/memtest86+x64.iso"), "--owner", "bob",
                "--name", "seen.iso", wait=False)
    site = Site(load_config(served.console_config("b")))
    app = IsoadminApp(site, refresh_seconds=0.5)
    try:
        async with app.run_test(size=(140, 45)) as pilot:
            await pilot.press("2")

            def shown() -> JobView | None:
                views = [v for v in app.screen.query(JobView) if v.job.kind == "download" and v.job.state == "running"]
                return views[0] if views and views[0].job.done_bytes and views[0].job.rate else None

            await wait_for(pilot, lambda: shown() is not None, timeout=30)
            status = str(shown().query_one(".job-status").render())
            assert "download" in status and "/s" in status and "ETA" in status and "5.9 MiB" in status, status
            assert "bob/seen.iso" in str(shown().query_one(".job-title").render())
            job_id = shown().job.id
            await wait_for(pilot, lambda: app.jobs[job_id].state == "done", timeout=60)
    finally:
        await site.close()
        code = await asyncio.get_running_loop().run_in_executor(None, a.wait, 120)
    assert code == 0, a.stderr.read()


def test_two_consoles_downloading_one_file_download_it_once(served):
    url = served.web_url("/slow/ipxe.iso")
    procs = [console(served, name, "download-url", url, "--owner", "carol", "--name", "twice.iso", wait=False)
             for name in ("a", "b")]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 6], results
    loser = next(err for code, err in results if code == 6)
    assert "being downloaded" in loser, loser
    assert sha256_file(served.layout.uploads_root / "carol" / "twice.iso") == \
        sha256_file(served.layout.web.folder / "ipxe.iso")
