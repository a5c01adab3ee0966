"""Uploads from a URL: the image host downloads an image into an owner's folder, through a cache.

The console never downloads anything itself. It checks the URL (scheme, host allowed by
``[image_hosts.NAME] download_hosts``), asks the server for its headers once per redirect with the host's
``curl`` (never following a redirect itself: each ``Location`` is checked like the URL was), and then runs
one long command on the image host (:data:`DOWNLOAD_SCRIPT`, under ``setsid``) that:

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
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from . import hosttools
from .commands import Command, script
from .errors import IsoadminError
from .ssh import Host

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


_HEAD = r"""
export LC_ALL=C
curl -sS -I -g --proto =http,https,ftp,sftp --max-redirs 0 --connect-timeout "$2" -m "$2" --url "$1"
"""


async def probe(host: Host, url: str, allowed_hosts: tuple[str, ...], timeout: float) -> Probe:
    """Ask the server for its headers (``curl -I`` on the image host), following redirects here, each
    ``Location`` checked by :func:`check_url` before it is asked.

    Raises:
        UrlRefused: a redirect leads to a scheme or host not allowed. DownloadFailed: the server answered
        with an error, did not answer in ``timeout`` seconds, or redirected too often.
    """
    tools = await hosttools.tools(host)
    redirects = 0
    while True:
        check_url(url, allowed_hosts, tools.schemes())
        result = await host.run(script(_HEAD, "isoadmin-head", url, str(int(max(1, timeout)))),
                                check=False, timeout=timeout + 30)
        if result.exit_status != 0:
            raise DownloadFailed(f"{url}: no answer from the server ({result.stderr.strip() or 'exit ' + str(result.exit_status)})")
        status, headers = _last_response(result.stdout.decode("latin-1"))
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


def _last_response(text: str) -> tuple[int | None, dict[str, str]]:
    status, headers = None, {}
    for line in text.splitlines():
        m = re.match(r"HTTP/\S+\s+(\d{3})", line)
        if m:
            status, headers = int(m.group(1)), {}
        elif ":" in line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return status, headers


#: The long command (see the module docstring). Inputs: mode (``fetch`` or ``cache``), url, owner folder,
#: name, cache dir, key, expected sha256 ("" for none), announced size ("" for unknown), cap (bytes),
#: stall seconds, sha tool, cached object ("" unless mode is cache).
DOWNLOAD_SCRIPT = r"""
export LC_ALL=C
mode=$1 url=$2 dir=$3 name=$4 cache=$5 key=$6 expect=$7 announced=$8 cap=$9
stall=${10} sha=${11} object=${12}
sha256() { if [ "$sha" = openssl ]; then openssl dgst -sha256 -r; else sha256sum; fi; }
printf 'pid %s\n' "$$"
part="$dir/.$name.isoadmin-part" final="$dir/$name"
fail() { printf 'error %s\n' "$1"; rm -f -- "$part" "${tmp:-}"; exit 1; }
[ -d "$dir" ] || { printf 'error no folder %s\n' "$dir"; exit 1; }
[ -e "$final" ] || [ -L "$final" ] && { printf 'error %s exists already\n' "$name"; exit 1; }
mkdir -p -- "$cache/tmp" "$cache/objects" "$cache/keys" || { echo "error cannot create the cache"; exit 1; }
chmod 700 "$cache" 2>/dev/null
( set -C; : > "$part" ) 2>/dev/null || { printf 'error %s is already being downloaded\n' "$name"; exit 1; }
chown --reference="$dir" -- "$part" 2>/dev/null
if [ "$mode" = fetch ]; then
  tmp="$cache/tmp/$$"
  curl -sS -g --proto =http,https,ftp,sftp --max-redirs 0 --connect-timeout "$stall" \
    --speed-limit 1 --speed-time "$stall" -f -o "$tmp" --url "$url" 2>"$tmp.err" &
  cpid=$!
  while kill -0 "$cpid" 2>/dev/null; do
    n=$(stat -c %s -- "$tmp" 2>/dev/null || echo 0)
    printf '%s bytes\n' "$n" >&2
    if [ "$n" -gt "$cap" ]; then kill "$cpid"; wait "$cpid"; rm -f "$tmp.err"
      fail "the server sent more than $cap bytes"; fi
    sleep 0.5
  done
  wait "$cpid"; rc=$?
  err=$(head -c 300 "$tmp.err"); rm -f "$tmp.err"
  case $rc in
    0) ;;
    28) fail "the server stalled (nothing for $stall s)" ;;
    18) fail "the server sent less than it announced ($err)" ;;
    *) fail "curl exit $rc: $err" ;;
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
                     announced: int | None, cap: int, stall: float, sha: str, cached: str = "") -> Command:
    """The download's long command (:data:`DOWNLOAD_SCRIPT` under ``setsid``; every input an argument).

    Args:
        mode: ``fetch`` (download into the cache first) or ``cache`` (copy ``cached`` from it).
        url: checked by :func:`check_url`. folder: the owner's folder. name: the file name. cache: the
        cache dir. key: :func:`cache_key`. expect: sha256 hex or "". announced: bytes or None. cap: most
        bytes accepted. stall: seconds without a byte before the download is cut off. sha: ``openssl`` or
        ``sha256sum``.
    """
    return Command(("setsid", "sh", "-c", DOWNLOAD_SCRIPT, "isoadmin-download", mode, url, folder, name, cache,
                    key, expect, "" if announced is None else str(announced), str(cap), str(int(max(1, stall))),
                    sha, cached), mutating=True, label="download")


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
                       on_progress: Callable[[int, int | None], None] | None = None) -> DownloadResult:
    """Have the owner's image host download ``url`` into the owner's folder, through its cache.

    The URL and each redirect are checked (:func:`check_url`), the server's headers read (:func:`probe`),
    the cache asked by ``sha256`` and by :func:`cache_key`; on a miss, a length announced over what the
    owner's quota leaves is refused before anything is downloaded. Start, end and failure are audited
    (``download-url``). The upload then shows as ``writing`` until complete, then ``pending``.

    Args:
        site: a refreshed :class:`~backend.site.Site`. url: http, https, ftp or sftp. owner: an owner folder.
        name: the file name (default: the URL's last path segment). sha256: the expected digest (hex), or
        None. on_progress: ``(bytes downloaded, bytes announced or None)``, about twice a second.
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
    if tools.downloader != "curl":
        raise DownloadFailed(f"{who.host} has no curl: downloads need it")
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
    await site.audit.record("download-url", target, "started",
                            f"{url} (from the cache)" if cached else url, who.host)
    command = download_command("cache" if cached else "fetch", info.url, folder, name, ih.cache_dir,
                               key, expect, info.size, max(cap, 0), cfg.download_stall_seconds, tools.sha, cached)
    pid: list[int] = []
    try:
        result = await run_download(host, command, (lambda n: on_progress(n, info.size)) if on_progress else None,
                                    pid.append)
    except BaseException:
        if pid:  # the console is stopping or the connection dropped: stop the download, remove the part
            from .commands import script as _script
            with contextlib.suppress(IsoadminError, OSError):
                await host.run(_script(_STOP, "isoadmin-download-stop", str(pid[0]), f"{folder}/{part_name(name)}",
                                       mutating=True), check=False)
        raise
    if result.error:
        await refused(DownloadFailed(f"{url}: {result.error}; nothing was kept"))
    if expect and result.sha256 != expect:
        await refused(DownloadFailed(f"{url}: sha256 mismatch ({result.sha256} ≠ {expect})"))
    await site.audit.record("download-url", target, "done",
                            f"{url} sha256 {result.sha256}" + (" (from the cache)" if result.cached else ""), who.host)
    return result


_STOP = r"""
pid=$1 part=$2
if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q isoadmin-download; then
  kill -TERM "-$pid" 2>/dev/null
  i=0; while kill -0 "-$pid" 2>/dev/null && [ "$i" -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
fi
rm -f -- "$part"
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
