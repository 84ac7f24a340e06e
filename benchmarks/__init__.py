"""mvds benchmarks: ``python -m benchmarks`` runs them, prints a table, writes JSON.

Each ``benchmarks/bench_*.py`` module defines ``benchmarks(quick: bool)``
returning a list of :class:`benchmarks.common.Benchmark`.  ``quick`` shrinks
every benchmark to a smoke run (CI runs that, and never asserts timings).
"""
