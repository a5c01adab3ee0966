"""SSH access to hosts (asyncssh): one cached connection per host, many channels over it.

Host-key checking is always on: keys come from ``known_hosts`` (the site's file, or ``~/.ssh/known_hosts``);
``~/.ssh/config`` and the user's agent are honoured as OpenSSH would. :class:`Host` is also where the
read-only guard and the command log live: a mutating :class:`~backend.commands.Command` is refused before
anything is sent when the session is read-only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncssh
from asyncssh.public_key import decode_ssh_public_key

from .commands import Command
from .config import HostConfig
from .errors import CommandFailed, HostError, HostKeyError, ReadOnlyError


@dataclass(frozen=True)
class CommandRecord:
    """One command sent (or refused) to a host, for the command log.

    Attributes:
        host: host name. argv: the command. mutating: its kind. time: epoch seconds.
        refused: True when the read-only guard refused it (nothing was sent).
    """

    host: str
    argv: tuple[str, ...]
    mutating: bool
    time: float
    refused: bool = False


CommandListener = Callable[[CommandRecord], None]

#: Every host command, one line each when it ends: host, label, exit status, seconds. Never the command's
#: arguments (they may hold owners' names; never a secret: isoadmin sends none). ``isoadmin -v`` shows
#: it on stderr; the console writes it to ``isoadmin.log`` in the state dir.
command_log = logging.getLogger("isoadmin.commands")


@dataclass(frozen=True)
class Result:
    """What a finished command returned.

    Attributes:
        stdout: raw bytes (file names need not be UTF-8). stderr: decoded text (errors replaced).
        exit_status: the exit status, or None when the command was killed by a signal.
    """

    stdout: bytes
    stderr: str
    exit_status: int | None


class Host:
    """A host reached over SSH.

    Args:
        config: address, port, user, key, known_hosts.
        read_only: refuse mutating commands (raises :class:`ReadOnlyError` before sending).
        listeners: callables told about every command sent or refused (command log, audit, tests).
        connect_timeout: seconds allowed for TCP connect + SSH handshake + auth.
    """

    def __init__(
        self,
        config: HostConfig,
        *,
        read_only: bool = False,
        listeners: list[CommandListener] | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.config = config
        self.name = config.name
        self.read_only = read_only
        self.listeners = listeners if listeners is not None else []
        self.connect_timeout = connect_timeout
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()
        self.key_fingerprint = ""  # of the client key that authenticated (``SHA256:…``), once connected

    def _options(self) -> dict:
        c = self.config
        options: dict = {
            "connect_timeout": self.connect_timeout,
            "keepalive_interval": 15,
            "keepalive_count_max": 3,
        }
        if c.port is not None:
            options["port"] = c.port
        if c.user is not None:
            options["username"] = c.user
        if c.key is not None:
            options["client_keys"] = [c.key]
        if c.known_hosts is not None:
            options["known_hosts"] = c.known_hosts
        return options

    async def connection(self) -> asyncssh.SSHClientConnection:
        """Return the open connection, connecting first if needed.

        Raises:
            HostKeyError: the host key is not in known_hosts or differs from it.
            HostError: the host is unreachable, refused the login, or timed out.
        """
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return self._conn
            try:
                self._conn = await asyncssh.connect(self.config.address, client_factory=lambda: _Client(self),
                                                    **self._options())
            except asyncssh.HostKeyNotVerifiable as exc:
                raise HostKeyError(self.name, await self._host_key_help(exc.reason)) from None
            except asyncssh.PermissionDenied:
                raise HostError(self.name, "login refused (permission denied): check user and key") from None
            except (OSError, asyncio.TimeoutError, asyncssh.Error) as exc:
                raise HostError(self.name, f"cannot connect to {self.config.address}: {_reason(exc)}") from None
            return self._conn

    async def _host_key_help(self, reason: str) -> str:
        """The refusal message: the key the host offered (fingerprint) and the exact known_hosts line to
        check and add — never an option to skip the check."""
        c = self.config
        where = c.known_hosts or "~/.ssh/known_hosts"
        text = f"host key not trusted ({reason}); nothing was sent"
        try:
            key = await asyncio.wait_for(asyncssh.get_server_host_key(c.address, c.port or ()),
                                         self.connect_timeout)
        except (OSError, asyncio.TimeoutError, asyncssh.Error):
            key = None
        if key is None:
            return f"{text}; check {where}"
        host = c.address if not c.port or c.port == 22 else f"[{c.address}]:{c.port}"
        line = f"{host} {key.export_public_key().decode().strip()}"
        return (f"{text}. It offers {key.get_algorithm()} {key.get_fingerprint()}; if the host's admin confirms "
                f"that fingerprint, add this line to {where}: {line}")

    def guard(self, command: Command) -> None:
        """Log ``command`` to the listeners and refuse it if mutating in a read-only session.

        Drivers that act without SSH (libvirt) call this with an equivalent command first.

        Raises:
            ReadOnlyError: mutating command in a read-only session (nothing was sent).
        """
        refused = command.mutating and self.read_only
        record = CommandRecord(self.name, command.argv, command.mutating, time.time(), refused)
        for listener in self.listeners:
            listener(record)
        if refused:
            raise ReadOnlyError(f"read-only session: refused to run {command.name} on {self.name}")

    async def run(
        self,
        command: Command,
        *,
        input: bytes | None = None,
        timeout: float | None = 120.0,
        check: bool = True,
    ) -> Result:
        """Run a command to completion.

        Args:
            command: what to run (quoted by :meth:`Command.render`).
            input: bytes for its stdin, or None for none.
            timeout: seconds before the channel is closed and :class:`HostError` raised.
            check: raise :class:`CommandFailed` on a non-zero exit.
        Raises:
            ReadOnlyError, HostError, HostKeyError, CommandFailed, UnsafeArgument.
        """
        line = command.render()
        self.guard(command)
        conn = await self.connection()
        started = time.monotonic()
        try:
            proc = await conn.run(line, input=input, encoding=None, timeout=timeout, check=False)
        except asyncssh.TimeoutError:
            command_log.info("%s %s timed out after %.3f s", self.name, command.name, time.monotonic() - started)
            raise HostError(self.name, f"{command.name} timed out after {timeout:.0f} s") from None
        except (OSError, asyncssh.Error) as exc:
            command_log.info("%s %s connection lost after %.3f s", self.name, command.name, time.monotonic() - started)
            await self.drop()
            raise HostError(self.name, f"{command.name}: connection lost: {_reason(exc)}") from None
        command_log.info("%s %s exit %s %.3f s", self.name, command.name,
                         proc.exit_status if proc.exit_signal is None else f"signal {proc.exit_signal[0]}",
                         time.monotonic() - started)
        stderr = (proc.stderr or b"").decode("utf-8", "replace")
        result = Result(proc.stdout or b"", stderr, proc.exit_status if proc.exit_signal is None else None)
        if check and result.exit_status != 0:
            raise CommandFailed(self.name, list(command.argv), result.exit_status, stderr)
        return result

    async def start(self, command: Command) -> asyncssh.SSHClientProcess:
        """Start a long-running command and return its process (bytes streams) for streaming reads.

        Raises:
            ReadOnlyError, HostError, HostKeyError, UnsafeArgument.
        """
        line = command.render()
        self.guard(command)
        conn = await self.connection()
        command_log.info("%s %s started", self.name, command.name)
        try:
            return await conn.create_process(line, encoding=None)
        except (OSError, asyncssh.Error) as exc:
            await self.drop()
            raise HostError(self.name, f"{command.name}: cannot start: {_reason(exc)}") from None

    async def drop(self) -> None:
        """Forget the cached connection (closed if open); the next call reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        """Close the connection and wait for it to end."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            await conn.wait_closed()


class _Client(asyncssh.SSHClient):
    """Notes which public key the server accepted (the audit log records its fingerprint): the
    connection's key offers are wrapped, and the last one offered when authentication completes is it."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.offered = None

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        offer = conn.public_key_auth_requested

        async def noted():
            self.offered = await offer()
            return self.offered

        conn.public_key_auth_requested = noted

    def auth_completed(self) -> None:
        if self.offered is not None:
            self.host.key_fingerprint = decode_ssh_public_key(self.offered.public_data).get_fingerprint()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, asyncssh.DisconnectError):
        return exc.reason or type(exc).__name__
    text = str(exc) or type(exc).__name__
    return text
