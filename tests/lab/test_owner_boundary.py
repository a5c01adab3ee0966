"""An owner's folder is hostile ground: a symlink or a swapped entry planted by the owner never steers a
write made with root's rights, the cache never gives one owner another's file, credentials are never kept,
and a wrong sha256 never leaves a file. Real lab hosts (asyncssh servers running /bin/sh), real files."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import urllib.parse
import uuid
from pathlib import Path

import pytest

from backend import catalog, download, kernels
from backend.commands import script
from backend.download import DownloadFailed, UrlRefused
from backend.errors import NotApprovable, NotFound, QuotaExceeded
from backend.lab import Lab
from backend.labweb import AUTH
from backend.site import Site

from ..conftest import isoadmin, sha256_file
from .test_hostile import tree

#: iterations of each race: a symlink swapped in and out of an owner's folder while isoadmin works there
ROUNDS = 200


@pytest.fixture
async def lab(tmp_path):
    lab = Lab(tmp_path / "lab", settle_seconds=1.0)
    lab.config = await lab.start()
    yield lab
    await lab.stop()


def make_site(lab, **changes) -> Site:
    return Site(dataclasses.replace(lab.config, **changes))


def canary_tree(tmp_path: Path) -> Path:
    """A folder outside every owner's folder, with a file and a subfolder: what a redirected root write
    would change."""
    canary = tmp_path / "canary"
    (canary / "sub").mkdir(parents=True)
    (canary / "authorized_keys").write_text("ssh-ed25519 AAAA admin@site\n")
    (canary / "sub" / "file").write_bytes(b"do not touch\n")
    return canary


#: The owner's side of a race (a shell of its own, off this process's interpreter): in folder $1, put a
#: symlink to $3, then to $4, in place of each name ($5 …), each time followed by the listed file $2 again (a
#: hard link to it, moved in with one atomic rename, as anyone with write access to the folder can); with no
#: listed file ($2 empty), a symlink only where the name is free, removed again (a file that landed is left).
SWAP_SH = r"""
cd "$1" || exit 1
real=$2 t1=$3 t2=$4
shift 4
while :; do
  for n; do
    for t in "$t1" "$t2"; do
      if [ -z "$real" ]; then
        ln -s "$t" "$n" 2>/dev/null
        [ ! -L "$n" ] || rm -f "$n"
      else
        rm -f .swap; ln -s "$t" .swap && mv -T -f .swap "$n"
        rm -f .swap; ln "$real" .swap && mv -T -f .swap "$n"
      fi
    done
  done
done
"""


class Swapper:
    """What a hostile owner does with their own rights, until stopped: :data:`SWAP_SH` in a process of its own.

    Args:
        folder: the owner's folder. names: entries in it. targets: two paths elsewhere the links point at.
        real: the listed file the entry is between swaps (None: the entry is free between swaps).
    """

    def __init__(self, folder: Path, names: list[str], targets: list[Path], real: Path | None = None) -> None:
        self.argv = ["sh", "-c", SWAP_SH, "swap", str(folder), str(real or ""), str(targets[0]), str(targets[-1]),
                     *names]
        self.folder, self.names = folder, names
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Swapper":
        self.proc = subprocess.Popen(self.argv, start_new_session=True)
        return self

    def __exit__(self, *exc) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)  # the shell and the ln, mv or rm it runs: none outlives the race
        self.proc.wait()
        (self.folder / ".swap").unlink(missing_ok=True)
        for name in self.names:
            path = self.folder / name
            if path.is_symlink():
                path.unlink()


def job_id() -> str:
    return uuid.uuid4().hex[:12]


async def test_a_download_never_writes_through_a_link_the_owner_planted(lab, tmp_path):
    """The part file swapped for a link to a file elsewhere, the final name made a link to a folder
    elsewhere: 200 downloads into the owner's folder while the owner swaps both; the canary tree outside
    is unchanged, and every download either landed as a regular file in the folder or failed saying why."""
    site = make_site(lab)
    canary = canary_tree(tmp_path)
    before = tree(canary)
    folder = lab.uploads_root / "carol"
    try:
        await site.refresh()
        first = await download.download_url(site, lab.web.url("/iso/ipxe.iso"), "carol", "seed.iso")
        host = site.hosts["imagehost"]
        ih = site.config.image_hosts["imagehost"]
        landed, refused = 0, []
        for i in range(ROUNDS):
            name = f"race{i}.iso"
            with Swapper(folder, [name, download.part_name(name)], [canary / "authorized_keys", canary / "sub"]):
                command = download.download_command(
                    "cache", lab.web.url("/iso/ipxe.iso"), ih.uploads_root, "carol", name, ih.cache_dir, "",
                    "", None, 1 << 30, 5, "sha256sum", job_id(), first.sha256)
                result = await download.run_download(host, command)
            path = folder / name
            if result.error:
                assert "exists already" in result.error or "cannot move" in result.error, result.error
                refused.append(result.error)
                assert not path.exists() or path.is_symlink() or not path.is_file()
            else:
                assert path.is_file() and not path.is_symlink(), name
                assert sha256_file(path) == first.sha256
                landed += 1
            for p in (path, folder / download.part_name(name)):
                p.unlink(missing_ok=True)
        assert tree(canary) == before
        assert landed and refused, (landed, len(refused))  # the owner won some races, isoadmin others
        assert not list((lab.uploads_root / download.WORK_DIR).iterdir())
        # the whole flow too, with the final name already a link to a folder elsewhere
        (folder / "linked.iso").symlink_to(canary / "sub")
        await site.refresh()
        with pytest.raises(UrlRefused, match="exists already"):
            await download.download_url(site, lab.web.url("/iso/ipxe.iso"), "carol", "linked.iso")
        assert tree(canary) == before
    finally:
        await site.close()


async def test_gc_and_a_kernel_read_never_follow_an_entry_the_owner_swaps(lab, tmp_path):
    """gc's removal and the upload-pair read, 200 times each while the owner swaps the listed file for a link
    to a file or a folder elsewhere and back: nothing outside changes, no byte of the canary is read, every
    attempt either acts on the listed file or says it changed."""
    canary = canary_tree(tmp_path)
    secret = (canary / "authorized_keys").read_bytes()
    before = tree(canary)
    folder = lab.uploads_root / "carol"
    site = make_site(lab)
    try:
        await site.refresh()
        host = site.hosts["imagehost"]
        outcomes: dict[str, int] = {}
        for i in range(ROUNDS):
            name = f"old{i}.iso"
            path, real = folder / name, folder / f".real{i}"
            real.write_bytes(b"x" * 4096)
            os.link(real, path)
            st = path.stat()
            expected = f"{st.st_ino} {st.st_size} {int(st.st_mtime)}"
            with Swapper(folder, [name], [canary / "authorized_keys", canary / "sub"], real):
                result = await host.run(script(catalog._REMOVE, "isoadmin-gc", str(path), expected, mutating=True),
                                        check=False)
            word = "removed" if result.exit_status == 0 else result.stderr.strip()
            assert word in ("removed", "gone", "changed since it was listed"), word
            outcomes[word] = outcomes.get(word, 0) + 1
            path.unlink(missing_ok=True)
            real.unlink()
        assert tree(canary) == before
        assert outcomes.get("removed") and len(outcomes) > 1, outcomes

        read = failed = 0
        for i in range(ROUNDS):
            name = f"vmlinuz-{i}"
            path, real = folder / name, folder / f".real{i}"
            real.write_bytes(b"K" * 8192)
            os.link(real, path)
            with Swapper(folder, [name], [canary / "authorized_keys"], real):
                result = await host.run(script(kernels._SEND, "isoadmin-send", str(path)), check=False)
            assert secret not in result.stdout
            if result.exit_status == 0:
                assert result.stdout == b"K" * 8192
                read += 1
            else:
                failed += 1
            path.unlink(missing_ok=True)
            real.unlink()
        assert tree(canary) == before and read and failed, (read, failed)
    finally:
        await site.close()


async def test_a_sha256_alone_never_serves_another_owners_file(lab):
    """A cache hit needs the URL itself to answer now: bob naming the sha256 of alice's download and a URL
    that does not exist gets the server's 404, and the same answer whether or not the digest is cached."""
    site = make_site(lab)
    try:
        await site.refresh()
        alice = await download.download_url(site, lab.web.url("/iso/memtest86+x64.iso"), "alice", "private.iso")
        bob = Site(dataclasses.replace(lab.config), as_user="bob")
        try:
            await bob.refresh()
            for digest in (alice.sha256, "1" * 64):
                with pytest.raises(DownloadFailed, match="answered 404"):
                    await download.download_url(bob, lab.web.url("/iso/does-not-exist.iso"), "bob", "x.iso",
                                                sha256=digest)
            assert not (lab.uploads_root / "bob" / "x.iso").exists()
            assert await download.cache_list(bob) == []  # alice's entry is not bob's to see
            assert await download.cache_gc(bob, apply=False) == []
            # the same URL, answering for bob too, is served from the cache (and then listed for bob)
            same = await download.download_url(bob, lab.web.url("/iso/memtest86+x64.iso"), "bob", "mt.iso")
            assert same.cached and same.sha256 == alice.sha256
            [entry] = await download.cache_list(bob)
            assert entry.owners == ["bob"]
        finally:
            await bob.close()
        [entry] = await download.cache_list(site)
        assert sorted(entry.owners) == ["alice", "bob"]
    finally:
        await site.close()


async def test_a_wrong_sha256_from_the_cache_leaves_nothing_and_the_ledger_and_audit_agree(lab):
    site = make_site(lab)
    try:
        await site.refresh()
        url = lab.web.url("/iso/ipxe.iso")
        await download.download_url(site, url, "alice", "first.iso")
        await site.refresh()
        for _ in range(3):
            with pytest.raises(DownloadFailed, match="sha256 mismatch"):
                await download.download_url(site, url, "bob", "second.iso", sha256="0" * 64)
            assert not (lab.uploads_root / "bob" / "second.iso").exists()
        books = await site.read_books()
        jobs = [j for j in books.jobs.values() if j.upload == "second.iso"]
        assert len(jobs) == 3 and {j.state for j in jobs} == {"failed"}
        outcomes = [e.outcome for e in await site.audit.entries() if e.target == "bob/second.iso"]
        assert outcomes == ["started", "failed"] * 3
        assert not books.locks and not books.leases
    finally:
        await site.close()


async def test_credentials_in_a_url_are_never_stored_or_shown(lab, tmp_path):
    """A URL with user:password: the download works, and the password is nowhere: not in the ledger, the
    cache, the state dir, the commands the hosts received, the CLI's output, nor the job and audit records."""
    user, password = AUTH
    quoted = urllib.parse.quote(password, safe="")
    url = lab.web.url("/auth/ipxe.iso").replace("http://", f"http://{user}:{quoted}@")
    shown = lab.web.url("/auth/ipxe.iso").replace("http://", f"http://{user}:***@")
    site = make_site(lab)
    try:
        await site.refresh()
        with pytest.raises(DownloadFailed, match="401"):
            await download.download_url(site, lab.web.url("/auth/ipxe.iso"), "carol", "noauth.iso")
        result = await download.download_url(site, url, "carol", "auth.iso")
        assert result.sha256 == sha256_file(lab.web.folder / "ipxe.iso")
        assert sha256_file(lab.uploads_root / "carol" / "auth.iso") == result.sha256
        books = await site.read_books()
        job = next(j for j in books.jobs.values() if j.upload == "auth.iso")
        assert job.url == shown and job.state == "done"
        audit = [e for e in await site.audit.entries() if e.target == "carol/auth.iso"]
        assert audit and all(shown in e.reason for e in audit)
        # the same URL again: served from the cache for the same credentials only
        again = await download.download_url(site, url, "alice", "auth.iso")
        assert again.cached
        with pytest.raises(DownloadFailed, match="401"):
            await download.download_url(site, url.replace(quoted, "wrong"), "bob", "auth.iso")
    finally:
        await site.close()
    config = lab.config_path
    r = await isoadmin("jobs", "--json", config=config)
    r2 = await isoadmin("audit", config=config)
    r3 = await isoadmin("cache", config=config)
    r4 = await isoadmin("download-url", url, "--owner", "bob", "--name", "cli.iso", config=config)
    assert r4.returncode == 0, r4.stderr
    r5 = await isoadmin("download-url", url.replace("/auth/", "/auth/missing-"), "--owner", "bob", config=config)
    assert r5.returncode == 13 and "***" in r5.stderr, r5.stderr
    assert shown in r.stdout and shown in r3.stdout
    needles = [password.encode(), quoted.encode()]
    for r_ in (r, r2, r3, r4, r5):
        assert not any(n.decode() in r_.stdout + r_.stderr for n in needles)
    for path in Path(lab.dir).rglob("*"):
        if path.is_file() and not path.is_symlink() and path.parent.name != "www":
            data = path.read_bytes()
            assert not any(n in data for n in needles), path


async def test_downloads_count_against_the_quota_until_imported(lab):
    """An owner with room for one download cannot fill the image host with downloads one at a time, nor
    with several at once from two consoles: running downloads reserve their length on the ledger, finished
    ones count until imported."""
    size = (lab.web.folder / "ipxe.iso").stat().st_size
    quota = size + size // 2
    site = make_site(lab, quotas={"carol": quota})
    try:
        await site.refresh()
        await download.download_url(site, lab.web.url("/iso/ipxe.iso"), "carol", "one.iso")
        await site.refresh()
        with pytest.raises(QuotaExceeded):
            await download.download_url(site, lab.web.url("/iso/ipxe.iso"), "carol", "two.iso")
        # imported, it counts as its volume instead; removed, it no longer counts
        (lab.uploads_root / "carol" / "one.iso").unlink()
        await site.refresh()
        other = make_site(lab, quotas={"carol": quota})
        try:
            await other.refresh()
            results = await asyncio.gather(
                download.download_url(site, lab.web.url("/slow/ipxe.iso"), "carol", "a.iso"),
                download.download_url(other, lab.web.url("/slow/ipxe.iso"), "carol", "b.iso"),
                return_exceptions=True)
        finally:
            await other.close()
        ok = [r for r in results if not isinstance(r, BaseException)]
        assert len(ok) <= 1 and all(isinstance(r, QuotaExceeded) for r in results if r not in ok), results
        landed = [n for n in ("a.iso", "b.iso") if (lab.uploads_root / "carol" / n).exists()]
        assert len(landed) == len(ok)
    finally:
        await site.close()


async def test_small_refusals(lab):
    site = make_site(lab)
    try:
        await site.refresh()
        # an owner's own file named like a download's part is just a file, never "being downloaded"
        fake = lab.uploads_root / "bob" / download.part_name("fake.iso")
        fake.write_bytes(b"owner's bytes")
        os.utime(fake, (1, 1))
        await site.refresh()
        row = next(u for u in site.snapshot.uploads if u.name == fake.name)
        assert row.reason != "being downloaded" and row.state.value == "pending"
        assert any(i.name == fake.name for i in catalog.gc_plan(site))
        # a name whose part name would be too long for the file system
        with pytest.raises(UrlRefused, match="too long"):
            download.file_name("http://h/x", "a" * 242)
        assert download.file_name("http://h/x", "a" * download.MAX_NAME_BYTES)
        # an address pattern never allows a name that starts like an address
        allowed = ("127.0.0.*", "10.0.0.0/8", "*.example.org")
        assert download.host_allowed("127.0.0.9", allowed) and download.host_allowed("10.2.3.4", allowed)
        assert not download.host_allowed("127.0.0.1.attacker.example", allowed)
        assert download.host_allowed("mirror.example.org", allowed)
        assert not download.host_allowed("example.org.attacker.example", allowed)
        # an empty body is a failed download, nothing kept
        with pytest.raises(DownloadFailed, match="no bytes"):
            await download.download_url(site, lab.web.url("/empty/ipxe.iso"), "bob", "empty.iso")
        assert not (lab.uploads_root / "bob" / "empty.iso").exists()
        # a folder whose name starts with a dot is no owner's
        (lab.uploads_root / ".hidden").mkdir()
        (lab.uploads_root / ".hidden" / "x.iso").write_bytes(b"y" * 100)
        await site.refresh()
        assert ".hidden" not in site.owners
        row = next(u for u in site.snapshot.uploads if u.name.endswith("x.iso") and ".hidden" in u.path)
        assert row.state.value == "refused" and not row.owner
        (lab.uploads_root / ".hidden" / "vmlinuz-1").write_bytes(b"k" * 100)
        await site.refresh()
        for key in (".hidden/x.iso", ".hidden/vmlinuz-1"):  # nothing of it is approved, staged or counted
            with pytest.raises((NotFound, NotApprovable)):
                await site.plan(key)
            with pytest.raises((NotFound, NotApprovable)):
                await kernels.stage(site, key, "1")
    finally:
        await site.close()
    r = await isoadmin("download-url", lab.web.url("/iso/ipxe.iso"), "--owner", "bob", "--sha256", "xyz",
                       config=lab.config_path)
    assert r.returncode == 2 and "64 hex digits" in r.stderr, r.stderr
    r = await isoadmin("download-url", lab.web.url("/iso/ipxe.iso"), "--owner", ".hidden", config=lab.config_path)
    assert r.returncode == 5, r.stderr


def test_secrets_split_out_of_urls():
    url, secret = download.split_url("https://u%40x:p%3Aa%20ss@mirror.example.org:8443/a.iso?x=1")
    assert url == "https://u%40x:***@mirror.example.org:8443/a.iso?x=1"
    assert secret == download.Secret("u@x", "p:a ss")
    assert download.tool_url(url) == "https://mirror.example.org:8443/a.iso?x=1"
    assert download.split_url("http://h/a.iso") == ("http://h/a.iso", None)
    assert json.dumps(dataclasses.asdict(secret))  # plain data, never put anywhere but a tool's stdin
    assert download.cache_key(url, "", "", 1, secret) != download.cache_key(url, "", "", 1, None)
    with pytest.raises(UrlRefused):
        download.split_url("http://u:p%0a@h/a.iso")
    with pytest.raises(UrlRefused, match="BusyBox"):
        secret.tool_config("busybox")
    assert b'user = "u@x:p:a ss"' in secret.tool_config("curl")
    assert hashlib.sha256(secret.tool_config("gnu-wget")).hexdigest()


async def test_credentials_never_reach_the_console_screen(lab):
    """The console's download form with user:password: the notifications, the Jobs card and the message log
    show the URL with ``***``."""
    from screens.jobs import JobView
    from screens.modals import DownloadUrl
    from textual.widgets import Input
    from tui.app import IsoadminApp

    from ..tui.test_tui import select, wait_for

    user, password = AUTH
    quoted = urllib.parse.quote(password, safe="")
    url = lab.web.url("/auth/ipxe.iso").replace("http://", f"http://{user}:{quoted}@")
    site = make_site(lab)
    app = IsoadminApp(site, lab=lab)
    try:
        async with app.run_test(size=(140, 45)) as pilot:
            await select(pilot, app, "bob/rescue-boot.iso")
            await pilot.press("w")
            await wait_for(pilot, lambda: isinstance(app.screen, DownloadUrl))
            app.screen.query_one("#dl-url", Input).value = url
            app.screen.query_one("#dl-name", Input).value = "auth.iso"
            await pilot.press("enter")
            await wait_for(pilot, lambda: any(m[2] == "Downloaded" for m in app.messages), timeout=30)
            await pilot.press("2")
            await wait_for(pilot, lambda: any(v.job.kind == "download" for v in app.screen.query(JobView)))
            card = " ".join(str(w.render()) for v in app.screen.query(JobView) for w in v.query("*"))
            texts = " ".join(m[3] for m in app.messages) + card
            assert "***" in texts and password not in texts and quoted not in texts
            await app.workers.wait_for_complete()
    finally:
        await site.close()
    assert (lab.uploads_root / "bob" / "auth.iso").is_file()


async def test_a_kernel_command_line_is_one_line(lab):
    from backend.errors import UsageError

    site = make_site(lab)
    try:
        await site.refresh()
        with pytest.raises(UsageError, match="one line of text"):
            await kernels.stage(site, "alice/vmlinuz-1", "1", cmdline="console=ttyS0\nrw")
    finally:
        await site.close()
