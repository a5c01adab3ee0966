"""Regenerate the README's screenshots (docs/*.svg) from a fresh lab: ``python -m tests.tui.make_screenshots``.

Not a test; it drives the real console on a throwaway lab with Textual's Pilot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from pathlib import Path

from backend.lab import Lab
from backend.site import Site
from tui.app import IsoadminApp

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"


async def shoot(size: tuple[int, int], suffix: str) -> None:
    """Every README screenshot at ``size`` (file names end in ``suffix``)."""
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp) / "lab")
        config = await lab.start()
        # quotas so the Owners screen has bars to show
        config = dataclasses.replace(config, quota=16 << 20, quotas={"alice": 32 << 20})
        site = Site(config, approver="admin@console")
        app = IsoadminApp(site, lab=lab)
        async with app.run_test(size=size) as pilot:
            while not app.refreshes:
                await pilot.pause(0.05)
            app.save_screenshot(f"screenshot{suffix}.svg", str(DOCS))
            await pilot.press("a")
            while type(app.screen).__name__ != "ConfirmApprove":
                await pilot.pause(0.05)
            app.save_screenshot(f"screenshot-approve{suffix}.svg", str(DOCS))
            await pilot.press("y")
            while not any(j.state == "done" for j in app.jobs.values()):
                await pilot.pause(0.05)
            await pilot.press("2")
            await pilot.pause(0.3)
            app.save_screenshot(f"screenshot-jobs{suffix}.svg", str(DOCS))
            await pilot.press("6")
            await pilot.pause(0.3)
            app.save_screenshot(f"screenshot-owners{suffix}.svg", str(DOCS))
            await pilot.press("7")
            await pilot.pause(0.3)
            app.save_screenshot(f"screenshot-hosts{suffix}.svg", str(DOCS))
        await site.close()
        await lab.stop()


async def main() -> None:
    await shoot((120, 30), "")
    await shoot((80, 24), "-80x24")


if __name__ == "__main__":
    asyncio.run(main())
