"""The console through Textual's Pilot, on a real lab: approve, reject, read-only, non-ISO, host down."""

from __future__ import annotations

import pytest

from backend.site import Site
from screens.jobs import JobView
from screens.modals import ConfirmApprove, ConfirmNonIso, ConfirmText, RejectReason
from screens.uploads import UploadsScreen
from screens.volumes import VolumesScreen
from screens.vtable import VirtualTable
from textual.widgets import DataTable, ProgressBar, Static
from tui.app import IsoadminApp

from ..conftest import sha256_file

SIZE = (140, 45)


async def wait_for(pilot, predicate, timeout: float = 20.0) -> None:
    """Pause the pilot until ``predicate()`` holds (or fail after ``timeout`` seconds)."""
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached in time")


async def select(pilot, app: IsoadminApp, key: str) -> None:
    """Move the Uploads cursor to the row of upload ``OWNER/FILE`` with the arrow keys."""
    await wait_for(pilot, lambda: app.refreshes > 0)
    table = app.screen.query_one("#uploads", VirtualTable)
    rows = [tuple(table.get_row_at(i)[:2]) for i in range(table.row_count)]
    target = rows.index(tuple(key.split("/", 1)))
    await pilot.press(*(["up"] * table.row_count), *(["down"] * target))
    assert app.screen.selected().key == key


def state_cell(app: IsoadminApp, key: str) -> str:
    u = next(u for u in app.snapshot.uploads if u.key == key)
    return u.state.value


async def test_approve_from_the_keyboard_end_to_end(lab):
    site = Site(lab.config)
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "alice/ipxe.iso")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmApprove))
        plan = app.screen.plan
        assert plan.dom0 == "dom0-a" and [s.phase for s in plan.steps] == \
            ["create", "attach", "locate", "copy", "verify", "detach", "rename"]
        await pilot.press("y")
        await wait_for(pilot, lambda: any(j.state == "done" for j in app.jobs.values()))
        await pilot.press("2")
        job_views = app.screen.query(".job")
        assert len(job_views) == 1 and "done" in str(app.screen.query_one(".job-status").render())
        await pilot.press("3")
        await wait_for(pilot, lambda: isinstance(app.screen, VolumesScreen) and
                       app.screen.query_one("#volumes", VirtualTable).row_count == 1)
        row = app.screen.query_one("#volumes", VirtualTable).get_row_at(0)
        assert (row[0], str(row[1]), row[3], row[4]) == ("dom0-a", "final", "alice", "ipxe.iso")
        assert row[2] == plan.final
    await site.close()
    upload = lab.uploads_root / "alice" / "ipxe.iso"
    volume = lab.volumes_dir("dom0-a") / f"{plan.final}.img"
    assert sha256_file(volume, upload.stat().st_size) == sha256_file(upload)
    assert not [p for p in lab.volumes_dir("dom0-a").iterdir() if p.name.startswith("cdtmp_")]


async def test_read_only_mutating_keys_say_so_and_change_nothing(lab):
    log = []
    site = Site(lab.config, read_only=True, listeners=[log.append])
    app = IsoadminApp(site, lab=lab, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        assert "READ-ONLY" in app.sub_title
        await select(pilot, app, "alice/ipxe.iso")
        for key in ("a", "r", "C", "w"):
            await pilot.press(key)
            await pilot.pause(0.2)
            assert isinstance(app.screen, UploadsScreen)  # no modal opened
            assert app.messages[-1][3].startswith("read-only session:"), app.messages[-1]
        await pilot.press("3")
        await pilot.pause(0.2)
        await pilot.press("D")
        await pilot.pause(0.2)
        assert app.messages[-1][3].startswith("read-only session: delete volume")
        await app.workers.wait_for_complete()
    audit = await site.audit.entries()
    assert sorted(e.action for e in audit if e.outcome == "refused" and e.read_only) == \
        ["approve", "delete volume", "download-url", "gc", "reject"]
    await site.close()
    assert [p for d in ("dom0-a", "dom0-b") for p in lab.volumes_dir(d).iterdir()] == []
    assert not any(r.mutating for r in log)


async def test_reject_with_a_reason_keeps_the_file(lab):
    site = Site(lab.config)
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "alice/tools.iso")
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RejectReason))
        await pilot.press("enter")  # an empty reason is not accepted
        assert isinstance(app.screen, RejectReason)
        await pilot.press(*"not bootable", "enter")
        await wait_for(pilot, lambda: state_cell(app, "alice/tools.iso") == "rejected")
        table = app.screen.query_one("#uploads", VirtualTable)
        assert str(table.get_cell(f"imagehost\0{lab.uploads_root}/alice/tools.iso", "state")) == "rejected"
        # approving it again is deliberate: the rejection is shown and must be overridden
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmText))
        assert app.screen.title_text == "Rejected upload" and "not bootable" in app.screen.text
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmApprove))
        assert app.screen.plan.override_rejection and "rejection overridden" in app.screen.plan.warnings[0]
        await pilot.press("n")
    await site.close()
    assert (lab.uploads_root / "alice" / "tools.iso").stat().st_size == 51200


async def test_non_iso_asks_first(lab):
    site = Site(lab.config)
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "bob/boot-floppy.img")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmNonIso))
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmApprove))
        assert "not ISO 9660" in app.screen.plan.warnings[0]
        await pilot.press("n")
        await pilot.pause(0.2)
        assert isinstance(app.screen, UploadsScreen)
    await site.close()
    assert list(lab.volumes_dir("dom0-a").iterdir()) == []


async def test_filter_and_host_down(lab):
    site = Site(lab.config)
    app = IsoadminApp(site, lab=lab, refresh_seconds=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.refreshes > 0)
        await pilot.press("slash", *"carol")
        table = app.screen.query_one("#uploads", VirtualTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        await pilot.press("escape")
        await wait_for(pilot, lambda: table.row_count > 2)
        await lab.stop()
        seen = app.refreshes
        await wait_for(pilot, lambda: app.refreshes > seen + 1)
        hosts = str(app.screen.query_one("#hosts").render())
        assert "DOWN" in hosts
        assert table.row_count > 2  # the last known uploads stay listed
        await pilot.press("3")
        assert isinstance(app.screen, VolumesScreen)
        assert "DOWN" in str(app.screen.query_one("#capacity").render())
    await site.close()


@pytest.mark.parametrize("key", ["question_mark", "colon", "ctrl+p"])
async def test_help_and_palette_open(lab, key):
    site = Site(lab.config)
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(key)
        await pilot.pause(0.2)
        assert type(app.screen).__name__ in ("HelpScreen", "CommandPalette")
    await site.close()


async def test_health_repairs_and_audit_shows_it(tmp_path):
    import json
    import shutil

    from backend.lab import Lab
    from screens.health import HealthScreen
    from screens.modals import ConfirmRepair

    from ..consoles.test_crash import kill_console

    lab_dir = tmp_path / "lab"
    lab = Lab(lab_dir)
    await lab.start()
    await lab.stop()
    kill_console(lab_dir, "alice/ipxe.iso", "copy")
    for books in ("jobs", "leases", "locks"):  # the ledger restored from a backup older than the job
        shutil.rmtree(lab.ledger_dir / books)
    config = await lab.start()
    site = Site(config)
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await wait_for(pilot, lambda: isinstance(app.screen, HealthScreen) and app.screen.findings)
        assert sorted(f.kind for f in app.screen.findings) == ["attached disk", "orphan staging volume"]
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmRepair))
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, HealthScreen) and not app.screen.findings)
        await pilot.press("5", "slash", *"repair")
        table = app.screen.query_one("#audit", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
    await site.close()
    await lab.stop()
    assert list(lab.volumes_dir("dom0-a").iterdir()) == [] and list(lab.by_id.iterdir()) == []


async def test_owners_and_hosts_screens(lab):
    import dataclasses

    from screens.owners import OwnersScreen
    from screens.uploads import UploadsScreen

    site = Site(dataclasses.replace(lab.config, quota=64 << 20))
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.refreshes > 0)
        await pilot.press("7")
        hosts = app.screen.query_one("#hosts-table", DataTable)
        assert hosts.row_count == 3 and str(hosts.get_cell("dom0-a", "state")) == "up"
        await pilot.press("6")
        assert isinstance(app.screen, OwnersScreen)
        table = app.screen.query_one("#owners", VirtualTable)
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["alice", "bob", "carol"]
        assert "0 Bytes / 64.0 MiB" in str(table.get_cell("bob", "quota"))
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, UploadsScreen) and
                       {r[0] for r in map(app.screen.query_one("#uploads", VirtualTable).get_row_at,
                                          range(app.screen.query_one("#uploads", VirtualTable).row_count))} == {"bob"})
        await pilot.press("enter")  # details of the selected upload
        await wait_for(pilot, lambda: type(app.screen).__name__ == "Details")
        assert app.screen.title_text.startswith("Upload bob/")
        await pilot.press("escape", "6", "u")  # view as carol: only carol's folder
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ViewAs")
        await pilot.press(*"carol", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, OwnersScreen) and table.row_count == 1)
        assert str(table.get_row_at(0)[0]) == "carol" and "as carol" in app.sub_title
        assert {u.owner for u in app.snapshot.uploads} == {"carol"}
        await pilot.press("u")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ViewAs")
        await pilot.press(*["backspace"] * 5, "enter")  # empty: every owner again
        await wait_for(pilot, lambda: isinstance(app.screen, OwnersScreen) and table.row_count == 3)
        assert site.as_user is None and "as " not in app.sub_title
    await site.close()


async def test_volumes_verify_and_delete(lab):
    from screens.modals import ConfirmText, ErrorModal

    site = Site(lab.config)
    await site.refresh()
    job = await site.approve(await site.plan("alice/ipxe.iso"))
    await site.approve(await site.plan("bob/rescue-boot.iso"))
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.refreshes > 0)
        await pilot.press("3", "slash", *"ipxe", "enter")  # the filter leaves alice's volume only
        table = app.screen.query_one("#volumes", VirtualTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        assert table.get_row_at(0)[2] == job.final
        await pilot.press("v")
        await wait_for(pilot, lambda: any("sha256 matches" in n.message for n in app._notifications))
        image = lab.volumes_dir("dom0-a") / f"{job.final}.img"
        with open(image, "r+b") as f:
            f.write(b"X")  # corrupt the first byte
        await pilot.press("v")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal))
        assert "does not match" in app.screen.message
        await pilot.press("escape", "D")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmText))
        await pilot.press("y")
        await wait_for(pilot, lambda: not image.exists())
    await site.close()
    assert [e.outcome for e in await site.audit.entries() if e.action in ("verify", "delete volume")] == \
        ["done", "failed", "done"]


async def test_gc_from_the_uploads_screen(lab):
    import os
    import time

    from screens.modals import ConfirmText

    old = time.time() - 9 * 86400
    os.utime(lab.uploads_root / "alice" / "tools.iso", (old, old))
    site = Site(lab.config)
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.refreshes > 0)
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmText))
        assert "alice/tools.iso" in app.screen.text and "ipxe" not in app.screen.text
        await pilot.press("y")
        await wait_for(pilot, lambda: not (lab.uploads_root / "alice" / "tools.iso").exists())
    await site.close()
    assert (lab.uploads_root / "alice" / "ipxe.iso").exists()


async def test_quitting_during_an_import_asks_then_rolls_it_back(lab):
    import os
    import time

    big = lab.uploads_root / "carol" / "big.iso"
    with open(big, "wb") as f:
        f.write((lab.uploads_root / "alice" / "tools.iso").read_bytes())
        f.truncate(400 << 20)  # the copy is still running when q is pressed
    old = time.time() - 600
    os.utime(big, (old, old))
    site = Site(lab.config)
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "carol/big.iso")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmApprove))
        await pilot.press("y")
        await wait_for(pilot, lambda: any(r.job.phase in ("copy", "verify") for r in site.active.values()))
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmText))
        assert app.screen.title_text == "1 import(s) running"
        await pilot.press("y")
        for _ in range(600):
            if app._exit or not app.is_running:
                break
            await pilot.pause(0.1)
    assert not site.active
    snap = await site.refresh()
    assert {u.key: u.state.value for u in snap.uploads}["carol/big.iso"] == "failed"
    assert [p for d in ("dom0-a", "dom0-b") for p in lab.volumes_dir(d).iterdir()] == []
    assert list(lab.by_id.iterdir()) == []
    from backend import health
    assert await health.check(site) == []
    audit = await site.audit.entries()
    assert [e.outcome for e in audit if e.target.startswith("carol/big.iso")] == ["started", "failed"]
    await site.close()


async def test_one_refresh_cycle_whatever_triggers_refreshes(lab):
    site = Site(lab.config)
    app = IsoadminApp(site, lab=lab, refresh_seconds=1.0)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.refreshes > 0)
        for _ in range(6):  # each manual refresh used to arm one more timer for the rest of the session
            await pilot.press("ctrl+r")
            await pilot.pause(0.3)
        await pilot.pause(1.5)
        start = app.refreshes
        await pilot.pause(4.0)
        assert app.refreshes - start <= 5, app.refreshes - start  # one cycle: about 4 in 4 s
    await site.close()


async def test_a_restarted_console_has_the_iso_facts_at_once(lab):
    first = Site(lab.config)
    await first.refresh()
    await first.close()
    assert first.facts_cache.exists()
    log = []
    second = Site(lab.config, listeners=[log.append])
    snap = await second.refresh()
    assert next(u for u in snap.uploads if u.key == "alice/ipxe.iso").iso.is_iso9660
    assert not any("isoadmin-headers" in r.argv for r in log if r.host == "imagehost" and
                   any("ipxe" in a for a in r.argv))  # nothing of the settled uploads read again
    await second.close()


async def test_messages_say_what_stops_an_action_first(lab):
    """``r`` on an imported upload: a toast titled "Cannot reject" (no reason asked). ``a`` on an upload
    that is both still being written and not ISO: "still being written", never "Import it anyway?"."""
    import os
    import time

    from screens.modals import ErrorModal

    partial = lab.uploads_root / "alice" / "partial.img"
    partial.write_bytes(b"\xeb\x3c\x90" + b"\0" * 100_000)  # young (settle time) and not ISO 9660
    site = Site(lab.config)
    await site.refresh()
    job = await site.approve(await site.plan("alice/tools.iso"))
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "alice/tools.iso")
        assert state_cell(app, "alice/tools.iso") == "available"
        await pilot.press("r")
        await pilot.pause(0.2)
        assert isinstance(app.screen, UploadsScreen)  # no reason asked
        toasts = [n for n in app._notifications if n.title == "Cannot reject"]
        assert len(toasts) == 1 and job.final in toasts[0].message, [n.title for n in app._notifications]
        partial.write_bytes(partial.read_bytes() + b"\0" * 10)  # still growing
        now = time.time()
        os.utime(partial, (now, now))
        app.action_refresh_now()
        await wait_for(pilot, lambda: any(u.key == "alice/partial.img" and u.state.value == "writing"
                                          and u.iso is not None and not u.iso.is_iso9660
                                          for u in app.snapshot.uploads))
        await select(pilot, app, "alice/partial.img")
        await pilot.press("a")
        await wait_for(pilot, lambda: not isinstance(app.screen, UploadsScreen))
        assert isinstance(app.screen, ErrorModal), type(app.screen).__name__
        assert "still being written" in app.screen.message
    await site.close()


async def test_view_as_modal_shows_brackets_literally(lab):
    from textual.widgets import Static

    site = Site(lab.config)
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("u")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "ViewAs")
        texts = [str(s.render()) for s in app.screen.query(Static)]
        assert any("[owners] in the config" in t for t in texts), texts
    await site.close()


async def test_an_unexpected_worker_error_is_one_modal_and_the_console_keeps_running(lab):
    import json

    from screens.jobs import JobsScreen
    from screens.modals import ErrorModal

    site = Site(lab.config)
    app = IsoadminApp(site, lab=lab, refresh_seconds=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.refreshes > 0)
        jobs = lab.ledger_dir / "jobs"
        jobs.mkdir(parents=True, exist_ok=True)
        record = {"id": "a", "serial": "isoaa", "owner": "alice", "upload": "x", "host": "imagehost", "path": "/x",
                  "size": 1, "mtime": 0, "inode": 1, "dom0": "dom0-a", "domain": "imagehost", "staging": "s",
                  "final": "f", "alloc": 1, "approver": "t", "created": 1.0, "state": "done"}
        (jobs / "a.json").write_text(json.dumps(record))
        (jobs / "b.json").write_text(json.dumps({**record, "id": "b", "created": "yesterday"}))  # not ours
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal))
        assert app.screen.title_text == "Unexpected error" and "TypeError" in app.screen.message
        report = app.screen.message.split("crash report: ", 1)[1].splitlines()[0]
        assert report.startswith(str(lab.dir / "state" / "crash-")) and "Traceback" in open(report).read()
        (jobs / "b.json").unlink()
        await pilot.press("escape", "2")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen))
        app.action_refresh_now()
        seen = app.refreshes
        await wait_for(pilot, lambda: app.refreshes > seen)  # refreshing again
        assert len([s for s in app.screen_stack if isinstance(s, ErrorModal)]) == 0
    await site.close()


async def test_sorting_and_vi_keys(lab):
    site = Site(lab.config)
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.refreshes > 0)
        table = app.screen.query_one("#uploads", VirtualTable)
        await pilot.press("j", "j", "k")
        assert table.cursor_row == 1
        await pilot.press("G")
        assert table.cursor_row == table.row_count - 1
        await pilot.press("g")
        assert table.cursor_row == 0
        for _ in range(4):  # owner → file → state → size
            await pilot.press("s")
        sizes = [next(u for u in app.snapshot.uploads if f"{u.host}\0{u.path}" == key).size
                 for key, _ in table.rows]
        assert sizes == sorted(sizes) and table.sort_column == 3
        await pilot.press("S")
        sizes = [next(u for u in app.snapshot.uploads if f"{u.host}\0{u.path}" == key).size
                 for key, _ in table.rows]
        assert sizes == sorted(sizes, reverse=True)
        await pilot.click("#uploads", offset=(2, 0))  # the Owner header
        assert table.sort_column == 0 and not table.sort_reverse
        assert [r[1][0] for r in table.rows] == sorted(r[1][0] for r in table.rows)
    await site.close()


async def test_three_notifications_at_most_and_a_message_log(lab):
    from screens.modals import MessageLog

    site = Site(lab.config)
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.refreshes > 0)
        for i in range(6):
            app.notify(f"message {i} [/] \x1b[2J")
        await pilot.pause(0.2)
        assert len(app._notifications) <= 3
        assert [m[3] for m in app.messages[-6:]] == [f"message {i} [/] \\x1b[2J" for i in range(6)]
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, MessageLog))
    await site.close()


async def test_keymap_remaps_by_binding_id_and_x_cancels_an_import(lab):
    import dataclasses
    import os
    import time

    big = lab.uploads_root / "carol" / "big.iso"
    with open(big, "wb") as f:
        f.write((lab.uploads_root / "alice" / "tools.iso").read_bytes())
        f.truncate(400 << 20)
    old = time.time() - 600
    os.utime(big, (old, old))
    site = Site(dataclasses.replace(lab.config, keymap={"approve": "A"}))
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await select(pilot, app, "carol/big.iso")
        await pilot.press("a")  # remapped away
        await pilot.pause(0.3)
        assert isinstance(app.screen, UploadsScreen)
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmApprove))
        await pilot.press("y")
        await wait_for(pilot, lambda: any(r.job.phase in ("copy", "verify") for r in site.active.values()))
        await pilot.press("2")

        def verify_shown() -> bool:  # the card: the copy's bar, and the read-back's own bar, bytes and rate
            card = app.screen.query_one(JobView)
            copy_bar, verify_bar = card.query(ProgressBar)
            status = card.query_one(".job-status", Static).render()
            return (card.job.phase == "copy" and verify_bar.display and (verify_bar.progress or 0) > 0
                    and copy_bar.progress >= verify_bar.progress and "verify (read back)" in str(status)
                    and "/s" in str(status).split("verify (read back)")[1])

        await wait_for(pilot, verify_shown)
        await pilot.press("x")
        await wait_for(pilot, lambda: not site.active, timeout=60)
    job = next(j for j in site.jobs() if j.key == "carol/big.iso")
    assert job.state == "failed" and "cancelled" in job.error and "removed" in job.rollback
    assert [p for d in ("dom0-a", "dom0-b") for p in lab.volumes_dir(d).iterdir()] == []
    await site.close()
