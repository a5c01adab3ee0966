"""P4: four imports on two dom0s at once, in the console with the P2 inventory loaded, while keys are
pressed: the key → repaint figure of P3 must still hold, and each job's progress reaches the screen at
most four times a second.

The imports are started the way ``a`` then ``y`` starts them (:meth:`IsoadminApp.start_import`), with the
image host allowing four copies at once (``max_copies = 4``).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

from backend.site import Site
from tui.app import IsoadminApp, JobProgress

from .common import Figure, percentile
from .p1_import import make_big_iso
from .p3_tui import CPU, SIZE, timed_keys


class CountingApp(IsoadminApp):
    """The console, noting when each job's progress message was posted (job id → times, monotonic
    seconds): the rate the backend sends at. Arrival times add the event loop's jitter: a message held
    up behind a repaint arrives close to the next one, and one run counted 5 arrivals within a second
    from a sender that kept its 0.25 s spacing."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.arrivals: dict[str, list[float]] = {}

    def on_job_progress(self, message: JobProgress) -> None:
        self.arrivals.setdefault(message.job.id, []).append(message.time)
        super().on_job_progress(message)


async def run(config, uploads_root: Path, size: int, dom0s: list[str], tag: str = "") -> list[Figure]:
    """Measure P4: ``size``-byte ISOs, two imports on each of ``dom0s[:2]``.

    Args:
        tag: added to the figures' names and the uploads' names (a second run on the same lab).
    """
    owner = uploads_root / "owner0000"
    expected = {}
    for i in range(4):
        name = f"p4{tag.replace(' ', '-')}-{i}.iso"
        expected[f"owner0000/{name}"] = make_big_iso(owner / name, size)
    image_hosts = {n: dataclasses.replace(ih, max_copies=4) for n, ih in config.image_hosts.items()}
    site = Site(dataclasses.replace(config, image_hosts=image_hosts), approver="bench")
    await site.refresh()
    app = CountingApp(site, refresh_seconds=2)
    async with app.run_test(size=SIZE) as pilot:
        while not app.refreshes:
            await pilot.pause(0.05)
        plans = [await site.plan(key, dom0=dom0s[i % 2]) for i, key in enumerate(sorted(expected))]
        t = time.perf_counter()
        for plan in plans:
            app.start_import(plan)
        keys: list[float] = []
        while len([j for j in app.jobs.values() if j.state == "done" and j.key in expected]) < 4:
            if any(j.state == "failed" and j.key in expected for j in app.jobs.values()):
                raise AssertionError([j.error for j in app.jobs.values() if j.state == "failed"])
            keys += await timed_keys(pilot, app, ["down", "down", "up", "up"], f"during imports{tag}")
            await pilot.pause(0.05)
        wall = time.perf_counter() - t
        jobs = [j for j in app.jobs.values() if j.key in expected]
        assert all(j.sha256 == expected[j.key] for j in jobs)
        overlap = max(sum(1 for j in jobs if j.created <= other.created <= j.updated) for other in jobs)
    await site.close()
    rates = []
    for times in app.arrivals.values():
        # the most messages of one job that arrived within any one second (its last message, the
        # finished job, is sent at once and not counted)
        times = times[:-1]
        rates.append(max((sum(1 for t in times if start <= t < start + 1.0) for start in times), default=0))
    p95 = percentile(keys, 95) * 1000 if keys else 0.0
    return [
        Figure(f"P4 key → repaint p95 during 4 imports{tag}", p95, "ms", "≤ 50 ms", p95 <= 50,
               detail=f"median {statistics.median(keys) * 1000:.1f} ms over {len(keys)} cursor keys; the "
               f"console's own CPU p95 {percentile(CPU[f'during imports{tag}'], 95) * 1000:.1f} ms; the lab's "
               "hosts (their copies and hashes) share this machine's cores" if keys else "no keys"),
        Figure(f"P4 progress messages per job{tag}", max(rates, default=0), "/s", "≤ 4 per s",
               max(rates, default=0) <= 4, detail=f"most messages of one job within one second, {len(app.arrivals)} jobs"),
        Figure(f"P4 4 imports on 2 dom0s{tag}", wall, "s", "run at once", overlap == 4,
               detail=f"{size >> 20} MiB each; {overlap} jobs overlapped"),
    ]
