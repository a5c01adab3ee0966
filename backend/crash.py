"""The last resort: a report of an unexpected exception, written where a person can find it.

An expected failure is an :class:`~backend.errors.IsoadminError` and is shown as one line. Anything else is a
bug: the CLI prints one line with the report's path and exits 70; the console shows one error modal and
keeps running. The report holds the traceback, the command line and the versions of what isoadmin runs on.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

EXIT_CRASH = 70  # EX_SOFTWARE (sysexits.h): an internal software error
_PACKAGES = ("isoadmin", "textual", "rich", "asyncssh", "pycdlib", "pydantic", "libvirt-python")


def _versions() -> str:
    out = [f"python {platform.python_version()} ({sys.executable})", f"platform {platform.platform()}"]
    for name in _PACKAGES:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} not installed")
    return "\n".join(out)


def _redacted(arg: str) -> str:
    """A command-line word as a crash report keeps it: a URL's password as ``***`` (never stored)."""
    return re.sub(r"(//[^/?#@:]*:)[^/?#@]*@", r"\1***@", arg)


def write_crash_report(exc: BaseException, state_dir: Path | None, argv: list[str] | None = None) -> Path:
    """Write ``crash-<UTC timestamp>-<pid>.txt`` with the traceback of ``exc``, ``argv`` and the versions.

    Args:
        exc: the unexpected exception. state_dir: where to write (the site's state dir); None, or a dir
            that cannot be written, falls back to the system temp dir.
        argv: the command line (default ``sys.argv``).
    Returns:
        the report's path.
    Raises:
        OSError: neither the state dir nor the temp dir can be written.
    """
    name = f"crash-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.txt"
    text = (f"isoadmin crash report, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n"
            f"argv: {[_redacted(a) for a in (sys.argv if argv is None else argv)]!r}\n\n{_versions()}\n\n"
            + "".join(traceback.format_exception(exc)))
    for folder in ([Path(state_dir)] if state_dir else []) + [Path(tempfile.gettempdir())]:
        path = folder / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            continue
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
        return path
    raise OSError(f"cannot write a crash report in {state_dir} or {tempfile.gettempdir()}")


def one_line(exc: BaseException) -> str:
    """``TypeName: first line of the message`` (at most 200 characters), for the one line people see."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}"[:200] if message else type(exc).__name__


__all__ = ["EXIT_CRASH", "write_crash_report", "one_line"]
