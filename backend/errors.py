"""Domain errors: each carries a short title and a message that says what happened and what to do.

The CLI prints ``str(error)`` as one line on stderr and exits with ``error.exit_code``; the TUI shows
the same text in one notification or modal. Nothing else is expected to catch these piecemeal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .crash import one_line


class IsoadminError(Exception):
    """Base class of every expected failure.

    Args:
        message: one line for a human: what happened and, where useful, what to do.
    Attributes:
        title: a short heading for a modal ("Host down", "Capacity short", ...).
        exit_code: the CLI's exit status for this failure (never 0).
    """

    title = "Error"
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(IsoadminError):
    """The site configuration is missing, unreadable or inconsistent."""

    title = "Configuration"
    exit_code = 2


class UsageError(IsoadminError):
    """A command-line argument or a name given by the user does not make sense."""

    title = "Usage"
    exit_code = 2


class HostError(IsoadminError):
    """A host could not be reached, refused us, or a command on it failed.

    Attributes:
        host: the configured name of the host.
    """

    title = "Host"
    exit_code = 3

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host


class HostKeyError(HostError):
    """The host's key is unknown or differs from ``known_hosts``; we never connect anyway."""

    title = "Host key"


class CommandFailed(HostError):
    """A command on a host exited non-zero.

    Attributes:
        argv: the command's argument vector as sent.
        exit_status: its exit status (None when killed by a signal).
        stderr: what it printed on stderr (last lines).
    """

    title = "Command failed"

    def __init__(self, host: str, argv: list[str], exit_status: int | None, stderr: str) -> None:
        tail = " | ".join(line for line in stderr.strip().splitlines()[-3:] if line)
        what = argv[0] if argv else "?"
        super().__init__(host, f"{what} failed (exit {exit_status}){': ' + tail if tail else ''}")
        self.argv = argv
        self.exit_status = exit_status
        self.stderr = stderr


class ReadOnlyError(IsoadminError):
    """A mutating operation was asked for in a read-only session; nothing was sent to any host."""

    title = "Read-only"
    exit_code = 4


class NotFound(IsoadminError):
    """An upload, volume, dom0 or job named by the user does not exist."""

    title = "Not found"
    exit_code = 5


class NotApprovable(IsoadminError):
    """The upload cannot be imported in its current state (writing, refused, importing, ...)."""

    title = "Not approvable"
    exit_code = 6


class UploadRejected(NotApprovable):
    """The upload was rejected by an admin; importing it needs a deliberate override (audited).

    Attributes:
        rejection: the rejection record (by, time, reason ...).
    """

    title = "Rejected upload"

    def __init__(self, message: str, rejection: dict) -> None:
        super().__init__(message)
        self.rejection = rejection


class Unreadable(NotApprovable):
    """An owner's file could not be parsed (an ISO's directory records, Rock Ridge entries or boot configs, an
    upload's header): raised by :func:`owner_bytes`, the message names the file and says what failed."""

    title = "Unreadable file"


@contextmanager
def owner_bytes(what: str, doing: str = "cannot be read as ISO 9660") -> Iterator[None]:
    """The one guard around every parser of bytes an owner chose (uploads, imported ISOs): any exception but an
    :class:`IsoadminError` (pycdlib's errors, ``ValueError``, ``IndexError``, ``UnicodeError``, ``struct.error``,
    ``RecursionError``, ``MemoryError`` from an absurd size ...) becomes one :class:`Unreadable`, so a hostile file
    is a finding about that file, never a crash (``KeyboardInterrupt`` and cancellation pass).

    Use as ``with owner_bytes("alice/live.iso"): ...``; a caller that reports a finding instead of failing
    catches :class:`Unreadable`.

    Args:
        what: the file (``OWNER/FILE``, ``DOM0:VOLUME``, or a path inside an ISO); "" when the caller's listing
            names it already. doing: what could not be done with it.
    Raises:
        Unreadable: ``"WHAT: DOING: TypeName: first line of the error"``.
    """
    try:
        yield
    except IsoadminError:
        raise
    except Exception as exc:  # noqa: BLE001 - owners' bytes may break a parser in any way
        # from None: the parser's frames (and whatever they hold) are let go; the message says what failed
        raise Unreadable(f"{what}: {doing}: {one_line(exc)}" if what else f"{doing}: {one_line(exc)}") from None


class CapacityShort(IsoadminError):
    """The dom0's storage has less free space than the staging volume needs; nothing was created."""

    title = "Capacity short"
    exit_code = 7


class JobFailed(IsoadminError):
    """An import job failed and was rolled back; the upload is untouched.

    Attributes:
        job_id: the job's id.
        phase: the phase that failed (``create``, ``attach``, ...).
    """

    title = "Import failed"
    exit_code = 8

    def __init__(self, job_id: str, phase: str, reason: str, cause: BaseException | None = None) -> None:
        super().__init__(f"job {job_id} failed in {phase}: {reason}")
        self.job_id = job_id
        self.phase = phase
        self.reason = reason
        if isinstance(cause, (NotApprovable, QuotaExceeded)):
            self.exit_code = cause.exit_code  # lost a race to another console: 6 or 11, as a refusal


class VerifyFailed(IsoadminError):
    """A volume's bytes no longer match the sha256 recorded with it."""

    title = "Verify failed"
    exit_code = 10


class QuotaExceeded(IsoadminError):
    """The import would put the owner over their disk quota; nothing was created (or it was rolled back)."""

    title = "Quota exceeded"
    exit_code = 11
