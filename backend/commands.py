"""The one place where host commands are built and quoted.

Every command that reaches a host is an argument vector (:class:`Command`). It is turned into the single
string an SSH ``exec`` request carries by :meth:`Command.render`, which quotes each argument with
:func:`shlex.join`, so no value (owner, file name, path, volume name, tag, reason) is ever interpreted by
the remote shell. Multi-step host-side logic lives in constant POSIX ``sh`` scripts that read their
inputs from positional parameters (``sh -c SCRIPT NAME ARG...``), never from pasted text.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from .errors import IsoadminError
from .hostscripts import load


class UnsafeArgument(IsoadminError):
    """An argument cannot be sent to a host safely (not valid UTF-8, or contains a NUL byte)."""

    title = "Unsafe name"
    exit_code = 6


@dataclass(frozen=True)
class Command:
    """A host command as an argument vector.

    Attributes:
        argv: program and arguments, each one word whatever it contains.
        mutating: True when running it changes anything on the host (create, rename, remove,
            attach, copy ...). Read-only sessions refuse these before sending (see ``ssh.Host``).
        label: a short name for logs and progress (``lvcreate``, ``copy`` ...); defaults to argv[0].
    """

    argv: tuple[str, ...]
    mutating: bool = False
    label: str = ""

    def render(self) -> str:
        """Return the command line for an SSH ``exec`` request, each argument quoted (``shlex.join``).

        Raises:
            UnsafeArgument: an argument holds a NUL byte or text that is not valid UTF-8 (SSH
                carries the command as UTF-8; such names are refused rather than mangled).
        """
        for arg in self.argv:
            if "\0" in arg:
                raise UnsafeArgument(f"argument contains a NUL byte: {arg!r}")
            try:
                arg.encode("utf-8")
            except UnicodeEncodeError:
                raise UnsafeArgument(f"name is not valid UTF-8: {arg!r}") from None
        return shlex.join(self.argv)

    @property
    def name(self) -> str:
        """``label``, or the program name."""
        return self.label or (self.argv[0] if self.argv else "")

    def __str__(self) -> str:
        try:
            return self.render()
        except UnsafeArgument:
            return " ".join(repr(a) for a in self.argv)


def cmd(*argv: str, mutating: bool = False, label: str = "") -> Command:
    """Build a :class:`Command` from words: ``cmd("lvs", "--reportformat", "json")``."""
    return Command(tuple(str(a) for a in argv), mutating, label)


def script(text: str, label: str, *args: str, mutating: bool = False) -> Command:
    """Build ``sh -c TEXT LABEL ARG...``: a constant script that sees its inputs as ``"$1"``, ``"$2"`` ...

    Args:
        text: the script; a module-level constant, never built from data.
        label: ``$0`` of the script, shown in ``ps`` on the host and in logs.
        args: the inputs, passed as positional parameters.
    """
    return Command(("sh", "-c", text, label, *(str(a) for a in args)), mutating, label)


#: Shell function ``sha256``: hash stdin, print ``HEX`` then a blank and a name (``backend/sh/lib-sha256.sh``).
SHA256_SH = load("lib-sha256.sh")

#: Shell function ``ledger_dump LEDGER``: the read of the whole ledger every refresh makes
#: (``backend/sh/lib-ledger-dump.sh``; the image host's listing runs it after its own output).
DUMP_SH = load("lib-ledger-dump.sh")

