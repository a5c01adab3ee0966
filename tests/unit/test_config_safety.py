"""A site file cannot aim isoadmin at the system or at itself: folders it writes to or cleans up are never
``/`` or a system folder; the download script never changes the mode of a cache dir it did not create; every
host is listed once under one name and one role; the site file is read bounded in size and nesting; a keymap
has no empty key and no key that shadows another. Each refusal is one line (naming the file, the table and
the key where there is one), exit 2."""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from backend import download
from backend.config import parse_config
from backend.errors import ConfigError
from backend.site import Site

from ..conftest import ROOT, isoadmin
from .test_config import merged

SYSTEM = ["/", "//", "/etc", "/var/..", "/usr/", "/tmp", "/./etc", "/var/lib", "/var/cache/", "/var/tmp",
          "/usr/local", "/home", "/srv", "/root", "/run", "/boot"]


def refusal(tmp_path, extra: str) -> str:
    """The one line the site file ``merged(extra)`` is refused with."""
    path = tmp_path / "site.toml"
    path.write_text(merged(extra))
    with pytest.raises(ConfigError) as caught:
        parse_config(tomllib.loads(path.read_text()), path)
    assert caught.value.exit_code == 2 and "\n" not in caught.value.message
    return caught.value.message.removeprefix(f"{path}: ")


@pytest.mark.parametrize("value", SYSTEM)
def test_uploads_root_at_a_system_folder_is_refused(tmp_path, value):
    line = refusal(tmp_path, f'[image_hosts.ih]\nuploads_root = "{value}"\n')
    assert line.startswith(f"image_hosts.ih.uploads_root: {value!r} "), line
    assert "such as /srv/cds" in line, line


@pytest.mark.parametrize("table,key,value", [
    ("image_hosts.ih", "cache_dir", "/var/.."), ("image_hosts.ih", "cache_dir", "/tmp"),
    ("image_hosts.ih", "cache_dir", "/var/cache"), ("dom0s.d0", "kernel_dir", "/var/.."),
    ("dom0s.d0", "kernel_dir", "/"), ("dom0s.d0", "kernel_dir", "/var/lib"), ("console", "state_dir", "/"),
    ("console", "state_dir", "/etc"), ("console", "state_dir", "/var/lib/"), ("console", "state_dir", "relative"),
])
def test_other_folders_at_a_system_folder_are_refused(tmp_path, table, key, value):
    line = refusal(tmp_path, f'[{table}]\n{key} = "{value}"\n')
    assert line.startswith(f"{table}.{key}: {value!r} "), line


@pytest.mark.parametrize("value", ["ih:/", "ih:/var", "ih:/var/lib/..", "ih:/tmp/"])
def test_ledger_at_a_system_folder_is_refused(tmp_path, value):
    line = refusal(tmp_path, f'[site]\nledger = "{value}"\n')
    assert line.startswith("site.ledger: "), line
    assert "such as /var/lib/isoadmin" in line, line


def test_a_dot_dot_is_refused_with_what_to_write_instead(tmp_path):
    line = refusal(tmp_path, '[image_hosts.ih]\ncache_dir = "/var/cache/isoadmin/../isoadmin"\n')
    assert line == ("image_hosts.ih.cache_dir: '/var/cache/isoadmin/../isoadmin' must not contain '..': write the "
                    "folder it means, such as /var/cache/isoadmin")


def test_folders_below_system_folders_are_allowed_and_normalised(tmp_path):
    cfg = parse_config(tomllib.loads(merged(
        '[image_hosts.ih]\nuploads_root = "/srv//cds/./"\ncache_dir = "/var/cache/isoadmin/"\n'
        '[dom0s.d0]\nkernel_dir = "/var/lib/isoadmin/kernels"\n'
        f'[console]\nstate_dir = "{tmp_path / "state"}/"\n[site]\nledger = "ih:/var/lib/isoadmin/./"\n')))
    ih = cfg.image_hosts["ih"]
    assert (ih.uploads_root, ih.cache_dir) == ("/srv/cds", "/var/cache/isoadmin")
    assert cfg.dom0s["d0"].kernel_dir == "/var/lib/isoadmin/kernels"
    assert cfg.state_dir == tmp_path / "state" and cfg.ledger == "ih:/var/lib/isoadmin"
    assert cfg.ledger_location() == ("ih", "/var/lib/isoadmin")
    cfg = parse_config(tomllib.loads(merged('[image_hosts.ih]\nuploads_root = "/srv/cds"\n')))
    assert cfg.image_hosts["ih"].uploads_root == "/srv/cds" and cfg.dom0s["d0"].kernel_dir == ""


async def test_gc_on_an_uploads_root_of_etc_lists_nothing_and_exits_2(tmp_path):
    """The case that was met: ``gc`` with ``uploads_root = "/etc"`` listed the files of /etc as "would be
    removed". Through the CLI's own code (in this process), before any host is asked anything."""
    path = tmp_path / "site.toml"
    path.write_text(merged(f'[image_hosts.ih]\nuploads_root = "/etc"\n[console]\nstate_dir = "{tmp_path}/s"\n'))
    r = await isoadmin("gc", config=path)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr.splitlines() == [f"isoadmin: {path}: image_hosts.ih.uploads_root: '/etc' is a system folder, "
                                     "which isoadmin must never write to or clean up: give a folder of its own "
                                     "below it, such as /srv/cds"]


# ---------------------------------------------------------------------- the downloads cache on the image host

def run_download_script(tmp_path, cache) -> list[str]:
    """Run the real download script with ``sh`` here, for a URL nothing answers; its stdout lines (after the
    ``pid`` line)."""
    root = tmp_path / "cds"
    folder = root / "owner"
    folder.mkdir(parents=True, exist_ok=True)
    argv = ["sh", "-c", download.DOWNLOAD_SCRIPT, "isoadmin-download", "fetch", "http://127.0.0.1:9/x.iso",
            str(root), "owner", "x.iso", str(cache), "key", "", "", "1000", "1", "sha256sum", "", "curl",
            "0123456789ab"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and not list(folder.iterdir()), (r.stdout, r.stderr)
    return r.stdout.splitlines()[1:]


def test_a_cache_dir_of_others_or_a_link_is_refused_and_left_alone(tmp_path):
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(target)
    file = tmp_path / "file"
    file.write_text("")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)
    for cache in (link, file, shared):
        lines = run_download_script(tmp_path, cache)
        assert lines == [f"error the cache {cache} is not a folder only {getpass.getuser()} may enter (mode 0700); "
                         "isoadmin never changes a folder it did not create"], (cache, lines)
    assert list(target.iterdir()) == [] and list(shared.iterdir()) == [] and file.read_text() == ""
    assert stat.S_IMODE(shared.stat().st_mode) == 0o775


def test_a_missing_cache_dir_is_created_private_and_used(tmp_path):
    cache = tmp_path / "parent" / "cache"
    lines = run_download_script(tmp_path, cache)
    assert len(lines) == 1 and lines[0].startswith("error curl exit 7: "), lines  # got as far as the download
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert sorted(p.name for p in cache.iterdir()) == ["keys", "objects", "tmp"]


async def test_cache_dir_that_exists_keeps_its_mode(lab, tmp_path):
    """A shared folder (1777, as /tmp is) named as the cache: the download is refused before anything is
    fetched, and the folder keeps its mode (the script used to chmod it 700)."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    ih = lab.config.image_hosts["imagehost"]
    site = Site(dataclasses.replace(lab.config, image_hosts={
        "imagehost": dataclasses.replace(ih, cache_dir=str(shared))}))
    try:
        await site.refresh()
        with pytest.raises(download.DownloadFailed, match="is not a folder only .* may enter .* never changes a folder it did not create"):
            await download.download_url(site, lab.web.url("/iso/ipxe.iso"), "carol", "net.iso")
    finally:
        await site.close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777 and list(shared.iterdir()) == []
    assert lab.web.downloads("/iso/ipxe.iso") == 0
    assert [p.name for p in (lab.uploads_root / "carol").iterdir() if "net.iso" in p.name] == []


async def test_the_cache_dir_isoadmin_creates_is_private_and_serves_again(lab):
    """The lab's cache does not exist before the first download: created 0700, then used as it is."""
    assert not lab.cache_dir.exists()
    site = Site(lab.config)
    try:
        await site.refresh()
        first = await download.download_url(site, lab.web.url("/iso/ipxe.iso"), "carol", "one.iso")
        assert stat.S_IMODE(lab.cache_dir.stat().st_mode) == 0o700 and not first.cached
        again = await download.download_url(site, lab.web.url("/iso/ipxe.iso"), "carol", "two.iso")
        assert again.cached and again.sha256 == first.sha256
    finally:
        await site.close()
    assert stat.S_IMODE(lab.cache_dir.stat().st_mode) == 0o700 and lab.web.downloads("/iso/ipxe.iso") == 1


# ---------------------------------------------------------------------- every host once, under one name

DOM0 = """
[dom0s.{name}]
{ssh}
[dom0s.{name}.storage]
driver = "files"
directory = "/srv/volumes-{name}"
[dom0s.{name}.hypervisor]
driver = "lab"
guest_disk_dirs = {{ imagehost = "/srv/by-id" }}
"""


async def test_same_name_for_an_image_host_and_a_dom0_is_refused(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text(merged('[image_hosts.d0]\naddress = "10.0.0.7"\n'))
    with pytest.raises(ConfigError) as caught:
        parse_config(tomllib.loads(path.read_text()), path)
    expected = f"{path}: dom0s.d0: 'd0' is also the name of an image host: give each host one name and one role"
    assert caught.value.message == expected
    r = await isoadmin("hosts", config=path)  # it used to show two rows named d0
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"isoadmin: {expected}\n")


@pytest.mark.parametrize("extra,table,first,where", [
    ('[image_hosts.ih2]\naddress = "127.0.0.1"\nport = 9\n', "image_hosts.ih2", "image_hosts.ih", "127.0.0.1 port 9"),
    (DOM0.format(name="d1", ssh='address = "127.0.0.1"\nport = 10'), "dom0s.d1", "dom0s.d0", "127.0.0.1 port 10"),
    (DOM0.format(name="d1", ssh='address = "127.0.0.1"\nport = 9'), "dom0s.d1", "image_hosts.ih", "127.0.0.1 port 9"),
    # the address defaults to the table's name, compared without case or a final dot; no port is 22
    ('[image_hosts.images]\n' + DOM0.format(name="d1", ssh='address = "Images."\nport = 22'), "dom0s.d1",
     "image_hosts.images", "images port 22"),
    ('[image_hosts.a]\naddress = "images.example.org"\n[image_hosts.b]\naddress = "images.example.org"\nuser = "x"\n',
     "image_hosts.b", "image_hosts.a", "images.example.org port 22"),
], ids=["two image hosts", "two dom0s", "an image host and a dom0", "defaults", "another user"])
def test_one_host_listed_twice_is_refused(tmp_path, extra, table, first, where):
    line = refusal(tmp_path, extra)
    assert line == f"{table}: the same host as {first} ({where}): list each host once, under one name", line


def test_hosts_on_one_address_with_their_own_ports_are_allowed():
    """As in the embedded lab: every host on 127.0.0.1, each with its own port."""
    cfg = parse_config(tomllib.loads(merged(DOM0.format(name="d1", ssh='address = "127.0.0.1"\nport = 11'))))
    assert [(h.ssh.address, h.ssh.port) for h in [*cfg.image_hosts.values(), *cfg.dom0s.values()]] == [
        ("127.0.0.1", 9), ("127.0.0.1", 10), ("127.0.0.1", 11)]
    cfg = parse_config(tomllib.loads(merged('[image_hosts.images]\n[image_hosts.images2]\naddress = "images"\n'
                                            'port = 2222\n')))
    assert list(cfg.image_hosts) == ["ih", "images", "images2"]


async def test_the_embedded_labs_site_file_is_accepted(lab):
    """The lab's own site file (hosts on 127.0.0.1, paths under a tmp dir) passes every check."""
    from backend.config import load_config

    cfg = load_config(lab.config_path)
    assert cfg.image_hosts.keys() == lab.config.image_hosts.keys() and cfg.dom0s.keys() == lab.config.dom0s.keys()
    assert cfg.ledger == lab.config.ledger and cfg.state_dir == lab.config.state_dir


# ---------------------------------------------------------------------- a bounded site file

def too_deep(path) -> str:
    return (f"{path}: (top level): tables or lists nested more than 32 levels deep (a site file needs 5): is this "
            "the right file?")


@pytest.mark.parametrize("text", [
    "a = " + "[" * 100_000 + "]" * 100_000,  # 200 KB: tomllib itself gives up (RecursionError)
    "a = " + "[" * 33 + "]" * 33,  # parsed, then refused before validation
    "a = " + "{ b = " * 40 + "1" + " }" * 40,
    "[" + ".".join(["console"] * 40) + "]\nx = 1\n",  # table headers nest without recursion in the parser
], ids=["200 KB of arrays", "33 arrays", "inline tables", "dotted headers"])
def test_site_file_of_deeply_nested_arrays_is_refused(tmp_path, text):
    from backend.config import load_config

    path = tmp_path / "site.toml"
    path.write_text(merged("") + text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.message == too_deep(path) and caught.value.exit_code == 2


def test_nesting_depth_is_counted_up_to_the_limit():
    from backend.config import nesting_depth

    assert nesting_depth(tomllib.loads(merged(""))) == 5 and nesting_depth(1) == 0 and nesting_depth({}) == 1
    assert nesting_depth({"a": [[1], {"b": []}]}) == 4
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert nesting_depth(deep) == 33 and nesting_depth(deep, limit=5) == 6


def test_a_site_file_of_1_mib_is_read_and_one_byte_more_is_refused(tmp_path):
    from backend.config import MAX_SITE_FILE_BYTES, load_config

    path = tmp_path / "site.toml"
    text = merged("")
    path.write_text(text + "#" * (MAX_SITE_FILE_BYTES - len(text)))
    assert path.stat().st_size == MAX_SITE_FILE_BYTES and load_config(path).image_hosts.keys() == {"ih"}
    with path.open("a") as f:
        f.write("#")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.message == f"{path}: larger than 1 MiB (a site file is a few KiB): is this the right file?"


async def cli_bounded(config: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """The real CLI as a process of its own, ``--config CONFIG ARGS``, killed after ``timeout`` seconds and held
    to 1 GiB of address space: a CLI that reads /dev/zero forever or waits on a fifo forever fails the test
    instead of filling or hanging the machine."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    argv = [sys.executable, "-m", "tui", "--config", str(config), *args]
    proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, env=env, cwd=ROOT, preexec_fn=limit)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"isoadmin --config {config} {' '.join(args)}: still running after {timeout} s") from None
    return subprocess.CompletedProcess(argv, proc.returncode, out.decode(), err.decode())


NOT_A_SITE_FILE = "isoadmin: {path}: {kind}, not a site file: give the site file itself (see README)\n"


@pytest.mark.process
async def test_config_dev_zero_and_a_fifo_are_refused_at_once(tmp_path):
    """Through the real CLI, bounded in time and memory: /dev/zero (it used to be read forever) and a fifo no
    one writes to (it used to wait for a writer) each get one line and exit 2, never a traceback."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    cases = {"/dev/zero": "a character device", str(fifo): "a fifo"}
    results = await asyncio.gather(*(cli_bounded(Path(path), "uploads") for path in cases))
    for (path, kind), r in zip(cases.items(), results):
        assert (r.returncode, r.stdout) == (2, ""), (path, r.returncode, r.stderr)
        assert r.stderr == NOT_A_SITE_FILE.format(path=path, kind=kind)


async def test_config_a_directory_or_a_nested_file_is_refused_at_once(tmp_path):
    """Through the CLI's own code (in this process): a directory and a file nested too deep each get one line
    and exit 2, never a traceback."""
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    r = await isoadmin("uploads", config=tmp_path)
    assert (r.returncode, r.stdout) == (2, ""), (tmp_path, r.returncode, r.stderr)
    assert r.stderr == NOT_A_SITE_FILE.format(path=tmp_path, kind="a directory")
    r = await isoadmin("uploads", config=deep)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"isoadmin: {too_deep(deep)}\n")


# ---------------------------------------------------------------------- [console] keymap

@pytest.mark.parametrize("keys", ["", " ", "A,", ",A", "A,,ctrl+a"])
def test_keymap_empty_key_is_refused(tmp_path, keys):
    line = refusal(tmp_path, f'[console]\nkeymap = {{ approve = "{keys}" }}\n')
    assert line == (f"console.keymap.approve: {keys!r} has an empty key: give a key such as \"A\" or \"ctrl+a\" "
                    "(several: \"A,ctrl+a\")")


def test_keymap_key_with_a_space_is_refused(tmp_path):
    line = refusal(tmp_path, '[console]\nkeymap = { approve = "A, ctrl+a" }\n')
    assert line == "console.keymap.approve: 'A, ctrl+a' has a space: write the keys without any, such as \"A,ctrl+a\""
    assert parse_config(tomllib.loads(merged('[console]\nkeymap = { approve = "A,ctrl+a" }\n'))).keymap == {
        "approve": "A,ctrl+a"}


@pytest.mark.parametrize("keymap,binding_id,key,other,where", [
    ({"approve": "1"}, "approve", "1", "uploads", "anywhere"),  # a screen's key, active everywhere
    ({"approve": "?"}, "approve", "?", "help", "anywhere"),  # "?" and "question_mark" are one key
    ({"approve": "A,r"}, "approve", "r", "reject", "uploads"),  # same screen
    ({"check": "A", "repair": "A"}, "check", "A", "repair", "health"),  # two ids of one screen, one key
    ({"down": "a"}, "down", "a", "approve", "uploads"),  # the tables' keys are active on every screen
    ({"quit": "j"}, "quit", "j", "down", "tables"),
], ids=["screen key", "alias", "same screen", "two ids", "tables", "anywhere and tables"])
def test_keymap_key_that_shadows_a_screen_key_is_refused(keymap, binding_id, key, other, where):
    from screens.keys import keymap_clash

    assert keymap_clash(keymap) == (binding_id, f"{key!r} is also the key of {other!r} ({where}), active where "
                                                f"{binding_id!r} is: pick another key, or give {other!r} another "
                                                "one too")


def test_keymap_swaps_and_keys_of_other_screens_are_allowed():
    from screens.keys import KEYS, keymap_clash

    assert keymap_clash({k.id: k.keys for k in KEYS}) is None  # the defaults clash nowhere
    assert keymap_clash({"approve": "r", "reject": "a"}) is None  # a swap
    assert keymap_clash({"approve": "v"}) is None  # v is the Volumes screen's (verify), never active with it
    assert keymap_clash({"approve": "A", "nope": "1"}) is None  # unknown ids are the caller's to refuse


async def test_the_console_refuses_a_keymap_clash_in_one_line(tmp_path):
    """Through the CLI's own code (in this process), opening the console (no command): one line, exit 2, before
    the screen starts."""
    path = tmp_path / "site.toml"
    path.write_text(merged(f'[console]\nstate_dir = "{tmp_path}/state"\nkeymap = {{ approve = "1" }}\n'))
    r = await asyncio.wait_for(isoadmin(config=path), 30)
    assert (r.returncode, r.stdout) == (2, ""), (r.returncode, r.stdout[-500:], r.stderr)
    assert r.stderr == (f"isoadmin: {path}: console.keymap.approve: '1' is also the key of 'uploads' (anywhere), "
                        "active where 'approve' is: pick another key, or give 'uploads' another one too\n")


@pytest.mark.parametrize("table, key, value", [
    ("image_hosts.ih", "cache_dir", "/srv/cds/up/alice/cache"), ("image_hosts.ih", "cache_dir", "/srv/cds/up"),
    ("image_hosts.ih", "cache_dir", "/srv/cds"), ("site", "ledger", "ih:/srv/cds/up/.books")])
def test_the_cache_or_the_ledger_inside_the_owners_folders_is_refused(tmp_path, table, key, value):
    """Root's own files on an image host never live where owners write (nor above it)."""
    site = f'[image_hosts.ih]\nuploads_root = "/srv/cds/up"\n[dom0s.d0]\nport = 10\n' \
           f'[dom0s.d0.storage]\ndriver = "lvm"\nvg = "vg"\n[dom0s.d0.hypervisor]\ndriver = "libvirt"\nuri = "qemu:///system"\n'
    section, _, field = f"{table}.{key}".rpartition(".")
    if section == "site":
        site += f'[site]\n{field} = "{value}"\n'
    else:
        site = site.replace('uploads_root = "/srv/cds/up"\n', f'uploads_root = "/srv/cds/up"\n{field} = "{value}"\n')
    path = tmp_path / "site.toml"
    path.write_text(site)
    from backend.config import load_config
    from backend.errors import ConfigError
    with pytest.raises(ConfigError, match="overlaps uploads_root"):
        load_config(path)
