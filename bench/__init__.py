"""isoadmin's benchmarks (``make bench``): every figure measured side by side with its baseline.

P1 import, P2 inventory, P3 TUI, P4 concurrency; see README.md ("Performance"). Timings on shared machines
are noisy, so each figure is a ratio against a baseline run in the same process, alternately, and the
median of several rounds is kept.
"""
