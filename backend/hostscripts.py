"""The host scripts: constant POSIX ``sh`` programs, shipped as package data in ``backend/sh/``.

Nothing is installed on the hosts: every multi-step host-side step is one of these files, sent as
``sh -c TEXT LABEL ARG...`` (:func:`backend.commands.script`), its inputs in positional parameters. Each file
starts with a header comment for people (what it does, its positional inputs, its output lines); the hosts
get the program without it (:func:`load` drops the comment lines at the top).

Shared pieces are function libraries, ``lib-*.sh`` (``sha256``, ``put``, ``put_meta``, ``ledger_dump``,
``finish``). They stay separate files and are prepended in Python, at import, by the module that uses them
(``load("lib-put.sh", "ledger-save.sh")``): one copy of each, never two that could drift. Every shipped file,
and every program as it is assembled, passes ``shellcheck -s sh``, ``dash -n`` and ``busybox sh -n``
(``tests/unit/test_shell_scripts.py``).

The files are read once, when the modules that use them are imported (:mod:`importlib.resources`, so a
wheel and an editable install both find them).
"""

from __future__ import annotations

import functools
from importlib import resources

#: The folder of the scripts, inside this package.
FOLDER = "sh"

#: Every program :func:`load` has assembled in this process: the file names, in order → the text.
_assembled: dict[tuple[str, ...], str] = {}


@functools.cache
def source(name: str) -> str:
    """The whole text of shipped script ``name`` (``ledger-save.sh``), header comment included.

    Raises:
        FileNotFoundError: no such script is shipped (a packaging error).
    """
    return (resources.files(__package__) / FOLDER / name).read_text(encoding="utf-8")


def program(name: str) -> str:
    """Shipped script ``name`` as the hosts get it: a newline, then the file without the comment lines at its
    top (its header) and the blank lines after them, ending with a newline. (The leading newline keeps the
    text sent byte for byte what it was when the scripts were Python strings, ``r\"\"\"`` and a newline.)"""
    lines = source(name).splitlines(keepends=True)
    i = 0
    while i < len(lines) and lines[i].startswith("#"):
        i += 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    text = "".join(lines[i:])
    return "\n" + (text if text.endswith("\n") else text + "\n")


def load(*names: str) -> str:
    """The program made of shipped scripts ``names``, in order (function libraries first), each as
    :func:`program` gives it.

    Args:
        names: file names in ``backend/sh/`` (``"lib-put.sh"``, ``"ledger-save.sh"``).
    Returns:
        the text to pass to :func:`~backend.commands.script`.
    Raises:
        FileNotFoundError: a name is not shipped.
    """
    text = "".join(program(n) for n in names)
    _assembled[names] = text
    return text


def assembled() -> dict[tuple[str, ...], str]:
    """Every program :func:`load` has assembled so far in this process (the modules that use host scripts
    assemble theirs when imported): file names, in order → the text."""
    return dict(_assembled)


def shipped() -> list[str]:
    """Every shipped script's file name, sorted."""
    return sorted(p.name for p in (resources.files(__package__) / FOLDER).iterdir() if p.name.endswith(".sh"))
