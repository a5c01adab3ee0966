"""The display rule: text chosen by strangers (file and owner names, ISO volume ids, rejection reasons, host
errors) is shown as text, never parsed as markup, with control characters shown escaped; ``--json`` keeps it
exact. The CLI's own code runs in this process (:func:`tui.cli.amain`, its output captured) against a real
lab; the console through Pilot."""

from __future__ import annotations

import csv
import io
import json
import os
import time
import unicodedata

from backend.isoinfo import SECTOR, inspect_header
from backend.kernels import KernelEntry
from backend.lab import make_iso
from backend.models import Upload
from backend.site import Site
from backend.text import HIDDEN_RANGES, csv_cell, is_printable, printable
from screens.cdrom import PickDomain
from screens.modals import DownloadUrl
from screens.kernels import PickKernel, entry_text
from screens.owners import OwnersScreen
from screens.uploads import UploadsScreen, upload_cells
from screens.vtable import VirtualTable
from textual.app import App
from textual.widgets import DataTable, Input, Label, OptionList
from tui.app import IsoadminApp

from ..conftest import isoadmin
from ..tui.test_tui import wait_for

ESCAPES = {
    "clear.iso": "\x1b[2Jclear.iso",                 # ESC [2J: clear the screen
    "title.iso": "\x1b]0;owned\x07title.iso",        # OSC 0: set the window title
    "rlo.iso": "\u202egpj.iso",                      # right-to-left override
    "c1.iso": "c1\x9b31m.iso",                       # C1 CSI
}


def test_printable_escapes_what_acts_on_a_terminal():
    assert printable("\x1b[2J") == "\\x1b[2J"
    assert printable("a\nb\tc\x7f\x85") == "a\\x0ab\\x09c\\x7f\\x85"
    assert printable("a\nb", keep_newlines=True) == "a\nb"
    assert printable("\u202e\u2066\u200f\u061c") == "\\u202e\\u2066\\u200f\\u061c"
    assert printable(b"\xff\xfe".decode("utf-8", "surrogateescape")) == "\\xff\\xfe"
    assert printable("[/] [bold]x[/bold] ünïcödé ＩＳＯ") == "[/] [bold]x[/bold] ünïcödé ＩＳＯ"
    assert printable(None) == "" and printable(3) == "3"
    for s in ("\x1b", "\x00", "\x9b", "\u202e", "\udcff"):
        assert not is_printable(s) and is_printable(printable(s))


def test_zero_width_characters_are_shown_escaped():
    assert printable("al\u200bice") == "al\\u200bice"
    assert printable("a\u200cb\u200dc\u2060d\u180ee") == "a\\u200cb\\u200dc\\u2060d\\u180ee"
    assert printable("\u2061\u2062\u2063\u2064\u206a\u206f") == "\\u2061\\u2062\\u2063\\u2064\\u206a\\u206f"
    assert printable("al\u200bice") != printable("alice") and not is_printable("al\u200bice")


def test_line_and_paragraph_separators_are_escaped():
    assert printable("a\u2028b\u2029c\x85d") == "a\\u2028b\\u2029c\\x85d"
    assert printable("a\u2028b\nc", keep_newlines=True) == "a\\u2028b\nc"  # only \n is ever kept
    assert not is_printable("\u2028") and not is_printable("\u2029") and is_printable("a\nb")


def test_byte_order_mark_is_escaped():
    assert printable("\ufeffalice") == "\\ufeffalice"


def test_soft_hyphen_grapheme_joiner_and_blank_fillers_are_escaped():
    assert printable("ali\xadce") == "ali\\xadce"
    assert printable("ali\u034fce") == "ali\\u034fce"
    # Hangul fillers and the braille blank are drawn as blanks: "alice" + one of them looks like "alice"
    for blank in ("\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"):
        assert printable("alice" + blank) == f"alice\\u{ord(blank):04x}", blank


def test_interlinear_annotation_and_other_format_controls_are_escaped():
    assert printable("\ufff9a\ufffab\ufffb") == "\\ufff9a\\ufffab\\ufffb"
    assert printable("\u0600\u06dd\u070f\U000110bd\U0001d173") == "\\u0600\\u06dd\\u070f\\U000110bd\\U0001d173"


def test_tag_characters_and_variation_selectors_are_escaped():
    # tags spell hidden ASCII ("\U000e0041" is a tag A); variation selectors draw nothing after a plain letter
    assert printable("alice\U000e0041\U000e007f") == "alice\\U000e0041\\U000e007f"
    assert printable("alice\ufe0f") == "alice\\ufe0f" and printable("alice\U000e0100") == "alice\\U000e0100"
    assert printable("a\u180bb") == "a\\u180bb"


def test_every_control_format_separator_and_surrogate_code_point_is_escaped():
    """Every code point whose Unicode general category (``unicodedata``) is Cc, Cf, Zl, Zp or Cs, tested
    one by one: fails when a newer Unicode adds one outside :data:`backend.text.HIDDEN_RANGES`."""
    missed = [hex(c) for c in range(0x110000)
              if unicodedata.category(chr(c)) in ("Cc", "Cf", "Zl", "Zp", "Cs") and is_printable(chr(c), False)]
    assert missed == []
    for lo, hi in HIDDEN_RANGES:
        for c in (lo, hi):
            shown = printable(chr(c))
            assert shown.startswith("\\") and is_printable(shown, False) and shown != chr(c), hex(c)


def test_visible_text_is_left_as_it_is():
    visible = ("[/] ünïcödé ＩＳＯ 全角 한국어 नमस्ते مرحبا עברית \\ back\\slash — … ✓ "
               "\U0001f600 \U0001f1eb\U0001f1f7 \U00020000 \U0001d11e")
    assert printable(visible) == visible and is_printable(visible, False)


def test_csv_cells_that_a_spreadsheet_would_run_get_a_leading_quote():
    # OWASP "CSV Injection": =, +, -, @, TAB and CR start a formula
    for cell in ('=HYPERLINK("http://e.vil/","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)"):
        assert csv_cell(cell) == "'" + cell
    assert csv_cell("\tx") == "\\x09x" and csv_cell("\r=1") == "\\x0d=1"  # escaped first: no longer a prefix
    for cell in ("debian-12.iso", "a=b", "x-1", "'quoted", " =1", "", "ünïcödé"):
        assert csv_cell(cell) == cell
    assert csv_cell(None) == "" and csv_cell(2097152) == "2097152" and csv_cell(True) == "True"


def test_csv_cells_follow_the_display_rule():
    assert csv_cell("\x1b]52;c;aWQK\x07") == "\\x1b]52;c;aWQK\\x07"
    assert csv_cell("a\nb\u200bc") == "a\\x0ab\\u200bc"


def iso_with_volume_id(volume_id: bytes) -> bytes:
    """A real ISO whose primary volume descriptor's volume identifier is ``volume_id`` (any bytes,
    space-padded to 32: pycdlib itself only writes d-characters)."""
    data = bytearray(make_iso("PLACEHOLDER", {"README.TXT;1": b"x\n"}))
    offset = 16 * SECTOR + 40  # ECMA-119 8.4.6: volume identifier, 32 bytes
    data[offset:offset + 32] = volume_id.ljust(32, b" ")[:32]
    return bytes(data)


def put(lab, owner: str, name: str | bytes, content: bytes) -> None:
    folder = os.path.join(os.fsencode(lab.uploads_root), os.fsencode(owner))
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, os.fsencode(name))
    with open(path, "wb") as f:
        f.write(content)
    old = time.time() - 600
    os.utime(path, (old, old))


def clean(stdout: str) -> None:
    """No raw control character on stdout; a piped table's tabs separate its columns and nothing else
    (every line has as many fields as the header)."""
    lines = stdout.splitlines()
    if lines and "\t" in lines[0]:
        assert {len(line.split("\t")) for line in lines} == {len(lines[0].split("\t"))}, lines
        stdout = stdout.replace("\t", " ")
    assert is_printable(stdout), repr([c for c in stdout if not is_printable(c)][:5])


async def test_markup_in_a_volume_id_and_escapes_in_names_are_shown_as_text(lab):
    put(lab, "alice", "brackets.iso", iso_with_volume_id(b"[/]"))
    for name in ESCAPES.values():
        put(lab, "bob", name, make_iso("ESC", {"README.TXT;1": name.encode()}))
    site = Site(lab.config)
    await site.refresh()
    await site.approve(await site.plan("alice/brackets.iso"))
    await site.approve(await site.plan(f"bob/{ESCAPES['clear.iso']}"))
    await site.approve(await site.plan(f"bob/{ESCAPES['title.iso']}"), )
    await site.close()
    for command in ("uploads", "volumes", "catalog"):
        r = await isoadmin(command, config=lab.config_path)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (command, r.stderr)
        clean(r.stdout)
        if command in ("uploads", "catalog"):
            assert "[/]" in r.stdout
        assert "\\x1b[2Jclear.iso" in r.stdout and "\\x1b]0;owned\\x07title.iso" in r.stdout
        if command == "uploads":
            assert "\\u202egpj.iso" in r.stdout and "c1\\x9b31m.iso" in r.stdout
    r = await isoadmin("uploads", "--json", config=lab.config_path)
    names = {u["name"] for u in json.loads(r.stdout)}
    assert set(ESCAPES.values()) <= names  # --json keeps the exact names
    vids = {(u["iso"] or {}).get("volume_id") for u in json.loads(r.stdout)}
    assert "[/]" in vids


async def test_markup_in_a_rejection_reason_is_shown_as_text(lab):
    site = Site(lab.config)
    await site.refresh()
    reason = "[/] [bold]no[/bold] \x1b[2J"
    await site.reject("alice/tools.iso", reason)
    await site.close()
    for command in ("audit", "jobs", "uploads"):
        r = await isoadmin(command, config=lab.config_path)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (command, r.stderr)
        clean(r.stdout)
    r = await isoadmin("audit", config=lab.config_path)
    assert "[/] [bold]no[/bold] \\x1b[2J" in r.stdout
    r = await isoadmin("audit", "--json", config=lab.config_path)
    assert reason in [e["reason"] for e in json.loads(r.stdout)]

    rows = await audit_screen_rows(lab)
    assert "[/] [bold]no[/bold] \\x1b[2J" in [row[6] for row in rows]


async def audit_screen_rows(lab) -> list[list[str]]:
    """The console's Audit screen (key ``5``) on ``lab``: every row's cells as shown."""
    site = Site(lab.config)
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=(160, 45)) as pilot:
        await pilot.press("5")
        table = app.screen.query_one("#audit", DataTable)
        for _ in range(200):  # the log is read from the ledger after the first refresh
            if table.row_count and app.refreshes:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        rows = [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]
    await site.close()
    return rows


OSC52 = b"\x1b]52;c;aWQK\x07\x1b[2J\x07"           # set the clipboard to "id\n", clear the screen, bell
HYPERLINK = b'=HYPERLINK("http://e.vil/","x")'     # a formula in a spreadsheet


async def test_catalog_csv_holds_no_control_character_and_no_formula_cell(lab):
    put(lab, "alice", "osc52.iso", iso_with_volume_id(OSC52))
    put(lab, "alice", "=1+cmd|'calc'!A0.iso", iso_with_volume_id(HYPERLINK))
    put(lab, "bob", "@SUM(1+1).iso", iso_with_volume_id(b"+1+1"))
    site = Site(lab.config)
    await site.refresh()
    for key in ("alice/osc52.iso", "alice/=1+cmd|'calc'!A0.iso", "bob/@SUM(1+1).iso"):
        await site.approve(await site.plan(key))
    await site.close()

    r = await isoadmin("catalog", "--csv", config=lab.config_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert is_printable(r.stdout.replace("\r\n", "\n")), repr(r.stdout)  # CRLF ends each CSV record
    rows = list(csv.DictReader(io.StringIO(r.stdout, newline="")))
    assert len(rows) == 3
    for row in rows:
        for name, cell in row.items():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (name, cell)
    shown = {row["upload"]: row["volume_id"] for row in rows}
    assert shown == {"osc52.iso": "\\x1b]52;c;aWQK\\x07\\x1b[2J\\x07",
                     "'=1+cmd|'calc'!A0.iso": "'" + HYPERLINK.decode(),
                     "'@SUM(1+1).iso": "'+1+1"}

    exact = json.loads((await isoadmin("catalog", "--json", config=lab.config_path)).stdout)
    assert {row["upload"]: row["volume_id"] for row in exact} == {  # --json keeps the exact strings
        "osc52.iso": OSC52.decode(), "=1+cmd|'calc'!A0.iso": HYPERLINK.decode(), "@SUM(1+1).iso": "+1+1"}


async def test_an_owner_name_with_a_zero_width_space_is_shown_escaped(lab):
    spoof = "al\u200bice"  # looks exactly like "alice" when shown raw
    put(lab, spoof, "ipxe.iso", make_iso("SPOOF", {"README.TXT;1": b"x\n"}))
    for command in ("owners", "uploads"):
        r = await isoadmin(command, config=lab.config_path)
        assert r.returncode == 0 and "Traceback" not in r.stderr, (command, r.stderr)
        clean(r.stdout)
        owners = {line.split("\t")[0] for line in r.stdout.splitlines()[1:]}
        assert {"alice", "al\\u200bice"} <= owners, (command, owners)
    r = await isoadmin("owners", "--json", config=lab.config_path)
    assert spoof in {o["name"] for o in json.loads(r.stdout)}

    site = Site(lab.config)
    app = IsoadminApp(site, lab=lab)
    async with app.run_test(size=(160, 45)) as pilot:
        await wait_for(pilot, lambda: app.refreshes > 0)
        await pilot.press("6")
        await wait_for(pilot, lambda: isinstance(app.screen, OwnersScreen))
        table = app.screen.query_one("#owners", VirtualTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        shown = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        assert "al\\u200bice" in shown and "alice" in shown and spoof not in shown
        await pilot.press(*["down"] * shown.index("al\\u200bice"), "enter")  # its uploads: the filter as shown
        await wait_for(pilot, lambda: isinstance(app.screen, UploadsScreen))
        uploads = app.screen.query_one("#uploads", VirtualTable)
        await wait_for(pilot, lambda: uploads.row_count == 1)
        assert app.screen.query_one("#filter", Input).value == "al\\u200bice/"
        assert [str(c) for c in uploads.get_row_at(0)[:2]] == ["al\\u200bice", "ipxe.iso"]
    await site.close()


async def test_the_download_dialog_never_prefills_an_owner_name_it_would_show_raw():
    for owner, prefilled in (("alice", "alice"), ("al\u200bice", ""), ("\x1b[2Jbob", "")):
        screen = DownloadUrl(owner)
        app = Host(screen)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.screen is screen)
            assert screen.query_one("#dl-owner", Input).value == prefilled, owner


# ---------------------------------------------------------------------- the console's other places

HOSTILE = "\x1b]0;owned\x07\u200bx\u202e"
HOSTILE_SHOWN = "\\x1b]0;owned\\x07\\u200bx\\u202e"


def kernel_header(version: bytes) -> bytes:
    """The first bytes of an x86 kernel image (Documentation/arch/x86/boot.rst: 0xAA55 at 0x1FE, "HdrS" at
    0x202, protocol 2.15, the kernel_version pointer at 0x20E) whose version string is ``version``."""
    data = bytearray(0x1000)
    data[0x1FE:0x200] = b"\x55\xaa"
    data[0x202:0x206] = b"HdrS"
    data[0x206:0x208] = bytes([15, 2])
    data[0x20E:0x210] = (0x400 - 0x200).to_bytes(2, "little")
    data[0x400:0x400 + len(version) + 1] = version + b"\0"
    return bytes(data)


def test_an_uploaded_kernels_version_string_is_shown_escaped_on_the_uploads_screen():
    facts = inspect_header(kernel_header(HOSTILE.encode("ascii", "ignore") + b" (lab) #1 SMP"), 4096)
    assert facts.content == "linux-kernel" and facts.kernel_version.startswith("\x1b]0;owned\x07")
    u = Upload("imagehost", "alice", "vmlinuz", "/x/alice/vmlinuz", "file", 4096, 0.0, 1, 1, facts)
    volume_id = upload_cells(u, time.time())[5]
    assert str(volume_id) == "Linux kernel \\x1b]0;owned\\x07x", str(volume_id)


def test_kernel_entries_are_shown_escaped():
    entry = KernelEntry(1, HOSTILE, "/install/" + HOSTILE, "/initrd\u2028", "quiet " + HOSTILE, "/isolinux/" + HOSTILE,
                        1 << 20, 1 << 21)
    shown = str(entry_text(entry))
    assert is_printable(shown) and shown.count(HOSTILE_SHOWN) == 4 and "/initrd\\u2028" in shown


class Host(App):
    """A bare app that shows one modal screen."""

    def __init__(self, screen) -> None:
        super().__init__()
        self.modal = screen

    def on_mount(self) -> None:
        self.push_screen(self.modal)


async def test_the_insert_cd_and_kernel_dialogs_show_names_escaped():
    entry = KernelEntry(1, HOSTILE, "/vmlinuz", "", "", "/isolinux/isolinux.cfg", 1, 0)
    for screen in (PickDomain(f"Insert dom0-a:cd ({HOSTILE}) into", [HOSTILE, "vm1"]),
                   PickKernel(f"Kernels of alice/{HOSTILE}", [entry])):
        app = Host(screen)
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_for(pilot, lambda: app.screen is screen)
            title = str(screen.query_one(".dialog-title", Label).content)
            options = screen.query_one(OptionList)
            prompts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert HOSTILE_SHOWN in title and is_printable(title), title
        assert HOSTILE_SHOWN in prompts[0] and all(is_printable(p) for p in prompts), prompts
