"""Where the runs of ``--seeds N`` go: this process, local processes, or a Dask cluster.

One seeded run is a pure function of its job (scenario, parameters, seed),
so the runs can go anywhere and come back in job order: the numbers are
the same whichever way they ran.  Sweeps larger than one machine go to an
existing Dask cluster (``--dask SCHEDULER_ADDRESS``) rather than to a
scheduler of our own.  Dask rather than Ray: ``distributed`` is pure Python
(a few seconds to ``pip install mvds[dask]``, any Python mvds supports),
its ``Client`` connects to a running scheduler by address and maps a plain
function over a list, and ``LocalCluster`` gives the test suite a real
scheduler and worker processes on loopback; Ray brings a large native
runtime (its own object store, GCS and raylet processes) that this job
does not need.  The cluster's workers need mvds installed (the same
version): they import the run function by name.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence


class DistributeError(Exception):
    """The runs could not be handed out (no dask, no scheduler): one line."""


def map_runs(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int = 1,
             dask: str | None = None) -> list[Any]:
    """``[fn(job) for job in jobs]``, in order: here (``workers`` 1), over
    ``workers`` local processes, or on the Dask scheduler at ``dask``."""
    if dask:
        return _on_dask(fn, jobs, dask)
    if workers <= 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, jobs))


def _on_dask(fn: Callable[[Any], Any], jobs: Sequence[Any], address: str) -> list[Any]:
    try:
        from distributed import Client
    except ImportError:
        raise DistributeError("--dask needs Dask's distributed: pip install 'mvds[dask]'") from None
    try:
        client = Client(address, timeout=30, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise DistributeError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    with client:
        # pure=False: every job is its own task even if two look alike.
        futures = client.map(fn, list(jobs), pure=False)
        return list(client.gather(futures))
