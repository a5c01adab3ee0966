"""Volume names derived from owner + file name: deterministic, valid for LVM, collision-free.

LVM (lvm(8), "VALID NAMES"): characters ``[A-Za-z0-9+_.-]``, at most 127, not starting with ``-``,
not ``.``/``..``, not containing reserved suffixes such as ``_mlog`` or ``_rimage``. A volume's name is
``PREFIX + BODY``. BODY = a template filled with sanitised fields, ``_``, 8 hex digits of
sha256(owner NUL file) — so two uploads whose sanitised names coincide still get different names, whatever
the template. A staging volume always uses the default template ``{owner}_{stem}``: its name is the lock on
the upload across consoles, so it must not depend on the day or on a console's settings. A final volume
uses the site's ``[naming] template``.

Template fields: ``{owner}``; ``{stem}`` (the file name without ``.iso``/``.img``); ``{label}`` (the ISO 9660
primary volume descriptor's volume identifier, or the stem when there is none); ``{size}`` (the upload's
size, binary units, e.g. ``650M``, ``4G``); ``{date}`` (approval day, ``YYYYMMDD``, UTC).
"""

from __future__ import annotations

import hashlib
import re
import string
import time

import humanize

MAX_NAME = 127
_RESERVED = ("_cdata", "_cmeta", "_corig", "_mlog", "_mimage", "_pmspare", "_rimage", "_rmeta",
             "_tdata", "_tmeta", "_vorigin", "_vdata", "snapshot", "pvmove")
_BAD = re.compile(r"[^A-Za-z0-9+_.-]+")
_BODY_ROOM = MAX_NAME - 32  # room for the longest allowed prefix (config limits prefixes to 32)


def _clean(text: str, limit: int) -> str:
    text = _BAD.sub("_", text).strip("._-+") or "x"
    return text[:limit].rstrip("._-+") or "x"


def _defuse(text: str) -> str:
    for word in _RESERVED:
        text = text.replace(word, word.replace("_", "-").replace("snapshot", "snap-shot").replace("pvmove", "pv-move"))
    return text


DEFAULT_TEMPLATE = "{owner}_{stem}"
FIELDS = ("owner", "stem", "label", "size", "date")
_LITERAL = re.compile(r"^[A-Za-z0-9+_.-]*$")


def check_template(template: str) -> str:
    """Validate a naming template (see the module docstring) and return it.

    Raises:
        ValueError: a field is not one of :data:`FIELDS`, a field has a format spec or conversion,
            the literal text holds characters LVM does not allow, or no field is used.
    """
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"naming template {template!r}: {exc}") from None
    used = []
    for literal, field, spec, conversion in parts:
        if not _LITERAL.match(literal):
            raise ValueError(f"naming template {template!r}: text outside fields may use only [A-Za-z0-9+_.-]")
        if field is None:
            continue
        if field not in FIELDS or spec or conversion:
            raise ValueError(f"naming template {template!r}: unknown field {{{field}}} "
                             f"(known: {', '.join('{' + f + '}' for f in FIELDS)})")
        used.append(field)
    if not used:
        raise ValueError(f"naming template {template!r}: use at least one field, e.g. {DEFAULT_TEMPLATE}")
    return template


def volume_body(owner: str, file_name: str, template: str = DEFAULT_TEMPLATE, label: str | None = None,
                size: int | None = None, when: float | None = None) -> str:
    """Return the name body shared by the staging and final volume of an upload.

    Args:
        owner: the owner folder's name. file_name: the upload's file name (any text).
        template: a template accepted by :func:`check_template`.
        label: the ISO 9660 volume identifier, or None (``{label}`` then falls back to the stem).
        size: the upload's size in bytes, or None (``{size}`` then renders as ``0``).
        when: approval time, epoch seconds (default: now; only ``{date}`` uses it).
    Returns:
        text of at most 95 characters from ``[A-Za-z0-9+_.-]``, ending in ``_`` + 8 hex digits.
    Raises:
        ValueError: the template is not valid.
    """
    check_template(template)
    digest = hashlib.sha256(f"{owner}\0{file_name}".encode("utf-8", "surrogateescape")).hexdigest()[:8]
    stem = re.sub(r"\.(iso|img)$", "", file_name, flags=re.IGNORECASE)
    room = _BODY_ROOM - 9
    values = {
        "owner": _clean(owner, 24),
        "stem": _clean(stem, room),
        "label": _clean(label.strip() if label and label.strip() else stem, 32),
        "size": _clean(humanize.naturalsize(size or 0, binary=True, gnu=True, format="%.0f"), 8),
        "date": time.strftime("%Y%m%d", time.gmtime(time.time() if when is None else when)),
    }
    body = _clean(template.format(**values), room)
    return _defuse(f"{body}_{digest}")


def is_valid_lvm_name(name: str) -> bool:
    """True when ``name`` is a valid LVM LV name (lvm(8) "VALID NAMES")."""
    return (
        0 < len(name) <= MAX_NAME
        and not _BAD.search(name)
        and not name.startswith("-")
        and name not in (".", "..")
        and not any(word in name for word in _RESERVED[:-2])
        and not name.startswith(_RESERVED[-2:])
    )
