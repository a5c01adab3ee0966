"""Uploads from a URL: the image host downloads an image into an owner's folder, through a cache.

The console never downloads anything itself. It checks the URL (scheme, host allowed by
``[image_hosts.NAME] download_hosts``), asks the server for its headers once per redirect with the host's
downloader (never following a redirect itself: each ``Location`` is checked like the URL was), and then runs
one long command on the image host (:data:`DOWNLOAD_SCRIPT`, under ``setsid``) that:

1. downloads into the cache's private ``tmp/`` folder (root's), cut off when the server stalls, sends more
   than it announced, or less, or nothing;
2. hashes the bytes (``openssl dgst`` or ``sha256sum``), checks ``--sha256``, stores them in the cache as
   ``objects/SHA256`` with ``objects/SHA256.meta`` (the URL, credentials removed), ``objects/SHA256.owners``
   (who asked for it) and ``keys/KEY`` (KEY = sha256 of URL, ETag, Last-Modified, size, and of the
   credentials when there are any);
3. writes the image into ``UPLOADS_ROOT/.isoadmin/JOB.part``: a folder of the uploads root that only root
   may enter (an owner's folder is never written in by root through a path the owner controls), gives it
   to the folder's owner, and moves it into the owner's folder with one ``rename`` that never follows a
   link and never replaces anything (see docs/security.md).

A later request served from the cache needs the URL itself to answer first, with the same validators:
a ``--sha256`` alone never serves a file. On any failure the temporary files are removed: nothing
half-written is ever left in an owner's folder.

Credentials in a URL (``https://user:password@host/…``) are never stored or shown: the URL is kept as
``https://user:***@host/…`` everywhere (job record, audit log, cache, messages) and the password reaches the
downloader on its standard input, into a 0600 file only root can read, never on a command line (``ps``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import ipaddress
import json
import os
import re
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncssh

from . import hosttools
from .commands import Command, script
from .errors import IsoadminError
from .hostscripts import load
from .ssh import Host
from .state import JobRecord

#: The schemes a download may use (and a redirect may lead to).
SCHEMES = ("http", "https", "ftp", "sftp")
#: Suffix of the row a running download shows in its owner's folder (``.NAME`` + this; :func:`part_name`).
PART_SUFFIX = ".isoadmin-part"
MAX_REDIRECTS = 5


class UrlRefused(IsoadminError):
    """The URL (or a redirect) is not allowed: its scheme, its host, its form."""

    title = "URL refused"
    exit_code = 6


class DownloadFailed(IsoadminError):
    """The download did not complete (stall, length lie, server error, checksum mismatch); nothing was kept."""

    title = "Download failed"
    exit_code = 13


def part_name(name: str) -> str:
    """The name of ``name``'s row while it downloads (``.NAME.isoadmin-part``): the Uploads list shows a
    running download under it, from the ledger (the bytes themselves are in :data:`WORK_DIR`, not in the
    owner's folder)."""
    return f".{name}{PART_SUFFIX}"


@dataclass(frozen=True)
class Secret:
    """Credentials taken out of a URL (``user:password@``), percent-decoded. Never stored, logged or shown:
    :func:`split_url` leaves ``user:***@`` in their place, and they reach the downloader on its stdin."""

    user: str
    password: str

    def digest(self) -> str:
        """sha256 (hex) of the credentials: part of a cache key, so only the same credentials share an entry."""
        return hashlib.sha256(f"{self.user}\0{self.password}".encode()).hexdigest()

    def tool_config(self, tool: str) -> bytes:
        """The downloader's own configuration text that carries the credentials: a ``curl -K`` file
        (``user = "USER:PASSWORD"``, curl's quoting) or a GNU Wget ``--config`` file (``user =`` and
        ``password =`` lines, wgetrc(5)).

        Raises:
            UrlRefused: the tool cannot take credentials off its command line (BusyBox wget), or they hold
                what its file format cannot carry.
        """
        if tool == "curl":
            value = f"{self.user}:{self.password}".replace("\\", "\\\\").replace('"', '\\"')
            return f'user = "{value}"\n'.encode()
        if tool == "gnu-wget":
            if any(v != v.strip() or v.startswith("#") for v in (self.user, self.password)):
                raise UrlRefused("URL refused: GNU Wget cannot take a user name or password that starts or ends "
                                 "with a blank or starts with #")
            return f"user = {self.user}\npassword = {self.password}\n".encode()
        raise UrlRefused("URL refused: this image host downloads with BusyBox wget, which takes a user name and "
                         "password only on its command line, where every user of the host can read them (ps): "
                         "not downloaded")


def split_url(url: str) -> tuple[str, Secret | None]:
    """Take the credentials out of a URL.

    Args:
        url: as given (``https://user:password@host/path``).
    Returns:
        (the URL with ``user:***@`` in place of the credentials, or unchanged when it has none; the
        credentials, or None). The first is what is stored and shown; it is also what is downloaded (the
        ``***`` is removed by :func:`tool_url`).
    Raises:
        UrlRefused: the credentials hold control characters once percent-decoded.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise UrlRefused(f"URL refused: {exc}") from None
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    secret = Secret(urllib.parse.unquote(user), urllib.parse.unquote(password))
    if any(ord(c) < 0x20 or c == "\x7f" for c in secret.user + secret.password):
        raise UrlRefused("URL refused: its user name or password holds control characters")
    shown = f"{user}:***@{hostport}" if colon else f"{user}@{hostport}"
    return urllib.parse.urlunsplit(parts._replace(netloc=shown)), (secret if colon or user else None)


def shown_url(url: str) -> str:
    """``url`` as it may be shown or stored: credentials as ``user:***@`` (:func:`split_url`); never raises
    (a URL that cannot be parsed has everything between ``//`` and ``@`` replaced)."""
    try:
        return split_url(url)[0]
    except UrlRefused:
        return re.sub(r"//[^/?#]*@", "//***@", url)


def tool_url(url: str) -> str:
    """The URL as the downloader gets it: without any ``user:***@`` (the credentials go in its config file)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _is_address_pattern(pattern: str) -> bool:
    """True when a ``download_hosts`` pattern names addresses: an IPv4/IPv6 address or network
    (``127.0.0.1``, ``10.1.0.0/16``, ``::1``) or an IPv4 glob (``127.0.0.*``)."""
    try:
        ipaddress.ip_network(pattern, strict=False)
        return True
    except ValueError:
        return re.fullmatch(r"[0-9.*?\[\]!-]+", pattern) is not None and any(c.isdigit() for c in pattern)


def host_allowed(host: str, allowed_hosts: tuple[str, ...]) -> bool:
    """Whether ``download_hosts`` allows ``host`` (lower case, an address or a name).

    An address is allowed by an address pattern that matches it (an address, a network such as
    ``127.0.0.0/8``, or an IPv4 glob such as ``127.0.0.*``); a name only by a name pattern (``fnmatch``:
    ``*.example.org``). So ``127.0.0.*`` never allows the name ``127.0.0.1.attacker.example``.
    """
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    for pattern in (p.lower() for p in allowed_hosts):
        if _is_address_pattern(pattern):
            if address is None:
                continue
            try:
                if address in ipaddress.ip_network(pattern, strict=False):
                    return True
            except ValueError:
                if fnmatch.fnmatchcase(str(address), pattern):
                    return True
        elif address is None and fnmatch.fnmatchcase(host, pattern):
            return True
    return False


def check_url(url: str, allowed_hosts: tuple[str, ...], schemes: frozenset[str] | None = None) -> str:
    """Check a URL before anything is sent anywhere.

    Args:
        url: as given by a person, or a server's ``Location`` (credentials, if any, as ``user:***@``).
        allowed_hosts: ``download_hosts`` patterns (:func:`host_allowed`); empty allows none.
        schemes: the schemes the image host's tools speak (default: :data:`SCHEMES`).
    Returns:
        the URL (unchanged).
    Raises:
        UrlRefused: a scheme other than http, https, ftp, sftp (``file://`` …), a host not allowed, control
            characters or blanks, no host.
    """
    if any(ord(c) < 0x21 or c == "\x7f" for c in url) or len(url) > 4096:
        raise UrlRefused(f"URL refused: it holds blanks or control characters: {url!r}")
    try:
        parts = urllib.parse.urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 — raises ValueError on a bad port
    except ValueError as exc:
        raise UrlRefused(f"URL refused: {exc}: {url!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UrlRefused(f"URL refused: scheme {scheme or 'none'!r} is not one of {', '.join(SCHEMES)}: {url!r}")
    if schemes is not None and scheme not in schemes:
        raise UrlRefused(f"URL refused: the image host cannot download {scheme}:// (it has no tool for it)")
    if not host:
        raise UrlRefused(f"URL refused: no host in {url!r}")
    if not host_allowed(host, allowed_hosts):
        try:
            what = f"address {ipaddress.ip_address(host)}"
        except ValueError:
            what = f"host {host}"
        raise UrlRefused(f"URL refused: {what} is not in this image host's download_hosts "
                         f"({', '.join(allowed_hosts) or 'none: downloads are off'})")
    return url


#: Most bytes a file name may have: the longest name a Linux file system takes (255) less the room the
#: download's row name needs (:func:`part_name`).
MAX_NAME_BYTES = 255 - len(PART_SUFFIX) - 1


def file_name(url: str, name: str | None) -> str:
    """The upload's file name: ``name``, or the URL's last path segment (percent-decoded).

    Raises:
        UrlRefused: no usable name (empty, ``.``/``..``, a ``/``, a leading dot, control characters, over
            :data:`MAX_NAME_BYTES` bytes).
    """
    if name is None:
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    if (not name or name in (".", "..") or "/" in name or name.startswith(".") or "\0" in name
            or any(ord(c) < 0x20 or c == "\x7f" for c in name)):
        raise UrlRefused(f"no usable file name {name!r}: give one with --name")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise UrlRefused(f"file name too long ({len(name.encode('utf-8', 'surrogateescape'))} bytes; at most "
                         f"{MAX_NAME_BYTES}): give a shorter one with --name")
    return name


def cache_key(url: str, etag: str, last_modified: str, size: int | None, secret: Secret | None = None) -> str:
    """The cache key of a download: sha256 of URL (as stored: ``user:***@``), ETag, Last-Modified, size
    and, when the URL carried credentials, their digest (hex). A request is served from the cache only when
    its own probe gives the same key."""
    parts = [url, etag, last_modified, str(size)] + ([secret.digest()] if secret else [])
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass
class Probe:
    """What the server said about a URL (after the redirects, each one checked).

    Attributes:
        url: the final URL. size: the announced length in bytes, or None. etag, last_modified: as sent
        (or ""). redirects: how many were followed.
    """

    url: str
    size: int | None
    etag: str = ""
    last_modified: str = ""
    redirects: int = 0


_HEAD = load("download-head.sh")


async def probe(host: Host, url: str, allowed_hosts: tuple[str, ...], timeout: float,
                secret: Secret | None = None) -> Probe | None:
    """Ask the server for its headers (on the image host: ``curl -I``, ``wget --spider -S``, or ``busybox
    wget --spider -S``, whichever :func:`~backend.hosttools.tools` found), following redirects here, each
    ``Location`` checked by :func:`check_url` before it is asked. Credentials go to the tool on its stdin.

    Args:
        url: checked, credentials shown as ``user:***@`` (:func:`split_url`). secret: the credentials, or None.
    Returns:
        what the server said, or None for an ``ftp://`` URL on a host without curl (wget tells no length
        for it and cannot be asked without downloading): such a download is never served from the cache.
    Raises:
        UrlRefused: a redirect leads to a scheme or host not allowed. DownloadFailed: the server answered
        with an error, did not answer in ``timeout`` seconds, or redirected too often.
    """
    tools = await hosttools.tools(host)
    config = secret.tool_config(tools.downloader) if secret else b""
    origin = same_origin(url)
    redirects = 0
    while True:
        check_url(url, allowed_hosts, tools.schemes())
        if secret and same_origin(url) != origin:
            secret, config = None, b""  # credentials never follow a redirect to another server
        if tools.downloader != "curl" and url.lower().startswith("ftp:"):
            return None  # FTP has no redirects; wget's look at it tells no length
        result = await host.run(script(_HEAD, "isoadmin-head", tool_url(url), str(int(max(1, timeout))),
                                       tools.downloader, "1" if secret else ""),
                                input=config, check=False, timeout=timeout + 30)
        responses = _responses(result.stdout.decode("latin-1"))
        # curl was told not to follow (its last response is the server's answer); wget may have followed: its
        # first response is the one this URL gave
        status, headers = (responses[-1] if tools.downloader == "curl" else responses[0]) if responses else (None, {})
        if result.exit_status != 0 and status is None:
            raise DownloadFailed(f"{url}: no answer from the server ({result.stderr.strip() or 'exit ' + str(result.exit_status)})")
        if status in (301, 302, 303, 307, 308) and headers.get("location"):
            redirects += 1
            if redirects > MAX_REDIRECTS:
                raise DownloadFailed(f"{url}: more than {MAX_REDIRECTS} redirects")
            url, _ = split_url(urllib.parse.urljoin(url, headers["location"]))
            continue
        if status is not None and status >= 400:
            raise DownloadFailed(f"{url}: the server answered {status}")
        length = headers.get("content-length", "")
        return Probe(url, int(length) if length.isdigit() else None, headers.get("etag", ""),
                     headers.get("last-modified", ""), redirects)


def same_origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL: credentials are sent only to the server they were given for."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _responses(text: str) -> list[tuple[int | None, dict[str, str]]]:
    """Every HTTP response in a header dump, in order: (status, lower-case header → value)."""
    out: list[tuple[int | None, dict[str, str]]] = []
    for line in text.splitlines():
        m = re.match(r"HTTP/\S+\s+(\d{3})", line)
        if m:
            out.append((int(m.group(1)), {}))
        elif ":" in line and out:
            k, _, v = line.partition(":")
            out[-1][1][k.strip().lower()] = v.strip()
    if not out and text.strip():  # an ftp answer: headers without a status line (curl -I)
        headers = {}
        for line in text.splitlines():
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        out.append((None, headers))
    return out


#: Root's own folder in an uploads root, beside the owners' folders (a name starting with a dot is never an
#: owner's): where a download is written before it is moved into the owner's folder.
WORK_DIR = ".isoadmin"

#: The long command (backend/sh/download.sh; see the module docstring): its header lists its 17 inputs.
DOWNLOAD_SCRIPT = load("download.sh")
_LOOKUP = load("download-cache-lookup.sh")
_LIST = load("download-cache-list.sh")
_REMOVE = load("download-cache-remove.sh")


@dataclass
class CacheEntry:
    """One image in an image host's cache.

    Attributes:
        host: the image host. sha256: the image's digest (its name in the cache). size: bytes.
        created: epoch seconds (image host's clock). age: seconds. hits: requests served from it.
        url: the URL it was downloaded from (credentials shown as ``***``). owners: the owners it was
        downloaded for (in an owner view, only the ones that view may see).
    """

    host: str
    sha256: str
    size: int
    created: float
    age: float
    hits: int
    url: str
    owners: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The entry as JSON (``cache --json``)."""
        return dict(self.__dict__)


async def lookup(host: Host, cache: str, key: str) -> tuple[str, int | None]:
    """The cached object for ``key`` (:func:`cache_key`) on ``host``.

    Returns:
        (its sha256, its size in bytes), or ("", None) when nothing is cached under ``key``.
    Raises:
        HostError: the host is unreachable.
    """
    if not key:
        return "", None
    result = await host.run(script(_LOOKUP, "isoadmin-cache-lookup", cache, key), check=False)
    words = result.stdout.decode("ascii", "replace").split()
    if len(words) == 3 and words[0] == "hit" and re.fullmatch(r"[0-9a-f]{64}", words[1]) and words[2].isdigit():
        return words[1], int(words[2])
    return "", None


async def list_cache(host: Host, cache: str) -> list[CacheEntry]:
    """Every entry of ``host``'s cache (one command).

    Raises:
        HostError: the host is unreachable.
    """
    result = await host.run(script(_LIST, "isoadmin-cache-list", cache), check=False)
    now, entries = time.time(), []
    for line in result.stdout.decode("utf-8", "surrogateescape").splitlines():
        word, _, rest = line.partition(" ")
        if word == "now" and rest.isdigit():
            now = float(rest)
        elif word == "entry":
            f = rest.split(" ", 4)
            if len(f) == 5 and f[1].isdigit() and f[2].isdigit() and f[3].strip().isdigit():
                entries.append(CacheEntry(host.name, f[0], int(f[1]), float(f[2]), now - float(f[2]),
                                          int(f[3]), f[4]))
        elif word == "owner" and entries and rest:
            entries[-1].owners.append(rest)
    return entries


async def remove_from_cache(host: Host, cache: str, digests: list[str]) -> None:
    """Remove cache entries (objects, their metadata and the keys pointing at them).

    Raises:
        HostError, CommandFailed.
    """
    await host.run(script(_REMOVE, "isoadmin-cache-remove", cache, *digests, mutating=True))


def download_command(mode: str, url: str, root: str, owner: str, name: str, cache: str, key: str, expect: str,
                     announced: int | None, cap: int, stall: float, sha: str, job: str, cached: str = "",
                     tool: str = "curl", secret: bool = False) -> Command:
    """The download's long command (:data:`DOWNLOAD_SCRIPT` under ``setsid``; every input an argument).

    Args:
        mode: ``fetch`` (download into the cache first) or ``cache`` (copy ``cached`` from it).
        url: checked by :func:`check_url`, as stored (credentials as ``user:***@``; the downloader gets it
        without them). root: the image host's uploads root. owner: the owner (its folder's name). name: the
        file name. cache: the cache dir. key: :func:`cache_key`. expect: sha256 hex or "". announced: bytes or
        None. cap: most bytes accepted. stall: seconds without a byte before the download is cut off. sha:
        ``openssl`` or ``sha256sum``. job: the job id (names its temporary files). cached: the cached object's
        sha256 (mode ``cache``). tool: the downloader, :attr:`~backend.hosttools.Tools.downloader` (``curl``,
        ``gnu-wget``, ``busybox-wget``, ``busybox``). secret: the command's stdin carries the downloader's
        credentials file (:meth:`Secret.tool_config`).
    """
    return Command(("setsid", "sh", "-c", DOWNLOAD_SCRIPT, "isoadmin-download", mode, tool_url(url), root, owner,
                    name, cache, key, expect, "" if announced is None else str(announced), str(cap),
                    str(int(max(1, stall))), sha, cached, tool, job, "1" if secret else "", url),
                   mutating=True, label="download")


@dataclass
class DownloadResult:
    """How a download ended.

    Attributes:
        sha256: the image's digest. size: bytes. cached: True when it was served from the cache.
        error: "" on success, else why it failed (nothing was kept).
    """

    sha256: str
    size: int
    cached: bool
    error: str = ""


async def run_download(host: Host, command: Command, on_progress: Callable[[int], None] | None = None,
                       on_pid: Callable[[int], None] | None = None, secret: bytes = b"") -> DownloadResult:
    """Run :func:`download_command` to its end, reporting bytes downloaded (about twice a second).

    Args:
        secret: the downloader's credentials file (:meth:`Secret.tool_config`), sent on the command's stdin.
    Raises:
        HostError: the connection dropped (the command is then stopped by its PID by the caller).
    """
    proc = await host.start(command)
    try:
        if secret:
            proc.stdin.write(secret)
        proc.stdin.write_eof()
    except (OSError, asyncssh.Error):
        pass  # the command ended already: its output says why
    out = bytearray()

    async def pump_err() -> None:
        buf = b""
        while chunk := await proc.stderr.read(4096):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                m = re.match(rb"(\d+) bytes$", line)
                if m and on_progress:
                    on_progress(int(m.group(1)))

    async def pump_out() -> None:
        seen = False
        while chunk := await proc.stdout.read(65536):
            out.extend(chunk)
            if not seen and b"\n" in out and out.startswith(b"pid "):
                seen = True
                if on_pid:
                    on_pid(int(out[4:out.index(b"\n")]))

    await asyncio.gather(pump_err(), pump_out())
    await proc.wait()
    sha, size, cached, error = "", 0, False, ""
    for line in bytes(out).decode("utf-8", "replace").splitlines():
        word, _, rest = line.partition(" ")
        if word == "error" and not error:
            error = rest
        elif word == "sha256":
            sha = rest
        elif word in ("fetched", "size") and rest.isdigit():
            size = int(rest)
        elif word == "cached":
            cached = True
    if not error and not sha:
        error = "the download ended without a result"
    return DownloadResult(sha, size, cached, error)


async def download_url(site, url: str, owner: str, name: str | None = None, sha256: str | None = None,
                       on_progress: Callable[[int, int | None], None] | None = None,
                       listener: Callable[[JobRecord], None] | None = None) -> DownloadResult:
    """Have the owner's image host download ``url`` into the owner's folder, through its cache.

    The URL and each redirect are checked (:func:`check_url`) and the server's headers read (:func:`probe`):
    the URL must answer, every time, for this request. The cache is asked by :func:`cache_key` (the URL as
    it answered now, its ETag, Last-Modified and length, and its credentials); ``sha256`` only checks what is
    served, fetched or cached, and a mismatch leaves nothing. The owner's quota is checked before anything
    is downloaded, against a fresh listing of every dom0 plus the owner's downloads: the ones running (each
    reserves its announced length, or its cap, on the ledger) and the downloaded files not imported yet; the
    check is made again once this download's reservation is on the ledger, so downloads started at once from
    several consoles cannot together exceed the quota. Start, end and failure are audited (``download-url``).
    The download shows in the owner's folder as ``.NAME.isoadmin-part`` (``writing``) while it runs, then as
    ``NAME`` (``pending``).

    Args:
        site: a refreshed :class:`~backend.site.Site`. url: http, https, ftp or sftp; credentials in it
        (``user:password@``) are never stored or shown (:func:`split_url`). owner: an owner folder.
        name: the file name (default: the URL's last path segment). sha256: the expected digest (hex), or
        None. on_progress: ``(bytes downloaded, bytes announced or None)``, about twice a second.
        listener: told about the download's job record (a copy) as it moves (about twice a second) and
        when it ends. The job is journaled on the site's ledger (kind ``download``), so every console's
        Jobs screen and ``jobs`` show it with bytes, rate and ETA (:class:`DownloadJob`).
    Returns:
        the result (``error`` is "" on success; the CLI also raises).
    Raises:
        UsageError: ``sha256`` is not 64 hex digits. ReadOnlyError: a read-only session (audited). NotFound: no
        such owner. UrlRefused, DownloadFailed, QuotaExceeded (nothing downloaded), HostError.
    """
    from .errors import NotFound, QuotaExceeded, UsageError

    public, secret = split_url(url)
    name = file_name(public, name)
    target = f"{owner}/{name}"
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise UsageError(f"--sha256: expected 64 hex digits, got {sha256!r}")
    await site.refuse_if_read_only("download-url", target)
    expect = (sha256 or "").lower()
    who = site.owners.get(owner)
    if who is None or not site.may_act_for(owner):
        raise NotFound(f"no owner folder {owner!r} on any image host")
    if any(ord(c) < 0x20 or c == "\x7f" for c in owner):
        raise UrlRefused(f"owner {owner!r}: a folder name with control characters is not downloaded into")
    ih = site.config.image_hosts[who.host]
    host = site.hosts[who.host]
    folder = f"{ih.uploads_root}/{owner}"
    if any(u.owner == owner and u.name in (name, part_name(name)) for u in site.snapshot.uploads):
        raise UrlRefused(f"{target} exists already (or is being downloaded)")
    tools = await hosttools.tools(host)
    if not tools.downloader:
        raise DownloadFailed(f"{who.host} has neither curl nor wget nor busybox wget: it cannot download")
    check_url(public, ih.download_hosts, tools.schemes())
    if secret:
        secret.tool_config(tools.downloader)  # refuses credentials this downloader cannot take off its command line
    cfg = site.config

    async def refused(error: IsoadminError) -> None:
        if secret and secret.password:
            error.message = error.message.replace(secret.password, "***")
            error.args = (error.message,)
        await site.audit.record("download-url", target, "failed", f"{public}: {error.message}", who.host)
        raise error

    info: Probe | None = None
    try:
        info = await probe(host, public, ih.download_hosts, cfg.download_stall_seconds, secret)
    except (UrlRefused, DownloadFailed) as exc:
        await refused(exc)
    if secret and info is not None and same_origin(info.url) != same_origin(public):
        secret = None  # redirected to another server: the credentials stay with the one they were given for
    key = cache_key(info.url, info.etag, info.last_modified, info.size, secret) if info else ""
    cached, cached_size = await lookup(host, ih.cache_dir, key)
    info = info or Probe(public, None)
    size = cached_size if cached else info.size
    room = await _room(site, owner)
    if room is not None and (room <= 0 or (size is not None and size > room)):
        await refused(QuotaExceeded(
            f"{public} announces {'no length' if size is None else f'{size} bytes'}; {owner}'s quota leaves "
            f"{max(room, 0)} bytes (counting the downloads not imported yet): not downloaded"))
    cap = size if size is not None else min(cfg.download_max_bytes, room if room is not None else cfg.download_max_bytes)
    try:
        job = await _journal(site, who.host, owner, folder, name, info, max(cap, 0))
    except UrlRefused as exc:
        await refused(exc)
    runner = DownloadJob(site, job, host, ih.cache_dir, listener)
    await site.read_books()
    room = await _room(site, owner, mine=job.id)
    if room is not None and job.alloc > room:
        await runner._end("failed", "over quota: other downloads of this owner started at the same time")
        await refused(QuotaExceeded(f"{owner}'s quota leaves {max(room, 0)} bytes once the downloads running now "
                                    f"are counted; this one needs {job.alloc}: not downloaded"))
    command = download_command("cache" if cached else "fetch", info.url, ih.uploads_root, owner, name,
                               ih.cache_dir, key, expect, info.size, job.alloc, cfg.download_stall_seconds,
                               tools.sha, job.id, cached, tools.downloader, secret is not None)
    try:
        await site.audit.record("download-url", target, "started",
                                f"{public} (from the cache)" if cached else public, who.host)
    except IsoadminError as exc:
        await runner._end("failed", f"the audit log could not be written: {exc.message}")
        raise
    result = await runner.run(command, on_progress, secret.tool_config(tools.downloader) if secret else b"")
    if result.error:
        await refused(DownloadFailed(f"{public}: {result.error}; nothing was kept"))
    await site.audit.record("download-url", target, "done",
                            f"{public} sha256 {result.sha256}" + (" (from the cache)" if result.cached else ""), who.host)
    return result


async def _room(site, owner: str, mine: str = "") -> int | None:
    """Bytes ``owner``'s quota leaves for a download (None: no quota): the quota less a fresh listing of every
    dom0's volumes of the owner and the owner's downloads (:func:`~backend.quota.downloads_held`, from the
    ledger as last read), job ``mine`` left out.

    Raises:
        HostError: a dom0 or the ledger cannot be read (the quota cannot be checked).
    """
    from .quota import downloads_held, usage

    u = usage(site.config, owner, await site.all_volumes())
    if not u.quota:
        return None
    held = downloads_held(owner, [j for j in site.jobs() if j.id != mine], site.snapshot.uploads)
    return u.quota - u.used - held


async def _journal(site, host: str, owner: str, folder: str, name: str, info: Probe, reserve: int) -> JobRecord:
    """Put a download's job record, its lease and its lock (on the file it becomes) on the site's ledger.

    Args:
        reserve: bytes the download may bring (its announced length, or its cap): kept as the record's
            ``alloc``, they count against the owner's quota while it runs.
    Raises:
        UrlRefused: another console's download of the same file holds the lock. HostError: the ledger is down.
    """
    now = time.time()
    job = JobRecord(id=uuid.uuid4().hex[:12], serial="", owner=owner, upload=name, host=host,
                    path=f"{folder}/{name}", size=info.size or 0, mtime=0.0, inode=0, dom0="", domain="",
                    staging=part_name(name), final=name, alloc=reserve, approver=site.approver, created=now,
                    updated=now, phase="download", total_bytes=info.size or 0,
                    console=f"{site.approver}:{os.getpid()}", kind="download", url=info.url)
    holder = await site.ledger.acquire(job, site.holder, site.config.lease_seconds)
    if holder is not None:
        held, _, about = holder.partition(" ")
        try:
            who = json.loads(about).get("approver", "another console")
        except (ValueError, AttributeError):
            who = "another console"
        raise UrlRefused(f"{job.key} is being downloaded already by {who} (job {held})")
    return job


class DownloadJob:
    """A download journaled on the site's ledger, so every console sees it and can recover it.

    While it runs, this console holds its lease (renewed every third of ``lease_seconds``, carrying bytes
    done, bytes announced and the rate: what other consoles' Jobs screens show) and the job record names
    the download's PID (its process group) on the image host. When the lease is taken over, the download
    is stopped. When this console dies, any console recovers it once the lease expires
    (:func:`recover_download`).

    Args:
        site: the :class:`~backend.site.Site`. job: the record (:func:`_journal`). host: the image host.
        cache: its cache dir. listener: told about a copy of the record as it moves and when it ends.
    """

    def __init__(self, site, job: JobRecord, host: Host, cache: str,
                 listener: Callable[[JobRecord], None] | None = None) -> None:
        self.site, self.job, self.host, self.cache, self.listener = site, job, host, cache, listener
        self.lost = ""
        self._saver: asyncio.Task | None = None

    def _tell(self) -> None:
        if self.listener is not None:
            self.listener(JobRecord.from_json(self.job.to_json()))

    def _save(self) -> None:
        if self._saver is None or self._saver.done():
            self._saver = asyncio.get_running_loop().create_task(self._saving())

    async def _saving(self) -> None:
        with contextlib.suppress(IsoadminError):
            await self.site.ledger.save(self.job)

    async def _keep_lease(self, main: asyncio.Task) -> None:
        self.lost = await self.site.ledger.hold(self.job, self.site.holder, self.site.config.lease_seconds)
        main.cancel()

    async def run(self, command: Command, on_progress: Callable[[int, int | None], None] | None,
                  secret: bytes = b"") -> DownloadResult:
        """Run ``command`` (:func:`download_command`) under the job's lease; journal how it ended and release
        the lease and the lock. A download stopped (the console quits, the lease is lost) is stopped on the
        image host by its PID and its temporary files removed.

        Args:
            secret: the downloader's credentials file, for the command's stdin (:func:`run_download`).

        Returns:
            the result. Raises: asyncio.CancelledError (stopped by this console, after the cleanup),
            HostError (the connection dropped; the download was stopped when the host could be reached).
        """
        job, site = self.job, self.site
        site.active[job.id] = self
        started = time.monotonic()
        total = job.total_bytes or None

        def progress(done: int) -> None:
            elapsed = time.monotonic() - started
            job.done_bytes, job.rate, job.updated = done, done / elapsed if elapsed > 0 else 0.0, time.time()
            if on_progress:
                on_progress(done, total)
            self._tell()

        def pid(value: int) -> None:
            job.copy_pid = value
            self._save()  # journaled: a console that dies mid-download can still stop it

        keeper = asyncio.get_running_loop().create_task(self._keep_lease(asyncio.current_task()))
        result: DownloadResult | None = None
        try:
            result = await run_download(self.host, command, progress, pid, secret)
        except asyncio.CancelledError:
            keeper.cancel()
            await asyncio.shield(self._stop())
            if not self.lost:
                await asyncio.shield(self._end("failed", "cancelled by the console"))
                raise
            asyncio.current_task().uncancel()
            result = DownloadResult("", job.done_bytes, False, f"stopped: {self.lost}")
        except BaseException as exc:
            keeper.cancel()
            await asyncio.shield(self._stop())
            await asyncio.shield(self._end("failed", str(exc)))
            raise
        finally:
            keeper.cancel()
            site.active.pop(job.id, None)
        if not result.error:
            job.done_bytes = job.total_bytes = result.size
            job.sha256 = result.sha256
        await self._end("failed" if result.error else "done", result.error)
        return result

    async def _stop(self) -> None:
        """Stop the download on the image host (by its PID, or found by its command line when the PID has
        not arrived yet) and remove its temporary files."""
        with contextlib.suppress(IsoadminError, OSError):
            await self.host.run(stop_command(self.job, self.site.config.image_hosts[self.job.host].uploads_root,
                                             self.cache), check=False)

    async def _end(self, state: str, error: str) -> None:
        job = self.job
        job.state, job.error, job.copy_pid, job.updated = state, error, 0, time.time()
        job.phase = "done" if state == "done" else job.phase
        if self._saver is not None:
            with contextlib.suppress(BaseException):
                await self._saver
        with contextlib.suppress(IsoadminError):
            await self.site.ledger.release(job)
        self.site.books.jobs[job.id] = job
        self._tell()


def stop_command(job: JobRecord, root: str, cache: str) -> Command:
    """Stop download ``job`` (its process group, when its command line is still this job's download) and
    remove what it left: its file in the uploads root's :data:`WORK_DIR` and its temporary files in the cache
    (and, from an older version, its part file in the owner's folder). With no PID journaled (its console
    died first) the download is looked for among the host's processes (``/proc/*/cmdline``:
    ``isoadmin-download`` with the job's id, the leader of its process group). Prints ``final`` when the file
    the job was to become exists and nothing of the job is left (the download had completed), else
    ``removed``; before it, ``stopped PID`` when a download was stopped.

    Args:
        job: the download's record. root: its image host's uploads root. cache: its cache dir.
    """
    folder, _, name = job.path.rpartition("/")
    return script(_STOP, "isoadmin-download-stop", str(job.copy_pid), job.id, f"{root}/{WORK_DIR}/{job.id}.part",
                  job.path, f"{folder}/{part_name(name)}", cache, mutating=True)


async def recover_download(site, job: JobRecord) -> JobRecord:
    """Finish a download whose console died (the caller claimed its expired lease): stop the download's
    process group on the image host if it still runs, remove its temporary files; the job is ``done`` when
    the file was complete already, else ``failed``. The lease and the lock are released.

    Returns:
        the journaled record. Raises: HostError (the image host or the ledger is down; the job stays
        ``running`` and a later recovery retries).
    """
    ih = site.config.image_hosts[job.host]
    result = await site.hosts[job.host].run(stop_command(job, ih.uploads_root, ih.cache_dir))
    words = result.stdout.decode("ascii", "replace").split()
    complete, stopped = "final" in words, "stopped" in words
    job = JobRecord.from_json(job.to_json())
    who = site.holder.split(":")[0]
    if complete:
        job.state, job.phase, job.rollback = "done", "done", f"found complete on recovery by {who}"
    else:
        job.state = "failed"
        job.error = f"its console stopped during the download; stopped by {who}"
        job.rollback = "download stopped, temporary files removed" if stopped else "temporary files removed"
    job.copy_pid, job.updated = 0, time.time()
    await site.ledger.release(job)
    return job


_STOP = load("download-stop.sh")


async def cache_list(site) -> list[CacheEntry]:
    """Every downloads cache entry of every image host; in an owner view (``--as USER``) only the entries
    downloaded for an owner USER may act for, each naming only those owners: one owner learns nothing of
    another's downloads from the cache's listing.

    Raises:
        HostError: an image host is unreachable.
    """
    out: list[CacheEntry] = []
    for name, ih in site.config.image_hosts.items():
        out += await list_cache(site.hosts[name], ih.cache_dir)
    if site.as_user is not None:
        for e in out:
            e.owners = [o for o in e.owners if site.may_act_for(o)]
        out = [e for e in out if e.owners]
    return out


async def cache_gc(site, apply: bool) -> list[CacheEntry]:
    """The cache entries older than ``cache_days`` (every image host; in an owner view, the view's entries
    only: :func:`cache_list`); with ``apply`` they are removed (audited, one entry per image host).

    Returns:
        the entries found (removed when ``apply``).
    Raises:
        ReadOnlyError (with ``apply``, audited), HostError.
    """
    old = [e for e in await cache_list(site) if e.age > site.config.cache_days * 86400]
    if apply and old:
        await site.refuse_if_read_only("gc", f"{len(old)} cache entries")
        for host in sorted({e.host for e in old}):
            digests = [e.sha256 for e in old if e.host == host]
            await remove_from_cache(site.hosts[host], site.config.image_hosts[host].cache_dir, digests)
            await site.audit.record("gc", f"cache: {len(digests)} entries", "done",
                                    f"older than {site.config.cache_days:g} days", host)
    return old
