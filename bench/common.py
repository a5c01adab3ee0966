"""What every benchmark shares: a figure (value, baseline, ratio, target), timing, printing, JSON."""

from __future__ import annotations

import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Figure:
    """One measured figure.

    Attributes:
        name: e.g. ``P1 import vs raw dd``. value: what isoadmin took (``unit``). baseline: what the
        baseline took in the same run, or None when the target is absolute. ratio: value / baseline
        (None when absolute). target: the target as text (``≤ 1.25 ×``). met: whether it was met.
        detail: how it was measured (sizes, rounds, the baseline's command).
    """

    name: str
    value: float
    unit: str
    target: str
    met: bool
    baseline: float | None = None
    ratio: float | None = None
    detail: str = ""
    samples: list[float] = field(default_factory=list)

    def line(self) -> str:
        """One printed line: name, value, baseline, ratio, target, verdict."""
        text = f"{self.name:<40} {self.value:10.3f} {self.unit:<3}"
        if self.baseline is not None:
            text += f"  baseline {self.baseline:9.3f} {self.unit:<3} ratio {self.ratio:6.2f}"
        else:
            text += " " * 39
        return f"{text}  target {self.target:<12} {'met' if self.met else 'NOT MET'}"

    def to_json(self) -> dict:
        return asdict(self)


def ratio_figure(name: str, ours: list[float], base: list[float], unit: str, limit: float,
                 faster: bool = False, detail: str = "") -> Figure:
    """A ratio figure from paired samples (medians).

    Args:
        ours, base: seconds per round for isoadmin and for the baseline (same rounds, run alternately).
        limit: the target: ours/base ≤ limit, or with ``faster`` base/ours ≥ limit.
    """
    o, b = statistics.median(ours), statistics.median(base)
    if faster:
        r = b / o if o else float("inf")
        return Figure(name, o, unit, f"≥ {limit:g} × faster", r >= limit, b, r, detail, ours)
    r = o / b if b else float("inf")
    return Figure(name, o, unit, f"≤ {limit:g} ×", r <= limit, b, r, detail, ours)


def timed(argv: list[str]) -> float:
    """Run a command (no shell), return its wall time in seconds.

    Raises:
        subprocess.CalledProcessError: it failed.
    """
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0–100) of ``values``, nearest-rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))]


def workdir(base: Path, name: str) -> Path:
    """A fresh folder ``base/name`` (removed first if it exists)."""
    import shutil

    path = base / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
