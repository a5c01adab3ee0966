"""A CD volume into an owner's VM: ``insert-cd [DOM0:]VOLUME DOMAIN`` and ``eject-cd DOM0:DOMAIN``.

The hypervisor driver changes the domain's CD-ROM drive, in the running domain and in its persistent
definition (libvirt ``virDomainUpdateDeviceFlags`` with ``VIR_DOMAIN_AFFECT_LIVE | AFFECT_CONFIG``).

**Who owns a domain.** First the domain itself: an ``<owner>`` element of namespace
``urn:isoadmin:domain`` in its libvirt ``<metadata>`` (the lab: ``vm_dir/DOMAIN/owner``), which whoever
creates the VM for an owner writes. Else, if the dom0 sets ``domain_owner_pattern`` (a regular
expression with a group ``owner``, e.g. ``'^(?P<owner>[a-z0-9]+)-'``), the domain's name. Else the owner is
unknown and nothing is inserted. A CD volume goes only into a domain whose owner the volume's owner may act
for (the domain's owner itself, the members of its folder's group on the image host, ``[owners]``), and,
with ``--as USER``, only when USER may act for both. The image host's own domain never takes a CD.

Every insert and eject, and every refusal, is on the audit log. A volume in a CD-ROM drive counts as used
by that domain: ``delete-volume`` refuses it (the hypervisor's ``users()`` sees CD-ROM sources too).
"""

from __future__ import annotations

import re

from .errors import HostError, NotApprovable, NotFound, UsageError
from .models import Volume


def members(site, owner: str) -> set[str]:
    """Who may act for ``owner``: the owner, its folder's group members on the image host, ``[owners]``."""
    known = site.owners.get(owner)
    return set(known.members) if known else {owner} | set(site.config.owners.get(owner, ()))


async def domain_owner(site, dom0: str, domain: str) -> str:
    """The owner of ``domain`` on ``dom0`` (see the module docstring), "" when unknown.

    Raises:
        NotFound: no dom0 of that name. HostError: no such domain, or the dom0 is unreachable.
    """
    if dom0 not in site.config.dom0s:
        raise NotFound(f"no dom0 {dom0!r} (known: {', '.join(site.config.dom0s)})")
    owner = await site.hypervisors[dom0].domain_owner(domain)
    pattern = site.config.dom0s[dom0].domain_owner_pattern
    if not owner and pattern:
        m = re.search(pattern, domain)
        owner = m.group("owner") if m else ""
    return owner


def _image_host_domains(site, dom0: str) -> set[str]:
    return {ih.domains[dom0] for ih in site.config.image_hosts.values() if dom0 in ih.domains}


async def vm_domains(site, dom0: str) -> list[str]:
    """The domains of ``dom0`` that may take a CD: every domain but the image host's.

    Raises:
        HostError: the hypervisor is unreachable.
    """
    skip = _image_host_domains(site, dom0)
    return [d for d in await site.hypervisors[dom0].domains() if d not in skip]


async def holding(site, vol: Volume) -> list[str]:
    """The domains of ``vol``'s dom0 with ``vol`` in their CD-ROM drive.

    Raises:
        HostError: the hypervisor is unreachable.
    """
    hyper = site.hypervisors[vol.dom0]
    out = []
    for domain in await hyper.users(vol.path):
        try:
            if await hyper.cdrom(domain) == vol.path:
                out.append(domain)
        except (HostError, NotImplementedError):
            continue  # no CD-ROM drive: it uses the volume as a disk
    return out


async def _find_volume(site, ref: str) -> Volume:
    dom0, _, name = ref.rpartition(":")
    matches = [v for v in await site.all_volumes() if v.name == name and (not dom0 or v.dom0 == dom0)]
    if len(matches) != 1:
        raise NotFound(f"no single volume {ref!r}; `isoadmin volumes` lists them")
    return matches[0]


async def insert_cd(site, ref: str, domain: str) -> Volume:
    """Put final CD volume ``ref`` (``DOM0:NAME`` or a unique ``NAME``) into the CD-ROM drive of ``domain``
    on the volume's dom0 (live and persistent); audited, refusals too.

    Returns:
        the volume inserted.
    Raises:
        ReadOnlyError; NotFound (no such volume); NotApprovable (not a final isoadmin volume, the domain's
        owner unknown or not one the volume's owner may act for, the image host's domain); HostError (no
        such domain, no CD-ROM drive, the hypervisor refused).
    """
    await site.refuse_if_read_only("insert cd", f"{ref} -> {domain}")
    vol = await _find_volume(site, ref)
    target = f"{vol.dom0}:{vol.name} -> {domain}"
    try:
        if vol.namespace != "final" or not site.storage[vol.dom0].owns(vol) or not vol.sha256:
            raise NotApprovable(f"{vol.dom0}:{vol.name} is not a final CD volume isoadmin made")
        if domain in _image_host_domains(site, vol.dom0):
            raise NotApprovable(f"{domain} is the image host's domain, not an owner's VM")
        owner = await domain_owner(site, vol.dom0, domain)
        if not owner:
            raise NotApprovable(f"the owner of domain {domain} on {vol.dom0} is not known (no isoadmin owner in "
                                f"its libvirt metadata, and domain_owner_pattern does not name one)")
        if vol.owner not in members(site, owner):
            raise NotApprovable(f"{domain} belongs to {owner}; {vol.owner}'s CD cannot go into it")
        if not (site.may_act_for(vol.owner) and site.may_act_for(owner)):
            raise NotApprovable(f"{site.as_user} may not act for {owner if site.may_act_for(vol.owner) else vol.owner}")
    except NotApprovable as exc:
        await site.audit_refusal("insert cd", target, exc.message, vol.dom0)
        raise
    await site.hypervisors[vol.dom0].insert_cd(domain, vol.path)
    await site.audit.record("insert cd", target, "done", f"{vol.owner}/{vol.upload} sha256 {vol.sha256}", vol.dom0)
    return vol


async def eject_cd(site, ref: str) -> str:
    """Empty the CD-ROM drive of domain ``ref`` (``DOM0:DOMAIN``), live and persistent; audited.

    Returns:
        the source path the drive held ("" if it was empty).
    Raises:
        UsageError (not ``DOM0:DOMAIN``), ReadOnlyError, NotFound (no such dom0), NotApprovable (``--as``
        a user who may not act for the domain's owner), HostError.
    """
    dom0, sep, domain = ref.partition(":")
    if not sep or not dom0 or not domain:
        raise UsageError(f"eject-cd: expected DOM0:DOMAIN, got {ref!r}")
    await site.refuse_if_read_only("eject cd", ref)
    owner = await domain_owner(site, dom0, domain)
    if site.as_user is not None and not (owner and site.may_act_for(owner)):
        exc = NotApprovable(f"{site.as_user} may not act for the owner of {domain} ({owner or 'unknown'})")
        await site.audit_refusal("eject cd", ref, exc.message, dom0)
        raise exc
    before = await site.hypervisors[dom0].eject_cd(domain)
    await site.audit.record("eject cd", ref, "done", f"was {before or 'empty'}", dom0)
    return before


__all__ = ["domain_owner", "eject_cd", "holding", "insert_cd", "members", "vm_domains"]
