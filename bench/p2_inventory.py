"""P2: the inventory of a big site — 10,000 uploads under 500 owners, 5,000 volumes on 4 dom0s (``make bench``).

Figures:

* commands per host per refresh (steady state: nothing changed): target exactly 1;
* a full refresh (every host, steady state) over loopback: target ≤ 0.5 s;
* that refresh against the per-file way over SFTP (one ``lstat`` and one 64 KiB header read per upload,
  as a lister without one listing command must do): target ≥ 20 × faster;
* the first refresh (every header read, in one command) against the same SFTP walk;
* a refresh after 1 % of the uploads changed: the headers read are exactly those 1 %.

The uploads are sparse files holding a real ISO 9660 header (pycdlib); the volumes are ``files`` volumes with
the metadata isoadmin writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import statistics
import time
from pathlib import Path

from backend.lab import Lab, make_iso
from backend.site import Site
from backend.storage.base import encode_meta

from .common import Figure, ratio_figure

MiB = 1 << 20


def populate(lab: Lab, owners: int, uploads: int, volumes: int) -> list[Path]:
    """Write ``uploads`` uploads spread over ``owners`` owner folders and ``volumes`` final volumes spread
    over the lab's dom0s. Returns the upload paths."""
    rng = random.Random(7)
    header = make_iso("BENCH", {"README.TXT;1": b"isoadmin bench\n" * 64}, bootable=True)
    past = time.time() - 86400
    paths = []
    names = [f"owner{i:04d}" for i in range(owners)]
    for name in names:
        (lab.uploads_root / name).mkdir(parents=True, exist_ok=True)
    for i in range(uploads):
        path = lab.uploads_root / names[i % owners] / f"image-{i:05d}.iso"
        with open(path, "wb") as f:
            f.write(header)
            f.truncate(rng.randrange(64, 4096) * MiB)
        os.utime(path, (past, past))
        paths.append(path)
    dom0s = list(lab.dom0s)
    for i in range(volumes):
        owner = names[i % owners]
        name = f"cd_{owner}_old-{i:05d}_{hashlib.sha256(str(i).encode()).hexdigest()[:8]}"
        directory = lab.volumes_dir(dom0s[i % len(dom0s)])
        size = rng.randrange(64, 4096) * MiB
        with open(directory / f"{name}.img", "wb") as f:
            f.truncate(size)
        meta = {"created_by": "isoadmin", "owner": owner, "upload": f"old-{i:05d}.iso", "size": size,
                "sha256": hashlib.sha256(name.encode()).hexdigest(), "source_host": "imagehost",
                "source_path": f"/gone/{owner}/old-{i:05d}.iso", "source_mtime": past, "source_inode": i,
                "approver": "bench", "time": past, "job": f"{i:012x}",
                "iso": {"is_iso9660": True, "volume_id": "OLD", "bootable": True}}
        (directory / f"{name}.meta").write_text(encode_meta(meta) + "\n")
    return paths


async def sftp_walk(site: Site, root: str, headers: bool) -> float:
    """List the uploads root over SFTP one file at a time: ``lstat`` each entry and (``headers``) read
    its first 64 KiB. Returns seconds."""
    conn = await site.hosts["imagehost"].connection()
    t = time.perf_counter()
    async with conn.start_sftp_client() as sftp:
        for owner in await sftp.listdir(root):
            if owner in (".", ".."):
                continue
            for name in await sftp.listdir(f"{root}/{owner}"):
                if name in (".", ".."):
                    continue
                path = f"{root}/{owner}/{name}"
                await sftp.lstat(path)
                if headers:
                    async with sftp.open(path, "rb") as f:
                        await f.read(65536)
    return time.perf_counter() - t


async def measure(config, paths: list[Path], dom0s: list[str], owners: int, volumes: int,
                  rounds: int) -> list[Figure]:
    """Measure P2 on a site whose lab serves the :func:`populate`d uploads ``paths`` from another
    process (:class:`~bench.labserver.LabProcess`)."""
    uploads = len(paths)
    sent: list = []
    site = Site(config, listeners=[sent.append])
    root = config.image_hosts["imagehost"].uploads_root
    try:
        t = time.perf_counter()
        snap = await site.refresh()
        cold = time.perf_counter() - t
        assert len(snap.uploads) == uploads and len(snap.volumes) == volumes, (len(snap.uploads), len(snap.volumes))
        assert all(u.iso and u.iso.is_iso9660 for u in snap.uploads)
        warm, sftp_stat_read, commands = [], [], []
        for _ in range(rounds):
            sent.clear()
            t = time.perf_counter()
            await site.refresh()
            warm.append(time.perf_counter() - t)
            commands.append(max(sum(1 for r in sent if r.host == h) for h in [*config.image_hosts, *dom0s]))
            sftp_stat_read.append(await sftp_walk(site, root, headers=True))
        changed = paths[:: 100]
        for path in changed:
            os.utime(path)  # 1 % of the uploads changed
        await asyncio.sleep(0)
        sent.clear()
        t = time.perf_counter()
        await site.refresh()
        one_percent = time.perf_counter() - t
        # argv: sh -c SCRIPT isoadmin-headers MARK PATH...
        read_paths = sum(len(r.argv) - r.argv.index("isoadmin-headers") - 2
                         for r in sent if "isoadmin-headers" in r.argv)
    finally:
        await site.close()
    detail = f"{uploads} uploads / {owners} owners, {volumes} volumes / {len(dom0s)} dom0s"
    return [
        Figure("P2 commands per host per refresh", max(commands), "", "= 1", max(commands) == 1,
               detail="steady state, the most any host received"),
        Figure("P2 full refresh (steady state)", statistics.median(warm), "s", "≤ 0.5 s",
               statistics.median(warm) <= 0.5, detail=detail, samples=warm),
        ratio_figure("P2 refresh vs SFTP lstat+read per file", warm, sftp_stat_read, "s", 20, faster=True,
                     detail=detail),
        ratio_figure("P2 first refresh vs SFTP lstat+read", [cold], sftp_stat_read[:1], "s", 1, faster=True,
                     detail="every header read, in one command; informative"),
        Figure("P2 headers read after 1 % changed", read_paths, "", f"= {len(changed)}",
               read_paths == len(changed), detail=f"that refresh took {one_percent:.3f} s"),
    ]
