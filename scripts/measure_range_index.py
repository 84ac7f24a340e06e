#!/usr/bin/env python3
"""Measure the reconciliation index (mvds/store/rangeindex.py) on a store of N
messages: build time at first use, memory, query and append costs.

    PYTHONPATH=. python scripts/measure_range_index.py [N]   (default 1,000,000)

Builds (once, cached) the benchmark store of N messages with
benchmarks/bench_store.py's builder.  docs/STORAGE.md quotes the numbers.
"""
import time, resource, sys
from benchmarks.bench_store import big_store, GROUP
from mvds.store import SQLiteStore
n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
path = big_store(n)
t = time.perf_counter(); s = SQLiteStore(path); t_open = time.perf_counter() - t
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter(); idx = s.range_index(GROUP); t_build = time.perf_counter() - t
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"n={n} open={t_open:.2f}s build={t_build:.2f}s len={len(idx)} maxrss {rss0/1024:.0f}->{rss1/1024:.0f} MB")
import random
rng = random.Random(1)
t = time.perf_counter()
for _ in range(10000):
    i = rng.randrange(n); j = rng.randrange(i, n + 1)
    idx.range_sum(i, j)
print(f"range_sum: {(time.perf_counter()-t)/10000*1e6:.1f} us")
t = time.perf_counter()
keys=[idx.key_at(rng.randrange(n)) for _ in range(10000)]
for k in keys: idx.rank(k)
print(f"key_at+rank: {(time.perf_counter()-t)/10000*1e6:.1f} us")
from mvds.store.rangeindex import make_key
import os
t = time.perf_counter()
for i in range(100000):
    idx.add(make_key(1_700_000_000 + i, os.urandom(32)))
print(f"append at end: {(time.perf_counter()-t)/100000*1e6:.2f} us")
t = time.perf_counter()
for i in range(10000):
    idx.add(make_key(1_600_000_000 + rng.randrange(n), os.urandom(32)))
print(f"insert in the middle: {(time.perf_counter()-t)/10000*1e6:.2f} us")
t = time.perf_counter(); idx.range_sum(5, n - 5); print(f"first query after middle inserts: {(time.perf_counter()-t)*1e3:.2f} ms")
