"""Shared fixtures and the suite's own setup.

* A real embedded lab (in-process SSH servers running /bin/sh) per test (``lab``), and helpers to run the CLI
  in-process (:func:`isoadmin`) or as a process (:func:`cli`).
* Each run gets a temporary folder of its own (``--basetemp``, removed after a green run), so two runs on one
  machine never share or clean up each other's folders.
* With ``pytest-xdist`` (``-n 2 --dist loadgroup``, as ``make test`` runs it) the tests of one module stay on
  one worker (module-scoped labs are shared), and the real-stack tests (``tests/reallab``) run first, all on
  one worker.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.lab import Lab
from backend.site import Site
from backend.ssh import CommandRecord

ROOT = Path(__file__).resolve().parent.parent
DEBIAN_ISOS = {
    "ipxe.iso": Path("/usr/lib/ipxe/ipxe.iso"),
    "grub-rescue-cdrom.iso": Path("/usr/lib/grub-rescue/grub-rescue-cdrom.iso"),
    "memtest86+x64.iso": Path("/usr/lib/memtest86+/memtest86+x64.iso"),
    "memtest86+ia32.iso": Path("/usr/lib/memtest86+/memtest86+ia32.iso"),
}


def sha256_file(path: Path, limit: int | None = None) -> str:
    """sha256 of a file's first ``limit`` bytes (all when None), computed here, independently."""
    h = hashlib.sha256()
    left = limit if limit is not None else float("inf")
    with open(path, "rb") as f:
        while left > 0:
            chunk = f.read(int(min(1 << 20, left)))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
    return h.hexdigest()


def pytest_configure(config):
    """A fresh ``--basetemp`` for this run (not for an xdist worker: it gets its part of the controller's)."""
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        import tempfile

        config.option.basetemp = config._isoadmin_basetemp = tempfile.mkdtemp(prefix="isoadmin-tests-")


def pytest_sessionfinish(session, exitstatus):
    """Remove this run's temporary folder when every test passed (a failed run keeps it to look at)."""
    base = getattr(session.config, "_isoadmin_basetemp", None)
    if base and exitstatus == 0:
        import shutil

        shutil.rmtree(base, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With ``CI=true`` a skipped test is a failed one: CI never passes without running every test."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") == "true" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true): {report.longrepr}"


def pytest_collection_modifyitems(config, items):
    """Real-stack tests first (they take longest, on one worker); every module one xdist group."""
    for item in items:
        if not any(m.name == "xdist_group" for m in item.iter_markers()):
            group = "reallab" if "reallab" in item.keywords else item.module.__name__
            item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: "reallab" not in item.keywords)


@pytest.fixture
async def lab(tmp_path):
    """A started lab under tmp_path/lab (stopped afterwards)."""
    lab = Lab(tmp_path / "lab")
    lab.config = await lab.start()
    yield lab
    await lab.stop()


@pytest.fixture
async def site(lab):
    """A Site on the lab; ``site.log`` holds every command the hosts were sent (or refused)."""
    log: list[CommandRecord] = []
    site = Site(lab.config, listeners=[log.append])
    site.log = log
    yield site
    await site.close()


async def isoadmin(*args: str, config: Path | None = None, lab_dir: Path | None = None,
                   stdin: str = "") -> subprocess.CompletedProcess:
    """Run ``isoadmin ARGS`` in this process and this event loop (:func:`tui.cli.amain`): the CLI's own code,
    its stdout and stderr captured and its stdin a pipe holding ``stdin`` (no terminal). ``config`` passes
    ``--config``, ``lab_dir`` ``--lab`` (a lab started in this loop for the command, as the CLI does).
    A lab this loop serves answers it, so no process is started: what only a process shows (a crash's exit
    70, signals, workstations racing) is tested with :func:`cli`.

    Returns:
        the outcome as a finished process would give it (``args``, ``returncode``, ``stdout``, ``stderr``).
    """
    import contextlib
    import io

    from tui.cli import amain

    where = ["--config", str(config)] if config is not None else ["--lab", str(lab_dir)] if lab_dir else []
    argv = [*where, *args]
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = await amain(argv)
    finally:
        sys.stdin = saved
    return subprocess.CompletedProcess(["isoadmin", *argv], code, out.getvalue(), err.getvalue())


def run_isoadmin(*args: str, config: Path | None = None, lab_dir: Path | None = None,
                 stdin: str = "") -> subprocess.CompletedProcess:
    """:func:`isoadmin` from a test that runs no event loop of its own (an event loop for the one command)."""
    import asyncio

    return asyncio.run(isoadmin(*args, config=config, lab_dir=lab_dir, stdin=stdin))


def expire_leases(ledger_dir: Path, *job_ids: str, seconds: float = 3600.0) -> list[str]:
    """Make leases on the ledger look ``seconds`` old (their file's mtime moved back), as if their consoles
    had stopped renewing them that long ago: the ledger host's own expiry check then finds them expired, with no
    wait. With no ``job_ids``, every lease.

    Returns:
        the job ids whose lease was moved back.
    """
    import time

    moved = []
    when = time.time() - seconds
    for lease in sorted((Path(ledger_dir) / "leases").glob("*")):
        if lease.is_file() and (not job_ids or lease.name in job_ids):
            os.utime(lease, (when, when))
            moved.append(lease.name)
    return moved


def run_cli(*args: str, lab_dir: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m tui --lab LAB_DIR ARGS`` as a separate process (the real CLI)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "tui", "--lab", str(lab_dir), *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.fixture(autouse=True)
async def no_leftover_tasks():
    """After each test, every task it started must end within a few seconds (a hung task would
    otherwise hang the whole run at loop teardown); name the ones that do not."""
    import asyncio

    yield
    me = asyncio.current_task()
    for _ in range(100):
        left = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        if not left:
            return
        await asyncio.sleep(0.05)
    pytest.fail("tasks still running after the test: " + "; ".join(repr(t.get_coro()) for t in left[:5]))


async def cli(*args: str, config: Path | None = None, lab_dir: Path | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real CLI (``python -m tui``) as a separate process without blocking this event loop, so a lab
    served by this test's loop answers it. ``config`` passes ``--config``, ``lab_dir`` ``--lab``.

    Returns:
        the finished process (stdout and stderr as text, decoded with surrogateescape).
    """
    import asyncio

    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    where = ["--config", str(config)] if config is not None else ["--lab", str(lab_dir)] if lab_dir else []
    argv = [sys.executable, "-m", "tui", *where, *args]
    proc = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                                stderr=subprocess.PIPE, env=env, cwd=ROOT)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return subprocess.CompletedProcess(argv, proc.returncode, out.decode("utf-8", "surrogateescape"),
                                       err.decode("utf-8", "surrogateescape"))


def edit_config(lab, path: Path, **tables: dict) -> Path:
    """Write a copy of the lab's ``site.toml`` to ``path`` with ``tables`` merged in (``"dom0s.dom0-b"`` →
    keys to set in that table) and return ``path``."""
    import tomllib

    doc = tomllib.loads(lab.config_path.read_text())
    for dotted, values in tables.items():
        table = doc
        for part in dotted.split("."):
            table = table.setdefault(part, {})
        table.update(values)
    path.write_text(to_toml(doc))
    return path


def to_toml(doc: dict) -> str:
    """A TOML text for ``doc``: each top-level key a table, its values inline (tables, strings, numbers,
    booleans, lists)."""
    import json

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(type(v))

    return "".join(f"[{json.dumps(name)}]\n" + "".join(f"{json.dumps(k)} = {value(v)}\n" for k, v in table.items())
                   for name, table in doc.items())
