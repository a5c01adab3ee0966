"""Screenshots of every screen and modal at 80×24 and 160×45 (pytest-textual-snapshot), on a served lab with
fixed data: the seeded uploads an hour old by a fixed clock, no upload being written, fixed job ids. (The
details modals are left to the Pilot tests: they show each file's inode, which differs from run to run.) A change of layout
shows up as a failed comparison with a report of the difference; ``pytest --snapshot-update`` accepts it.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import pytest

from backend.config import load_config
from backend.site import Site
from bench.labserver import LabProcess
from screens import modals, uploads
from textual.widgets import Input
from tui.app import IsoadminApp

SIZES = {"80x24": (80, 24), "160x45": (160, 45)}


#: The lab's folder is fixed: its paths appear on screen (the plan's commands).
LAB = Path("/tmp/isoadmin-snapshot-lab")
#: The screens' clock, fixed: dates and ages appear on screen (2026-12-01 12:00:00 UTC).
NOW = 1_796_126_400.0


class Clock:
    """The ``time`` module as the screens use it, with :data:`NOW` for the current time and UTC for the
    local time zone."""

    localtime = staticmethod(time.gmtime)

    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    def time() -> float:
        return NOW


@pytest.fixture(scope="module")
def served():
    """A seeded lab served by its own process; every upload settled an hour ago."""
    shutil.rmtree(LAB, ignore_errors=True)
    with LabProcess(LAB / "lab", seeded=True) as server:
        root = server.layout.uploads_root
        (root / "carol" / "incoming.iso").unlink()  # the upload being written: its size would differ
        past = NOW - 3600
        for path in root.glob("*/*"):
            os.utime(path, (past, past), follow_symlinks=False)
        yield server


@pytest.fixture
def app(served, monkeypatch):
    """A console on the served lab (its own state dir), job ids fixed (they appear in the plan)."""
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=0xABCDEF))
    for module in (modals, uploads):
        monkeypatch.setattr(module, "time", Clock())
    site = Site(load_config(served.console_config("snap")), approver="admin@console")
    console = IsoadminApp(site, refresh_seconds=3600)
    yield console


def prepare(*keys: str, wait=None):
    """A ``run_before``: wait for the first refresh, press ``keys``, wait for ``wait(app)`` if given."""
    async def run(pilot) -> None:
        app = pilot.app
        app.sub_title = "site.toml"
        for _ in range(400):
            if app.refreshes:
                break
            await pilot.pause(0.05)
        for key in keys:
            await pilot.press(key)
            await pilot.pause(0.2)
        for _ in range(200):
            if wait is None or wait(app):
                break
            await pilot.pause(0.05)
        for box in app.screen.query(Input):
            box.cursor_blink = False  # a blinking cursor would be in the picture or not by chance
        await pilot.pause(0.3)
    return run


SCREENS = {
    "uploads": prepare(),
    "jobs": prepare("2"),
    "volumes": prepare("3"),
    "health": prepare("4", wait=lambda app: getattr(app.screen, "findings", None) is not None),
    "audit": prepare("5"),
    "owners": prepare("6"),
    "hosts": prepare("7"),
    "approve": prepare("down", "a", wait=lambda app: type(app.screen).__name__ == "ConfirmApprove"),
    "non-iso": prepare(*["down"] * 4, "a", wait=lambda app: type(app.screen).__name__ == "ConfirmNonIso"),
    "reject": prepare("r", wait=lambda app: type(app.screen).__name__ == "RejectReason"),
    "download": prepare("w", wait=lambda app: type(app.screen).__name__ == "DownloadUrl"),
    "help": prepare("question_mark"),
    "view-as": prepare("u"),
    "messages": prepare("n"),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("view", SCREENS)
def test_screen(snap_compare, app, view, size):
    assert snap_compare(app, terminal_size=SIZES[size], run_before=SCREENS[view])
