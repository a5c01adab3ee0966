"""The embedded lab's web server: the Debian ISOs over HTTP on 127.0.0.1, with hostile behaviours to test;
and the same files over FTP (:class:`LabFtp`, when pyftpdlib is installed).

A stdlib :class:`http.server.ThreadingHTTPServer` in a thread, bound to 127.0.0.1 only (an ephemeral port).
It serves the files of one folder under these paths (``NAME`` is a file name in that folder):

* ``/iso/NAME`` — the file, with ``Content-Length``, ``ETag`` and ``Last-Modified`` (HEAD and GET);
* ``/redirect/NAME`` — ``302`` to ``/iso/NAME``;
* ``/to-file`` — ``302`` to ``file:///etc/passwd``; ``/to-elsewhere/NAME`` — ``302`` to a host address
  outside 127.0.0.0/8 (never reached: the console refuses the redirect first);
* ``/stall/NAME`` — announces the whole length, sends 64 KiB, then sends nothing until the server stops;
* ``/short/NAME`` — announces the whole length, sends half, closes the connection;
* ``/more/NAME`` — HEAD announces the length; GET sends the file plus 1 MiB with no length, then closes;
* ``/get-redirect/NAME`` — HEAD answers as ``/iso/NAME``; GET redirects (``302``) to ``/iso/NAME``;
* ``/slow/NAME`` — the file, :data:`SLOW_CHUNK` bytes every 0.1 s (a download that takes a while, for
  progress and for a console killed in the middle of one);
* ``/auth/NAME`` — as ``/iso/NAME`` with HTTP Basic authentication (RFC 7617) as :data:`AUTH`, else ``401``;
* ``/empty/NAME`` — ``200`` with an empty body (``Content-Length: 0``).

Every request is logged (:attr:`LabWeb.log`: ``(method, path)``), so a test can count downloads.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import http.server
import threading
from pathlib import Path


#: bytes ``/slow/NAME`` sends every 0.1 s (320 KiB/s)
SLOW_CHUNK = 32 * 1024
#: the user name and password ``/auth/NAME`` asks for
AUTH = ("lab", "lab-Pa55:w0rd \"q\"")


class LabWeb:
    """The lab's HTTP server (see the module docstring).

    Args:
        folder: the files it serves (created by :meth:`start`). port: the TCP port on 127.0.0.1 (0: an ephemeral one).
    Attributes:
        port: the TCP port on 127.0.0.1 once started. log: ``(method, path)`` of every request.
    """

    def __init__(self, folder: Path, port: int = 0) -> None:
        self.folder = Path(folder)
        self.log: list[tuple[str, str]] = []
        self.stopping = threading.Event()
        self.server: http.server.ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.port = port

    def url(self, path: str) -> str:
        """``http://127.0.0.1:PORT`` + ``path``."""
        return f"http://127.0.0.1:{self.port}{path}"

    def downloads(self, path: str) -> int:
        """How many GET requests ``path`` received."""
        return sum(1 for m, p in self.log if m == "GET" and p == path)

    def start(self) -> None:
        """Listen on 127.0.0.1 (ephemeral port) and serve in a daemon thread."""
        web = self
        self.stopping.clear()
        self.folder.mkdir(parents=True, exist_ok=True)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # the log is web.log
                pass

            def do_HEAD(self) -> None:
                self.answer(head=True)

            def do_GET(self) -> None:
                self.answer(head=False)

            def answer(self, head: bool) -> None:
                web.log.append((self.command, self.path))
                kind, _, name = self.path.lstrip("/").partition("/")
                if kind == "to-file":
                    return self.redirect("file:///etc/passwd")
                if kind == "to-elsewhere":
                    return self.redirect(f"http://192.0.2.1/iso/{name}")
                path = web.folder / name
                if "/" in name or not name or not path.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if kind == "redirect" or (kind == "get-redirect" and not head):
                    return self.redirect(f"/iso/{name}")
                if kind == "auth":
                    want = "Basic " + base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()
                    if self.headers.get("Authorization") != want:
                        self.send_response(401)
                        self.send_header("WWW-Authenticate", 'Basic realm="lab"')
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                if kind == "empty":
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = path.read_bytes()
                st = path.stat()
                more = kind == "more" and not head
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                if more:
                    self.send_header("Connection", "close")
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", '"' + hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16] + '"')
                self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
                self.end_headers()
                if head:
                    return
                try:
                    if kind == "stall":
                        self.wfile.write(data[:65536])
                        self.wfile.flush()
                        web.stopping.wait(120)
                    elif kind == "short":
                        self.wfile.write(data[:len(data) // 2])
                    elif kind == "more":
                        self.wfile.write(data + bytes(1 << 20))
                    elif kind in ("iso", "auth"):
                        self.wfile.write(data)
                    elif kind == "slow":
                        for at in range(0, len(data), SLOW_CHUNK):
                            self.wfile.write(data[at:at + SLOW_CHUNK])
                            self.wfile.flush()
                            if web.stopping.wait(0.1):
                                break
                except OSError:
                    pass
                if kind in ("stall", "short", "more"):
                    self.close_connection = True

            def redirect(self, location: str) -> None:
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        # a short poll: stop() waits for the loop to notice (the lab stops in a few tens of milliseconds)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       name="lab-web", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop serving (stalled responses end)."""
        self.stopping.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class LabFtp:
    """The lab's FTP server: the same folder as :class:`LabWeb`, anonymous and read-only, on 127.0.0.1
    (an ephemeral port), in a thread. Needs pyftpdlib (a test extra): :meth:`start` returns False without it.

    Args:
        folder: the files it serves (``/NAME``).
    Attributes:
        port: the TCP port once started. log: ``("RETR", "/NAME")`` of every file sent whole.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.log: list[tuple[str, str]] = []
        self.port = 0
        self.server = None
        self.thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def url(self, path: str) -> str:
        """``ftp://127.0.0.1:PORT`` + ``path``."""
        return f"ftp://127.0.0.1:{self.port}{path}"

    def downloads(self, path: str) -> int:
        """How many times ``path`` was sent whole."""
        return sum(1 for m, p in self.log if m == "RETR" and p == path)

    def start(self) -> bool:
        """Listen on 127.0.0.1 and serve in a daemon thread. Returns False when pyftpdlib is not installed."""
        try:
            import logging

            from pyftpdlib.authorizers import DummyAuthorizer
            from pyftpdlib.handlers import FTPHandler
            from pyftpdlib.ioloop import IOLoop
            from pyftpdlib.servers import ThreadedFTPServer
        except ImportError:
            return False
        logging.getLogger("pyftpdlib").setLevel(logging.ERROR)
        ftp = self
        authorizer = DummyAuthorizer()
        authorizer.add_anonymous(str(self.folder), perm="elr")

        class Handler(FTPHandler):
            def on_file_sent(self, file: str) -> None:
                ftp.log.append(("RETR", "/" + Path(file).name))

        Handler.authorizer = authorizer
        # a loop of its own: pyftpdlib's default loop is one per process, so stopping one lab would close
        # another lab's sockets in the same process
        self.server = ThreadedFTPServer(("127.0.0.1", 0), Handler, ioloop=IOLoop())
        self.port = self.server.socket.getsockname()[1]
        server, stopping = self.server, threading.Event()

        def serve() -> None:  # the loop and its close in one thread: closing it from another breaks its poll
            while not stopping.is_set():
                server.serve_forever(timeout=0.02, blocking=False, handle_exit=False)
            server.close_all()

        self._stopping = stopping
        self.thread = threading.Thread(target=serve, name="lab-ftp", daemon=True)
        self.thread.start()
        return True

    def stop(self) -> None:
        """Stop serving (waits for the server's thread, at most 10 s)."""
        if self.server is not None:
            self._stopping.set()
            self.thread.join(timeout=10)
            self.server = None
