"""A lab served from its own process, as real hosts would be: ``python -m bench.labserver DIR DOM0=CAPACITY...``.

Prints ``ready`` once ``DIR/site.toml`` is written; stops when its stdin closes. The benchmarks run it so
that the hosts' side (SSH encryption, the commands) does not share the console's event loop.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tomllib
from pathlib import Path

from backend.config import SiteConfig, parse_config
from backend.lab import Lab


async def serve(directory: Path, dom0s: dict[str, str]) -> None:
    lab = Lab(directory, dom0s=dom0s, seeded=False, settle_seconds=0)
    await lab.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await lab.stop()


class LabProcess:
    """Start the lab server in a child process (a context manager); ``config`` is its site.

    Args:
        directory: the lab folder. dom0s: dom0 name → ``files`` capacity.
    Attributes:
        layout: a :class:`Lab` on the same folder, not started: its paths (uploads root, volume folders).
    """

    def __init__(self, directory: Path, dom0s: dict[str, str]) -> None:
        self.dir = directory
        self.dom0s = dom0s
        self.layout = Lab(directory, dom0s=dom0s, seeded=False)
        self.proc: subprocess.Popen | None = None
        self.config: SiteConfig | None = None

    def __enter__(self) -> "LabProcess":
        args = [sys.executable, "-m", "bench.labserver", str(self.dir), *(f"{k}={v}" for k, v in self.dom0s.items())]
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


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]), dict(a.split("=", 1) for a in sys.argv[2:])))
