"""Property-based tests (hypothesis) of what strangers choose: file names (any bytes the file system allows),
ISO headers (fuzzed primary volume descriptor, El Torito boot record and catalog, MBR), rejection reasons
and configuration values. Properties: no traceback, no markup error, no raw control character in what
reaches the terminal, every import byte-identical.

``make test`` runs a fixed seed and a small example budget (profile ``ci``); ``ISOADMIN_HYPOTHESIS=long``
runs a hundred times more examples, randomly seeded. One lab serves a whole module, in a thread of its own
(examples are synchronous; the lab and the site live in that thread's event loop).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import os
import re
import struct
import threading
import time
import unicodedata
from types import SimpleNamespace

import pycdlib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend import kernels
from backend.config import parse_config
from backend.errors import ConfigError, Unreadable, UsageError
from backend.isoinfo import HEADER_BYTES, SECTOR, inspect_header
from backend.kernels import Skipped
from backend.lab import Lab, make_iso, make_kernel_iso, make_live_iso
from backend.models import Upload, UploadState
from backend.site import Site
from backend.text import FORMULA_PREFIXES, HIDDEN_RANGES, csv_cell, is_printable, printable
from screens.plain import plain
from screens.uploads import upload_cells
from tui.cli import audit_table, jobs_table, render_table, uploads_table, volumes_table

from ..conftest import cli, sha256_file
from .test_display import audit_screen_rows
from .test_units import minimal

LONG = os.environ.get("ISOADMIN_HYPOTHESIS") == "long"
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("long", derandomize=False, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
PROFILE = settings.get_profile("long" if LONG else "ci")


def examples(n: int) -> settings:
    """``n`` examples in ``make test``; a hundred times more with ``ISOADMIN_HYPOTHESIS=long``."""
    return settings(PROFILE, max_examples=n * 100 if LONG else n)


# ---------------------------------------------------------------------- a lab in a thread of its own

class Background:
    """An event loop in a thread: the lab's SSH servers and the site run there while examples run here."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="lab", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 120):
        """Run ``coro`` in the loop and return its result (or raise its exception)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def lab_site(tmp_path_factory):
    """``(background, lab, site)``: a started lab and a site on it, shared by this module's tests."""
    bg = Background()
    lab = Lab(tmp_path_factory.mktemp("plab") / "lab")

    async def start():
        lab.config = await lab.start()
        lab.writer.cancel()  # the upload in progress would change under the comparisons
        return Site(lab.config)

    site = bg.run(start())
    yield bg, lab, site

    async def stop():
        await site.close()
        await lab.stop()

    bg.run(stop())
    bg.close()


def rendered(headers_rows) -> str:
    """What the CLI prints for a table (``render_table``), as text."""
    out = io.StringIO()
    render_table(*headers_rows, file=out)
    return out.getvalue()


def assert_clean(text: str) -> None:
    """No raw control character (C0 but ``\\n``, C1, DEL), no bidi control, no lone surrogate; a piped
    table's tabs separate its columns and nothing else (every line has as many fields as the header)."""
    lines = text.splitlines()
    if lines and "\t" in lines[0]:
        assert {len(line.split("\t")) for line in lines} == {len(lines[0].split("\t"))}, lines
        text = text.replace("\t", " ")
    assert is_printable(text), repr(sorted({c for c in text if not is_printable(c)}))


def uploads_path(lab, owner: bytes, name: bytes) -> bytes:
    return os.path.join(os.fsencode(lab.uploads_root), owner, name)


# ---------------------------------------------------------------------- names

PIECES = [b"\x1b[2J", b"\x1b]0;owned\x07", b"\x1b[31m", "\u202e".encode(), "\u2066".encode(), "\u200f".encode(),
          b"\xc2\x9b", b"\x7f", b"\n", b"\t", b"\r", b"\xff", b"\xed\xa0\x80", b"[/]", b"[bold]", b":smile:",
          b"$(touch x)", b"`id`", b"-", b"..", b" ", b"*", "ＩＳＯ".encode(), b".iso"]


def _name(parts: list[bytes]) -> bytes:
    name = b"".join(parts).replace(b"/", b"_").replace(b"\0", b"_")[:240]
    return name if name not in (b"", b".", b"..") else b"x" + name


names = st.lists(st.one_of(st.sampled_from(PIECES), st.binary(min_size=1, max_size=6),
                           st.text(min_size=1, max_size=6).map(lambda t: t.encode("utf-8", "surrogatepass"))),
                 min_size=1, max_size=8).map(_name)


def test_any_file_name_is_listed_and_shown_as_text(lab_site):
    bg, lab, site = lab_site
    content = make_iso("NAMES", {"README.TXT;1": b"names\n"})
    old = time.time() - 600
    counter = iter(range(1_000_000))

    @examples(80)
    @given(names)
    def one(name: bytes) -> None:
        name = f"{next(counter):04d}".encode() + name  # every example its own file
        path = uploads_path(lab, b"alice", name)
        with open(path, "wb") as f:
            f.write(content)
        os.utime(path, (old, old))
        snap = bg.run(site.refresh())
        shown = [u for u in snap.uploads if os.fsencode(u.name) == name]
        assert len(shown) == 1
        assert_clean(rendered(uploads_table(snap)))
        assert_clean(rendered(volumes_table(snap)))
        for cell in upload_cells(shown[0], time.time()):
            assert_clean(str(cell))

    one()
    # the same site through the real CLI, every generated name still there
    r = bg.run(cli("uploads", config=lab.config_path))
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert_clean(r.stdout)
    assert r.stdout.count("\n") >= 80


def _utf8(name: bytes) -> bytes:
    """``name`` made valid UTF-8 (undecodable bytes become U+FFFD), at most 240 bytes."""
    text = name.decode("utf-8", "replace")
    while len(text.encode()) > 240:
        text = text[:-1]
    return text.encode() or b"x"


def test_hostile_names_are_imported_byte_identically(lab_site):
    bg, lab, site = lab_site
    counter = iter(range(1_000_000))
    old = time.time() - 600
    imported = []

    @examples(8)
    @given(names.map(_utf8), st.binary(min_size=0, max_size=4096))
    def one(name: bytes, tail: bytes) -> None:
        n = next(counter)
        name = f"i{n:03d}".encode() + name
        path = uploads_path(lab, b"bob", name)
        with open(path, "wb") as f:
            f.write(make_iso(f"IMPORT{n}", {"DATA.BIN;1": tail or b"-"}) + tail)
        os.utime(path, (old, old))
        snap = bg.run(site.refresh())
        (u,) = [u for u in snap.uploads if os.fsencode(u.name) == name]
        assert u.state == UploadState.PENDING, (u.state, u.reason)
        job = bg.run(site.approve(bg.run(site.plan(u.key))))
        landed = lab.volumes_dir(job.dom0) / f"{job.final}.img"
        assert sha256_file(landed, u.size) == job.sha256 == hashlib.sha256(open(path, "rb").read()).hexdigest()
        assert_clean(rendered(volumes_table(bg.run(site.refresh()))))
        imported.append(name)

    one()
    assert len(imported) >= 8


# ---------------------------------------------------------------------- ISO headers

def _iso_regions() -> tuple[bytes, list[tuple[int, int]]]:
    """A real bootable ISO made by pycdlib and the byte ranges worth fuzzing: MBR, PVD, El Torito boot
    record, boot catalog."""
    iso = make_iso("FUZZ", {"README.TXT;1": b"fuzz\n" * 50}, bootable=True)
    catalog = struct.unpack_from("<L", iso, 17 * SECTOR + 71)[0]
    regions = [(0, 512), (16 * SECTOR, 17 * SECTOR), (17 * SECTOR, 18 * SECTOR),
               (catalog * SECTOR, catalog * SECTOR + 64)]
    assert iso[17 * SECTOR + 7:17 * SECTOR + 30] == b"EL TORITO SPECIFICATION" and catalog * SECTOR < HEADER_BYTES
    return iso, regions


ISO, REGIONS = _iso_regions()


@st.composite
def fuzzed_headers(draw) -> bytes:
    data = bytearray(ISO[:HEADER_BYTES])
    for _ in range(draw(st.integers(1, 24))):
        start, end = draw(st.sampled_from(REGIONS))
        offset = draw(st.integers(start, min(end, len(data)) - 1))
        data[offset] = draw(st.integers(0, 255))
    if draw(st.booleans()):  # a field's worth of chosen bytes: the volume id, dates, sizes ...
        start, end = draw(st.sampled_from(REGIONS))
        offset = draw(st.integers(start, min(end, len(data)) - 1))
        chunk = draw(st.binary(min_size=1, max_size=40))
        data[offset:offset + len(chunk)] = chunk
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return bytes(data[:cut] if cut is not None else data)


@examples(500)
@given(fuzzed_headers(), st.one_of(st.none(), st.integers(0, 1 << 40)))
def test_fuzzed_iso_headers_never_raise_and_render_clean(header, size):
    facts = inspect_header(header, size)
    assert isinstance(facts.is_iso9660, bool)
    u = Upload("imagehost", "alice", "fuzz.iso", "/x/alice/fuzz.iso", "file", size or 1, 0.0, 1, 1, facts)
    assert_clean(rendered(uploads_table(SimpleNamespace(uploads=[u]))))
    for cell in upload_cells(u, time.time()):
        assert_clean(str(cell))
    for value in (facts.volume_id, facts.problem):
        assert_clean(str(plain(value)))


# ---------------------------------------------------------------------- the display rule itself

HIDDEN_CATEGORIES = ("Cc", "Cf", "Zl", "Zp", "Cs")  # Unicode general categories the rule always escapes

#: zero-width characters, bidi controls, other format characters, separators, fillers, tags, selectors
INVISIBLE = ("\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\u206a\u206f\ufeff\u180e\xad\u034f"
             "\u115f\u1160\u3164\uffa0\u2800\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
             "\u2028\u2029\x85\ufff9\ufffa\ufffb\ufe00\ufe0f\u180b\U000e0001\U000e0041\U000e007f\U000e0100")
ESCAPE = re.compile(r"\\x([0-9a-f]{2})|\\u([0-9a-f]{4})|\\U([0-9a-f]{8})")


def hidden(char: str) -> bool:
    code = ord(char)
    return unicodedata.category(char) in HIDDEN_CATEGORIES or any(lo <= code <= hi for lo, hi in HIDDEN_RANGES)


# ordinary text (no backslash, so that every backslash of the result starts an escape) mixed with
# characters drawn from the hidden categories and the invisible ones above; no surrogate from U+DC80 to
# U+DCFF (an undecodable byte, shown \xNN like U+0080–U+00FF: test_display covers them)
shown_texts = st.lists(st.one_of(
    st.text(st.characters(exclude_characters="\\", exclude_categories=("Cs",)), min_size=1, max_size=8),
    st.sampled_from(INVISIBLE),
    st.characters(categories=HIDDEN_CATEGORIES).filter(lambda c: not 0xDC80 <= ord(c) <= 0xDCFF),
), max_size=12).map("".join)


@examples(500)
@given(shown_texts, st.booleans())
def test_printable_shows_every_hidden_character_as_its_escape(text, keep_newlines):
    shown = printable(text, keep_newlines)
    assert not [c for c in shown if unicodedata.category(c) in HIDDEN_CATEGORIES and not (keep_newlines and c == "\n")]
    assert is_printable(shown, keep_newlines)
    escapes = list(ESCAPE.finditer(shown))
    assert len(escapes) == shown.count("\\") == sum(hidden(c) and not (keep_newlines and c == "\n") for c in text)
    back = ESCAPE.sub(lambda m: chr(int(next(g for g in m.groups() if g), 16)), shown)
    assert back == text  # each hidden character became exactly its escape, and nothing else changed


def written_and_read(cells: list) -> list[str]:
    """``cells`` as one CSV row written by ``catalog --csv``'s writer (each through ``csv_cell``), read back."""
    out = io.StringIO()
    csv.writer(out).writerow([csv_cell(c) for c in cells])
    (row,) = csv.reader(io.StringIO(out.getvalue(), newline=""))
    return row


csv_values = st.one_of(st.none(), st.integers(), st.booleans(), shown_texts, st.text(max_size=20),
                       st.tuples(st.sampled_from([*FORMULA_PREFIXES, "=HYPERLINK(", "@SUM(", "-2+3", "+cmd|"]),
                                 st.one_of(shown_texts, st.text(max_size=20))).map("".join))


@examples(500)
@given(st.lists(csv_values, min_size=1, max_size=6))
def test_a_csv_cell_is_never_a_formula_and_printable_text_round_trips(values):
    row = written_and_read(values)
    assert len(row) == len(values)
    for value, cell in zip(values, row):
        assert not cell.startswith(FORMULA_PREFIXES), (value, cell)
        assert is_printable(cell, keep_newlines=False)
        text = "" if value is None else str(value)
        if is_printable(text, keep_newlines=False):
            assert cell == ("'" + text if text.startswith(FORMULA_PREFIXES) else text)
        else:
            assert cell.lstrip("'") == printable(text)

# ---------------------------------------------------------------------- ISO trees and boot configs

def _kernel_iso_regions(data: bytes) -> list[tuple[int, int]]:
    """The byte ranges of a pycdlib-made kernel ISO worth fuzzing (ECMA-119): the PVD's root directory record,
    both path tables, every directory's records (with their Rock Ridge / SUSP entries), every Rock Ridge
    continuation area and the rest of the metadata before the first file's data, and the boot configs."""
    pvd = 16 * SECTOR
    size, l_lba, m_lba = (struct.unpack_from("<L", data, pvd + 132)[0], struct.unpack_from("<L", data, pvd + 140)[0],
                          struct.unpack_from(">L", data, pvd + 148)[0])
    regions = [(pvd + 156, pvd + 190), (l_lba * SECTOR, l_lba * SECTOR + size), (m_lba * SECTOR, m_lba * SECTOR + size)]
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    first_data = len(data)
    for top, _dirs, files in iso.walk(rr_path="/"):
        rec = iso.get_record(rr_path=top)
        regions.append((rec.extent_location() * SECTOR, rec.extent_location() * SECTOR + rec.get_data_length()))
        for name in files:
            path = top.rstrip("/") + "/" + name
            if iso.get_record(rr_path=path).rock_ridge.is_symlink():
                continue
            ((offset, length),) = iso.get_file_byte_extents(rr_path=path)
            first_data = min(first_data, offset)
            if name.endswith(".cfg"):
                regions.append((offset, offset + length))
    iso.close()
    regions.append((17 * SECTOR, first_data))  # descriptors, path tables, directories, continuation areas
    return [(a, b) for a, b in regions if b > a]


KERNEL_ISOS = []
for _data in (make_kernel_iso("FUZZ", b"K" * 3000, b"R" * 2000, "quiet splash"),  # isolinux and GRUB configs
              make_live_iso("FUZZ", b"K" * 3000, b"R" * 2000, "boot=live",  # Rock Ridge links
                            links={"/live/loop-a": "loop-b", "/live/loop-b": "loop-a", "/live/up": "../../x",
                                   "/boot/live": "/live"},
                            entries=[("loop", "/live/loop-a", ""), ("up", "/live/up", ""),
                                     ("folder", "/boot/live/vmlinuz", "/boot/live/initrd.img")])):
    KERNEL_ISOS.append((_data, _kernel_iso_regions(_data)))


@st.composite
def fuzzed_kernel_isos(draw) -> bytes:
    base, regions = draw(st.sampled_from(KERNEL_ISOS))
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 16))):
        start, end = draw(st.sampled_from(regions))
        data[draw(st.integers(start, end - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):  # a field's worth of chosen bytes: a length, an extent, a name, a config line ...
        start, end = draw(st.sampled_from(regions))
        offset = draw(st.integers(start, end - 1))
        chunk = draw(st.one_of(st.binary(min_size=1, max_size=40),
                               st.sampled_from([b"\xff\xff\xff\x7f", b"\x7f\xff\xff\xff", b"\0" * 8, b"SL\xff\x01",
                                                b"CE\x1c\x01", b"../../../../", b"LABEL x\n KERNEL /live/up\n"])))
        data[offset:offset + len(chunk)] = chunk
    cut = draw(st.one_of(st.none(), st.integers(17 * SECTOR, len(data))))
    return bytes(data[:cut] if cut is not None else data)


@examples(200)
@given(fuzzed_kernel_isos())
def test_fuzzed_kernel_isos_give_entries_or_one_unreadable_error(data):
    # kernels.entries_in is what a listing runs on the dom0's bytes: kernels._open (pycdlib) + find_entries
    started = time.monotonic()
    try:
        entries = kernels.entries_in(io.BytesIO(data), "alice/fuzz.iso")
    except Unreadable as exc:
        assert exc.exit_code == 6 and exc.message.startswith("alice/fuzz.iso: "), exc.message
        assert len(plain(exc.message).plain.splitlines()) == 1
    else:
        assert all(isinstance(s, Skipped) and s.reason for s in entries.skipped)
        for e in entries:
            offset, length = entries.extents[e.kernel]
            assert length == e.kernel_size and 0 <= offset and offset + length <= len(data)
            if e.ramdisk:
                offset, length = entries.extents[e.ramdisk]
                assert length == e.ramdisk_size and 0 <= offset and offset + length <= len(data)
    assert time.monotonic() - started < 10  # bounded: every read counts against kernels.READ_BUDGET


# ---------------------------------------------------------------------- rejection reasons

reasons = st.one_of(st.text(max_size=80), st.lists(st.sampled_from([p.decode("utf-8", "surrogateescape")
                                                                     for p in PIECES]), max_size=6).map("".join))


def test_any_rejection_reason_is_recorded_and_shown_as_text(lab_site):
    bg, lab, site = lab_site
    bg.run(site.refresh())

    @examples(60)
    @given(reasons)
    def one(reason: str) -> None:
        try:
            bg.run(site.reject("alice/tools.iso", reason))
        except UsageError:
            assert not reason.strip()
            return
        snap = bg.run(site.refresh())
        assert_clean(rendered(audit_table(bg.run(site.audit.entries())[-5:])))
        assert_clean(rendered(jobs_table(site.jobs())))
        assert_clean(rendered(uploads_table(snap)))
        (u,) = [u for u in snap.uploads if u.key == "alice/tools.iso"]
        assert u.state == UploadState.REJECTED and u.reason == reason.strip()

    one()
    for command in ("audit", "jobs", "uploads"):
        r = bg.run(cli(command, config=lab.config_path))
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert_clean(r.stdout)
    rows = asyncio.run(audit_screen_rows(lab))
    assert len(rows) >= 10
    for row in rows:
        for cell in row:
            assert_clean(cell)


# ---------------------------------------------------------------------- configuration values

def _nested(values: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.lists(values, max_size=3), st.dictionaries(st.text(max_size=8), values, max_size=3))


toml_values = st.recursive(
    st.one_of(st.text(max_size=20), st.integers(-(1 << 63), (1 << 63) - 1), st.floats(allow_nan=True),
              st.booleans(), st.datetimes(), st.dates(), st.times()),
    _nested, max_leaves=6)

KEYS = [("console", k) for k in ("state_dir", "read_only", "settle_seconds", "refresh_seconds", "gc_days",
                                 "gc_rejected_days", "readonly")] + \
       [("quotas", "default"), ("quotas", "owners"), ("owners", "alice"), ("naming", "template"), ("site", "ledger"),
        ("site", "lease_seconds"), ("console", "keymap")] + \
       [("image_hosts.ih", k) for k in ("address", "port", "user", "key", "known_hosts", "uploads_root", "domains",
                                       "disk_id_dirs", "max_copies")] + \
       [("dom0s.d0", k) for k in ("address", "port", "staging_prefix", "final_prefix", "storage", "hypervisor")] + \
       [("dom0s.d0.storage", k) for k in ("driver", "directory", "capacity", "unit", "vg", "vm_disk_pattern")] + \
       [("dom0s.d0.hypervisor", k) for k in ("driver", "guest_disk_dirs", "uri", "bus")]


@examples(600)
@given(st.lists(st.tuples(st.sampled_from(KEYS + [("console", "*"), ("*", "*")]), st.text(max_size=10),
                          toml_values), min_size=1, max_size=4))
def test_any_config_value_is_a_config_or_one_config_error(changes):
    doc = minimal()
    for (table, key), random_key, value in changes:
        key = random_key if key == "*" else key
        if table == "*":
            doc[random_key] = value
            continue
        target = doc
        for part in table.split("."):
            nxt = target.setdefault(part, {})
            if not isinstance(nxt, dict):
                break
            target = nxt
        else:
            target[key] = value
    try:
        parse_config(doc)
    except ConfigError as exc:
        assert exc.exit_code == 2 and exc.message.startswith("config: ")
        shown = plain(exc.message).plain  # as the CLI prints it
        assert_clean(shown)
        assert len(shown.splitlines()) == 1

