"""The host scripts (``backend/sh/*.sh``): every shipped file, and every program the modules assemble from them
(function libraries first), passes ``shellcheck -s sh`` with no finding and parses under ``dash -n`` and
``busybox sh -n``; each file has its header, is used by a module and is shipped as package data.

shellcheck, dash and BusyBox are among the Makefile's Debian packages: a machine without one of them fails
these tests (it does not skip them)."""

from __future__ import annotations

import fnmatch
import importlib
import json
import pkgutil
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

import backend
from backend import hostscripts

ROOT = Path(__file__).resolve().parents[2]
FOLDER = Path(hostscripts.__file__).parent / hostscripts.FOLDER
SHIPPED = hostscripts.shipped()


def _programs() -> dict[str, str]:
    """Every program the modules assemble (each module is imported: they assemble theirs at import), by the
    names of its files joined with ``+``."""
    for info in pkgutil.walk_packages(backend.__path__, "backend."):
        importlib.import_module(info.name)
    return {"+".join(names): text for names, text in hostscripts.assembled().items()}


PROGRAMS = _programs()


def _tool(*argv: str) -> list[str]:
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed (the Makefile's APT_PACKAGES: apt-get install {argv[0]})")
    return list(argv)


def shellcheck(paths: list[Path]) -> dict[str, list[str]]:
    """``shellcheck -s sh`` (every severity, down to style) on ``paths`` at once.

    Returns:
        file name → its findings, ``LINE: SCxxxx (LEVEL) MESSAGE`` (files without a finding are absent).
    """
    result = subprocess.run([*_tool("shellcheck"), "-s", "sh", "-f", "json1", *map(str, paths)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stderr
    found: dict[str, list[str]] = {}
    for c in json.loads(result.stdout)["comments"]:
        found.setdefault(Path(c["file"]).name, []).append(
            f"{c['line']}: SC{c['code']} ({c['level']}) {c['message']}")
    return found


@pytest.fixture(scope="module")
def shipped_findings() -> dict[str, list[str]]:
    return shellcheck([FOLDER / name for name in SHIPPED])


@pytest.fixture(scope="module")
def program_files(tmp_path_factory) -> dict[str, Path]:
    """Each assembled program written to a file of its own (shellcheck, dash and BusyBox read files)."""
    folder = tmp_path_factory.mktemp("programs")
    out = {}
    for key, text in PROGRAMS.items():
        out[key] = folder / key
        out[key].write_text(text)
    return out


@pytest.fixture(scope="module")
def program_findings(program_files) -> dict[str, list[str]]:
    return shellcheck(list(program_files.values()))


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_script_has_no_shellcheck_finding(name, shipped_findings):
    assert shipped_findings.get(name, []) == []


@pytest.mark.parametrize("key", sorted(PROGRAMS))
def test_an_assembled_program_has_no_shellcheck_finding(key, program_findings):
    assert program_findings.get(key, []) == []


@pytest.mark.parametrize("shell", [("dash", "-n"), ("busybox", "sh", "-n")], ids=["dash", "busybox"])
def test_every_script_and_program_parses(shell, program_files):
    failed = {}
    for path in [FOLDER / name for name in SHIPPED] + list(program_files.values()):
        result = subprocess.run([*_tool(*shell), str(path)], capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            failed[path.name] = result.stderr.strip()
    assert failed == {}


def test_the_checks_can_fail(tmp_path):
    """A finding, and a syntax error, are reported: the tests above are not vacuous."""
    bad = tmp_path / "bad.sh"
    bad.write_text('# bad.sh: an unquoted expansion\nrm -f $1\n')
    assert [f.split(":")[1].split()[0] for f in shellcheck([bad])["bad.sh"]] == ["SC2086"]
    broken = tmp_path / "broken.sh"
    broken.write_text("if true; then\n")
    for shell in (("dash", "-n"), ("busybox", "sh", "-n")):
        assert subprocess.run([*_tool(*shell), str(broken)], capture_output=True).returncode != 0


@pytest.mark.parametrize("name", SHIPPED)
def test_a_script_starts_with_its_header(name):
    """What it does (the first line names the file), its positional inputs and its output lines."""
    header = []
    for line in hostscripts.source(name).splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    assert header and header[0].startswith(f"# {name}")
    text = "\n".join(header)
    assert "Input" in text and "Output" in text, text


@pytest.mark.parametrize("name", SHIPPED)
def test_the_hosts_get_the_program_without_its_header(name):
    """The program is a newline and the file without the comment lines at its top (and the blank lines after
    them): byte for byte the text the scripts had as Python strings (``r\"\"\"`` and a newline)."""
    source, program = hostscripts.source(name), hostscripts.program(name)
    assert source.endswith("\n") and program.startswith("\n") and source.endswith(program[1:])
    assert program.strip() and not program[1:].startswith(("#", "\n"))
    head = source[:len(source) - len(program) + 1]
    assert head and all(line.startswith("#") or not line.strip() for line in head.splitlines())


def test_every_shipped_script_is_used_and_every_used_one_is_shipped():
    used = {name for key in PROGRAMS for name in key.split("+")}
    assert used == set(SHIPPED)
    for key in PROGRAMS:
        *libraries, main = key.split("+")
        assert all(n.startswith("lib-") for n in libraries), key  # function libraries come first
    with pytest.raises(FileNotFoundError):
        hostscripts.load("no-such-script.sh")


def test_the_package_data_ships_every_script():
    """``pyproject.toml``'s package data for ``backend`` matches every file of ``backend/sh`` (a wheel and
    ``pip install -e`` both carry them), and nothing else lies there."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["backend"]
    files = sorted(str(p.relative_to(FOLDER.parent)) for p in FOLDER.rglob("*") if p.is_file())
    assert files and all(any(fnmatch.fnmatch(f, g) for g in globs) for f in files), (files, globs)
    assert [Path(f).name for f in files] == SHIPPED
