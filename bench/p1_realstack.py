"""P1 on the real stack: approve → final volume of an ISO uploaded into the qemu guest (the image host), onto an
LVM LV hot-plugged into it, against ``dd`` inside the guest onto a hot-plugged LV of the same VG.

Needs root and what ``tests/reallab/reallab.sh`` needs (it brings the stack up in ``/tmp/isoadmin-reallab``,
fixed ports, one per machine: run ``make bench`` under ``flock /tmp/isoadmin-reallab.lock`` when other work
may use it). Baselines, run alternately with the import, inside the guest from the same upload onto a scratch
LV created and hot-plugged by isoadmin's own drivers:

* raw: ``dd if=UPLOAD of=/dev/vdX bs=4M conv=fsync`` — the limit: the copy with nothing checked;
* naive: that ``dd``, then ``sha256sum UPLOAD``, then ``sha256sum`` of the disk's first SIZE bytes
  (read back after dropping its cached pages).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import asyncssh

from backend import imagehost
from backend.config import load_config
from backend.site import Site

from .common import Figure, ratio_figure, workdir
from .p1_import import make_big_iso

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "reallab" / "reallab.sh"
DIR = Path(os.environ.get("REALLAB_DIR", "/tmp/isoadmin-reallab"))
NEEDED = ["/usr/sbin/sshd", "/usr/sbin/libvirtd", "/usr/bin/qemu-system-x86_64", "/sbin/lvcreate", "/bin/busybox"]


def unavailable() -> str:
    """Why the real stack cannot run here ("" when it can)."""
    if os.geteuid() != 0:
        return "not root"
    missing = [p for p in NEEDED if not os.path.exists(p)]
    return f"{', '.join(missing)} missing" if missing else ""


_RAW = r"""dd if="$1" of="$2" bs=4M conv=fsync status=none"""
_NAIVE = r"""
dd if="$1" of="$2" bs=4M conv=fsync status=none && sha256sum "$1" >/dev/null &&
dd if="$2" iflag=nocache count=0 status=none && dd if="$2" bs=4M count="$3" iflag=count_bytes status=none | sha256sum >/dev/null
"""


async def run(base: Path, size: int, rounds: int) -> list[Figure]:
    """Measure P1 on the real stack with an upload of about ``size`` bytes.

    Returns:
        the import against raw ``dd`` in the guest, and against the naive way; [] when the stack cannot run.
    Raises:
        RuntimeError: ``reallab.sh up`` failed. AssertionError: an import did not land the upload's bytes.
    """
    why = unavailable()
    if why:
        print(f"P1 real stack skipped: {why}")
        return []
    up = subprocess.run(["bash", str(SCRIPT), "up", str(DIR)], capture_output=True, text=True, timeout=900)
    if up.returncode != 0:
        raise RuntimeError(f"reallab.sh up failed: {up.stderr[-2000:]}")
    facts = dict(line.split("=", 1) for line in (DIR / "facts.env").read_text().splitlines() if "=" in line)
    here = workdir(base, "p1r")
    local = here / "big.iso"
    expected = make_big_iso(local, size)
    size = local.stat().st_size
    conn = await asyncssh.connect(facts["GUEST_ADDR"], port=int(facts["GUEST_PORT"]), username="root",
                                  client_keys=[str(DIR / "ssh" / "client")], known_hosts=str(DIR / "ssh" / "known_hosts"))
    site = Site(load_config(DIR / "site.toml"), approver="bench")
    raw, naive, ours = [], [], []
    scratch = "cdtmp_bench_scratch"  # a staging-prefixed name, created and removed here
    try:
        await conn.run("mkdir -p /tmp/cds/bench && rm -f /tmp/cds/bench/big.iso", check=True)
        async with conn.start_sftp_client() as sftp:
            await sftp.put(str(local), "/tmp/cds/bench/big.iso")
            await sftp.utime("/tmp/cds/bench/big.iso", (time.time() - 60, time.time() - 60))
        local.unlink()
        await site.refresh()
        dom0 = next(iter(site.config.dom0s))
        domain = site.config.image_hosts["imagehost"].domains[dom0]
        storage, hyper = site.storage[dom0], site.hypervisors[dom0]
        report = await storage.report()
        if any(v.name == scratch for v in report.volumes):
            await storage.remove(scratch)
        await storage.create(scratch, size + (4 << 20), {"created_by": "isoadmin", "owner": "bench"})
        await hyper.attach(domain, storage.device_path(scratch), "isoabench")
        try:
            device = await imagehost.locate(site.hosts["imagehost"], "isoabench", ())
            upload = "/tmp/cds/bench/big.iso"
            for _ in range(rounds):
                t = time.perf_counter()
                await conn.run(f"sh -c '{_RAW}' sh {upload} {device}", check=True)
                raw.append(time.perf_counter() - t)
                t = time.perf_counter()
                await conn.run(f"sh -c '{_NAIVE}' sh {upload} {device} {size}", check=True)
                naive.append(time.perf_counter() - t)
                await site.refresh()
                plan = await site.plan("bench/big.iso")
                t = time.perf_counter()
                job = await site.approve(plan)
                ours.append(time.perf_counter() - t)
                assert job.state == "done" and job.sha256 == expected, f"import landed {job.sha256}"
                await site.refresh()
                await site.delete_volume(f"{dom0}:{job.final}")
        finally:
            await hyper.detach(domain, "isoabench")
            await storage.remove(scratch)
    finally:
        await site.close()
        await conn.run("rm -f /tmp/cds/bench/big.iso")
        conn.close()
        shutil.rmtree(here, ignore_errors=True)
        if os.environ.get("REALLAB_KEEP") != "1":  # as the tests do: REALLAB_KEEP=1 leaves it running
            subprocess.run(["bash", str(SCRIPT), "down", str(DIR)], capture_output=True, timeout=120)
    detail = (f"real stack: {size / (1 << 20):.0f} MiB ISO in the qemu (TCG) guest onto an LVM LV hot-plugged "
              f"as virtio, {rounds} rounds, medians")
    return [
        ratio_figure("P1 real stack: import vs raw dd in the guest", ours, raw, "s", 1.3,
                     detail=detail + "; dd bs=4M conv=fsync inside the guest onto a hot-plugged LV (the limit)"),
        ratio_figure("P1 real stack: import vs naive dd+sha256sum×2", ours, naive, "s", 1.0, faster=True,
                     detail=detail),
    ]
