"""P1: approve → final volume of a big ISO on the lab, against raw ``dd`` and the naive shell way.

Baselines, run alternately with the import on the same disk (the lab's ``files`` volume folder):

* raw: ``dd if=UPLOAD of=VOLUME bs=4M conv=fsync`` — the copy with nothing checked;
* naive: that ``dd``, then ``sha256sum UPLOAD``, then ``sha256sum VOLUME``.

isoadmin's import is timed from the approved plan to the finished job: create, attach, locate, the one-pass
copy (the upload read once, written with O_DIRECT, hashed, and the landed bytes read back from the disk
behind the writer into a second hash), verify (the two digests and the ISO facts compared), detach, rename. Each round checks the
volume's bytes against the upload's sha256 computed here.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pycdlib

from backend.site import Site

from .common import Figure, ratio_figure, timed, workdir
from .labserver import LabProcess

MiB = 1 << 20


def make_big_iso(path: Path, size: int) -> str:
    """Write an ISO 9660 image of about ``size`` bytes (one file of random bytes, El Torito bootable)
    with pycdlib; return its sha256."""
    data = path.with_suffix(".data")
    with open(data, "wb") as f:
        left = max(size - 512 * 1024, 2048)
        while left > 0:
            f.write(os.urandom(min(left, 8 * MiB)))
            left -= 8 * MiB
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident="BENCH_BIG")
    iso.add_file(str(data), "/DATA.BIN;1")
    iso.add_fp(__import__("io").BytesIO(b"\xeb\xfe" + bytes(2046)), 2048, "/BOOT.IMG;1")
    iso.add_eltorito("/BOOT.IMG;1", "/BOOT.CAT;1", media_name="noemul", boot_load_size=4)
    iso.write(str(path))
    iso.close()
    data.unlink()
    past = time.time() - 3600
    os.utime(path, (past, past))
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return h.hexdigest()


def sha256_of(path: Path, limit: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while limit > 0 and (chunk := f.read(min(8 * MiB, limit))):
            h.update(chunk)
            limit -= len(chunk)
    return h.hexdigest()


async def run(base: Path, size: int, rounds: int) -> list[Figure]:
    """Measure P1 with an upload of ``size`` bytes, ``rounds`` times each way.

    Returns:
        two figures: the import against raw dd, and against the naive way.
    Raises:
        AssertionError: an import did not land the upload's bytes.
    """
    here = workdir(base, "p1")
    with LabProcess(here / "lab", {"dom0-a": "64 GiB"}) as server:
        (server.layout.uploads_root / "alice").mkdir()
        upload = server.layout.uploads_root / "alice" / "big.iso"
        expected = make_big_iso(upload, size)
        size = upload.stat().st_size
        volumes = server.layout.volumes_dir("dom0-a")
        site = Site(server.config, approver="bench")
        raw, naive, ours = [], [], []
        try:
            for _ in range(rounds):
                target = volumes / "baseline.img"
                raw.append(timed(["dd", f"if={upload}", f"of={target}", "bs=4M", "conv=fsync", "status=none"]))
                target.unlink()
                naive.append(timed(["dd", f"if={upload}", f"of={target}", "bs=4M", "conv=fsync", "status=none"])
                             + timed(["sha256sum", str(upload)]) + timed(["sha256sum", str(target)]))
                target.unlink()
                await site.refresh()
                plan = await site.plan("alice/big.iso")
                t = time.perf_counter()
                job = await site.approve(plan)
                ours.append(time.perf_counter() - t)
                assert job.state == "done" and job.sha256 == expected, f"import landed {job.sha256}"
                assert sha256_of(volumes / f"{job.final}.img", size) == expected
                await site.refresh()
                await site.delete_volume(f"dom0-a:{job.final}")
        finally:
            await site.close()
    detail = f"{size / MiB:.0f} MiB ISO, {rounds} rounds, medians"
    return [
        ratio_figure("P1 import vs raw dd", ours, raw, "s", 1.3, detail=detail + "; dd bs=4M conv=fsync"),
        ratio_figure("P1 import vs naive dd+sha256sum×2", ours, naive, "s", 2.5, faster=True, detail=detail),
    ]
