"""A lab served from its own process, as real hosts would be:
``python -m bench.labserver DIR [--seeded] [--lease SECONDS] [DOM0=CAPACITY...]``.

Prints ``ready`` once ``DIR/site.toml`` is written; stops when its stdin closes. The benchmarks run it so
that the hosts' side (SSH encryption, the commands) does not share the console's event loop; the
multi-console tests run it so that several consoles, each with its own config and state dir (separate
workstations), work on one site.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tomllib
from pathlib import Path

from backend.config import SiteConfig, parse_config
from backend.lab import Lab


async def serve(directory: Path, dom0s: dict[str, str], seeded: bool = False, lease: float = 30.0) -> None:
    """Serve the lab in DIR until stdin closes (``seeded``: the demo uploads; else an empty uploads root)."""
    lab = Lab(directory, dom0s=dom0s or None, seeded=seeded, settle_seconds=5 if seeded else 0, lease_seconds=lease)
    await lab.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await lab.stop()


class LabProcess:
    """Start the lab server in a child process (a context manager); ``config`` is its site.

    Args:
        directory: the lab folder. dom0s: dom0 name → ``files`` capacity (empty: the lab's default two).
        seeded: the demo uploads and the upload being written. lease: the site's lease time (seconds).
    Attributes:
        layout: a :class:`Lab` on the same folder, not started: its paths (uploads root, volume folders).
    """

    def __init__(self, directory: Path, dom0s: dict[str, str] | None = None, seeded: bool = False,
                 lease: float = 30.0) -> None:
        self.dir = directory
        self.dom0s = dom0s or {}
        self.seeded = seeded
        self.lease = lease
        self.layout = Lab(directory, dom0s=dom0s or None, seeded=seeded)
        self.proc: subprocess.Popen | None = None
        self.config: SiteConfig | None = None

    def __enter__(self) -> "LabProcess":
        args = [sys.executable, "-m", "bench.labserver", str(self.dir), *(["--seeded"] if self.seeded else []),
                "--lease", str(self.lease), *(f"{k}={v}" for k, v in self.dom0s.items())]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            self.proc.kill()
            raise RuntimeError("the lab server did not start")
        path = self.dir / "site.toml"
        self.config = parse_config(tomllib.loads(path.read_text()), path)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


    def web_url(self, path: str) -> str:
        """``http://127.0.0.1:PORT`` + ``path`` on the served lab's web server (:mod:`backend.labweb`)."""
        return f"http://127.0.0.1:{int(self.layout.web_port_file.read_text())}{path}"

    def console_config(self, name: str) -> Path:
        """A site file for one more console of this site, as on its own workstation: the lab's hosts and
        keys, its own state dir (``DIR/../ws-NAME/state``). Returns its path."""
        ws = self.dir.parent / f"ws-{name}"
        ws.mkdir(parents=True, exist_ok=True)
        text = (self.dir / "site.toml").read_text()
        state = str(self.dir / "state")
        assert state in text
        path = ws / "site.toml"
        path.write_text(text.replace(state, str(ws / "state")))
        return path


def main(argv: list[str]) -> None:
    seeded = "--seeded" in argv
    lease = float(argv[argv.index("--lease") + 1]) if "--lease" in argv else 30.0
    dom0s = dict(a.split("=", 1) for a in argv[1:] if "=" in a)
    asyncio.run(serve(Path(argv[0]), dom0s, seeded, lease))


if __name__ == "__main__":
    main(sys.argv[1:])
