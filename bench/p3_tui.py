"""P3: the console with the P2 inventory loaded (10,000 uploads, 5,000 volumes), driven by Textual's Pilot.

Figures: first paint (app start → the Uploads table holds every upload, rendered); key press → repaint at
the 95th percentile for cursor moves, filter keystrokes and screen switches; rows touched by a refresh
where 1 % of the uploads changed; the console's peak RSS. A repaint is timed from the key press to the end
of the screen's next compositor update (what Pilot's ``pause`` also triggers).
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import resource
import statistics
import time
from pathlib import Path

from textual import events
from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header

from backend.site import Site
from tui.app import IsoadminApp

from .common import Figure, percentile

SIZE = (160, 50)

#: main-thread CPU seconds of each timed key, per figure: what the console itself spent, apart from
#: waiting for a CPU (these machines are shared; in the lab the hosts' copies run on the same cores)
CPU: dict[str, list[float]] = {}

#: set by ``python -m bench --profile DIR``: every timed key runs under this profiler, one per figure
PROFILES: dict[str, cProfile.Profile] | None = None


def profile_report(profile: cProfile.Profile, path: Path, top: int = 25) -> str:
    """Write ``profile`` to ``path`` (pstats format, for ``python -m pstats`` or snakeviz) and return its
    ``top`` functions by cumulative time as text."""
    profile.dump_stats(path)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


async def timed_keys(pilot, app, keys: list[str], figure: str = "") -> list[float]:
    """Send each key as the terminal driver would, wait until every widget has handled what it caused,
    force the repaint; return seconds per key.

    Pilot's own ``press`` sleeps until the process looks idle (tens of ms on purpose), so it is not used
    for timing. Three rounds of "every widget has processed its queue" cover key → binding → message →
    handler chains. With :data:`PROFILES` set, the keys run under the profiler named ``figure``.
    """
    out = []
    profile = PROFILES.setdefault(figure, cProfile.Profile()) if PROFILES is not None and figure else None
    for key in keys:
        char = key if len(key) == 1 else None
        if profile is not None:
            profile.enable()
        t, cpu = time.perf_counter(), time.thread_time()
        app._driver.send_message(events.Key(key, char))
        for _ in range(3):
            await pilot._wait_for_screen()
        app.screen._on_timer_update()
        out.append(time.perf_counter() - t)
        CPU.setdefault(figure, []).append(time.thread_time() - cpu)
        if profile is not None:
            profile.disable()
        if os.environ.get("BENCH_DEBUG"):
            print(f"{key!r} {out[-1] * 1000:.1f} ms", flush=True)
    return out


class _BaselineScreen(Screen):
    BINDINGS = [Binding(k, "noop", k.upper()) for k in "abcdef"]

    def compose(self):
        yield Header()
        table = DataTable(cursor_type="row", zebra_stripes=True)
        table.add_columns(*"abcdefg")
        table.add_rows([(f"r{i}",) * 7 for i in range(50)])
        yield table
        yield Footer()


class BaselineApp(App):
    """The baseline of P3: Textual alone at the same size — two modes, each a Header, a 50-row DataTable
    and a Footer, switched by ``1`` and ``2``; what any Textual app pays on this machine."""

    MODES = {"one": _BaselineScreen, "two": _BaselineScreen}
    DEFAULT_MODE = "one"
    BINDINGS = [Binding("1", "switch_mode('one')", "One"), Binding("2", "switch_mode('two')", "Two")]


async def baseline() -> tuple[float, list[float], list[float]]:
    """First paint, cursor-move and screen-switch times of :class:`BaselineApp` (seconds)."""
    app = BaselineApp()
    t = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0)
        app.screen._on_timer_update()
        first = time.perf_counter() - t
        await pilot.press("2", "1")
        moves = await timed_keys(pilot, app, ["down"] * 40, "baseline cursor")
        switches = await timed_keys(pilot, app, ["2", "1"] * 8, "baseline switch")
    return first, moves, switches


async def run(config, paths: list[Path], uploads: int) -> list[Figure]:
    """Measure P3 on a site whose lab is already serving (see :mod:`bench.p2_inventory`)."""
    site = Site(config)
    await site.refresh()  # the inventory is loaded: headers read, as in a running console
    app = IsoadminApp(site, refresh_seconds=3600)
    t = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one("#uploads")
        while table.row_count < uploads:
            await pilot.pause(0.01)
        app.screen._on_timer_update()
        first_paint = time.perf_counter() - t
        while not app.screens_ready:  # the other screens mount after the first paint, one per repaint
            await pilot.pause(0.01)
        ready = time.perf_counter() - t
        moves = await timed_keys(pilot, app, ["down"] * 40 + ["pagedown"] * 10 + ["up"] * 40 + ["end", "home"],
                                 "cursor")
        await pilot.press("slash")
        filtering = await timed_keys(pilot, app, list("owner0042") + ["backspace"] * 9, "filter")
        await pilot.press("escape")
        switches = await timed_keys(pilot, app, ["2", "1", "3", "1", "6", "1", "7", "1"] * 2, "switch")
        for path in paths[::100]:
            os.utime(path)
        before = app.refreshes
        await pilot.press("ctrl+r")
        while app.refreshes == before:
            await pilot.pause(0.01)
        touched = app.screen.last_update
    await site.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base_first, base_moves, base_switches = await baseline()
    changed = len(paths[::100])

    def keys_figure(name: str, ours: list[float], base: list[float] | None, timed: tuple[str, ...] = ()) -> Figure:
        p95 = percentile(ours, 95) * 1000
        cpu = [c for figure in timed or (name,) for c in CPU.get(figure, [])]
        figure = Figure(f"P3 key → repaint p95 ({name})", p95, "ms", "≤ 50 ms", p95 <= 50,
                        detail=f"median {statistics.median(ours) * 1000:.1f} ms over {len(ours)} keys; "
                        f"the console's own CPU p95 {percentile(cpu, 95) * 1000:.1f} ms")
        if base:
            figure.baseline = percentile(base, 95) * 1000
            figure.ratio = p95 / figure.baseline
            figure.detail += "; baseline: the same keys in a bare Textual app"
        return figure

    return [
        Figure(f"P3 first paint ({uploads:,} rows)", first_paint, "s", "≤ 1 s", first_paint <= 1, base_first,
               first_paint / base_first, "app start → every upload in the table (one refresh included); "
               f"every screen mounted at {ready:.2f} s; baseline: a bare Textual app's first paint"),
        keys_figure("cursor", moves, base_moves),
        keys_figure("filter", filtering, None),
        keys_figure("switch", switches, base_switches),
        keys_figure("all keys", moves + filtering + switches, None, ("cursor", "filter", "switch")),
        Figure("P3 rows updated by a 1 % refresh", touched[1], "", f"≈ {changed}", touched[1] <= changed * 1.1,
               detail=f"added {touched[0]}, updated {touched[1]}, removed {touched[2]}"),
        Figure("P3 peak RSS", rss, "MB", "≤ 200 MB", rss <= 200, detail="the console process; hosts elsewhere"),
    ]
