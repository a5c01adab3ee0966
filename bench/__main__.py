"""``python -m bench [--only P1,P2,...] [--json FILE] [--smoke]``: run the benchmarks, one line per figure.

``--smoke`` runs every benchmark with tiny sizes (the tests do, to keep the suite working); its figures
are not meaningful.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from . import p1_import, p1_realstack, p2_inventory, p3_tui, p4_concurrency
from .common import workdir
from .labserver import LabProcess

MiB = 1 << 20


async def main(args: argparse.Namespace) -> int:
    only = ({x.strip().upper() for x in args.only.split(",")} if args.only
            else {"P1", "P2", "P3", "P4"} | (set() if args.smoke else {"P1R"}))
    figures = []
    if args.profile:
        p3_tui.PROFILES = {}
    with tempfile.TemporaryDirectory(prefix="isoadmin-bench-", dir=args.dir) as tmp:
        base = Path(tmp)
        rounds = 1 if args.smoke else args.rounds

        def show(new: list) -> None:
            for figure in new:
                print(figure.line(), flush=True)
                figures.append(figure)

        if "P1" in only:
            show(await p1_import.run(base, 4 * MiB if args.smoke else args.p1_size * MiB, rounds))
        if "P1R" in only:  # the real stack (root only; skipped with a line otherwise)
            show(await p1_realstack.run(base, 4 * MiB if args.smoke else args.p1r_size * MiB, rounds))
        if only & {"P2", "P3", "P4"}:
            owners, uploads, volumes = (10, 200, 100) if args.smoke else (500, 10_000, 5_000)
            dom0s = {f"dom0-{c}": "4 PiB" for c in "abcd"}
            with LabProcess(workdir(base, "site") / "lab", dom0s) as server:
                paths = p2_inventory.populate(server.layout, owners, uploads, volumes)
                if "P2" in only:
                    show(await p2_inventory.measure(server.config, paths, list(dom0s), owners, volumes, rounds))
                if "P3" in only:
                    show(await p3_tui.run(server.config, paths, uploads))
                if "P4" in only:
                    p4_size = 4 * MiB if args.smoke else args.p4_size * MiB
                    show(await p4_concurrency.run(server.config, server.layout.uploads_root, p4_size, list(dom0s)))
                    # again with the lab's hosts (and the copies they start) at the lowest CPU priority: the
                    # console first, as when the hosts are other machines
                    os.setpriority(os.PRIO_PROCESS, server.proc.pid, 19)
                    show(await p4_concurrency.run(server.config, server.layout.uploads_root, p4_size, list(dom0s),
                                                  tag=" (hosts at nice 19)"))
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        for name, profile in p3_tui.PROFILES.items():
            path = Path(args.profile) / f"{name.replace(' ', '-')}.prof"
            print(f"\n== profile of the timed keys: {name} ({path})\n"
                  + p3_tui.profile_report(profile, path), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": platform.node(),
            "cpus": os.cpu_count(), "smoke": args.smoke,
            "figures": [f.to_json() for f in figures]}, indent=2) + "\n")
    return 0 if args.smoke or all(f.met for f in figures) else 1


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--only", help="comma-separated subset: P1,P1R (P1 on the real stack),P2,P3,P4")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--profile", metavar="DIR",
                   help="run the timed keys of P3/P4 under cProfile: DIR/P3-FIGURE.prof per figure, and the "
                        "top functions printed")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, to check the suite runs")
    p.add_argument("--rounds", type=int, default=3, help="rounds per figure (default 3)")
    p.add_argument("--p1-size", type=int, default=1024, metavar="MIB", help="P1 upload size (default 1024)")
    p.add_argument("--p1r-size", type=int, default=256, metavar="MIB",
                   help="P1 upload size on the real stack (default 256: the guest holds it in its RAM)")
    p.add_argument("--p4-size", type=int, default=256, metavar="MIB", help="P4 size of each upload (default 256)")
    p.add_argument("--dir", help="scratch folder (default: the system's temp dir; P1 needs 4 × the size)")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
