"""A site file cannot aim isoadmin at the system: folders it writes to or cleans up are never ``/`` or a
system folder. Each refusal is one line naming the file, the table and the key, exit 2."""

from __future__ import annotations

import tomllib

import pytest

from backend.config import parse_config
from backend.errors import ConfigError

from .conftest import cli
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
        '[image_hosts.ih]\nuploads_root = "/tmp//cds/./"\ncache_dir = "/var/cache/isoadmin/"\n'
        '[dom0s.d0]\nkernel_dir = "/var/lib/isoadmin/kernels"\n'
        f'[console]\nstate_dir = "{tmp_path / "state"}/"\n[site]\nledger = "ih:/var/lib/isoadmin/./"\n')))
    ih = cfg.image_hosts["ih"]
    assert (ih.uploads_root, ih.cache_dir) == ("/tmp/cds", "/var/cache/isoadmin")
    assert cfg.dom0s["d0"].kernel_dir == "/var/lib/isoadmin/kernels"
    assert cfg.state_dir == tmp_path / "state" and cfg.ledger == "ih:/var/lib/isoadmin"
    assert cfg.ledger_location() == ("ih", "/var/lib/isoadmin")
    cfg = parse_config(tomllib.loads(merged('[image_hosts.ih]\nuploads_root = "/srv/cds"\n')))
    assert cfg.image_hosts["ih"].uploads_root == "/srv/cds" and cfg.dom0s["d0"].kernel_dir == ""


async def test_gc_on_an_uploads_root_of_etc_lists_nothing_and_exits_2(tmp_path):
    """The case that was met: ``gc`` with ``uploads_root = "/etc"`` listed the files of /etc as "would be
    removed". Through the real CLI, before any host is asked anything."""
    path = tmp_path / "site.toml"
    path.write_text(merged(f'[image_hosts.ih]\nuploads_root = "/etc"\n[console]\nstate_dir = "{tmp_path}/s"\n'))
    r = await cli("gc", config=path, timeout=60)
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr.splitlines() == [f"isoadmin: {path}: image_hosts.ih.uploads_root: '/etc' is a system folder, "
                                     "which isoadmin must never write to or clean up: give a folder of its own "
                                     "below it, such as /srv/cds"]
