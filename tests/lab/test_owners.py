"""Owners: who may act for them comes from the image host's groups (read in the inventory round trip)
and the config; ``--as USER`` shows only those owners."""

from __future__ import annotations

import dataclasses
import json

from backend.imagehost import parse_listing
from backend.site import Site

from ..conftest import isoadmin


def test_listing_carries_groups_and_folder_groups():
    data = (b"1800000000.5\ngroup cd-alice:x:2001:alice,helpdesk1\ngroup staff:x:50:\n--\n"
            b"d 4096 1799999000.0 12 2 1 cd-alice alice\0\0f 10 1799999000.0 13 1 2 cd-alice alice/a b.iso\0\0")
    listing = parse_listing(data)
    assert listing.now == 1800000000.5
    assert listing.groups == {"cd-alice": {"alice", "helpdesk1"}, "staff": set()}
    assert [(e.kind, e.group, e.rel) for e in listing.entries] == [
        ("directory", "cd-alice", "alice"), ("file", "cd-alice", "alice/a b.iso")]


async def test_as_user_sees_only_the_owners_it_may_act_for(lab):
    config = dataclasses.replace(lab.config, owners={"alice": ("helpdesk1",), "bob": ("helpdesk1", "helpdesk2")})
    full = Site(config)
    snap = await full.refresh()
    assert set(snap.owners) == {"alice", "bob", "carol"}
    alice = snap.owners["alice"]
    assert {"alice", "helpdesk1"} <= alice.members and alice.group  # the folder's group, from the host
    await full.approve(await full.plan("alice/ipxe.iso"))
    await full.approve(await full.plan("carol/memtest86+ia32.iso"))
    await full.close()

    helpdesk = Site(config, as_user="helpdesk2")
    snap = await helpdesk.refresh()
    assert set(snap.owners) == {"bob"}
    assert {u.owner for u in snap.uploads} == {"bob"} and snap.volumes == []
    carol = Site(config, as_user="carol")
    snap = await carol.refresh()
    assert {u.owner for u in snap.uploads} == {"carol"} and [v.owner for v in snap.volumes] == ["carol"]
    for site in (helpdesk, carol):
        await site.close()


async def test_cli_owners_and_as(lab):
    r = await isoadmin("owners", "--json", config=lab.config_path)
    assert r.returncode == 0, r.stderr
    rows = {o["name"]: o for o in json.loads(r.stdout)}
    assert set(rows) == {"alice", "bob", "carol"} and rows["alice"]["pending"] == 3 and rows["alice"]["cds"] == 0
    mine = json.loads((await isoadmin("--as", "bob", "uploads", "--json", config=lab.config_path)).stdout)
    assert {u["owner"] for u in mine} == {"bob"}
    nope = await isoadmin("--as", "bob", "approve", "alice/ipxe.iso", "--yes", config=lab.config_path)
    assert nope.returncode == 5 and "no upload" in nope.stderr
