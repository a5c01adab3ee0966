"""The image-host side: list uploads, read headers, locate a hot-plugged disk, copy, verify.

Everything runs as constant POSIX ``sh`` scripts (``backend/sh/imagehost-*.sh``) with GNU findutils/coreutils
(``find -printf``, ``dd iflag=nofollow``, ``sha256sum``, ``stat``), which a Debian image host has, or, on a
host whose listing says it lacks them (BusyBox), their portable forms (``*-portable.sh``, see
:mod:`backend.hosttools`); nothing is installed there. Where the host has ``openssl``, sha256 is computed with
it (the same digest, several times faster on CPUs with SHA extensions); otherwise with ``sha256sum``.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import asyncssh

from . import hosttools
from .commands import Command, script
from .errors import CommandFailed, HostError
from .hostscripts import load
from .ssh import Host

#: ``find -printf`` type letters → :attr:`Upload.kind` words.
KINDS = {"f": "file", "d": "directory", "l": "symlink", "p": "fifo", "s": "socket", "b": "block", "c": "char"}


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the uploads listing.

    Attributes:
        kind: see :data:`KINDS`. size: bytes. mtime: epoch seconds. inode, nlink: from ``stat``.
        depth: 1 for an owner folder (or a stray entry in the root), 2 for an upload.
        rel: path relative to the uploads root, decoded as UTF-8 with ``surrogateescape``.
        group: the entry's group name on the image host. target: a symlink's target (never followed), else "".
    """

    kind: str
    size: int
    mtime: float
    inode: int
    nlink: int
    depth: int
    rel: str
    group: str = ""
    target: str = ""


#: The listing (backend/sh/imagehost-list.sh), with the ledger's dump (lib-ledger-dump.sh) for a ledger on
#: this host.
LIST_SCRIPT = load("lib-ledger-dump.sh", "imagehost-list.sh")


def list_command(root: str, ledger: str = "") -> Command:
    """The single inventory command of an image host: its clock, its groups (``getent group``), and a listing
    of the uploads root (type, size, mtime, inode, links, depth, numeric group id, path, a link's target):
    NUL-terminated ``find -printf`` records where the host's find has ``-printf`` (GNU findutils), else
    ``find`` and ``stat -c`` (BusyBox), framed so that no file name can forge a record (see
    ``backend/sh/imagehost-list.sh``); the host chooses. Group ids are named from the ``getent`` lines here, not
    by ``find``'s ``%g``, which looks the name up again for every entry (twice the time of the whole listing).

    Args:
        root: the uploads root. ledger: the site's ledger folder when it lives on this host: its dump
            (:data:`~backend.commands.DUMP_SH`) comes on stderr, in the same round trip (apart from the
            listing, whose file names and link targets may hold anything but NUL).
    """
    return script(LIST_SCRIPT, "isoadmin-list", root, *([ledger] if ledger else []))


@dataclass
class Listing:
    """:func:`list_command`'s output, parsed.

    Attributes:
        now: the image host's clock (epoch seconds). groups: group name → member user names.
        entries: the uploads root's entries. portable: the listing came in its portable form (the host's
        ``find`` has no ``-printf`` or its ``dd`` no ``iflag=nofollow``: BusyBox), so the host gets the
        portable forms of the other scripts (:func:`~backend.hosttools.set_portable`).
    """

    now: float
    groups: dict[str, set[str]]
    entries: list[Entry]
    portable: bool = False


@dataclass
class ListingCache:
    """Entries parsed by earlier :func:`parse_listing` calls for one host, by their raw record: at a
    steady state almost every record comes back unchanged. Cleared when the host's groups change."""

    gids: dict[bytes, str] | None = None
    entries: dict[bytes, Entry] | None = None


def parse_listing(data: bytes, cache: ListingCache | None = None) -> Listing:
    """Parse :func:`list_command` output. Malformed records are skipped (never raise).

    Args:
        data: the command's stdout. cache: reuse entries of records seen before (optional).
    """
    head, _, body = data.partition(b"\n--\n")
    lines = head.decode("utf-8", "replace").splitlines()
    try:
        now = float(lines[0])
    except (IndexError, ValueError):
        now = time.time()
    groups: dict[str, set[str]] = {}
    gid_names: dict[bytes, str] = {}
    for line in lines[1:]:
        fields = line[len("group "):].split(":")
        if line.startswith("group ") and len(fields) >= 4:
            groups[fields[0]] = {m for m in fields[3].split(",") if m}
            gid_names.setdefault(fields[2].encode(), fields[0])
    if cache is None:
        cache = ListingCache()
    known = cache.entries if cache.entries is not None and cache.gids == gid_names else {}
    seen: dict[bytes, Entry] = {}
    entries = []
    portable = "listing portable" in lines[1:]
    if portable:
        for record, fields, a, b, target in _portable_records(body):
            entry = known.get(record)
            if entry is None:
                try:
                    kind, size, mtime, inode, nlink, depth, gid, rel = fields(a, b)
                    entry = Entry(kind, int(size), float(mtime), int(inode), int(nlink), depth,
                                  rel.decode("utf-8", "surrogateescape"),
                                  gid_names.get(gid) or gid.decode("utf-8", "replace"),
                                  target.decode("utf-8", "surrogateescape"))
                except ValueError:
                    continue
            seen[record] = entry
            entries.append(entry)
    else:
        fields = body.split(b"\0")
        for record, target in zip(fields[0::2], fields[1::2]):  # each entry: its record, then a link's target
            record += b"\0" + target
            entry = known.get(record)
            if entry is None:
                parts = record[:-len(target) - 1].split(b" ", 7)
                if len(parts) != 8:
                    continue
                try:
                    entry = Entry(
                        KINDS.get(parts[0].decode(), "other"), int(parts[1]), float(parts[2]), int(parts[3]),
                        int(parts[4]), int(parts[5]), parts[7].decode("utf-8", "surrogateescape"),
                        gid_names.get(parts[6]) or parts[6].decode("utf-8", "replace"),
                        target.decode("utf-8", "surrogateescape"))
                except ValueError:
                    continue
            seen[record] = entry
            entries.append(entry)
    cache.gids, cache.entries = gid_names, seen
    return Listing(now, groups, entries, portable)


#: The file type bits of ``st_mode`` (``stat -c %f``, in hex) → :data:`KINDS` letters (POSIX ``<sys/stat.h>``).
_MODE_TYPES = {0o100000: "f", 0o040000: "d", 0o120000: "l", 0o010000: "p", 0o140000: "s", 0o060000: "b",
               0o020000: "c"}

#: A record's fields: (kind, size, mtime, inode, links, depth, gid, path from the root).
_Fields = tuple[str, bytes, bytes, bytes, bytes, int, bytes, bytes]
#: A record of the portable listing: (its raw bytes, the cache's key; a function that gives its fields from the
#: next two items, or raises ValueError when it is malformed; those two items; the link target).
_Record = tuple[bytes, Callable[[bytes, bytes], _Fields], bytes, bytes, bytes]


def _portable_fields(stat: bytes, path: bytes) -> _Fields:
    """Fields of one entry of the portable listing: ``stat -c '%f %s %Y %y %i %h %g'`` output (``%y`` is
    ``DATE TIME.NANOSECONDS ZONE``: the mtime's fraction comes from it, its seconds from ``%Y``) and the path
    from the root (``./OWNER/FILE``)."""
    parts = stat.split(b" ")
    if len(parts) != 9 or not path.startswith(b"./") or len(path) < 3:
        raise ValueError(stat)
    mode, size, seconds, _, clock, _, inode, nlink, gid = parts
    kind = KINDS.get(_MODE_TYPES.get(int(mode, 16) & 0o170000, ""), "other")
    _, _, fraction = clock.partition(b".")
    mtime = seconds + b"." + fraction if fraction.isdigit() and seconds.isdigit() else seconds
    rel = path[2:]
    return kind, size, mtime, inode, nlink, rel.count(b"/") + 1, gid, rel


def _portable_line_fields(line: bytes, _: bytes) -> _Fields:
    """Fields of one pass-1 line of the portable listing: nine ``stat`` fields and the path."""
    parts = line.split(b" ", 9)
    if len(parts) != 10:
        raise ValueError(line)
    return _portable_fields(b" ".join(parts[:9]), parts[9])


def _portable_records(body: bytes) -> Iterator[_Record]:
    """The records of the portable listing (``listing portable``: ``find`` and ``stat -c``; see
    ``backend/sh/imagehost-list.sh``).

    Pass 1 has one line per entry whose path holds no newline (``STAT PATH``), then a NUL; pass 2 has
    NUL-terminated records: ``S`` + ``STAT``, newline, ``PATH`` for each entry whose path holds one (so a name
    holding a newline and text shaped like a line is only ever read as that one name), and ``L`` + ``PATH``
    then ``TARGET`` and a newline for each symlink (its target matched to its entry by path).
    """
    lines, _, rest = body.partition(b"\0")
    parts = rest.split(b"\0")
    targets: dict[bytes, bytes] = {}
    named: list[bytes] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if part.startswith(b"L") and i + 1 < len(parts):
            target = parts[i + 1]
            targets[part[1:]] = target[:-1] if target.endswith(b"\n") else target
            i += 2
            continue
        if part.startswith(b"S "):
            named.append(part[2:])
        i += 1
    for line in lines.split(b"\n"):
        if not line:
            continue
        target = targets.get(line.split(b" ", 9)[-1], b"") if targets else b""
        yield b"1" + line + b"\0" + target, _portable_line_fields, line, b"", target
    for record in named:
        stat, _, path = record.partition(b"\n")
        target = targets.get(path, b"")
        yield b"2" + record + b"\0" + target, _portable_fields, stat, path, target


# backend/sh/imagehost-headers.sh: one ``dd`` per file; see the file for the output's framing. The portable form
# (hosts whose listing is the portable one) opens each file as lib-open-upload.sh says.
_HEADERS = load("imagehost-headers.sh")
_HEADERS_PORTABLE = load("lib-open-upload.sh", "imagehost-headers-portable.sh")
_RECORDS_OUT = re.compile(r"^(\d+)\+(\d+) records out$")


#: Longest command line a header read is given (sshd runs it as one ``sh -c`` argument, and Linux caps one
#: argument at 128 KiB); more paths are read in several commands.
HEADER_COMMAND_BYTES = 100_000
#: Most headers one command reads (4 MiB of output): a cold start with 10,000 new files is 640 MiB of
#: headers, which must not all be in memory at once. Two commands run at a time, and each one's output
#: is held twice while it is cut into headers, so this sets the console's peak memory: at 256 a cold
#: start with 10,000 files peaked 42 MB higher (``make bench`` P3 peak RSS) and filled in the ISO facts
#: about 1 s sooner (16–17 s against 17–18 s; the rows show at once either way).
HEADER_BATCH = 64


def _batches(paths: list[str]) -> list[list[str]]:
    batches, batch, size = [], [], 0
    for path in paths:
        cost = len(path.encode("utf-8", "surrogateescape")) * 4 + 3  # worst case once quoted
        if batch and (size + cost > HEADER_COMMAND_BYTES or len(batch) >= HEADER_BATCH):
            batches.append(batch)
            batch, size = [], 0
        batch.append(path)
        size += cost
    return batches + [batch] if batch else batches


async def read_headers(host: Host, paths: list[str], limit: int = 65536,
                       on_batch: Callable[[dict[str, bytes]], None] | None = None) -> dict[str, bytes]:
    """Read the first 64 KiB of each regular file in ``paths``: one command, or, for many or long paths,
    one per :data:`HEADER_BATCH` paths or :data:`HEADER_COMMAND_BYTES` of command line, two at a time.

    Files are opened without following symlinks and without blocking on fifos (GNU ``dd iflag=nofollow``;
    on a host whose listing is the portable one, as ``backend/sh/lib-open-upload.sh`` says); an entry that is
    not a regular file (or cannot be read) gives ``b""``. A file shorter than 64 KiB comes back padded with NULs:
    callers cut it to the listed size.

    Args:
        on_batch: if given, called with each command's path → header bytes as soon as it arrives, and
            nothing is kept (the return value is then empty): a caller that parses headers at once never
            holds more than two commands' output.
    Returns:
        path → header bytes (up to ``limit``), or ``{}`` with ``on_batch``.
    Raises:
        HostError: the host is unreachable.
    """
    out: dict[str, bytes] = {}
    running = asyncio.Semaphore(2)

    async def one(batch: list[str]) -> None:
        mark = f"isoadmin-header-{secrets.token_hex(8)}"
        async with running:
            text = _HEADERS_PORTABLE if hosttools.is_portable(host) else _HEADERS
            result = await host.run(script(text, "isoadmin-headers", mark, *batch), check=False)
        blocks = result.stderr.split(mark + "\n")[1:]
        offset, got = 0, {}
        for i, path in enumerate(batch):
            written = 0
            for line in (blocks[i] if i < len(blocks) else "").splitlines():
                m = _RECORDS_OUT.match(line.strip())
                if m:
                    written = int(m.group(1)) + int(m.group(2))
            chunk = result.stdout[offset:offset + 65536] if written else b""
            offset += len(chunk)
            got[path] = chunk[:limit]
        if on_batch is not None:
            on_batch(got)
        else:
            out.update(got)

    await asyncio.gather(*(one(b) for b in _batches(paths)))
    return out


_LOCATE = load("imagehost-locate.sh")


async def locate(host: Host, serial: str, id_dirs: tuple[str, ...], timeout: float = 15.0) -> str:
    """Find the hot-plugged disk with ``serial`` inside the image host.

    Looks at ``/sys/block/*/serial`` (virtio-blk) and then at ``*SERIAL`` links in ``id_dirs``
    (``/dev/disk/by-id``), polling every 0.1 s for ``timeout`` seconds.

    Returns:
        the device path inside the image host (``/dev/vdb`` ...).
    Raises:
        HostError: no such disk appeared in time.
    """
    tries = max(1, int(timeout / 0.1))
    try:
        result = await host.run(script(_LOCATE, "isoadmin-locate", serial, str(tries), *id_dirs),
                                timeout=timeout + 30)
    except CommandFailed:
        raise HostError(host.name, f"disk with serial {serial} did not appear within {timeout:.0f} s") from None
    return result.stdout.decode("utf-8", "surrogateescape").strip()


_IN_USE = load("imagehost-in-use.sh")
_IN_USE_PORTABLE = load("imagehost-in-use-portable.sh")


async def in_use(host: Host, path: str) -> int | None:
    """PID of a process that holds ``path`` open on the image host (an SFTP upload still writing it),
    or None. One ``find`` over ``/proc/*/fd``: by the links' target where ``find`` has ``-lname`` (GNU), else
    by the open file's device and inode (BusyBox: ``stat -L`` of each). It sees every process when the console
    logs in as root, else the login user's own.

    Raises:
        HostError: the host is unreachable.
    """
    if hosttools.is_portable(host):
        result = await host.run(script(_IN_USE_PORTABLE, "isoadmin-inuse", path), check=False)
    else:
        pattern = re.sub(r"([*?\[\\])", r"\\\1", path)  # find -lname takes a glob: match the path literally
        result = await host.run(script(_IN_USE, "isoadmin-inuse", pattern), check=False)
    text = result.stdout.decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


# backend/sh/imagehost-copy.sh: the one-pass copy (write, hash, read back behind the writer).
_COPY = load("lib-open-upload.sh", "imagehost-copy.sh")

#: MiB the copy writes with one ``dd`` ``write`` (and reads back with one ``read``): one big O_DIRECT request
#: lets the kernel keep many of the disk's requests in flight; the read-back trails the writer by one segment.
SEGMENT_MIB = 64

# backend/sh/imagehost-verify.sh: the cached pages dropped first, then the first SIZE bytes hashed.
VERIFY_SCRIPT = load("lib-sha256.sh", "imagehost-verify.sh")

_PROGRESS = re.compile(rb"(\d+) bytes")
_VERIFIED = re.compile(rb"verified (\d+)$")
_SHA = re.compile(rb"^([0-9a-f]{64})\s")
_DIGEST = re.compile(rb"^(upload|landed) ([0-9a-f]{64})\s")


@dataclass
class CopyResult:
    """What the one-pass copy inside the image host reported.

    Attributes:
        sha256: hex digest of the upload (read by a second reader while the copy runs).
        landed: hex digest of the bytes read back from the disk behind the writer (O_DIRECT), cut to the
            upload's size; "" when the read-back did not finish.
        copied: bytes written. verified: bytes read back. before/after: ``stat`` of the upload before and
        after (type size inode links mtime): they differ when the upload changed during the copy.
        statuses: exit status of the hashing read (``read``), of the copy onto the disk (``write``) and of
        the read-back (``readback``); ``open`` alone when, on a host whose ``dd`` cannot open without following
        a link, the upload was not (or no longer) the regular file ``before`` shows.
    """

    sha256: str
    copied: int
    before: str
    after: str
    statuses: dict[str, int]
    landed: str = ""
    verified: int = 0


#: ``on_progress(bytes_written, bytes_verified)``.
ProgressCallback = Callable[[int, int], None]


def copy_command(src: str, dst: str, sha: str = "openssl", dd: str = "gnu",
                 segment: int = SEGMENT_MIB) -> Command:
    """The one-pass copy: write the upload (no symlinks followed) onto the disk in segments of
    ``segment`` MiB (O_DIRECT where the target allows it, fsynced), hash it, and read every finished
    segment back from the disk into a second hash while the next one is written.

    Args:
        src: the upload's path. dst: the disk inside the image host. sha: ``openssl`` or ``sha256sum``
            (:class:`~backend.hosttools.Tools`). dd: ``gnu`` (O_DIRECT and ``iflag=nocache`` are used) or
            another ``dd`` (plain writes, each fsynced). segment: MiB per ``dd`` (one read, one write).

    It runs under ``setsid`` so its shell's PID is also its process group: :func:`kill_group` can
    stop every process of the copy by that one number.
    """
    return Command(("setsid", "sh", "-c", _COPY, "isoadmin-copy", src, dst, sha, str(segment), dd),
                   mutating=True, label="copy")


async def copy(host: Host, src: str, dst: str, on_progress: ProgressCallback,
               on_pid: Callable[[int], None] | None = None, segment: int = SEGMENT_MIB) -> CopyResult:
    """Copy upload ``src`` onto device ``dst`` inside the image host in one pass: hashing the upload and
    reading the landed bytes back at the same time (see :func:`copy_command`; the host's tools are
    detected once, :func:`~backend.hosttools.tools`).

    ``on_progress(bytes_written, bytes_verified)`` is called after each segment.

    Raises:
        HostError / CommandFailed: the copy could not start, or the connection dropped.
    """
    found = await hosttools.tools(host)
    proc = await host.start(copy_command(src, dst, found.sha, found.dd, segment))
    out = bytearray()
    copied = verified = 0
    pid_seen: list[int] = []

    async def pump_stderr() -> None:
        nonlocal copied, verified
        buf = b""
        while True:
            chunk = await proc.stderr.read(4096)
            if not chunk:
                break
            buf += chunk
            *parts, buf = re.split(rb"[\r\n]", buf)
            for part in parts:
                m = _PROGRESS.match(part)
                if m:
                    copied = int(m.group(1))
                elif m := _VERIFIED.match(part):
                    verified = int(m.group(1))
                else:
                    continue
                on_progress(copied, verified)

    async def pump_stdout() -> None:
        while True:
            chunk = await proc.stdout.read(65536)
            if not chunk:
                break
            out.extend(chunk)
            if not pid_seen and out.startswith(b"pid ") and b"\n" in out:
                pid_seen.append(int(out[4:out.index(b"\n")]))
                if on_pid:
                    on_pid(pid_seen[0])

    try:
        await asyncio.gather(pump_stderr(), pump_stdout())
        await proc.wait()
    except (OSError, asyncssh.Error) as exc:  # connection dropped mid-copy
        proc.close()
        raise HostError(host.name, f"copy interrupted: {exc or type(exc).__name__}") from None
    if proc.exit_status is None and proc.exit_signal is None:
        raise HostError(host.name, "copy interrupted: the SSH connection was lost")
    statuses: dict[str, int] = {}
    digests: dict[bytes, str] = {}
    before = after = ""
    for line in bytes(out).splitlines():
        word, _, rest = line.partition(b" ")
        text = rest.decode("utf-8", "replace")
        if word in (b"read", b"write", b"readback", b"open"):
            statuses[word.decode()] = int(rest) if rest.strip().isdigit() else -1
        elif word == b"before":
            before = text
        elif word == b"after":
            after = text
        elif m := _DIGEST.match(line):
            digests[m.group(1)] = m.group(2).decode()
    return CopyResult(digests.get(b"upload", ""), copied, before, after, statuses,
                      digests.get(b"landed", ""), verified)


async def verify(host: Host, dst: str, size: int) -> str:
    """Re-read the first ``size`` bytes of ``dst`` inside the image host, from the disk (its cached pages
    dropped first).

    Returns:
        their sha256 (hex).
    Raises:
        HostError, CommandFailed.
    """
    result = await host.run(script(VERIFY_SCRIPT, "isoadmin-verify", dst, str(size)), timeout=None)
    m = _SHA.match(result.stdout)
    if not m:
        raise HostError(host.name, f"verify of {dst} printed no checksum")
    return m.group(1).decode()


async def read_device_header(host: Host, device: str, limit: int = 65536) -> bytes:
    """The first ``limit`` bytes of ``device`` inside the image host (a hot-plugged disk after the copy).

    Raises:
        HostError, CommandFailed: the host is unreachable or the device cannot be read.
    """
    result = await host.run(script(_DEVICE_HEADER, "isoadmin-device-header", device, str(limit)))
    return result.stdout[:limit]


_DEVICE_HEADER = load("imagehost-device-header.sh")
_KILL = load("imagehost-kill.sh")


async def kill_group(host: Host, pid: int) -> None:
    """Stop a copy started by :func:`copy` — its shell and every child — by its PID (= process group),
    over a new channel, and wait (up to 5 s) until every process of the group is gone. A PID that now
    belongs to another program is left alone."""
    await host.run(script(_KILL, "isoadmin-kill", str(pid), mutating=True), check=False)

