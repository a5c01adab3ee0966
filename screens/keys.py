"""Every key of the console in one place: the footer, the help (``?``), the command palette and the README's
key table all come from :data:`KEYS`, and ``[console] keymap`` remaps any of them by id (Textual keymaps,
as posting does: ``keymap = { approve = "A", quit = "ctrl+q" }``).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.keys import _character_to_key


@dataclass(frozen=True)
class Key:
    """One binding.

    Attributes:
        id: the binding id (what ``[console] keymap`` names). keys: Textual key names, comma-separated.
        action: the action it runs (on its screen, or the app for ``anywhere``). label: footer text.
        help: one line for the help, the palette and the tooltip. where: ``anywhere``, ``tables`` (the
        big tables' cursor keys) or a screen (``uploads``, ``jobs``, ``volumes``, ``health``, ``audit``,
        ``owners``, ``hosts``). mutating: changes the site (a read-only session says so instead).
        show: in the footer. palette: in the command palette.
    """

    id: str
    keys: str
    action: str
    label: str
    help: str
    where: str
    mutating: bool = False
    show: bool = True
    palette: bool = True


SCREENS = ("uploads", "jobs", "volumes", "health", "audit", "owners", "hosts")

KEYS: tuple[Key, ...] = (
    *(Key(name, str(i), f"switch_mode('{name}')", name.title(), f"the {name.title()} screen", "anywhere",
          show=False) for i, name in enumerate(SCREENS, 1)),
    Key("refresh", "ctrl+r", "refresh_now", "Refresh", "refresh from every host now (it also refreshes by itself)",
        "anywhere", show=False),
    Key("view-as", "u", "view_as", "View as", "view as a user: only the owners that user may act for (empty: all)",
        "anywhere", show=False),
    Key("palette", "ctrl+p,colon", "command_palette", "Commands", "the command palette: every screen and action",
        "anywhere", show=False, palette=False),
    Key("notifications", "n", "notifications", "Messages", "the messages shown so far (the newest three stay on screen)",
        "anywhere", show=False),
    Key("help", "question_mark", "help", "Help", "the keys", "anywhere"),
    Key("quit", "q", "quit", "Quit", "quit (with imports running it asks, then rolls them back)", "anywhere"),

    Key("down", "down,j", "cursor(1)", "Down", "next row", "tables", show=False, palette=False),
    Key("up", "up,k", "cursor(-1)", "Up", "previous row", "tables", show=False, palette=False),
    Key("page-down", "pagedown,ctrl+f", "page(1)", "Page down", "next page", "tables", show=False, palette=False),
    Key("page-up", "pageup,ctrl+b", "page(-1)", "Page up", "previous page", "tables", show=False, palette=False),
    Key("first", "home,g", "jump(0)", "First", "first row", "tables", show=False, palette=False),
    Key("last", "end,G", "jump(-1)", "Last", "last row", "tables", show=False, palette=False),

    Key("approve", "a", "approve", "Approve", "approve the selected upload (shows the plan and the host commands first)",
        "uploads", mutating=True),
    Key("reject", "r", "reject", "Reject", "reject the selected upload (asks for a reason; the file is kept)",
        "uploads", mutating=True),
    Key("upload-kernels", "K", "kernels", "Kernels", "the selected uploaded kernel with its ramdisk (or the ISO "
        "imported from the upload): list its kernel entries and stage the one picked on a dom0", "uploads",
        mutating=True, show=False),
    Key("filter", "slash", "filter", "Filter", "filter rows; escape clears", "uploads"),
    Key("download-url", "w", "download_url", "Download", "have the image host download a URL into an owner's "
        "folder (asks for the URL; progress on the Jobs screen)", "uploads", mutating=True, show=False),
    Key("gc", "C", "gc", "GC", "garbage-collect old uploads (shows the list, asks first)", "uploads", mutating=True),
    Key("details", "enter", "details", "Details", "details of the selected upload", "uploads", palette=False),
    Key("sort", "s", "sort", "Sort", "sort by the next column (a click on a header sorts by it)", "uploads"),
    Key("sort-reverse", "S", "sort_reverse", "Reverse", "reverse the sort order", "uploads", show=False),

    Key("cancel", "x", "cancel", "Cancel", "cancel the selected running import (rolls it back, audited)", "jobs",
        mutating=True),

    Key("volume-details", "enter", "details", "Details", "details of the selected volume", "volumes", palette=False),
    Key("verify", "v", "verify", "Verify", "re-read the selected CD volume on its dom0 and compare its sha256",
        "volumes"),
    Key("delete-volume", "D", "delete", "Delete", "delete the selected CD volume (asks first; refused while a VM "
        "uses it)", "volumes", mutating=True),
    Key("insert-cd", "i", "insert_cd", "Insert CD", "put the selected CD volume into a VM's CD-ROM drive (a VM "
        "its owner may act for; audited)", "volumes", mutating=True),
    Key("eject-cd", "e", "eject_cd", "Eject CD", "take the selected CD volume out of the VM CD-ROM drives it is in",
        "volumes", mutating=True, show=False),
    Key("kernels", "K", "kernels", "Kernels", "list the selected CD volume's kernel entries and stage the one "
        "picked on its dom0", "volumes", mutating=True, show=False),
    Key("volume-filter", "slash", "filter", "Filter", "filter volumes; escape clears", "volumes"),
    Key("volume-sort", "s", "sort", "Sort", "sort by the next column (a click on a header sorts by it)", "volumes"),
    Key("volume-sort-reverse", "S", "sort_reverse", "Reverse", "reverse the sort order", "volumes", show=False),

    Key("check", "c", "check", "Check", "look for leftovers again", "health"),
    Key("repair", "R", "repair", "Repair", "repair what check found (lists every fix, asks first)", "health",
        mutating=True),

    Key("audit-filter", "slash", "filter", "Filter", "filter the audit log; escape clears", "audit"),

    Key("owner-uploads", "enter", "uploads", "Their uploads", "the selected owner's uploads", "owners"),
)


def bindings(where: str) -> list[Binding]:
    """The Textual bindings of ``where`` (see :class:`Key`), with ids and tooltips."""
    return [Binding(k.keys, k.action, k.label, show=k.show, id=k.id, tooltip=k.help)
            for k in KEYS if k.where == where]


def display(keys: str) -> str:
    """Key names as people write them: ``question_mark`` → ``?``, ``ctrl+p,colon`` → ``ctrl+p / :``."""
    names = {"question_mark": "?", "slash": "/", "colon": ":", "enter": "enter", "pagedown": "pgdn",
             "pageup": "pgup"}
    return " / ".join(names.get(k, k) for k in keys.split(","))


def _together(a: str, b: str) -> bool:
    """Whether bindings of places ``a`` and ``b`` (:attr:`Key.where`) can be active at once: the same screen,
    or either is ``anywhere`` (the app's) or ``tables`` (the focused table's, on every screen)."""
    return a == b or "anywhere" in (a, b) or "tables" in (a, b)


def _key_names(keys: str) -> set[str]:
    """Textual key names of a comma-separated list, a single character as Textual names it (``?`` →
    ``question_mark``), so ``?`` and ``question_mark`` are one key."""
    return {_character_to_key(k) if len(k) == 1 else k for k in (k.strip() for k in keys.split(",")) if k}


def keymap_clash(keymap: dict[str, str]) -> tuple[str, str] | None:
    """The first remapped binding that shares a key with another binding active at the same time (it would
    shadow it, or be shadowed): ``approve = "1"`` (``1`` is the Uploads screen's key everywhere), or two
    ids of one screen given one key. Bindings of two different screens may share a key.

    Args:
        keymap: binding id → Textual key names, comma-separated (``[console] keymap``); unknown ids are
            skipped (the caller refuses them).
    Returns:
        ``(binding id, what is wrong in one line)``, or None when no key clashes.
    """
    keys = {k.id: _key_names(keymap.get(k.id, k.keys)) for k in KEYS}
    by_id = {k.id: k for k in KEYS}
    for binding_id in keymap:
        mine = by_id.get(binding_id)
        if mine is None:
            continue
        for other in KEYS:
            shared = keys[binding_id] & keys[other.id]
            if other.id != binding_id and shared and _together(mine.where, other.where):
                return binding_id, (f"{display(min(shared))!r} is also the key of {other.id!r} ({other.where}), "
                                    f"active where {binding_id!r} is: pick another key, or give {other.id!r} "
                                    "another one too")
    return None


def mutating_actions(where: str) -> set[str]:
    """Actions of ``where`` that change the site (a read-only session answers them "read-only session")."""
    return {k.action for k in KEYS if k.where == where and k.mutating}


def reference_markdown() -> str:
    """The README's key table, generated from :data:`KEYS` (``python -m screens.keys``; a test keeps the
    README and the bindings from drifting apart)."""
    lines = ["| key | where | id (for `[console] keymap`) | action |", "|---|---|---|---|"]
    for k in KEYS:
        keys = " / ".join(f"`{key}`" for key in display(k.keys).split(" / "))
        where = k.where.title() + (" (mutating: refused in a read-only session)" if k.mutating else "")
        lines.append(f"| {keys} | {where} | `{k.id}` | {k.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
