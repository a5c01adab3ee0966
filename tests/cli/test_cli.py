"""The command-line habits sysadmins expect: --version, -v, full values when piped, shell completion."""

from __future__ import annotations

from ..conftest import isoadmin


async def test_version_and_completion(tmp_path):
    r = await isoadmin("--version", lab_dir=tmp_path / "lab")
    assert r.returncode == 0 and r.stdout.startswith("isoadmin ")
    for shell in ("bash", "zsh"):
        r = await isoadmin("--print-completion", shell, lab_dir=tmp_path / "lab")
        assert r.returncode == 0 and "approve" in r.stdout and "--override-rejection" in r.stdout


async def test_piped_tables_are_full_and_tab_separated_and_v_logs_host_commands(tmp_path):
    r = await isoadmin("-v", "uploads", lab_dir=tmp_path / "lab")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split("\t")[:3] == ["OWNER", "FILE", "SIZE"]
    files = {line.split("\t")[1] for line in lines[1:]}
    assert {"grub-rescue-cdrom.iso", "grub-rescue-floppy.img", "memtest86+x64.iso"} <= files  # never cut
    assert all(len(line.split("\t")) == 8 for line in lines)
    logged = [line for line in r.stderr.splitlines() if line.startswith("isoadmin: imagehost isoadmin-list exit 0 ")]
    assert logged and logged[0].endswith(" s")  # host, what, exit status, seconds


def test_readme_key_table_is_the_bindings():
    """The README's key table is exactly what ``python -m screens.keys`` prints from the bindings."""
    import re

    from screens.keys import reference_markdown

    from ..conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- key table: generated[^\n]*-->\n(.*?)<!-- end of the key table -->", readme, re.S)
    assert found, "README.md has no generated key table"
    assert found.group(1) == reference_markdown(), "run: .venv/bin/python -m screens.keys, paste into README"
