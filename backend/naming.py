"""Volume names derived from owner + file name: deterministic, valid for LVM, collision-free.

LVM (lvm(8), "VALID NAMES"): characters ``[A-Za-z0-9+_.-]``, at most 127, not starting with ``-``,
not ``.``/``..``, not containing reserved suffixes such as ``_mlog`` or ``_rimage``. A volume's name is
``PREFIX + BODY``; BODY is the same for its staging and its final name, so a rename only swaps the prefix.
BODY = sanitised owner, ``_``, sanitised file stem, ``_``, 8 hex digits of sha256(owner NUL file) — so two
uploads whose sanitised names coincide still get different names.
"""

from __future__ import annotations

import hashlib
import re

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


def volume_body(owner: str, file_name: str) -> str:
    """Return the name body shared by the staging and final volume of an upload.

    Args:
        owner: the owner folder's name. file_name: the upload's file name (any text).
    Returns:
        text of at most 95 characters from ``[A-Za-z0-9+_.-]``.
    """
    digest = hashlib.sha256(f"{owner}\0{file_name}".encode("utf-8", "surrogateescape")).hexdigest()[:8]
    stem = re.sub(r"\.(iso|img)$", "", file_name, flags=re.IGNORECASE)
    owner_part = _clean(owner, 24)
    stem_part = _clean(stem, _BODY_ROOM - len(owner_part) - 10)
    return _defuse(f"{owner_part}_{stem_part}_{digest}")


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
