"""A console that dies: ``python -m tests.crash_child LAB_DIR OWNER/FILE PHASE [DELAY]``.

Approves the upload on the lab and SIGKILLs its own process when the job starts PHASE (after DELAY
seconds, to die in the middle of it). Used by tests/test_crash.py; not a test itself.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from backend.lab import Lab
from backend.site import Site


async def main(lab_dir: str, key: str, phase: str, delay: float) -> None:
    lab = Lab(Path(lab_dir))
    site = Site(await lab.start())
    await site.refresh()

    async def on_phase(job) -> None:
        if job.phase == phase:
            if delay:
                await asyncio.sleep(delay)  # the job's phase keeps running on the hosts meanwhile
            print(f"killed in {phase}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    if delay:
        real = on_phase

        async def on_phase(job) -> None:  # noqa: F811 - run beside the phase, not before it
            if job.phase == phase:
                asyncio.get_running_loop().create_task(real(job))

    await site.approve(await site.plan(key, allow_non_iso=True), on_phase=on_phase)
    print("finished without being killed", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]) if len(sys.argv) > 4 else 0.0))
