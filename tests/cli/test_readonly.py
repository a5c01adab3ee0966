"""Read-only really means read-only: the whole CLI and TUI surface in read-only mode, checked against the
log of every command the lab's hosts received (kept by the hosts, not by the console)."""

from __future__ import annotations

import json
import re

from backend.site import Site
from tui.app import IsoadminApp

from ..conftest import isoadmin
from ..lab.conftest import until

# What a host may receive from a read-only console: listings and header reads, nothing else.
READ_ONLY = [
    re.compile(r"(?s)^sh -c '\nledger_dump\(\) \{.*\nfind .*isoadmin-list "),       # uploads listing + ledger
    re.compile(r"(?s)^sh -c '\nledger_dump\(\) \{.*\nledger_dump .*' isoadmin-ledger "),  # the ledger
    re.compile(r"(?s)^sh -c '\ncd -- [^\n]*\nshift\nfor f; .*' isoadmin-ledger-fetch "),  # its older records
    re.compile(r"(?s)^sh -c '\ncd -- .*isoadmin-audit-read "),                       # the audit log (ledger)
    re.compile(r"(?s)^sh -c '\nexport LC_ALL=C\nmark=\$1; shift\nfor p in .*isoadmin-headers "),  # ISO headers
    re.compile(r"(?s)^sh -c '\ndir=\$1\ncd -- .*isoadmin-volumes "),                   # files storage listing
    re.compile(r"(?s)^sh -c '\nfind /proc/.*isoadmin-inuse "),                        # is an upload open?
    re.compile(r"^find \S+ -maxdepth 1 -name 'virtio-\*' -printf '%f %l\\n'$"),    # lab hot-plug listing
    re.compile(r"^find \S+ -maxdepth 1 -name 'virtio-\*' -printf '%l\\n'$"),       # lab: who uses a volume
    re.compile(r"^find \S+ -maxdepth 1 -name 'xvd\*' -printf '%l\\n'$"),           # lab: disks without a serial
    re.compile(r"(?s)^sh -c '\nsha256\(\) \{[^}]*\}\n\ndst=\$1 size=\$2\ndd .*isoadmin-sha "),  # verify reads a volume
    re.compile(r"(?s)^sh -c '\nroot=\$1\n\[ -d .*' isoadmin-kernel-sets "),         # kernel sets listing
    re.compile(r"(?s)^sh -c '\ncache=\$1\nnow=.*' isoadmin-cache-list "),          # the downloads cache
]


def received(lab_dir) -> list[dict]:
    return [json.loads(line) for line in (lab_dir / "hosts.log").read_text().splitlines()]


# The one write a read-only console makes: its refused attempts, appended to the ledger's audit log.
AUDIT_APPEND = re.compile(r"(?s)^sh -c '.*' isoadmin-audit \S+ (.*)$")


def assert_only_reads(lab_dir) -> None:
    commands = received(lab_dir)
    assert commands, "the hosts received nothing at all"
    bad = []
    for c in commands:
        text = c["command"] or ""
        if any(p.match(text) for p in READ_ONLY):
            continue
        m = AUDIT_APPEND.match(text)
        if m and '"outcome":"refused"' in m.group(1) and '"read_only":true' in m.group(1):
            continue
        bad.append(c)
    assert bad == [], bad


async def test_read_only_cli_surface_sends_no_mutating_command(lab):
    lab.command_log.unlink(missing_ok=True)
    runs = [
        (("uploads", "--json"), 0), (("volumes", "--json"), 0), (("jobs", "--json"), 0), (("hosts",), 0),
        (("check",), 0), (("repair",), 0), (("audit",), 0),
        (("approve", "alice/ipxe.iso", "--yes"), 4), (("reject", "alice/ipxe.iso", "--reason", "x"), 4),
        (("repair", "--apply"), 4), (("gc",), 0), (("gc", "--apply"), 4), (("catalog", "--csv"), 0),
        (("verify", "dom0-a:none"), 5), (("cache", "--json"), 0),
        (("download-url", "http://127.0.0.1:9/x.iso", "--owner", "alice"), 4),
    ]
    for args, code in runs:
        r = await isoadmin("--read-only", *args, config=lab.config_path)
        assert r.returncode == code, (args, r.returncode, r.stderr)
    assert_only_reads(lab.dir)
    volumes = [p for d in ("dom0-a", "dom0-b") for p in lab.volumes_dir(d).iterdir()]
    assert volumes == []
    audit = json.loads((await isoadmin("--read-only", "audit", "--json", config=lab.config_path)).stdout)
    refused = sorted({e["action"] for e in audit if e["outcome"] == "refused" and e["read_only"]})
    assert refused == ["approve", "download-url", "gc", "reject", "repair"]  # every refusal is on the site's audit log


async def settled(pilot, app) -> None:
    """Wait until what the last keys or actions started is over: the screen has handled the messages queued
    (``pause(0)`` waits for that, no time), every worker running then (a refresh, a check, a refused action's
    audit entry) has finished, and the screen has handled what they posted."""
    await pilot.pause(0)
    await app.workers.wait_for_complete()
    await pilot.pause(0)


async def test_read_only_tui_surface_sends_no_mutating_command(lab):
    lab.command_log.unlink(missing_ok=True)
    site = Site(lab.config, read_only=True)
    app = IsoadminApp(site, lab=lab, read_only=True, refresh_seconds=0.2)
    async with app.run_test(size=(140, 45)) as pilot:
        await until(lambda: app.refreshes >= 2, "the console's first two refreshes")
        for keys in (["a"], ["r"], ["enter"], ["escape"], ["slash", "a", "escape"], ["ctrl+r"], ["2"], ["3"],
                     ["enter"], ["escape"], ["4"], ["c"], ["R"], ["5"], ["1"], ["question_mark"], ["escape"]):
            await pilot.press(*keys)
            await settled(pilot, app)
        app.screen.action_approve()
        app.screen.action_reject()
        await pilot.press("4")
        await settled(pilot, app)
        app.screen.action_repair()
        await settled(pilot, app)
    await site.close()
    assert_only_reads(lab.dir)
    assert [p for d in ("dom0-a", "dom0-b") for p in lab.volumes_dir(d).iterdir()] == []
