"""The real stack for the ``reallab`` tests: brought up once per session by ``reallab.sh``.

Outside CI a machine that cannot run it (not root, packages missing) skips these tests; with
``CI=true`` that is a failure instead, so CI can never pass without running them.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import asyncssh
import pytest

from backend.config import load_config

SCRIPT = Path(__file__).resolve().parent / "reallab.sh"
NEEDED = ["/usr/sbin/sshd", "/usr/sbin/libvirtd", "/usr/bin/qemu-system-x86_64", "/sbin/lvcreate",
          "/bin/busybox", "/usr/bin/objcopy", "/usr/lib/openssh/sftp-server", "/usr/bin/cpio"]


def missing() -> list[str]:
    """Why the real stack cannot run here (empty when it can)."""
    why = [] if os.geteuid() == 0 else ["not root"]
    why += [f"{path} missing" for path in NEEDED if not os.path.exists(path)]
    if not shutil.which("apt-get"):
        why.append("apt-get missing (the guest kernel comes from a Debian package)")
    return why


@pytest.fixture(scope="session")
def reallab(tmp_path_factory):
    """Directory of a running real lab (``site.toml``, ``facts.env``, ``ssh/``); torn down afterwards."""
    why = missing()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"real stack unavailable in CI: {', '.join(why)}")
        pytest.skip(f"real stack unavailable: {', '.join(why)}")
    directory = Path(os.environ.get("REALLAB_DIR", "/tmp/isoadmin-reallab"))  # one per machine: fixed ports
    # one test run at a time uses the machine's real stack (its ports, its VG, libvirtd): another run waits here,
    # as `flock /tmp/isoadmin-reallab.lock` does by hand
    lock = open(directory.with_name(directory.name + ".lock"), "a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    if os.environ.get("REALLAB_KEEP") != "1":  # start clean: a run that was killed may have left one up
        subprocess.run(["bash", str(SCRIPT), "down", str(directory)], capture_output=True, timeout=120)
    up = subprocess.run(["bash", str(SCRIPT), "up", str(directory)], capture_output=True, text=True, timeout=900)
    if up.returncode != 0:
        subprocess.run(["bash", str(SCRIPT), "down", str(directory)], capture_output=True)
        pytest.fail(f"reallab.sh up failed:\n{up.stderr[-3000:]}")
    facts = dict(line.split("=", 1) for line in (directory / "facts.env").read_text().splitlines() if "=" in line)
    lab = type("RealLab", (), {})()
    lab.dir, lab.facts, lab.config_path = directory, facts, directory / "site.toml"
    lab.env = dict(os.environ, LVM_SYSTEM_DIR=facts["LVM_SYSTEM_DIR"], LVM_SUPPRESS_FD_WARNINGS="1")
    try:
        yield lab
    finally:
        if os.environ.get("REALLAB_KEEP") != "1":  # REALLAB_KEEP=1 leaves it running for the next run
            subprocess.run(["bash", str(SCRIPT), "down", str(directory)], capture_output=True, timeout=120)
        lock.close()


@pytest.fixture
def real_config(reallab):
    return load_config(reallab.config_path)


@pytest.fixture
async def guest(reallab):
    """An asyncssh connection to the image-host guest (host key pinned), as an owner's sftp would use."""
    f = reallab.facts
    conn = await asyncssh.connect(f["GUEST_ADDR"], port=int(f["GUEST_PORT"]), username="root",
                                  client_keys=[str(reallab.dir / "ssh" / "client")],
                                  known_hosts=str(reallab.dir / "ssh" / "known_hosts"))
    yield conn
    conn.close()
