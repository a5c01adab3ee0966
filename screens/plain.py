"""The display rule in the console: text from hosts and people becomes a ``rich.text.Text`` (never markup),
escaped by :func:`backend.text.printable`."""

from __future__ import annotations

from rich.text import Text

from backend.text import printable


def plain(value: object, style: str = "", keep_newlines: bool = False) -> Text:
    """``value`` as a ``Text`` that is shown exactly: control characters escaped, nothing parsed as markup.

    Args:
        value: any object (None gives an empty text). style: a Rich style for the whole text.
        keep_newlines: keep ``\\n`` as line breaks (messages of several lines joined by this program).
    Returns:
        the ``Text``.
    """
    return Text(printable(value, keep_newlines), style=style)


__all__ = ["plain", "printable"]
