"""Uploads from a URL on the lab: the image host downloads from the lab's web server (127.0.0.1), through its
cache; hostile URLs and servers are refused or cut off, and nothing half-written is left."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time

import pytest

from backend import download
from backend.download import DownloadFailed, UrlRefused, check_url, file_name
from backend.errors import QuotaExceeded, ReadOnlyError
from backend.lab import Lab
from backend.models import UploadState
from backend.site import Site

from ..conftest import DEBIAN_ISOS, isoadmin, sha256_file
from .conftest import until


@pytest.fixture
async def lab(tmp_path):
    """A lab whose uploads are settled once complete (settle time 0: a finished download is pending at the
    next refresh)."""
    lab = Lab(tmp_path / "lab", settle_seconds=0.0)
    lab.config = await lab.start()
    yield lab
    await lab.stop()


def make_site(lab, **changes) -> Site:
    return Site(dataclasses.replace(lab.config, **changes))


def leftovers(lab, owner: str) -> list[str]:
    """Part files left in an owner's folder, downloads left in the uploads root's work folder, and temp
    files in the cache."""
    folder = lab.uploads_root / owner
    return ([p.name for p in folder.iterdir() if p.name.endswith(download.PART_SUFFIX)]
            + [p.name for d in (lab.uploads_root / download.WORK_DIR, lab.cache_dir / "tmp") if d.exists()
               for p in d.iterdir()])


async def audit_of(site: Site) -> list:
    return [e for e in await site.audit.entries() if e.action == "download-url"]


def test_urls_are_checked_before_anything_is_sent():
    allowed = ("127.0.0.1", "*.example.org")
    assert check_url("https://mirror.example.org/x.iso", allowed)
    assert check_url("ftp://127.0.0.1:2121/pub/x.iso", allowed)
    for bad in ("file:///etc/passwd", "gopher://127.0.0.1/x", "http://10.0.0.1/x.iso", "http://evil.org/x.iso",
                "http://127.0.0.1/a b.iso", "http://127.0.0.1/x\n.iso", "http:///x.iso", "javascript:alert(1)",
                "http://127.0.0.1:99999/x"):
        with pytest.raises(UrlRefused):
            check_url(bad, allowed)
    with pytest.raises(UrlRefused):
        check_url("http://127.0.0.1/x.iso", ())  # no download_hosts: downloads are off
    assert file_name("http://h/a/debian%2012.iso?x=1", None) == "debian 12.iso"
    for bad in ("http://h/", "http://h/.hidden", "http://h/%2e%2e"):
        with pytest.raises(UrlRefused):
            file_name(bad, None)


async def test_download_then_import_byte_identical(lab):
    site = make_site(lab)
    try:
        await site.refresh()
        src = lab.web.folder / "ipxe.iso"
        seen: list[int] = []
        result = await download.download_url(site, lab.web.url("/iso/ipxe.iso"), "carol", "net.iso",
                                             on_progress=lambda done, total: seen.append(done))
        assert result.sha256 == sha256_file(src) and not result.cached
        assert sha256_file(lab.uploads_root / "carol" / "net.iso") == sha256_file(src)
        assert lab.web.downloads("/iso/ipxe.iso") == 1 and not leftovers(lab, "carol")
        await site.refresh()
        upload = next(u for u in site.snapshot.uploads if u.key == "carol/net.iso")
        assert upload.state == UploadState.PENDING and upload.iso and upload.iso.is_iso9660
        plan = await site.plan("carol/net.iso")
        job = await site.approve(plan)
        assert job.state == "done" and job.sha256 == result.sha256
        assert sha256_file(lab.volumes_dir(job.dom0) / f"{job.final}.img", src.stat().st_size) == result.sha256
        outcomes = [e.outcome for e in await audit_of(site)]
        assert outcomes == ["started", "done"]
    finally:
        await site.close()


async def test_sha256_given_and_mismatch(lab):
    site = make_site(lab)
    try:
        await site.refresh()
        good = sha256_file(lab.web.folder / "grub-rescue-cdrom.iso")
        ok = await download.download_url(site, lab.web.url("/iso/grub-rescue-cdrom.iso"), "alice", sha256=good)
        assert ok.sha256 == good and (lab.uploads_root / "alice" / "grub-rescue-cdrom.iso").is_file()
        with pytest.raises(DownloadFailed, match="sha256 mismatch"):
            await download.download_url(site, lab.web.url("/iso/memtest86+x64.iso"), "alice", "mt.iso",
                                        sha256="0" * 64)
        assert not (lab.uploads_root / "alice" / "mt.iso").exists()
        assert not (lab.uploads_root / "alice" / ".mt.iso.isoadmin-part").exists()
        assert not leftovers(lab, "alice")
        entries = await audit_of(site)
        assert entries[-1].outcome == "failed" and "sha256 mismatch" in entries[-1].reason
        # a mismatch is not cached: the next request downloads again
        assert all(e.sha256 != "0" * 64 for e in await download.cache_list(site))
    finally:
        await site.close()


async def test_a_stalling_server_is_cut_off(lab):
    site = make_site(lab, download_stall_seconds=2.0)
    try:
        await site.refresh()
        running = asyncio.create_task(download.download_url(site, lab.web.url("/stall/memtest86+x64.iso"), "bob"))

        async def part_row():  # while it runs, the owner's folder shows the part file
            await site.refresh()
            return next((u for u in site.snapshot.uploads
                         if u.owner == "bob" and u.name.endswith(download.PART_SUFFIX)), None)

        part = await until(part_row, "bob's download to show as a part file in his folder")
        assert part.state == UploadState.WRITING and part.reason == "being downloaded"
        with pytest.raises(DownloadFailed, match="stalled"):
            await running
        assert not leftovers(lab, "bob") and not (lab.uploads_root / "bob" / "memtest86+x64.iso").exists()
        assert (await audit_of(site))[-1].outcome == "failed"
    finally:
        await site.close()


async def test_length_lies_are_cut_off(lab):
    site = make_site(lab)
    try:
        await site.refresh()
        with pytest.raises(DownloadFailed, match="less than it announced"):
            await download.download_url(site, lab.web.url("/short/memtest86+x64.iso"), "bob")
        with pytest.raises(DownloadFailed, match="more than"):
            await download.download_url(site, lab.web.url("/more/memtest86+x64.iso"), "bob")
        assert not leftovers(lab, "bob") and not (lab.uploads_root / "bob" / "memtest86+x64.iso").exists()
        await site.refresh()
        assert not [u for u in site.snapshot.uploads if u.name.startswith(".")]
    finally:
        await site.close()


async def test_redirects_to_file_or_elsewhere_are_refused(lab):
    site = make_site(lab)
    try:
        await site.refresh()
        with pytest.raises(UrlRefused, match="scheme 'file'"):
            await download.download_url(site, lab.web.url("/to-file"), "bob", "passwd.iso")
        with pytest.raises(UrlRefused, match="192.0.2.1 is not in this image host's download_hosts"):
            await download.download_url(site, lab.web.url("/to-elsewhere/ipxe.iso"), "bob")
        with pytest.raises(UrlRefused):
            await download.download_url(site, "file:///etc/passwd", "bob", "passwd.iso")
        assert not (lab.uploads_root / "bob" / "passwd.iso").exists() and not leftovers(lab, "bob")
        assert [m for m, _ in lab.web.log] == ["HEAD", "HEAD"]  # nothing was downloaded
        # a redirect only on GET (after a HEAD without one): curl does not follow it, nothing is kept
        with pytest.raises(DownloadFailed):
            await download.download_url(site, lab.web.url("/get-redirect/ipxe.iso"), "bob", "gr.iso")
        assert not (lab.uploads_root / "bob" / "gr.iso").exists() and not leftovers(lab, "bob")
        # an allowed redirect is followed (and checked)
        ok = await download.download_url(site, lab.web.url("/redirect/ipxe.iso"), "bob", "followed.iso")
        assert ok.sha256 == sha256_file(lab.web.folder / "ipxe.iso")
    finally:
        await site.close()


async def test_second_owner_is_served_from_the_cache(lab):
    site = make_site(lab)
    try:
        await site.refresh()
        url = lab.web.url("/iso/memtest86+x64.iso")
        first = await download.download_url(site, url, "alice", "mt.iso")
        await site.refresh()
        second = await download.download_url(site, url, "carol", "mt.iso")
        assert second.cached and second.sha256 == first.sha256
        # with its sha256 given, checked against what is cached
        third = await download.download_url(site, url, "bob", "mt-by-sum.iso", sha256=first.sha256)
        assert third.cached
        assert lab.web.downloads("/iso/memtest86+x64.iso") == 1  # the server's log: one download
        assert [m for m, p in lab.web.log if p == "/iso/memtest86+x64.iso"].count("HEAD") == 3  # asked each time
        for owner, name in (("alice", "mt.iso"), ("carol", "mt.iso"), ("bob", "mt-by-sum.iso")):
            assert sha256_file(lab.uploads_root / owner / name) == first.sha256
        entries = await download.cache_list(site)
        assert [(e.sha256, e.hits, e.size, sorted(e.owners)) for e in entries] == [
            (first.sha256, 2, (lab.web.folder / "memtest86+x64.iso").stat().st_size, ["alice", "bob", "carol"])]
        # gc: nothing is older than cache_days; with cache_days = 0 the entry goes
        assert await download.cache_gc(site, apply=True) == []
        await site.close()
        site = make_site(lab, cache_days=0.0)
        a_minute_ago = time.time() - 60
        for meta in (lab.cache_dir / "objects").glob("*.meta"):  # the entry's age is its .meta file's
            os.utime(meta, (a_minute_ago, a_minute_ago))
        assert len(await download.cache_gc(site, apply=True)) == 1
        assert await download.cache_list(site) == []
    finally:
        await site.close()


async def test_an_announced_length_over_the_quota_is_refused_before_downloading(lab):
    site = make_site(lab, quotas={"carol": 1 << 20})
    try:
        await site.refresh()
        with pytest.raises(QuotaExceeded, match="announces"):
            await download.download_url(site, lab.web.url("/iso/ipxe.iso"), "carol")
        assert lab.web.downloads("/iso/ipxe.iso") == 0 and not leftovers(lab, "carol")
        assert (await audit_of(site))[-1].outcome == "failed"
    finally:
        await site.close()


async def test_read_only_refuses_and_audits(lab):
    site = Site(lab.config, read_only=True)
    try:
        await site.refresh()
        with pytest.raises(ReadOnlyError):
            await download.download_url(site, lab.web.url("/iso/ipxe.iso"), "carol")
        assert lab.web.log == []
    finally:
        await site.close()


async def test_cli_refuses_a_file_url_an_unknown_owner_a_silent_server_and_lists_the_cache(lab):
    config = lab.config_path
    r = await isoadmin("download-url", "file:///etc/passwd", "--owner", "alice", "--name", "p.iso", config=config)
    assert r.returncode == 6 and "scheme 'file'" in r.stderr, r.stderr
    r = await isoadmin("download-url", "http://127.0.0.1/x.iso", "--owner", "nobody", config=config)
    assert r.returncode == 5 and "no owner folder 'nobody'" in r.stderr, r.stderr
    r = await isoadmin("download-url", "http://127.0.0.1:1/x.iso", "--owner", "alice", config=config)  # nobody listens
    assert r.returncode == 13 and "no answer from the server" in r.stderr, r.stderr
    assert not (lab.uploads_root / "alice" / "x.iso").exists()
    r = await isoadmin("cache", "--json", config=config)
    assert r.returncode == 0 and json.loads(r.stdout) == []
    assert DEBIAN_ISOS["ipxe.iso"].is_file()


async def test_hostile_file_names_are_only_data(lab, tmp_path):
    site = make_site(lab)
    try:
        await site.refresh()
        for name in ("$(touch isoadmin-canary).iso", "`touch isoadmin-canary`;x.iso", "-rf .iso", "a'b\"c .iso"):
            result = await download.download_url(site, lab.web.url("/iso/ipxe.iso"), "bob", name)
            assert sha256_file(lab.uploads_root / "bob" / name) == result.sha256
        for bad in ("../escape.iso", ".hidden.iso", "a/b.iso", "x\n.iso"):
            with pytest.raises(UrlRefused):
                await download.download_url(site, lab.web.url("/iso/ipxe.iso"), "bob", bad)
        assert not (lab.uploads_root / "escape.iso").exists()
        assert not list(tmp_path.glob("**/isoadmin-canary"))  # the lab's folders included
        for where in (os.getcwd(), os.path.expanduser("~"), "/"):
            assert not os.path.exists(os.path.join(where, "isoadmin-canary"))
    finally:
        await site.close()


async def test_download_from_the_console_shows_progress_on_the_jobs_screen(lab):
    from screens.jobs import JobView
    from screens.modals import DownloadUrl, ErrorModal
    from screens.vtable import VirtualTable
    from textual.widgets import Input
    from tui.app import IsoadminApp

    from ..tui.test_tui import select, wait_for

    site = make_site(lab)
    app = IsoadminApp(site, lab=lab)
    src = lab.web.folder / "ipxe.iso"
    try:
        async with app.run_test(size=(140, 45)) as pilot:
            await select(pilot, app, "bob/rescue-boot.iso")
            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, DownloadUrl))
            assert app.screen.query_one("#dl-owner", Input).value == "bob"  # from the selected row
            app.screen.query_one("#dl-url", Input).value = lab.web.url("/slow/ipxe.iso")
            app.screen.query_one("#dl-name", Input).focus()
            await pilot.press(*"net boot.iso", "enter")
            table = app.screen.query_one("#uploads", VirtualTable)

            def part_state() -> str:  # the State cell of the part file being written
                rows = [table.get_row_at(i) for i in range(table.row_count)]
                return next((str(r[2]) for r in rows if str(r[1]) == ".net boot.iso.isoadmin-part"), "")

            await wait_for(pilot, lambda: part_state().startswith("download ") and part_state().endswith("%"))
            await pilot.press("2")

            def running() -> JobView | None:
                views = [v for v in app.screen.query(JobView) if v.job.kind == "download"]
                return views[0] if views and views[0].job.state == "running" and views[0].job.done_bytes else None

            await wait_for(pilot, lambda: running() is not None and running().job.rate > 0)
            status = str(running().query_one(".job-status").render())
            assert "download" in status and "/s" in status and "ETA" in status and "2.0 MiB" in status, status
            title = str(running().query_one(".job-title").render())
            assert "bob/net boot.iso" in title and "/slow/ipxe.iso" in title, title
            await wait_for(pilot, lambda: any(m[2] == "Downloaded" for m in app.messages), timeout=30)
            assert sha256_file(lab.uploads_root / "bob" / "net boot.iso") == sha256_file(src)
            job = next(j for j in app.jobs.values() if j.kind == "download")
            await wait_for(pilot, lambda: app.jobs[job.id].state == "done")

            # a refused URL: one error, nothing written
            await pilot.press("1")
            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, DownloadUrl))
            app.screen.query_one("#dl-url", Input).value = "file:///etc/passwd"
            app.screen.query_one("#dl-name", Input).value = "passwd.iso"
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal))
            assert app.screen.title_text == "URL refused" and "scheme 'file'" in app.screen.message
            await app.workers.wait_for_complete()
        assert not (lab.uploads_root / "bob" / "passwd.iso").exists() and not leftovers(lab, "bob")
        books = await site.read_books()
        assert books.jobs[job.id].state == "done" and books.jobs[job.id].kind == "download"
        assert not books.leases and not books.locks  # released
    finally:
        await site.close()


WITHOUT_CURL = {
    "gnu-wget": {"curl": None},
    "busybox-wget": {"curl": None, "wget": "/bin/busybox"},  # a wget that is BusyBox's
    "busybox": {"curl": None, "wget": None},                  # only `busybox wget`
}


@pytest.mark.parametrize("downloader", list(WITHOUT_CURL))
async def test_an_image_host_without_curl_downloads_with_wget_or_busybox(tmp_path, downloader):
    from backend import hosttools

    lab = Lab(tmp_path / "lab", settle_seconds=1.0, programs={"imagehost": WITHOUT_CURL[downloader]})
    lab.config = await lab.start()
    # bob's quota caps a download whose length was not announced: BusyBox's look at the headers is a GET,
    # and the lab's /more/ answers a GET without a length
    site = make_site(lab, download_stall_seconds=2.0, quotas={"bob": 6_500_000})
    try:
        await site.refresh()
        tools = await hosttools.tools(site.hosts["imagehost"])
        assert tools.downloader == downloader and not tools.curl_protocols
        src = lab.web.folder / "ipxe.iso"
        ok = await download.download_url(site, lab.web.url("/iso/ipxe.iso"), "carol", "net.iso")
        assert ok.sha256 == sha256_file(src) == sha256_file(lab.uploads_root / "carol" / "net.iso")
        # BusyBox wget has no HEAD: its look at the headers is a GET it leaves after the headers
        assert lab.web.downloads("/iso/ipxe.iso") == (2 if downloader.startswith("busybox") else 1)
        followed = await download.download_url(site, lab.web.url("/redirect/ipxe.iso"), "bob", "followed.iso")
        assert followed.cached and followed.sha256 == ok.sha256  # the redirect's target, checked, from the cache
        with pytest.raises(DownloadFailed, match="sha256 mismatch"):
            await download.download_url(site, lab.web.url("/iso/memtest86+x64.iso"), "alice", "mt.iso",
                                        sha256="0" * 64)
        with pytest.raises(DownloadFailed, match="stalled"):
            await download.download_url(site, lab.web.url("/stall/memtest86+x64.iso"), "bob")
        with pytest.raises(DownloadFailed, match="less than it announced"):
            await download.download_url(site, lab.web.url("/short/memtest86+x64.iso"), "bob")
        with pytest.raises(DownloadFailed, match="more than"):
            await download.download_url(site, lab.web.url("/more/memtest86+x64.iso"), "bob")
        with pytest.raises(UrlRefused, match="scheme 'file'"):
            await download.download_url(site, lab.web.url("/to-file"), "bob", "passwd.iso")
        with pytest.raises(UrlRefused, match="192.0.2.1 is not in this image host's download_hosts"):
            await download.download_url(site, lab.web.url("/to-elsewhere/ipxe.iso"), "bob", "elsewhere.iso")
        if not downloader.startswith("busybox"):  # BusyBox's look at the headers is a GET: it sees this redirect
            # a redirect only on GET: wget does not follow it, the download fails, nothing is kept
            with pytest.raises(DownloadFailed):
                await download.download_url(site, lab.web.url("/get-redirect/memtest86+x64.iso"), "bob")
        else:  # the probe's GET was redirected to an allowed address: followed (and checked) as any redirect
            got = await download.download_url(site, lab.web.url("/get-redirect/memtest86+x64.iso"), "bob", "gr.iso")
            assert got.sha256 == sha256_file(lab.web.folder / "memtest86+x64.iso")
            (lab.uploads_root / "bob" / "gr.iso").unlink()
        for owner in ("alice", "bob", "carol"):
            assert not leftovers(lab, owner)
        assert sorted(p.name for p in (lab.uploads_root / "bob").iterdir() if "memtest" in p.name
                      or p.name in ("passwd.iso", "elsewhere.iso")) == []
        assert not (lab.uploads_root / "alice" / "mt.iso").exists()
        books = await site.read_books()
        assert not books.locks and not books.leases
    finally:
        await site.close()
        await lab.stop()


@pytest.mark.parametrize("downloader", ["curl", "gnu-wget", "busybox"])
async def test_an_ftp_download_and_its_cache(tmp_path, downloader):
    lab = Lab(tmp_path / "lab", settle_seconds=1.0,
              programs=None if downloader == "curl" else {"imagehost": WITHOUT_CURL[downloader]})
    lab.config = await lab.start()
    site = make_site(lab)
    try:
        assert lab.ftp.port, "the lab's FTP server needs pyftpdlib (a test extra)"
        await site.refresh()
        src = lab.web.folder / "ipxe.iso"
        first = await download.download_url(site, lab.ftp.url("/ipxe.iso"), "carol", "ftp.iso")
        assert first.sha256 == sha256_file(src) == sha256_file(lab.uploads_root / "carol" / "ftp.iso")
        await site.refresh()
        second = await download.download_url(site, lab.ftp.url("/ipxe.iso"), "alice", "ftp.iso")
        assert second.sha256 == first.sha256
        # curl asks the FTP server for the file's length first, so a second request is served from the cache;
        # wget cannot ask without downloading, and nothing is served from the cache unasked
        assert second.cached == (downloader == "curl")
        assert lab.ftp.downloads("/ipxe.iso") == (1 if downloader == "curl" else 2)
        with pytest.raises(DownloadFailed):
            await download.download_url(site, lab.ftp.url("/missing.iso"), "bob", "missing.iso")
        assert not leftovers(lab, "bob") and not (lab.uploads_root / "bob" / "missing.iso").exists()
    finally:
        await site.close()
        await lab.stop()
