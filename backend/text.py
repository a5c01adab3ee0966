"""The display rule: text that comes from a host or a person is shown as text, never sent raw.

File names, owner names, ISO volume ids, host errors and rejection reasons are chosen by strangers. Every
such string goes through :func:`printable` before it reaches a terminal. Replaced by a visible escape such
as ``\\x1b``, ``\\u202e``, ``\\u200b`` or ``\\xff`` are:

- every character that could act on a terminal or reorder text: the Unicode general categories Cc (C0
  controls, DEL, C1 controls), Cf (format characters: bidi marks, embeddings, overrides and isolates,
  zero-width space and joiners, word joiner, invisible operators, byte order mark, soft hyphen, interlinear
  annotation, tag characters ...), Zl and Zp (line and paragraph separators U+2028, U+2029) and Cs (lone
  surrogates, among them the bytes that were not UTF-8, which Python keeps as U+DC80–U+DCFF);
- every other character a terminal draws as nothing, so that two different names never look the same: the
  Unicode property Default_Ignorable_Code_Point (combining grapheme joiner U+034F, Hangul fillers U+115F,
  U+1160, U+3164, U+FFA0, Khmer inherent vowels U+17B4, U+17B5, Mongolian and other variation selectors
  U+180B–U+180F, U+FE00–U+FE0F, U+E0100–U+E01EF, the reserved U+2065, U+FFF0–U+FFF8, U+E0000–U+E0FFF);
- U+2800 BRAILLE PATTERN BLANK, a character that is not a space but is drawn as one (a well-known way of
  making a name look empty or like another).

A backslash is left as it is. The result is then shown as plain text, never parsed as markup (the CLI and
the TUI pass ``rich.text.Text`` objects or ``markup=False``).

:func:`csv_cell` adds the spreadsheet rule for ``catalog --csv``. ``--json`` keeps the exact strings: JSON
escapes them itself.

Sources: general categories, Unicode Standard Annex #44 and ``unicodedata``; Default_Ignorable_Code_Point,
Unicode ``DerivedCoreProperties.txt``; formula prefixes, OWASP "CSV Injection"
(https://owasp.org/www-community/attacks/CSV_Injection).
"""

from __future__ import annotations

import re

#: The hidden characters as inclusive code point ranges. The categories Cc, Cf, Zl, Zp and Cs as
#: ``unicodedata`` (Unicode 14.0, Python 3.11) assigns them, the Default_Ignorable_Code_Point ranges and
#: U+2800. Written out rather than computed at import: scanning all 1,114,112 code points with
#: ``unicodedata.category`` costs every CLI run about a fifth of a second. A test scans them and fails when
#: a newer Python's Unicode puts a Cc/Cf/Zl/Zp/Cs character outside these ranges.
HIDDEN_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F), (0x007F, 0x009F),   # Cc: C0 controls, DEL, C1 controls
    (0x00AD, 0x00AD),                     # Cf: soft hyphen
    (0x034F, 0x034F),                     # ignorable: combining grapheme joiner
    (0x0600, 0x0605), (0x061C, 0x061C),   # Cf: Arabic number signs, Arabic letter mark
    (0x06DD, 0x06DD), (0x070F, 0x070F),   # Cf: Arabic end of ayah, Syriac abbreviation mark
    (0x0890, 0x0891), (0x08E2, 0x08E2),   # Cf: Arabic pound/piastre marks above, disputed end of ayah
    (0x115F, 0x1160),                     # ignorable: Hangul choseong/jungseong fillers
    (0x17B4, 0x17B5),                     # ignorable: Khmer inherent vowels
    (0x180B, 0x180F),                     # Cf U+180E Mongolian vowel separator; ignorable: Mongolian variation selectors
    (0x200B, 0x200F),                     # Cf: zero-width space, ZWNJ, ZWJ, LRM, RLM
    (0x2028, 0x202E),                     # Zl, Zp: line/paragraph separators; Cf: bidi embeddings and overrides
    (0x2060, 0x206F),                     # Cf: word joiner, invisible operators, isolates, deprecated format controls
    (0x2800, 0x2800),                     # braille pattern blank: drawn as a space, not one
    (0x3164, 0x3164),                     # ignorable: Hangul filler
    (0xD800, 0xDFFF),                     # Cs: lone surrogates (undecodable bytes are U+DC80–U+DCFF)
    (0xFE00, 0xFE0F),                     # ignorable: variation selectors
    (0xFEFF, 0xFEFF),                     # Cf: zero-width no-break space / byte order mark
    (0xFFA0, 0xFFA0),                     # ignorable: halfwidth Hangul filler
    (0xFFF0, 0xFFFB),                     # ignorable (reserved); Cf: interlinear annotation anchor/separator/terminator
    (0x110BD, 0x110BD), (0x110CD, 0x110CD),  # Cf: Kaithi number signs
    (0x13430, 0x1343F),                   # Cf: Egyptian hieroglyph format controls (U+13439– from Unicode 15)
    (0x1BCA0, 0x1BCA3),                   # Cf: shorthand format controls
    (0x1D173, 0x1D17A),                   # Cf: musical symbol format controls
    (0xE0000, 0xE0FFF),                   # Cf: tag characters; ignorable: variation selectors supplement, reserved
)


def _char_class(ranges) -> str:
    """A regular expression character class of the inclusive code point ``ranges``."""
    return "[" + "".join(re.escape(chr(lo)) + (f"-{re.escape(chr(hi))}" if hi > lo else "") for lo, hi in ranges) + "]"


# One precompiled class, run on every cell of every table. Python's ``re`` tests a character against the
# code points up to U+FFFF with one bitmap lookup but walks the ranges above one by one; so the class holds
# the hidden characters up to U+FFFF and every character above (rare in names: emoji, historic scripts),
# and :func:`_escape` keeps those of the latter that are not hidden.
_ASTRAL = tuple((lo, hi) for lo, hi in HIDDEN_RANGES if lo > 0xFFFF)
_BMP = tuple((lo, hi) for lo, hi in HIDDEN_RANGES if hi <= 0xFFFF)
assert len(_ASTRAL) + len(_BMP) == len(HIDDEN_RANGES) and _BMP[0] == (0x00, 0x1F)
_SUSPECT = re.compile(_char_class((*_BMP, (0x10000, 0x10FFFF))))
_SUSPECT_KEEP_LINES = re.compile(_char_class(((0x00, 0x09), (0x0B, 0x1F), *_BMP[1:], (0x10000, 0x10FFFF))))  # no \n


def _hidden(code: int) -> bool:
    """Whether code point ``code``, matched by the class above, is hidden."""
    return code <= 0xFFFF or any(lo <= code <= hi for lo, hi in _ASTRAL)


def _escape(match: re.Match) -> str:
    char = match.group()
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}" if _hidden(code) else char


def printable(value: object, keep_newlines: bool = False) -> str:
    """Return ``str(value)`` with every hidden character (see the module's docstring) made visible.

    Args:
        value: any object; None gives ``""``.
        keep_newlines: keep ``\\n`` as a line break (for messages of several lines that this program
            joined itself); otherwise a newline shows as ``\\x0a`` like every other control character.
    Returns:
        a string with no character of :data:`HIDDEN_RANGES` (no Cc, Cf, Zl, Zp or Cs character, no default
        ignorable code point, no braille blank) but ``\\n`` when ``keep_newlines``; each was replaced by
        ``\\xNN`` (code points and undecodable bytes up to 0xFF), ``\\uNNNN`` or ``\\UNNNNNNNN``.
    """
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    pattern = _SUSPECT_KEEP_LINES if keep_newlines else _SUSPECT
    return pattern.sub(_escape, text)


def is_printable(text: str, keep_newlines: bool = True) -> bool:
    """True when ``text`` holds nothing :func:`printable` would escape (``\\n`` allowed unless
    ``keep_newlines`` is False). Used by the tests on what reached stdout, and where a value cannot be
    escaped (an input box's initial value).

    Args:
        text: the text to look at. keep_newlines: whether ``\\n`` is allowed.
    Returns:
        whether no character of :data:`HIDDEN_RANGES` (``\\n`` aside, if allowed) is in ``text``.
    """
    pattern = _SUSPECT_KEEP_LINES if keep_newlines else _SUSPECT
    if pattern.search(text) is None:
        return True
    return not any(_hidden(ord(m.group())) for m in pattern.finditer(text))


#: A cell starting with one of these is a formula (or becomes one) in a spreadsheet: OWASP "CSV Injection".
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """One CSV cell under the display rule and safe to open in a spreadsheet.

    The value goes through :func:`printable` (newlines escaped too, as in the tables); then a cell that
    starts with ``=``, ``+``, ``-``, ``@``, TAB or CR gets a leading ``'``, so that a spreadsheet reads it as
    text rather than a formula (OWASP "CSV Injection",
    https://owasp.org/www-community/attacks/CSV_Injection). A leading TAB or CR never gets that far: the
    display rule has made it ``\\x09`` or ``\\x0d``. The ``csv`` module then quotes the cell when it holds a
    delimiter or a quote, doubling its quotes.

    Args:
        value: any object; None gives ``""``, other non-strings their ``str()`` (as the ``csv`` module writes them).
    Returns:
        the cell's text: equal to ``str(value)`` when that has no hidden character and no formula prefix.
    """
    cell = printable(value)
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


__all__ = ["printable", "is_printable", "csv_cell", "HIDDEN_RANGES", "FORMULA_PREFIXES"]
