"""What a host has: its sha256 program, its ``dd``, its downloaders, and whether its tools are GNU or
BusyBox. Detected once per host.

Nothing is installed on the hosts, so the scripts use what each one has. One command asks
(``command -v``, ``dd --version``, ``curl --version``); the answer is kept for the life of the
:class:`~backend.ssh.Host` object (a console restarted asks again).

Whether a host needs the *portable* forms of the scripts that read owners' files (``backend/sh/*-portable.sh``:
the ISO headers, an uploaded kernel's send, the in-use check) costs no command of its own: the uploads listing
tells (:func:`set_portable`, from its ``listing portable`` line: the host's ``find`` has no ``-printf`` or its
``dd`` no ``iflag=nofollow``, as BusyBox's), and the lab hypervisor learns it from a ``find -printf`` the dom0
refuses. Hosts never seen to need them get the GNU forms, byte for byte those of GNU hosts.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from .commands import script
from .errors import HostError
from .hostscripts import load
from .ssh import Host

_PROBE = load("hosttools-probe.sh")


@dataclass(frozen=True)
class Tools:
    """An image host's tools.

    Attributes:
        sha: ``openssl`` (``openssl dgst -sha256 -r``), ``sha256sum``, or ``none``.
        dd: ``gnu`` (coreutils: ``iflag=nocache``, ``count_bytes``), ``busybox`` or ``other``.
        curl_protocols: the schemes its ``curl`` speaks (``http``, ``https``, ``ftp``, ``sftp`` …);
            empty without curl. wget: ``gnu``, ``busybox`` (a ``wget`` that is BusyBox's),
            ``busybox-applet`` (only ``busybox wget``), or empty.
    """

    sha: str = "sha256sum"
    dd: str = "gnu"
    curl_protocols: frozenset[str] = field(default_factory=frozenset)
    wget: str = ""

    @property
    def downloader(self) -> str:
        """How downloads run on this host: ``curl``, ``gnu-wget`` (GNU Wget), ``busybox-wget`` (a ``wget``
        that is BusyBox's) or ``busybox`` (``busybox wget``); ``""`` when it has none of them."""
        if self.curl_protocols:
            return "curl"
        return {"gnu": "gnu-wget", "busybox": "busybox-wget", "busybox-applet": "busybox"}.get(self.wget, "")

    def schemes(self) -> frozenset[str]:
        """The URL schemes this host can download (lower case)."""
        if self.curl_protocols:
            return self.curl_protocols & {"http", "https", "ftp", "sftp"}
        if self.wget:
            return frozenset({"http", "https", "ftp"})
        return frozenset()


def parse_tools(text: str) -> Tools:
    """Parse the probe's output (``WORD VALUE`` lines); unknown lines are ignored."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        word, _, rest = line.partition(" ")
        values[word] = rest.strip()
    protocols = frozenset(p.lower() for p in values["curl"].split()) if "curl" in values else frozenset()
    if "curl" in values and not protocols:
        protocols = frozenset({"http", "https", "ftp"})
    return Tools(sha=values.get("sha", "sha256sum"), dd=values.get("dd", "other"),
                 curl_protocols=protocols, wget=values.get("wget", ""))


_known: "weakref.WeakKeyDictionary[Host, Tools]" = weakref.WeakKeyDictionary()


async def tools(host: Host) -> Tools:
    """The tools of ``host``, asked once (one read-only command) and then remembered.

    Raises:
        HostError: the host is unreachable, or has neither ``openssl`` nor ``sha256sum``.
    """
    found = _known.get(host)
    if found is None:
        result = await host.run(script(_PROBE, "isoadmin-tools"), check=False)
        found = parse_tools(result.stdout.decode("utf-8", "replace"))
        if found.sha == "none":
            raise HostError(host.name, "neither openssl nor sha256sum is installed")
        _known[host] = found
    return found


_portable: "weakref.WeakSet[Host]" = weakref.WeakSet()


def set_portable(host: Host, portable: bool) -> None:
    """Record whether ``host`` needs the scripts' portable forms (its listing came in the portable form: its
    ``find`` has no ``-printf`` or its ``dd`` no ``iflag=nofollow``; BusyBox), for the life of the Host object."""
    if portable:
        _portable.add(host)
    else:
        _portable.discard(host)


def is_portable(host: Host) -> bool:
    """True when ``host`` was seen to need the scripts' portable forms (:func:`set_portable`)."""
    return host in _portable
