"""The display rule: text that comes from a host or a person is shown as text, never sent raw.

File names, owner names, ISO volume ids, host errors and rejection reasons are chosen by strangers. Every
such string goes through :func:`printable` before it reaches a terminal: control characters (C0, DEL, C1),
the characters that reorder text on screen (bidi embeddings, overrides, isolates and marks) and bytes that
were not UTF-8 (kept by Python as lone surrogates) are replaced by a visible escape such as ``\\x1b``,
``\\u202e`` or ``\\xff``. A backslash is left as it is. The result is then shown as plain text, never parsed
as markup (the CLI and the TUI pass ``rich.text.Text`` objects or ``markup=False``).

``--json`` keeps the exact strings: JSON escapes them itself.
"""

from __future__ import annotations

import re

# C0 controls, DEL, C1 controls; bidi marks (U+061C, U+200E, U+200F), embeddings/overrides
# (U+202A–U+202E), isolates (U+2066–U+2069); lone surrogates (surrogateescape'd bytes U+DC80–U+DCFF and
# any other unpaired surrogate).
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_HIDDEN_KEEP_LINES = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                                "\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, kept by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def printable(value: object, keep_newlines: bool = False) -> str:
    """Return ``str(value)`` with every character that could act on a terminal made visible.

    Args:
        value: any object; None gives ``""``.
        keep_newlines: keep ``\\n`` as a line break (for messages of several lines that this program
            joined itself); otherwise a newline shows as ``\\x0a`` like every other control character.
    Returns:
        a string with no C0/C1 control character, no DEL, no bidi control and no lone surrogate; each
        was replaced by ``\\xNN`` (code points and undecodable bytes up to 0xFF) or ``\\uNNNN``.
    """
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    pattern = _HIDDEN_KEEP_LINES if keep_newlines else _HIDDEN
    return pattern.sub(_escape, text)


def is_printable(text: str, keep_newlines: bool = True) -> bool:
    """True when ``text`` holds nothing :func:`printable` would escape (``\\n`` allowed unless
    ``keep_newlines`` is False). Used by the tests on what reached stdout."""
    pattern = _HIDDEN_KEEP_LINES if keep_newlines else _HIDDEN
    return pattern.search(text) is None


__all__ = ["printable", "is_printable"]
