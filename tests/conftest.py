"""Shared fixtures: a real embedded lab (in-process SSH servers running /bin/sh) per test."""

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
