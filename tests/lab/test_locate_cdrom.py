"""Locating a hot-plugged disk without a serial (``locate = "new-device"``), and CDs in owners' VMs
(insert-cd / eject-cd), on the embedded lab."""

from __future__ import annotations

import json
import os

import pytest

from backend import cdrom
from backend.config import parse_config
from backend.errors import ConfigError, JobFailed, NotApprovable, ReadOnlyError
from backend.hypervisor.libvirt import cdrom_drive, cdrom_xml, disk_xml, source_of
from backend.lab import Lab
from backend.site import Site

from ..conftest import isoadmin, sha256_file


@pytest.fixture
async def xen_lab(tmp_path):
    """A lab whose dom0-a hot-plugs without a serial, as a Xen PV disk shows its guest."""
    lab = Lab(tmp_path / "lab", locate={"dom0-a": "new-device"})
    lab.config = await lab.start()
    yield lab
    await lab.stop()


async def ready(config) -> Site:
    site = Site(config)
    await site.refresh()
    return site


async def test_new_device_import_lands_byte_identical(xen_lab):
    site = await ready(xen_lab.config)
    plan = await site.plan("alice/ipxe.iso", "dom0-a")
    assert "new block device" in next(s.command for s in plan.steps if s.phase == "locate")
    job = await site.approve(plan)
    upload = xen_lab.uploads_root / "alice" / "ipxe.iso"
    assert job.state == "done" and job.sha256 == sha256_file(upload)
    assert job.device == f"{xen_lab.dev_dir}/xvdb" and job.device_before == []
    final = xen_lab.volumes_dir("dom0-a") / f"{plan.final}.img"
    assert sha256_file(final, upload.stat().st_size) == job.sha256
    assert not list(xen_lab.sys_block.iterdir()) and not list(xen_lab.by_id.iterdir())  # detached
    await site.close()


async def test_new_device_with_two_candidates_fails_and_rolls_back(xen_lab):
    site = await ready(xen_lab.config)

    async def second_disk(job) -> None:
        if job.phase == "locate":  # another disk of exactly the same size appears beside the job's
            stray = xen_lab.sys_block / "xvdz"
            stray.mkdir()
            (stray / "size").write_text(str(job.alloc // 512))

    with pytest.raises(JobFailed) as failure:
        await site.approve(await site.plan("alice/ipxe.iso", "dom0-a"), on_phase=second_disk)
    assert failure.value.phase == "locate" and "2 new block devices" in failure.value.reason
    job = next(j for j in site.jobs() if j.id == failure.value.job_id)
    assert "detached" in job.rollback and "removed" in job.rollback
    assert [p.name for p in xen_lab.sys_block.iterdir()] == ["xvdz"]  # only the stray is left
    assert not list(xen_lab.volumes_dir("dom0-a").iterdir())
    await site.close()


async def test_new_device_with_no_candidate_fails_and_rolls_back(xen_lab):
    site = await ready(xen_lab.config)
    site.locate_timeout = 1.0

    async def wrong_size(job) -> None:
        if job.phase == "locate":  # the disk the guest sees is not the volume's size
            for entry in xen_lab.sys_block.iterdir():
                (entry / "size").write_text("8\n")

    with pytest.raises(JobFailed) as failure:
        await site.approve(await site.plan("alice/ipxe.iso", "dom0-a"), on_phase=wrong_size)
    assert failure.value.phase == "locate" and "no new block device of exactly" in failure.value.reason
    assert "xvdb (4096 B)" in failure.value.reason
    assert not list(xen_lab.sys_block.iterdir()) and not list(xen_lab.volumes_dir("dom0-a").iterdir())
    await site.close()


def test_locate_and_owner_pattern_config_errors():
    base = {"image_hosts": {"ih": {}}, "dom0s": {"d": {"storage": {"driver": "files"},
                                                       "hypervisor": {"driver": "lab"}}}}
    for key, value, text in (("locate", "by-magic", "locate: input should be 'serial' or 'new-device'"),
                             ("domain_owner_pattern", "^(x", "not a regular expression"),
                             ("domain_owner_pattern", "^x", "needs a group (?P<owner>")):
        doc = json.loads(json.dumps(base))
        doc["dom0s"]["d"][key] = value
        with pytest.raises(ConfigError, match=f".*{key}.*") as exc:
            parse_config(doc)
        assert text in exc.value.message and "\n" not in exc.value.message


def test_xen_dom0_disk_xml_has_xen_bus_xvd_target_and_no_serial():
    doc = {"image_hosts": {"ih": {"domains": {"xen1": "imagehost"}}},
           "dom0s": {"xen1": {"locate": "new-device", "storage": {"driver": "lvm", "vg": "xenvg"},
                              "hypervisor": {"driver": "libvirt", "uri": "xen+ssh://root@xen1/system",
                                             "bus": "xen"}}}}
    config = parse_config(doc)
    site = Site(config)
    hyper = site.hypervisors["xen1"]
    assert (hyper.prefix, hyper.bus, hyper.with_serial) == ("xvd", "xen", False)
    assert "--serial" not in hyper.describe_attach("imagehost", "/dev/xenvg/cdtmp_x", "isoa1")
    xml = disk_xml("/dev/xenvg/cdtmp_x", "xvdb", "", "xen")
    assert "<serial>" not in xml and "dev=\"xvdb\" bus=\"xen\"" in xml


def test_cdrom_xml_sets_and_clears_the_source():
    domain = ("<domain><devices><disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
              "<target dev='hdc' bus='ide'/><readonly/></disk></devices></domain>")
    drive = cdrom_drive(domain)
    inserted = cdrom_xml(drive, "/dev/vg/cd_alice_x")
    assert "dev=\"/dev/vg/cd_alice_x\"" in inserted and "type=\"block\"" in inserted and "hdc" in inserted
    assert source_of(cdrom_drive(f"<domain><devices>{inserted}</devices></domain>")) == "/dev/vg/cd_alice_x"
    ejected = cdrom_xml(cdrom_drive(f"<domain><devices>{inserted}</devices></domain>"), "")
    assert "<source" not in ejected and "<readonly" in ejected


async def test_insert_cd_only_into_the_owners_vm_and_never_deleted_while_inserted(lab, site):
    await site.refresh()
    job = await site.approve(await site.plan("alice/ipxe.iso", "dom0-a"))
    ref = f"dom0-a:{job.final}"
    path = str(lab.volumes_dir("dom0-a") / f"{job.final}.img")
    with pytest.raises(NotApprovable, match="belongs to bob"):
        await cdrom.insert_cd(site, ref, "bob-vm")
    with pytest.raises(NotApprovable, match="image host's domain"):
        await cdrom.insert_cd(site, ref, "imagehost")
    assert not (lab.vm_dir("dom0-a") / "bob-vm" / "cdrom").exists()
    await cdrom.insert_cd(site, ref, "alice-vm")
    assert os.readlink(lab.vm_dir("dom0-a") / "alice-vm" / "cdrom") == path
    assert await site.hypervisors["dom0-a"].cdrom("alice-vm") == path
    with pytest.raises(NotApprovable, match="alice-vm"):
        await site.delete_volume(ref)
    assert await cdrom.eject_cd(site, "dom0-a:alice-vm") == path
    assert not (lab.vm_dir("dom0-a") / "alice-vm" / "cdrom").exists()
    await site.delete_volume(ref)
    entries = [(e.action, e.outcome) for e in await site.audit.entries()]
    assert entries.count(("insert cd", "refused")) == 2
    assert ("insert cd", "done") in entries and ("eject cd", "done") in entries
    assert ("delete volume", "refused") in entries and ("delete volume", "done") in entries


async def test_domain_owner_from_the_config_pattern_and_unknown_owner(tmp_path, lab, site):
    await site.refresh()
    job = await site.approve(await site.plan("alice/ipxe.iso", "dom0-a"))
    (lab.vm_dir("dom0-a") / "alice-web").mkdir()  # a VM with no owner recorded
    with pytest.raises(NotApprovable, match="owner of domain alice-web .* not known"):
        await cdrom.insert_cd(site, job.final, "alice-web")
    text = lab.config_path.read_text().replace('[dom0s.dom0-a]\n', '[dom0s.dom0-a]\n'
                                               'domain_owner_pattern = "^(?P<owner>[a-z]+)-"\n')
    import tomllib
    patterned = Site(parse_config(tomllib.loads(text)), as_user="helpdesk9")
    await patterned.refresh()
    assert await cdrom.domain_owner(patterned, "dom0-a", "alice-web") == "alice"
    with pytest.raises(NotApprovable, match="helpdesk9 may not act for alice"):
        await cdrom.insert_cd(patterned, job.final, "alice-web")
    patterned.as_user = "alice"
    await cdrom.insert_cd(patterned, job.final, "alice-web")
    assert await site.hypervisors["dom0-a"].cdrom("alice-web") == str(lab.volumes_dir("dom0-a") / f"{job.final}.img")
    await patterned.close()


async def test_read_only_refuses_insert_and_eject(lab):
    site = Site(lab.config, read_only=True)
    await site.refresh()
    with pytest.raises(ReadOnlyError):
        await cdrom.insert_cd(site, "anything", "alice-vm")
    with pytest.raises(ReadOnlyError):
        await cdrom.eject_cd(site, "dom0-a:alice-vm")
    await site.close()


async def test_cli_insert_and_eject_cd(lab):
    config = lab.config_path
    assert (await isoadmin("approve", "alice/ipxe.iso", "--yes", config=config)).returncode == 0
    vol = json.loads((await isoadmin("volumes", "--json", config=config)).stdout)[0]["name"]
    refused = await isoadmin("insert-cd", vol, "bob-vm", config=config)
    assert refused.returncode == 6 and "belongs to bob" in refused.stderr and len(refused.stderr.splitlines()) == 1
    done = await isoadmin("insert-cd", vol, "alice-vm", config=config)
    assert done.returncode == 0 and "alice-vm" in done.stdout, done.stderr
    busy = await isoadmin("delete-volume", f"dom0-a:{vol}", "--yes", config=config)
    assert busy.returncode == 6 and "alice-vm" in busy.stderr
    out = await isoadmin("eject-cd", "dom0-a:alice-vm", config=config)
    assert out.returncode == 0 and "ejected" in out.stdout
    assert (await isoadmin("eject-cd", "alice-vm", config=config)).returncode == 2


async def test_read_only_cli_insert_and_eject_send_nothing_mutating(lab):
    from ..cli.test_readonly import assert_only_reads

    lab.command_log.unlink(missing_ok=True)
    for args in (("insert-cd", "dom0-a:cd_x", "alice-vm"), ("eject-cd", "dom0-a:alice-vm")):
        r = await isoadmin("--read-only", *args, config=lab.config_path)
        assert r.returncode == 4 and "read-only" in r.stderr, (args, r.stderr)
    assert_only_reads(lab.dir)
