"""The benchmark suite keeps working: ``python -m bench --smoke`` (tiny sizes) runs every figure."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ..conftest import ROOT


@pytest.mark.process
def test_bench_smoke_prints_and_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--json", str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    figures = json.loads(out.read_text())["figures"]
    names = [f["name"] for f in figures]
    for part in ("P1 import vs raw dd", "P2 commands per host", "P3 key → repaint", "P4 progress messages"):
        assert any(n.startswith(part) for n in names), (part, names)
    assert len(r.stdout.splitlines()) == len(figures)
    by_name = {f["name"]: f for f in figures}
    # the figures that do not depend on the machine's speed hold even at smoke size
    assert by_name["P2 commands per host per refresh"]["value"] == 1
    assert by_name["P2 headers read after 1 % changed"]["met"]
    assert by_name["P4 progress messages per job"]["met"] and by_name["P4 4 imports on 2 dom0s"]["met"]
