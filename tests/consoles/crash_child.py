"""A console that dies, or holds a job open: ``python -m tests.consoles.crash_child WHERE OWNER/FILE PHASE [DELAY [LEASE [HOLD]]]``.

WHERE is a lab folder (the console serves it itself) or a site file (a console of a lab served elsewhere,
with its own state dir). Approves the upload and, when the job starts PHASE
(after DELAY seconds, to be in the middle of it), SIGKILLs its own process — or, with HOLD > 0, sleeps
HOLD seconds there, its lease renewed as usual, and then lets the job finish. LEASE is the site's lease
time in seconds. Used by the crash, health and multi-console tests; not a test itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from backend.config import load_config
from backend.lab import Lab
from backend.site import Site


async def main(where: str, key: str, phase: str, delay: float, lease: float, hold: float) -> None:
    lab = None
    if where.endswith(".toml"):
        site = Site(load_config(Path(where)))
    else:
        lab = Lab(Path(where), lease_seconds=lease)
        site = Site(await lab.start())
    await site.refresh()

    async def on_phase(job) -> None:
        if job.phase == phase:
            if delay:
                await asyncio.sleep(delay)  # the job's phase keeps running on the hosts meanwhile
            if hold:
                print(f"holding in {phase}", flush=True)
                await asyncio.sleep(hold)
                return
            print(f"killed in {phase}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    if delay:
        real = on_phase

        async def on_phase(job) -> None:  # noqa: F811 - run beside the phase, not before it
            if job.phase == phase:
                asyncio.get_running_loop().create_task(real(job))

    job = await site.approve(await site.plan(key, allow_non_iso=True), on_phase=on_phase)
    print(f"finished: {job.state}", flush=True)
    await site.close()
    if lab is not None:
        await lab.stop()


if __name__ == "__main__":
    args = sys.argv[1:] + ["0"] * (6 - len(sys.argv[1:]))
    asyncio.run(main(args[0], args[1], args[2], float(args[3]), float(args[4]) or 30.0, float(args[5])))
