"""Quotas on the lab: refused with numbers before anything is created, an audited override, and concurrent
approvals that cannot together exceed the quota."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from backend.errors import JobFailed, QuotaExceeded
from backend.site import Site


MiB = 1 << 20


def with_quota(config, default: int, **owners: int):
    return dataclasses.replace(config, quota=default, quotas=owners)


async def test_quota_refuses_before_creating_and_can_be_overridden(lab):
    # alice has 8 MiB: ipxe.iso (4 MiB allocated) fits, memtest86+x64.iso (8 MiB) then does not
    site = Site(with_quota(lab.config, 0, alice=8 * MiB))
    await site.refresh()
    await site.approve(await site.plan("alice/ipxe.iso"))
    await site.refresh()
    site_log = []
    site.listeners.append(site_log.append)
    with pytest.raises(QuotaExceeded, match=r"alice would use 12\.0 MiB of a 8\.0 MiB quota .*CDs 4\.0 MiB"):
        await site.plan("alice/memtest86+x64.iso")
    assert not any(r.mutating for r in site_log)
    assert [v.name for v in (await site.refresh()).volumes if v.namespace == "staging"] == []
    plan = await site.plan("alice/memtest86+x64.iso", override_quota=True)
    assert plan.warnings and plan.warnings[0].startswith("quota override")
    job = await site.approve(plan)
    assert job.state == "done"
    audit = await site.audit.entries()
    assert any(e.action == "quota override" and e.target == "alice/memtest86+x64.iso" for e in audit)
    assert any(e.action == "approve" and e.outcome == "refused" and "quota" in e.reason for e in audit)
    # other owners follow the default (none here)
    assert (await site.approve(await site.plan("bob/grub-rescue-cdrom.iso"))).state == "done"
    await site.close()


async def test_concurrent_approvals_cannot_together_exceed_the_quota(lab):
    site = Site(with_quota(lab.config, 8 * MiB))  # every owner: 8 MiB
    await site.refresh()
    # each fits alone (4 MiB each after rounding), not with the 8 MiB one: plan all three, run them at once
    plans = [await site.plan(k) for k in ("alice/ipxe.iso", "alice/tools.iso", "alice/memtest86+x64.iso")]
    results = await asyncio.gather(*(site.approve(p) for p in plans), return_exceptions=True)
    done = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, JobFailed)]
    assert len(done) + len(failed) == 3 and failed and all("quota" in f.reason for f in failed)
    snap = await site.refresh()
    used = sum(v.size for v in snap.volumes if v.owner == "alice")
    assert used <= 8 * MiB and not [v for v in snap.volumes if v.namespace == "staging"]
    await site.close()
