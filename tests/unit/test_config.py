"""Bad configuration gets one exact line naming the file, the table and the key, exit 2, never a traceback:
wrong types, unknown keys (with a "did you mean"), missing keys, bad values, an unusable ``--lab DIR`` or
state dir. The README's configuration reference is the schema's."""

from __future__ import annotations

import re

import pytest

from backend.config import parse_config, reference_markdown
from backend.errors import ConfigError

from ..conftest import ROOT, isoadmin
from .test_units import minimal

SITE = """
[image_hosts.ih]
address = "127.0.0.1"
port = 9
domains = { d0 = "imagehost" }

[dom0s.d0]
address = "127.0.0.1"
port = 10
[dom0s.d0.storage]
driver = "files"
directory = "/srv/volumes"
[dom0s.d0.hypervisor]
driver = "lab"
guest_disk_dirs = { imagehost = "/srv/by-id" }
"""

# (site file text, the line's key, what the line says) — each one line, exit 2
BAD = [
    ('[console]\nsettle_seconds = "ten"\n', "console.settle_seconds", "expected a number, got 'ten'"),
    ('[console]\ngc_days = "week"\n', "console.gc_days", "expected a number, got 'week'"),
    ("[console]\nrefresh_seconds = {a=1}\n", "console.refresh_seconds", "expected a number, got a table"),
    ("[console]\nreadonly = true\n", "console.readonly", "unknown key; did you mean read_only?"),
    ('[console]\n"read-only" = true\n', "console.read-only", "unknown key; did you mean read_only?"),
    ("[console]\nsettle_second = 3\n", "console.settle_second", "unknown key; did you mean settle_seconds?"),
    ("[console]\nsettle_seconds = -1\n", "console.settle_seconds", "greater than or equal to 0"),
    ('[image_hosts]\nih2 = "images.example.org"\n', "image_hosts.ih2", "expected a table"),
    ('[image_hosts.ih]\ndisk_id_dirs = "/dev/disk/by-id"\n', "image_hosts.ih.disk_id_dirs",
     "expected a list, got '/dev/disk/by-id'"),
    ("[image_hosts.ih]\nmax_copies = 0\n", "image_hosts.ih.max_copies", "greater than or equal to 1"),
    ("[dom0s.d0]\nstorage = 5\n", "dom0s.d0.storage", "expected a table, got 5"),
    ('[dom0s.d0.storage]\ndriver = "zfs"\n', "dom0s.d0.storage.driver", "unknown driver 'zfs'"),
    ("[dom0s.d0.storage]\ncapcity = 5\n", "dom0s.d0.storage.capcity", "unknown key; did you mean capacity?"),
    ('[dom0s.d0.storage]\ncapacity = "lots"\n', "dom0s.d0.storage.capacity", "'lots' is not a size"),
    ('[dom0s.d0.hypervisor]\ndriver = "libvirt"\n', "dom0s.d0.hypervisor.uri", "required key missing"),
    ('[quotas]\ndefault = "much"\n', "quotas.default", "'much' is not a size"),
    ('[naming]\ntemplate = "{nope}"\n', "naming.template", "unknown field {nope}"),
    ('[site]\nledger = "relative/path"\n', "site.ledger", "must be HOST:/absolute/path"),
    ('[site]\nledger = "elsewhere:/var/lib/isoadmin"\n', "site.ledger", "'elsewhere' is not a host of this site"),
    ("[consol]\nread_only = true\n", "consol", "unknown key; did you mean console?"),
]


def merged(extra: str) -> str:
    """The site file with ``extra`` merged in (a table ``extra`` sets replaces the one in :data:`SITE`)."""
    import tomllib

    from ..conftest import to_toml

    doc, add = tomllib.loads(SITE), tomllib.loads(extra)

    def merge(a: dict, b: dict) -> None:
        for k, v in b.items():
            if isinstance(v, dict) and isinstance(a.get(k), dict):
                merge(a[k], v)
            else:
                a[k] = v
    merge(doc, add)
    return to_toml(doc)


@pytest.mark.parametrize("extra,key,what", BAD)
def test_bad_values_are_one_line_naming_file_table_and_key(tmp_path, extra, key, what):
    import tomllib

    path = tmp_path / "site.toml"
    path.write_text(merged(extra))
    with pytest.raises(ConfigError) as caught:
        parse_config(tomllib.loads(path.read_text()), path)
    message = caught.value.message
    assert "\n" not in message and message.startswith(f"{path}: {key}: "), message
    assert what in message, message
    assert caught.value.exit_code == 2


def test_a_good_site_file_and_the_new_ledger_table(tmp_path):
    import tomllib

    cfg = parse_config(tomllib.loads(merged('[site]\nledger = "ih:/var/lib/isoadmin"\n')))
    assert cfg.ledger == "ih:/var/lib/isoadmin" and cfg.image_hosts["ih"].disk_id_dirs == ("/dev/disk/by-id",)
    assert parse_config(minimal()).ledger == ""
    cfg = parse_config(tomllib.loads(merged("[console]\nread_only = true\nsettle_seconds = 3\n")))
    assert cfg.read_only is True and cfg.settle_seconds == 3.0


async def test_the_cli_says_one_line_and_exits_2(tmp_path):
    """The cases a new user met, through the CLI's own code (in this process): config values, --lab, the state
    dir."""
    state_file = tmp_path / "state-is-a-file"
    state_file.write_text("")
    runs = []
    for i, (extra, key, _) in enumerate(BAD[:5] + BAD[7:9] + BAD[10:11]):
        path = tmp_path / f"site{i}.toml"
        path.write_text(merged(extra))
        runs.append((["--config", str(path), "uploads"], f"{path}: {key}: "))
    for state in (state_file, "/proc/isoadmin-state", "/proc/self"):
        path = tmp_path / f"state-{len(runs)}.toml"
        path.write_text(merged(f'[console]\nstate_dir = "{state}"\n'))
        for command in (["reject", "ih/x.iso", "--reason", "r"], ["approve", "ih/x.iso", "--yes"], ["audit"],
                        ["jobs"]):
            runs.append((["--config", str(path), *command], f"{path}: console.state_dir: "))
    runs.append((["--lab=/dev/null/lab", "uploads"], "isoadmin: --lab /dev/null/lab: "))
    runs.append((["--lab=/etc/hostname", "uploads"], "isoadmin: --lab /etc/hostname: not a directory"))
    for argv, start in runs:
        r = await isoadmin(*argv)
        assert r.returncode == 2, (argv, r.returncode, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, (argv, r.stderr)
        assert lines[0].startswith(start if start.startswith("isoadmin") else f"isoadmin: {start}"), (argv, lines)
        assert r.stdout == ""
    assert state_file.read_text() == ""


def test_state_dir_is_created_private(tmp_path):
    from backend.config import prepare_state_dir

    path = prepare_state_dir(tmp_path / "a" / "state")
    assert path.is_dir() and path.stat().st_mode & 0o777 == 0o700


def test_readme_configuration_reference_is_the_schema():
    """The README's reference is exactly what ``python -m backend.config`` prints from the schema."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- configuration reference: generated[^\n]*-->\n(.*?)<!-- end of the reference -->",
                      readme, re.S)
    assert found, "README.md has no generated configuration reference"
    assert found.group(1) == reference_markdown(), "run: .venv/bin/python -m backend.config, paste into README"
