"""`isoadmin check` / `repair` on the lab: leftovers found from the hosts, dry run by default, fixed with --apply."""

from __future__ import annotations

import json
import shutil
import time

from backend.lab import Lab

from .conftest import run_cli
from .test_crash import kill_console


def findings(lab_dir, *extra):
    r = run_cli(*extra, "check", "--json", lab_dir=lab_dir)
    assert r.returncode in (0, 9), r.stderr
    return r.returncode, sorted((f["kind"], f["host"]) for f in json.loads(r.stdout)), json.loads(r.stdout)


async def test_check_finds_leftovers_and_repair_fixes_them(tmp_path):
    lab_dir = tmp_path / "lab"
    lab = Lab(lab_dir)
    await lab.start()
    await lab.stop()
    kill_console(lab_dir, "alice/ipxe.iso", "copy")  # staging volume created and attached, console dead
    vols = lab.volumes_dir("dom0-b")
    (vols / "cd_bob_broken_00000000.img").write_bytes(b"\0" * 4096)
    (vols / "cd_bob_broken_00000000.meta").write_text('{"created_by":"isoadmin","owner":"bob"}\n')
    (vols / "cdtmp_carol_fresh_11111111.img").write_bytes(b"\0" * 4096)  # another console's, just started
    (vols / "cdtmp_carol_fresh_11111111.meta").write_text(json.dumps(
        {"created_by": "isoadmin", "owner": "carol", "upload": "x.iso", "job": "feedfeedfeed", "time": time.time()}))

    code, kinds, _ = findings(lab_dir, "--read-only")
    assert code == 9 and kinds == [("broken final volume", "dom0-b"), ("unfinished job", "dom0-a")]

    # The journal is lost (state dir deleted) and the job is old: the hosts alone show the leftovers.
    shutil.rmtree(lab_dir / "state" / "jobs")
    staging = next(p for p in lab.volumes_dir("dom0-a").glob("cdtmp_*.meta"))
    meta = json.loads(staging.read_text())
    staging.write_text(json.dumps({**meta, "time": time.time() - 7 * 3600}))
    code, kinds, found = findings(lab_dir, "--read-only")
    assert code == 9 and kinds == [("attached disk", "dom0-a"), ("broken final volume", "dom0-b"),
                                   ("orphan staging volume", "dom0-a")], found
    assert not any("fresh" in f["target"] for f in found)  # a young volume of another console is left alone

    refused = run_cli("--read-only", "repair", "--apply", lab_dir=lab_dir)
    assert refused.returncode == 4 and "read-only" in refused.stderr
    dry = run_cli("repair", lab_dir=lab_dir)
    assert dry.returncode == 0 and "dry run" in dry.stderr
    assert findings(lab_dir)[2] == found  # the dry run changed nothing
    applied = run_cli("repair", "--apply", "--json", lab_dir=lab_dir)
    assert applied.returncode == 0, applied.stderr
    outcomes = {r["kind"]: r["outcome"] for r in json.loads(applied.stdout)}
    assert outcomes == {"attached disk": "done", "orphan staging volume": "done",
                        "broken final volume": "needs a person"}
    code, kinds, _ = findings(lab_dir)
    assert code == 9 and kinds == [("broken final volume", "dom0-b")]
    assert list(lab.volumes_dir("dom0-a").iterdir()) == [] and list(lab.by_id.iterdir()) == []
    audit = json.loads(run_cli("audit", "--json", lab_dir=lab_dir).stdout)
    assert [e["outcome"] for e in audit if e["action"] == "repair"] == ["refused", "done", "done"]
    assert any(e["outcome"] == "refused" and e["read_only"] for e in audit)


async def test_unfinished_jobs_are_recovered_by_the_next_command(tmp_path):
    lab_dir = tmp_path / "lab"
    lab = Lab(lab_dir)
    await lab.start()
    await lab.stop()
    kill_console(lab_dir, "alice/ipxe.iso", "verify")
    r = run_cli("uploads", "--json", lab_dir=lab_dir)
    assert r.returncode == 0 and "recovered job" in r.stderr
    assert {u["name"]: u["state"] for u in json.loads(r.stdout)}["ipxe.iso"] == "failed"
    assert findings(lab_dir)[0] == 0
