"""Uploads from a URL: the image host downloads an image into an owner's folder, through a cache.

The console never downloads anything itself. It checks the URL (scheme, host allowed by
``[image_hosts.NAME] download_hosts``), asks the server for its headers once per redirect with the host's
``curl`` (never following a redirect itself: each ``Location`` is checked like the URL was), and then runs
one long command on the image host (:data:`DOWNLOAD_SCRIPT`, under ``setsid``) that:

0. creates the cache dir (mode 0700) when it is missing, and refuses an existing one that is a link, not a
   folder, not the login user's, or writable by group or others (a folder it did not create is never chmodded);
1. creates the owner's ``.NAME.isoadmin-part`` with ``O_EXCL`` (the uploads listing shows it ``writing``);
2. downloads into the cache's private ``tmp/`` folder (root's), cut off when the server stalls
   (``--speed-limit 1 --speed-time S``), sends more than it announced, or less;
3. hashes the bytes (``openssl dgst`` or ``sha256sum``), checks ``--sha256``, stores them in the cache as
   ``objects/SHA256`` with ``objects/SHA256.meta`` and ``keys/KEY`` (KEY = sha256 of URL, ETag,
   Last-Modified, size);
4. copies the cached object into the part file and renames it to ``NAME``.

A later request with the same key, or the same ``--sha256``, by any owner, skips step 2. On any failure the
part file is removed: nothing half-written is ever left to become ``pending``.
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
from dataclasses import dataclass

from . import hosttools
from .commands import Command, script
from .errors import IsoadminError
from .ssh import Host
from .state import JobRecord

#: The schemes a download may use (and a redirect may lead to).
SCHEMES = ("http", "https", "ftp", "sftp")
#: Suffix of the file a download writes in the owner's folder until it is complete: ``.NAME`` + this.
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
    """The name of ``name``'s file while it downloads (``.NAME.isoadmin-part``)."""
    return f".{name}{PART_SUFFIX}"


def download_target(name: str) -> str | None:
    """The file name a part file will become, or None when ``name`` is not a part file."""
    if name.startswith(".") and name.endswith(PART_SUFFIX) and len(name) > len(PART_SUFFIX) + 1:
        return name[1:-len(PART_SUFFIX)]
    return None


def check_url(url: str, allowed_hosts: tuple[str, ...], schemes: frozenset[str] | None = None) -> str:
    """Check a URL before anything is sent anywhere.

    Args:
        url: as given by a person, or a server's ``Location``.
        allowed_hosts: ``download_hosts`` patterns (``fnmatch``, matched against the host name or address,
            lower case); empty allows none.
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
    if not any(fnmatch.fnmatchcase(host, p.lower()) for p in allowed_hosts):
        try:
            what = f"address {ipaddress.ip_address(host)}"
        except ValueError:
            what = f"host {host}"
        raise UrlRefused(f"URL refused: {what} is not in this image host's download_hosts "
                         f"({', '.join(allowed_hosts) or 'none: downloads are off'})")
    return url


def file_name(url: str, name: str | None) -> str:
    """The upload's file name: ``name``, or the URL's last path segment (percent-decoded).

    Raises:
        UrlRefused: no usable name (empty, ``.``/``..``, a ``/``, a leading dot, control characters, over
            255 bytes).
    """
    if name is None:
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1])
    if (not name or name in (".", "..") or "/" in name or name.startswith(".") or "\0" in name
            or any(ord(c) < 0x20 for c in name) or len(name.encode("utf-8", "surrogateescape")) > 255):
        raise UrlRefused(f"no usable file name {name!r}: give one with --name")
    return name


def cache_key(url: str, etag: str, last_modified: str, size: int | None) -> str:
    """The cache key of a download: sha256 of URL, ETag, Last-Modified and size (hex)."""
    return hashlib.sha256("\0".join((url, etag, last_modified, str(size))).encode()).hexdigest()


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


#: Read the server's headers without following a redirect. Inputs: URL, timeout (s), tool
#: (:attr:`~backend.hosttools.Tools.downloader`). GNU Wget and BusyBox print them indented on stderr; BusyBox
#: wget cannot be kept from following a redirect (its first response is the one read), nor given a timeout
#: safely (``-T`` crashes BusyBox 1.35 on a stalled server), so ``timeout`` bounds it where the host has one.
_HEAD = r"""
export LC_ALL=C
url=$1 t=$2 tool=$3
to=; command -v timeout >/dev/null 2>&1 && to="timeout $t"
case $tool in
  curl) exec curl -sS -I -g --proto =http,https,ftp,sftp --max-redirs 0 --connect-timeout "$t" -m "$t" --url "$url" ;;
  gnu-wget) out=$($to wget -S --spider --max-redirect=0 -t 1 -T "$t" -- "$url" 2>&1 >/dev/null) ;;
  busybox-wget) out=$($to wget -S --spider -- "$url" 2>&1 >/dev/null) ;;
  busybox) out=$($to busybox wget -S --spider -- "$url" 2>&1 >/dev/null) ;;
  *) echo "no downloader" >&2; exit 2 ;;
esac
rc=$?
printf '%s\n' "$out" | sed -n 's/^  //p'
printf '%s\n' "$out" | grep -v '^  ' | tail -n 1 >&2
exit $rc
"""


async def probe(host: Host, url: str, allowed_hosts: tuple[str, ...], timeout: float) -> Probe:
    """Ask the server for its headers (on the image host: ``curl -I``, ``wget --spider -S``, or ``busybox
    wget --spider -S``, whichever :func:`~backend.hosttools.tools` found), following redirects here, each
    ``Location`` checked by :func:`check_url` before it is asked. An ``ftp://`` URL is not asked without curl
    (wget tells no length for it): its length is then unknown.

    Raises:
        UrlRefused: a redirect leads to a scheme or host not allowed. DownloadFailed: the server answered
        with an error, did not answer in ``timeout`` seconds, or redirected too often.
    """
    tools = await hosttools.tools(host)
    redirects = 0
    while True:
        check_url(url, allowed_hosts, tools.schemes())
        if tools.downloader != "curl" and url.lower().startswith("ftp:"):
            return Probe(url, None, redirects=redirects)  # FTP has no redirects; wget's look at it tells no length
        result = await host.run(script(_HEAD, "isoadmin-head", url, str(int(max(1, timeout))), tools.downloader),
                                check=False, timeout=timeout + 30)
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
            url = urllib.parse.urljoin(url, headers["location"])
            continue
        if status is not None and status >= 400:
            raise DownloadFailed(f"{url}: the server answered {status}")
        length = headers.get("content-length", "")
        return Probe(url, int(length) if length.isdigit() else None, headers.get("etag", ""),
                     headers.get("last-modified", ""), redirects)


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


#: The long command (see the module docstring). Inputs: mode (``fetch`` or ``cache``), url, owner folder,
#: name, cache dir, key, expected sha256 ("" for none), announced size ("" for unknown), cap (bytes),
#: stall seconds, sha tool, cached object ("" unless mode is cache), downloader
#: (:attr:`~backend.hosttools.Tools.downloader`). Whatever the downloader, the script itself cuts a download
#: off when its file has not grown for the stall time or has grown over the cap, and checks the length
#: against the announced one; curl and GNU Wget are also told not to follow redirects, and BusyBox wget
#: (which always follows them) has its headers shown (``-S``): more than one response fails the download.
DOWNLOAD_SCRIPT = r"""
export LC_ALL=C
mode=$1 url=$2 dir=$3 name=$4 cache=$5 key=$6 expect=$7 announced=$8 cap=$9
stall=${10} sha=${11} object=${12} tool=${13:-curl}
sha256() { if [ "$sha" = openssl ]; then openssl dgst -sha256 -r; else sha256sum; fi; }
printf 'pid %s\n' "$$"
part="$dir/.$name.isoadmin-part" final="$dir/$name"
fail() { printf 'error %s\n' "$1"; rm -f -- "$part" "${tmp:-}"; exit 1; }
[ -d "$dir" ] || { printf 'error no folder %s\n' "$dir"; exit 1; }
[ -e "$final" ] || [ -L "$final" ] && { printf 'error %s exists already\n' "$name"; exit 1; }
[ -e "$cache" ] || [ -L "$cache" ] || mkdir -p -m 700 -- "$cache" || { echo "error cannot create the cache"; exit 1; }
cache_st=$(stat -c '%u %a' -- "$cache" 2>/dev/null) cache_uid=$(id -u)
if [ -L "$cache" ] || [ ! -d "$cache" ] || [ "${cache_st% *}" != "$cache_uid" ] || [ $((0${cache_st#* } & 022)) != 0 ]; then
  printf 'error the cache %s is not a folder of user %s that only it may write: fix it or set another cache_dir\n' "$cache" "$cache_uid"; exit 1; fi
mkdir -p -- "$cache/tmp" "$cache/objects" "$cache/keys" || { echo "error cannot create the cache"; exit 1; }
( set -C; : > "$part" ) 2>/dev/null || { printf 'error %s is already being downloaded\n' "$name"; exit 1; }
chown --reference="$dir" -- "$part" 2>/dev/null
if [ "$mode" = fetch ]; then
  tmp="$cache/tmp/$$"
  : > "$tmp"
  case $tool in
    curl) curl -sS -g --proto =http,https,ftp,sftp --max-redirs 0 --connect-timeout "$stall" \
            --speed-limit 1 --speed-time "$stall" -f -o "$tmp" --url "$url" 2>"$tmp.err" & ;;
    gnu-wget) wget -q -t 1 --max-redirect=0 --connect-timeout="$stall" --read-timeout=$((stall + 10)) \
            -O "$tmp" -- "$url" 2>"$tmp.err" & ;;
    busybox-wget) wget -q -S -O "$tmp" -- "$url" 2>"$tmp.err" & ;;
    busybox) busybox wget -q -S -O "$tmp" -- "$url" 2>"$tmp.err" & ;;
    *) fail "no downloader (curl, wget or busybox wget)" ;;
  esac
  cpid=$!
  last=-1 still=0
  while kill -0 "$cpid" 2>/dev/null; do
    n=$(stat -c %s -- "$tmp" 2>/dev/null || echo 0)
    printf '%s bytes\n' "$n" >&2
    if [ "$n" -gt "$cap" ]; then kill "$cpid"; wait "$cpid"; rm -f "$tmp.err"
      fail "the server sent more than $cap bytes"; fi
    if [ "$n" = "$last" ]; then still=$((still + 1)); else still=0 last=$n; fi
    if [ "$still" -ge $((stall * 2)) ]; then kill "$cpid"; wait "$cpid"; rm -f "$tmp.err"
      fail "the server stalled (nothing for $stall s)"; fi
    sleep 0.5
  done
  wait "$cpid"; rc=$?
  err=$(grep -v '^  ' "$tmp.err" | head -c 300)
  answers=$(grep -c '^  HTTP/' "$tmp.err")
  rm -f "$tmp.err"
  n=$(stat -c %s -- "$tmp" 2>/dev/null || echo 0)
  [ "$answers" -le 1 ] || fail "the server redirected the download (BusyBox wget followed it; nothing kept)"
  if [ "$rc" != 0 ] && [ -n "$announced" ] && [ "$n" -lt "$announced" ] && [ "$n" -gt 0 ]; then
    fail "the server sent less than it announced ($n of $announced bytes)"
  fi
  case $tool.$rc in
    *.0) ;;
    curl.28) fail "the server stalled (nothing for $stall s)" ;;
    curl.18) fail "the server sent less than it announced ($err)" ;;
    *) fail "$tool exit $rc: $err" ;;
  esac
  n=$(stat -c %s -- "$tmp")
  [ "$n" -le "$cap" ] || fail "the server sent more than $cap bytes"
  if [ -n "$announced" ] && [ "$n" != "$announced" ]; then
    fail "the server announced $announced bytes and sent $n"
  fi
  digest=$(sha256 < "$tmp"); digest=${digest%% *}
  if [ -n "$expect" ] && [ "$digest" != "$expect" ]; then fail "sha256 mismatch: got $digest"; fi
  mv -f -- "$tmp" "$cache/objects/$digest" || fail "cannot store in the cache"
  printf 'url %s\nsize %s\ncreated %s\n' "$url" "$n" "$(date +%s)" > "$cache/objects/$digest.meta"
  printf '%s\n' "$digest" > "$cache/keys/$key"
  object=$digest
  echo "fetched $n"
else
  [ -f "$cache/objects/$object" ] || fail "the cache lost $object"
  echo >> "$cache/objects/$object.hits"
  echo "cached $object"
  printf 'size %s\n' "$(stat -c %s -- "$cache/objects/$object")"
fi
dd if="$cache/objects/$object" bs=4M status=none >> "$part" || fail "cannot write $part"
[ -z "$key" ] || printf '%s\n' "$object" > "$cache/keys/$key"
mv -f -- "$part" "$final" || fail "cannot rename $part"
printf 'sha256 %s\n' "$object"
"""

_LOOKUP = r"""
cache=$1 key=$2 sha=$3
if [ -n "$sha" ] && [ -f "$cache/objects/$sha" ]; then echo "hit $sha"; exit 0; fi
if [ -n "$key" ] && [ -f "$cache/keys/$key" ]; then
  o=$(head -n 1 "$cache/keys/$key")
  case $o in *[!0-9a-f]*|'') ;; *) [ -f "$cache/objects/$o" ] && { echo "hit $o"; exit 0; } ;; esac
fi
echo miss
"""

_LIST = r"""
cache=$1
now=$(date +%s)
printf 'now %s\n' "$now"
for f in "$cache"/objects/*.meta; do
  [ -f "$f" ] || continue
  o=${f%.meta}
  [ -f "$o" ] || continue
  hits=0; [ -f "$o.hits" ] && hits=$(wc -l < "$o.hits")
  printf 'entry %s %s %s %s %s\n' "${o##*/}" "$(stat -c %s -- "$o")" "$(date -r "$f" +%s)" "$hits" \
    "$(sed -n 's/^url //p' "$f" | head -n 1)"
done
"""

_REMOVE = r"""
cache=$1; shift
for o in "$@"; do
  case $o in *[!0-9a-f]*|'') continue ;; esac
  rm -f -- "$cache/objects/$o" "$cache/objects/$o.meta" "$cache/objects/$o.hits"
  grep -lx -- "$o" "$cache"/keys/* 2>/dev/null | while read -r k; do rm -f -- "$k"; done
done
"""


@dataclass
class CacheEntry:
    """One image in an image host's cache.

    Attributes:
        host: the image host. sha256: the image's digest (its name in the cache). size: bytes.
        created: epoch seconds (image host's clock). age: seconds. hits: requests served from it.
        url: the URL it was downloaded from.
    """

    host: str
    sha256: str
    size: int
    created: float
    age: float
    hits: int
    url: str

    def to_json(self) -> dict:
        """The entry as JSON (``cache --json``)."""
        return dict(self.__dict__)


async def lookup(host: Host, cache: str, key: str, sha256: str) -> str:
    """The cached object for ``key`` or ``sha256`` on ``host``, or "".

    Raises:
        HostError: the host is unreachable.
    """
    result = await host.run(script(_LOOKUP, "isoadmin-cache-lookup", cache, key, sha256), check=False)
    word, _, rest = result.stdout.decode("ascii", "replace").strip().partition(" ")
    return rest if word == "hit" and re.fullmatch(r"[0-9a-f]{64}", rest) else ""


async def list_cache(host: Host, cache: str) -> list[CacheEntry]:
    """Every entry of ``host``'s cache (one command).

    Raises:
        HostError: the host is unreachable.
    """
    result = await host.run(script(_LIST, "isoadmin-cache-list", cache), check=False)
    now, entries = time.time(), []
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        word, _, rest = line.partition(" ")
        if word == "now" and rest.isdigit():
            now = float(rest)
        elif word == "entry":
            f = rest.split(" ", 4)
            if len(f) == 5 and f[1].isdigit() and f[2].isdigit() and f[3].strip().isdigit():
                entries.append(CacheEntry(host.name, f[0], int(f[1]), float(f[2]), now - float(f[2]),
                                          int(f[3]), f[4]))
    return entries


async def remove_from_cache(host: Host, cache: str, digests: list[str]) -> None:
    """Remove cache entries (objects, their metadata and the keys pointing at them).

    Raises:
        HostError, CommandFailed.
    """
    await host.run(script(_REMOVE, "isoadmin-cache-remove", cache, *digests, mutating=True))


def download_command(mode: str, url: str, folder: str, name: str, cache: str, key: str, expect: str,
                     announced: int | None, cap: int, stall: float, sha: str, cached: str = "",
                     tool: str = "curl") -> Command:
    """The download's long command (:data:`DOWNLOAD_SCRIPT` under ``setsid``; every input an argument).

    Args:
        mode: ``fetch`` (download into the cache first) or ``cache`` (copy ``cached`` from it).
        url: checked by :func:`check_url`. folder: the owner's folder. name: the file name. cache: the
        cache dir. key: :func:`cache_key`. expect: sha256 hex or "". announced: bytes or None. cap: most
        bytes accepted. stall: seconds without a byte before the download is cut off. sha: ``openssl`` or
        ``sha256sum``. cached: the cached object's sha256 (mode ``cache``). tool: the downloader,
        :attr:`~backend.hosttools.Tools.downloader` (``curl``, ``gnu-wget``, ``busybox-wget``, ``busybox``).
    """
    return Command(("setsid", "sh", "-c", DOWNLOAD_SCRIPT, "isoadmin-download", mode, url, folder, name, cache,
                    key, expect, "" if announced is None else str(announced), str(cap), str(int(max(1, stall))),
                    sha, cached, tool), mutating=True, label="download")


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
                       on_pid: Callable[[int], None] | None = None) -> DownloadResult:
    """Run :func:`download_command` to its end, reporting bytes downloaded (about twice a second).

    Raises:
        HostError: the connection dropped (the command is then stopped by its PID by the caller).
    """
    proc = await host.start(command)
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

    The URL and each redirect are checked (:func:`check_url`), the server's headers read (:func:`probe`),
    the cache asked by ``sha256`` and by :func:`cache_key`; on a miss, a length announced over what the
    owner's quota leaves is refused before anything is downloaded. Start, end and failure are audited
    (``download-url``). The upload then shows as ``writing`` until complete, then ``pending``.

    Args:
        site: a refreshed :class:`~backend.site.Site`. url: http, https, ftp or sftp. owner: an owner folder.
        name: the file name (default: the URL's last path segment). sha256: the expected digest (hex), or
        None. on_progress: ``(bytes downloaded, bytes announced or None)``, about twice a second.
        listener: told about the download's job record (a copy) as it moves (about twice a second) and
        when it ends. The job is journaled on the site's ledger (kind ``download``), so every console's
        Jobs screen and ``jobs`` show it with bytes, rate and ETA (:class:`DownloadJob`).
    Returns:
        the result (``error`` is "" on success; the CLI also raises).
    Raises:
        ReadOnlyError: a read-only session (audited). NotFound: no such owner. UrlRefused, DownloadFailed,
        QuotaExceeded (nothing downloaded), HostError.
    """
    from .errors import NotFound, QuotaExceeded
    from .quota import usage

    name = file_name(url, name)
    target = f"{owner}/{name}"
    await site.refuse_if_read_only("download-url", target)
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256.lower()):
        raise UrlRefused(f"--sha256: expected 64 hex digits, got {sha256!r}")
    expect = (sha256 or "").lower()
    who = site.owners.get(owner)
    if who is None or not site.may_act_for(owner):
        raise NotFound(f"no owner folder {owner!r} on any image host")
    ih = site.config.image_hosts[who.host]
    host = site.hosts[who.host]
    folder = f"{ih.uploads_root}/{owner}"
    if any(u.owner == owner and u.name in (name, part_name(name)) for u in site.snapshot.uploads):
        raise UrlRefused(f"{target} exists already (or is being downloaded)")
    tools = await hosttools.tools(host)
    if not tools.downloader:
        raise DownloadFailed(f"{who.host} has neither curl nor wget nor busybox wget: it cannot download")
    check_url(url, ih.download_hosts, tools.schemes())
    cfg = site.config

    async def refused(error: IsoadminError) -> None:
        await site.audit.record("download-url", target, "failed", f"{url}: {error.message}", who.host)
        raise error

    cached = await lookup(host, ih.cache_dir, "", expect) if expect else ""
    info = Probe(url, None)
    key = ""
    if not cached:
        try:
            info = await probe(host, url, ih.download_hosts, cfg.download_stall_seconds)
        except (UrlRefused, DownloadFailed) as exc:
            await refused(exc)
        key = cache_key(info.url, info.etag, info.last_modified, info.size)
        cached = await lookup(host, ih.cache_dir, key, "")
    quota = usage(cfg, owner, site.snapshot.volumes)
    room = quota.quota - quota.used if quota.quota else None
    if not cached and room is not None and (room <= 0 or (info.size is not None and info.size > room)):
        await refused(QuotaExceeded(
            f"{url} announces {'no length' if info.size is None else f'{info.size} bytes'}; {owner}'s quota leaves {max(room, 0)} "
            f"({quota.used} of {quota.quota} used): not downloaded"))
    cap = info.size if info.size is not None else min(cfg.download_max_bytes, room if room is not None else cfg.download_max_bytes)
    command = download_command("cache" if cached else "fetch", info.url, folder, name, ih.cache_dir,
                               key, expect, info.size, max(cap, 0), cfg.download_stall_seconds, tools.sha, cached,
                               tools.downloader)
    try:
        job = await _journal(site, who.host, owner, folder, name, info)
    except UrlRefused as exc:
        await refused(exc)
    runner = DownloadJob(site, job, host, ih.cache_dir, listener)
    try:
        await site.audit.record("download-url", target, "started",
                                f"{url} (from the cache)" if cached else url, who.host)
    except IsoadminError as exc:
        await runner._end("failed", f"the audit log could not be written: {exc.message}")
        raise
    result = await runner.run(command, on_progress)
    if result.error:
        await refused(DownloadFailed(f"{url}: {result.error}; nothing was kept"))
    if expect and result.sha256 != expect:
        await refused(DownloadFailed(f"{url}: sha256 mismatch ({result.sha256} ≠ {expect})"))
    await site.audit.record("download-url", target, "done",
                            f"{url} sha256 {result.sha256}" + (" (from the cache)" if result.cached else ""), who.host)
    return result


async def _journal(site, host: str, owner: str, folder: str, name: str, info: Probe) -> JobRecord:
    """Put a download's job record, its lease and its lock (on the file it becomes) on the site's ledger.

    Raises:
        UrlRefused: another console's download of the same file holds the lock. HostError: the ledger is down.
    """
    now = time.time()
    job = JobRecord(id=uuid.uuid4().hex[:12], serial="", owner=owner, upload=name, host=host,
                    path=f"{folder}/{name}", size=info.size or 0, mtime=0.0, inode=0, dom0="", domain="",
                    staging=part_name(name), final=name, alloc=0, approver=site.approver, created=now, updated=now,
                    phase="download", total_bytes=info.size or 0, console=f"{site.approver}:{os.getpid()}",
                    kind="download", url=info.url)
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

    async def run(self, command: Command, on_progress: Callable[[int, int | None], None] | None) -> DownloadResult:
        """Run ``command`` (:func:`download_command`) under the job's lease; journal how it ended and release
        the lease and the lock. A download stopped (the console quits, the lease is lost) is stopped on the
        image host by its PID and its part file removed.

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
            result = await run_download(self.host, command, progress, pid)
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
        not arrived yet) and remove its part file."""
        with contextlib.suppress(IsoadminError, OSError):
            await self.host.run(stop_command(self.job.copy_pid, self.job.path, self.cache), check=False)

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


def stop_command(pid: int, path: str, cache: str) -> Command:
    """Stop download ``pid`` (its process group, when its command line is still this file's download) and
    remove what it left: the part file of ``path`` (the file it would become) and its temporary file in the
    cache. With ``pid`` 0 (its console died before journaling it) the download of ``path`` is looked for
    among the host's processes (``/proc/*/cmdline``: ``isoadmin-download`` with its folder and name, the
    leader of its process group). Prints ``final`` when ``path`` exists and no part file does (the download
    had completed), else ``removed``; before it, ``stopped PID`` when a download was stopped.
    """
    folder, _, name = path.rpartition("/")
    return script(_STOP, "isoadmin-download-stop", str(pid), f"{folder}/{part_name(name)}", path, cache,
                  mutating=True)


async def recover_download(site, job: JobRecord) -> JobRecord:
    """Finish a download whose console died (the caller claimed its expired lease): stop the download's
    process group on the image host if it still runs, remove the part file and the temporary file; the job
    is ``done`` when the file was complete already, else ``failed``. The lease and the lock are released.

    Returns:
        the journaled record. Raises: HostError (the image host or the ledger is down; the job stays
        ``running`` and a later recovery retries).
    """
    ih = site.config.image_hosts[job.host]
    result = await site.hosts[job.host].run(stop_command(job.copy_pid, job.path, ih.cache_dir))
    words = result.stdout.decode("ascii", "replace").split()
    complete, stopped = "final" in words, "stopped" in words
    job = JobRecord.from_json(job.to_json())
    who = site.holder.split(":")[0]
    if complete:
        job.state, job.phase, job.rollback = "done", "done", f"found complete on recovery by {who}"
    else:
        job.state = "failed"
        job.error = f"its console stopped during the download; stopped by {who}"
        job.rollback = "download stopped, part file removed" if stopped else "part file removed"
    job.copy_pid, job.updated = 0, time.time()
    await site.ledger.release(job)
    return job


_STOP = r"""
pid=$1 part=$2 final=$3 cache=$4
folder=${final%/*} name=${final##*/}
case $pid in ''|0|*[!0-9]*) pid= ;; esac
is_download() {  # $1 runs this file's download: isoadmin-download with its folder and name as arguments
  [ -r "/proc/$1/cmdline" ] || return 1
  args=$(tr '\0' '\n' < "/proc/$1/cmdline" 2>/dev/null) || return 1
  printf '%s\n' "$args" | grep -qx isoadmin-download && printf '%s\n' "$args" | grep -Fqx -- "$folder" \
    && printf '%s\n' "$args" | grep -Fqx -- "$name"
}
if [ -z "$pid" ]; then  # not journaled (its console died first): look for it
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" != "$$" ] && is_download "$p" || continue
    st=$(cat "$d/stat" 2>/dev/null) || continue
    set -- ${st##*) }  # state, parent, process group, ...
    [ "${3:-}" = "$p" ] && { pid=$p; break; }
  done
fi
if [ -n "$pid" ] && is_download "$pid"; then
  kill -TERM "-$pid" 2>/dev/null
  i=0; while kill -0 "-$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
  kill -KILL "-$pid" 2>/dev/null
  echo "stopped $pid"
fi
[ -n "$pid" ] && rm -f -- "$cache/tmp/$pid" "$cache/tmp/$pid.err"
if [ -e "$part" ]; then rm -f -- "$part"; echo removed
elif [ -e "$final" ]; then echo final
else echo removed; fi
"""


async def cache_list(site) -> list[CacheEntry]:
    """Every downloads cache entry of every image host that is up.

    Raises:
        HostError: an image host is unreachable.
    """
    out: list[CacheEntry] = []
    for name, ih in site.config.image_hosts.items():
        out += await list_cache(site.hosts[name], ih.cache_dir)
    return out


async def cache_gc(site, apply: bool) -> list[CacheEntry]:
    """The cache entries older than ``cache_days`` (every image host); with ``apply`` they are removed
    (audited, one entry per image host).

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
