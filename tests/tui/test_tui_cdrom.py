"""The Volumes screen's CD and kernel keys, and the Uploads screen's kernel key, through Textual's Pilot, on a
real lab: insert into an owner's VM, eject, stage a kernel set from an ISO and from an uploaded pair."""

from __future__ import annotations

import os

from backend.lab import make_live_iso
from backend.site import Site
from screens.cdrom import PickDomain
from screens.modals import Details, ErrorModal
from screens.vtable import VirtualTable
from tui.app import IsoadminApp

from .test_tui import SIZE, wait_for


async def test_volumes_insert_and_eject_cd(lab):
    site = Site(lab.config)
    await site.refresh()
    job = await site.approve(await site.plan("alice/ipxe.iso"))
    link = lab.vm_dir("dom0-a") / "alice-vm" / "cdrom"
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.refreshes > 0)
        await pilot.press("3")
        table = app.screen.query_one("#volumes", VirtualTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, PickDomain))
        assert app.screen.domains == ["alice-vm", "bob-vm"]  # never the image host's own domain
        await pilot.press("down", "enter")  # bob's VM: refused
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal))
        assert "belongs to bob" in app.screen.message
        await pilot.press("escape", "i")
        await wait_for(pilot, lambda: isinstance(app.screen, PickDomain))
        await pilot.press("enter")
        await wait_for(pilot, lambda: link.is_symlink())
        assert os.readlink(link) == str(lab.volumes_dir("dom0-a") / f"{job.final}.img")
        await pilot.press("e")
        await wait_for(pilot, lambda: not link.is_symlink())
    await site.close()
    assert [(e.action, e.outcome) for e in await site.audit.entries() if "cd" in e.action] == \
        [("insert cd", "refused"), ("insert cd", "done"), ("eject cd", "done")]


async def test_read_only_volumes_screen_cd_keys_say_read_only(lab):
    site = Site(lab.config, read_only=True)
    app = IsoadminApp(site, lab=lab, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.refreshes > 0)
        await pilot.press("K")  # the Uploads screen's Kernels key
        await pilot.pause(0.2)
        assert app.messages[-1][3].startswith("read-only session: stage kernel"), app.messages[-1]
        await pilot.press("3")
        for key, what in (("i", "insert cd"), ("e", "eject cd"), ("K", "stage kernel")):
            await pilot.press(key)
            await pilot.pause(0.2)
            assert app.messages[-1][3].startswith(f"read-only session: {what}"), app.messages[-1]
    await site.close()


async def test_volumes_pick_and_stage_a_kernel(lab):
    from screens.kernels import PickKernel

    from ..lab.test_kernels import KERNEL, put_live_iso

    put_live_iso(lab.dir)
    site = Site(lab.config)
    await site.refresh()
    await site.approve(await site.plan("alice/live.iso", "dom0-a"))
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.refreshes > 0)
        await pilot.press("3")
        table = app.screen.query_one("#volumes", VirtualTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("K")
        await wait_for(pilot, lambda: isinstance(app.screen, PickKernel))
        assert [e.kernel for e in app.screen.entries] == ["/casper/vmlinuz"]
        await pilot.press("enter")
        folder = lab.dir / "dom0-a" / "kernels" / "alice"
        await wait_for(pilot, lambda: folder.is_dir() and any(p.name.startswith("live_") for p in folder.iterdir()))
    await site.close()
    (staged,) = [p for p in folder.iterdir() if not p.name.startswith(".")]
    assert (staged / "kernel").read_bytes() == KERNEL


async def test_uploads_pick_and_stage_an_uploaded_kernel_and_its_ramdisk(lab, tmp_path):
    from screens.kernels import PickKernel

    from ..lab.test_kernels import kernel_image, put_upload, ramdisk_image

    kernel, ramdisk = kernel_image(), ramdisk_image(tmp_path)
    put_upload(lab, "dave", "vmlinuz-6.1.0-amd64", kernel)
    put_upload(lab, "dave", "initrd.img-6.1.0-amd64", ramdisk)
    site = Site(lab.config)
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.refreshes > 0)
        table = app.screen.query_one("#uploads", VirtualTable)
        await pilot.press("slash", *"vmlinuz", "enter")
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, Details))
        content = dict(app.screen.rows)["content"]
        assert content.startswith("linux-kernel (") and content != "linux-kernel ()"
        await pilot.press("escape")
        await pilot.press("K")
        await wait_for(pilot, lambda: isinstance(app.screen, PickKernel))
        assert [(e.label, e.ramdisk.rsplit("/", 1)[-1]) for e in app.screen.entries] == [
            ("vmlinuz-6.1.0-amd64", "initrd.img-6.1.0-amd64")]
        await pilot.press("enter")
        folder = lab.dir / "dom0-a" / "kernels" / "dave"  # the image host's first domain's dom0
        await wait_for(pilot, lambda: folder.is_dir() and any(not p.name.startswith(".") for p in folder.iterdir()))
    await site.close()
    (staged,) = [p for p in folder.iterdir() if not p.name.startswith(".")]
    assert (staged / "kernel").read_bytes() == kernel and (staged / "ramdisk").read_bytes() == ramdisk


async def test_kernels_key_on_hostile_isos_warns_or_shows_one_error_and_the_console_keeps_running(lab):
    from screens.kernels import PickKernel
    from screens.volumes import VolumesScreen

    from ..lab.test_kernels import HOSTILE_ENTRIES, KERNEL, LINKS, RAMDISK, put_symlinked_iso, put_upload

    put_symlinked_iso(lab, links=LINKS, entries=HOSTILE_ENTRIES)
    data = bytearray(make_live_iso("LIVE", KERNEL, RAMDISK, "quiet"))
    root = int.from_bytes(data[16 * 2048 + 156 + 2:16 * 2048 + 156 + 6], "little")
    data[root * 2048 + data[root * 2048]] = 0xFF  # the root's ".." record cut short
    put_upload(lab, "alice", "cut.iso", bytes(data))
    site = Site(lab.config)
    await site.refresh()
    for name in ("debian-live.iso", "cut.iso"):
        await site.approve(await site.plan(f"alice/{name}", "dom0-a"))
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.refreshes > 0)
        await pilot.press("3", "slash", *"debian", "enter")
        table = app.screen.query_one("#volumes", VirtualTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("K")
        await wait_for(pilot, lambda: isinstance(app.screen, PickKernel))
        assert [e.kernel for e in app.screen.entries] == ["/live/vmlinuz", "/boot/live/vmlinuz"]
        (warning,) = [m for m in app.messages if m[1] == "warning"]
        assert "3 skipped" in warning[3] and "symbolic link loop" in warning[3] and "outside the ISO" in warning[3]
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, VolumesScreen))
        await pilot.press("slash", *["backspace"] * 6, *"cut", "enter")
        await wait_for(pilot, lambda: table.row_count == 1 and "cut" in str(table.get_row_at(0)[4]))
        await pilot.press("K")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal))
        assert app.screen.title_text == "Unreadable file"
        assert app.screen.message.startswith("alice/cut.iso (dom0-a:") and "cannot be read as ISO 9660" in \
            app.screen.message
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, VolumesScreen))
        assert app.is_running and not [w for w in app.workers if w.state.name == "ERROR"]
        seen = app.refreshes
        app.action_refresh_now()
        await wait_for(pilot, lambda: app.refreshes > seen)  # the console still works
    await site.close()
