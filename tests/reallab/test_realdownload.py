"""A download on the real stack: the qemu guest (the image host) downloads from a web server on this machine
through its user-mode network (qemu guestfwd; nothing else is reachable), then the upload is imported."""

from __future__ import annotations

import shlex
import shutil

import pytest

from backend import download
from backend.labweb import LabWeb
from backend.models import UploadState

from ..conftest import DEBIAN_ISOS, sha256_file
from ..lab.conftest import until
from .test_realstack import lv_sha256, lvs, ready_site

pytestmark = pytest.mark.reallab


@pytest.fixture
def web(reallab, tmp_path):
    """The lab's web server on 127.0.0.1:WEB_PORT, which the guest reaches as http://WEB_GUEST_ADDR/."""
    server = LabWeb(tmp_path / "www", port=int(reallab.facts["WEB_PORT"]))
    server.folder.mkdir()
    shutil.copyfile(DEBIAN_ISOS["ipxe.iso"], server.folder / "ipxe.iso")
    server.start()
    yield server
    server.stop()


async def test_guest_downloads_then_imports(reallab, real_config, guest, web):
    await guest.run("mkdir -p /tmp/cds/dora", check=True)
    site = await ready_site(real_config)
    try:
        url = f"http://{reallab.facts['WEB_GUEST_ADDR']}/iso/ipxe.iso"
        expected = sha256_file(web.folder / "ipxe.iso")
        result = await download.download_url(site, url, "dora", "net.iso", sha256=expected)
        assert result.sha256 == expected and web.downloads("/iso/ipxe.iso") == 1
        again = await download.download_url(site, url, "dora", "net-again.iso")
        assert again.cached and web.downloads("/iso/ipxe.iso") == 1
        with pytest.raises(download.UrlRefused):
            await download.download_url(site, "http://10.0.2.2/iso/ipxe.iso", "dora", "x.iso")

        async def settled() -> bool:  # older than the site's settle time
            await site.refresh()
            return any(u.key == "dora/net.iso" and u.state == UploadState.PENDING for u in site.snapshot.uploads)

        await until(settled, "the download to settle as a pending upload", interval=0.2)
        job = await site.approve(await site.plan("dora/net.iso"))
        assert job.state == "done" and job.sha256 == expected
        assert job.final in lvs(reallab)
        assert lv_sha256(reallab, job.final, job.size) == expected
        await site.refresh()
        await site.delete_volume(f"dom0:{job.final}")
    finally:
        await site.close()


async def test_a_link_the_owner_plants_never_steers_the_guests_download(reallab, real_config, guest, web):
    """In the guest, an owner's shell swaps the final name for links to /root while the download runs; a
    canary outside the owner's folder is unchanged, and the download landed as a file or said it could not."""
    from ..lab.test_owner_boundary import SWAP_SH

    await guest.run("mkdir -p /tmp/cds/eve /root/canary && printf 'keys\\n' > /root/canary/authorized_keys",
                    check=True)
    before = (await guest.run("sha256sum /root/canary/authorized_keys; ls -la /root/canary", check=True)).stdout
    site = await ready_site(real_config)
    swapper = await guest.create_process(
        "echo $$; exec sh -c " + shlex.quote(SWAP_SH) + " swap /tmp/cds/eve '' /root/canary/authorized_keys "
        "/root/canary race.iso .race.iso.isoadmin-part")
    pid = (await swapper.stdout.readline()).strip()
    try:
        url = f"http://{reallab.facts['WEB_GUEST_ADDR']}/iso/ipxe.iso"
        try:
            result = await download.download_url(site, url, "eve", "race.iso")
            landed = (await guest.run("[ -f /tmp/cds/eve/race.iso ] && [ ! -L /tmp/cds/eve/race.iso ] && "
                                      "sha256sum /tmp/cds/eve/race.iso", check=False)).stdout
            assert not landed or landed.split()[0] == result.sha256
        except (download.UrlRefused, download.DownloadFailed) as exc:
            assert "exists already" in exc.message, exc.message
    finally:
        await guest.run(f"kill -KILL -{pid}", check=False)  # the shell and whatever it runs
        swapper.close()
        await site.close()
    await guest.run("rm -f /tmp/cds/eve/race.iso /tmp/cds/eve/.race.iso.isoadmin-part /tmp/cds/eve/.swap", check=False)
    assert (await guest.run("sha256sum /root/canary/authorized_keys; ls -la /root/canary", check=True)).stdout == before
