"""``trioflow demo``: start a local cluster, run a real job on it, check the answers.

Two phases, each timed and checked:

1. a task graph with dependencies: ``inc`` over a few thousand numbers, then a
   pairwise tree of ``add`` down to one future, compared with the closed form;
2. data: a large float64 array (numpy if installed, else the standard
   library's ``array``) scattered to the cluster once, summed in chunks by
   tasks that all take the scattered future, compared with a local sum.

The functions shipped to workers are defined at the top level of this module
so that worker processes, which import trioflow, unpickle them by reference.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
import traceback
from array import array
from collections.abc import Callable, Sequence
from typing import Any

from trioflow.utils import default_dashboard_address

#: tasks in the first phase's map at --size 1
LEAVES = 2_000
#: float64 elements scattered in the second phase at --size 1 (80 MB)
ELEMENTS = 10_000_000
#: tasks the scattered array is summed in
CHUNKS = 16


def inc(x: int) -> int:
    return x + 1


def add(x: int, y: int) -> int:
    return x + y


def partial_sum(data: Any, start: int, stop: int) -> float:
    """Sum of ``data[start:stop]``; ``data`` is a numpy array or an ``array('d')``."""
    chunk = data[start:stop]
    if isinstance(chunk, array):
        return math.fsum(chunk)
    return float(chunk.sum())


def total(partials: Sequence[float]) -> float:
    return math.fsum(partials)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="trioflow demo",
        description="Start a local trioflow cluster, run a task graph and a scatter/reduce job "
        "on it, check the answers and report timings.",
    )
    parser.add_argument("--n-workers", type=int, default=2, metavar="N", help="workers to start (default 2)")
    parser.add_argument(
        "--threads-per-worker", type=int, default=2, metavar="N",
        help="threads per worker (default 2)",
    )
    parser.add_argument(
        "--processes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="workers in their own processes under nannies (default), "
        "or with --no-processes as threads inside this process",
    )
    parser.add_argument(
        "--size",
        type=float,
        default=1.0,
        metavar="SCALE",
        help=f"scale of the job: {LEAVES:,} leaf tasks and {ELEMENTS * 8 // 10**6} MB "
        "scattered at 1.0 (default)",
    )
    parser.add_argument(
        "--dashboard-address", default=default_dashboard_address(), metavar="ADDRESS",
        help="where the dashboard listens (default :8787, a free port if taken)",
    )
    parser.add_argument("--no-dashboard", dest="dashboard_address", action="store_const",
                        const=None, help="serve no dashboard")
    args = parser.parse_args(argv)
    if args.n_workers < 1 or args.threads_per_worker < 1:
        parser.error("--n-workers and --threads-per-worker must be at least 1")
    if args.size <= 0:
        parser.error("--size must be positive")
    return args


def _check(label: str, got: Any, expected: Any, ok: bool) -> bool:
    print(f"  check {label}: got {got!r}, expected {expected!r} -> {'ok' if ok else 'FAILED'}")
    return ok


def tree_phase(client: Any, leaves: int) -> bool:
    """Map ``inc`` over ``range(leaves)``, add pairwise down to one future, check the sum."""
    from trioflow.diagnostics import progress

    level = client.map(inc, range(leaves))
    every_future = list(level)
    while len(level) > 1:
        pairs = client.map(add, level[0::2], level[1::2])
        # an odd one out moves up a level unchanged
        level = pairs + level[len(pairs) * 2 :]
        every_future.extend(pairs)
    root = level[0]
    print(f"  submitted {len(every_future):,} tasks: {leaves:,} x inc, "
          f"{len(every_future) - leaves:,} x add in a pairwise tree")
    progress(every_future)
    result = root.result()
    expected = leaves * (leaves + 1) // 2
    return _check("sum of inc(i) for i < n == n(n+1)/2", result, expected, result == expected)


def _make_array(elements: int) -> tuple[Any, str, Callable[[Any], float]]:
    """A float64 array of random values, what it is, and how to sum it locally."""
    try:
        import numpy
    except ImportError:
        rng = random.Random(0)
        data = array("d", (rng.random() for _ in range(elements)))
        return data, "array('d') from the standard library (numpy is not installed)", math.fsum
    data = numpy.random.default_rng(0).random(elements)
    return data, f"numpy {numpy.__version__} ndarray", lambda a: float(a.sum())


def scatter_phase(client: Any, elements: int) -> bool:
    """Scatter one large array, sum it in chunks on the workers, compare with a local sum."""
    from trioflow.diagnostics import progress

    started = time.perf_counter()
    data, kind, local_sum = _make_array(elements)
    megabytes = elements * 8 / 1e6
    print(f"  made {elements:,} random float64 values ({megabytes:.1f} MB) in "
          f"{time.perf_counter() - started:.2f} s: {kind}")
    started = time.perf_counter()
    remote = client.scatter(data)
    print(f"  scattered {megabytes:.1f} MB in {time.perf_counter() - started:.2f} s as {remote.key}")
    bounds = [elements * i // CHUNKS for i in range(CHUNKS + 1)]
    partials = [
        client.submit(partial_sum, remote, start, stop)
        for start, stop in zip(bounds[:-1], bounds[1:])
    ]
    grand_total = client.submit(total, partials)
    print(f"  submitted {CHUNKS} partial sums over the scattered future and 1 final sum")
    progress(partials + [grand_total])
    result = grand_total.result()
    expected = local_sum(data)
    ok = math.isclose(result, expected, rel_tol=1e-9)
    return _check("distributed sum == local sum (rel. tol. 1e-9)", result, expected, ok)


def _phase(name: str, run: Callable[[], bool]) -> bool:
    print(f"\n== {name}")
    started = time.perf_counter()
    try:
        ok = run()
    except Exception:
        traceback.print_exc()
        print("  FAILED with the exception above")
        ok = False
    print(f"  {name}: {'ok' if ok else 'FAILED'} in {time.perf_counter() - started:.2f} s")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Run the demo; return 0 if every check passed, 1 otherwise."""
    args = _parse(argv)
    from trioflow import Client, LocalCluster

    leaves = max(2, int(LEAVES * args.size))
    elements = max(CHUNKS, int(ELEMENTS * args.size))
    where = "worker processes under nannies" if args.processes else "threads in this process"
    print(f"trioflow demo: {args.n_workers} workers x {args.threads_per_worker} threads, {where}")

    overall = time.perf_counter()
    started = overall
    results = []
    with LocalCluster(
        n_workers=args.n_workers,
        threads_per_worker=args.threads_per_worker,
        processes=args.processes,
        dashboard_address=args.dashboard_address,
    ) as cluster, Client(cluster) as client:
        print(f"cluster up in {time.perf_counter() - started:.2f} s, scheduler at "
              f"{cluster.scheduler_address}")
        if client.dashboard_link:
            print(f"dashboard at {client.dashboard_link}")
        results.append(_phase("task graph", lambda: tree_phase(client, leaves)))
        results.append(_phase("scatter and reduce", lambda: scatter_phase(client, elements)))
        print("\nshutting down")
        shutdown = time.perf_counter()
    print(f"shut down in {time.perf_counter() - shutdown:.2f} s")
    passed = sum(results)
    print(f"\n{passed}/{len(results)} phases passed in {time.perf_counter() - overall:.2f} s total")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
