"""``python -m bench [--only P1,P2,...] [--json FILE] [--smoke]``: run the benchmarks, one line per figure.

``--smoke`` runs every benchmark with tiny sizes (the tests do, to keep the suite working); its figures
are not meaningful.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from . import p1_import

MiB = 1 << 20


async def main(args: argparse.Namespace) -> int:
    only = {x.strip().upper() for x in args.only.split(",")} if args.only else {"P1", "P2", "P3", "P4"}
    figures = []
    with tempfile.TemporaryDirectory(prefix="isoadmin-bench-", dir=args.dir) as tmp:
        base = Path(tmp)
        if "P1" in only:
            size = 4 * MiB if args.smoke else args.p1_size * MiB
            for figure in await p1_import.run(base, size, 1 if args.smoke else args.rounds):
                print(figure.line(), flush=True)
                figures.append(figure)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.node(),
            "cpus": __import__("os").cpu_count(), "smoke": args.smoke,
            "figures": [f.to_json() for f in figures]}, indent=2) + "\n")
    return 0 if args.smoke or all(f.met for f in figures) else 1


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--only", help="comma-separated subset: P1,P2,P3,P4")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, to check the suite runs")
    p.add_argument("--rounds", type=int, default=3, help="rounds per figure (default 3)")
    p.add_argument("--p1-size", type=int, default=1024, metavar="MIB", help="P1 upload size (default 1024)")
    p.add_argument("--dir", help="scratch folder (default: the system's temp dir; P1 needs 4 × the size)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
