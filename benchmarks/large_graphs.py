"""Time large graphs end to end on one in-process worker, and in the core alone.

    python benchmarks/large_graphs.py [N]

prints, for a chain of N tasks, N independent tasks and an N/10-way fan-in:
seconds to submit, to compute, and until the scheduler has forgotten them;
then the scheduler core alone submitting and cancelling an N-task chain.
"""
from __future__ import annotations

import sys
import time

from trioflow import Client
from trioflow.core import events as ev
from trioflow.core.scheduler_state import SchedulerState


def inc(x):
    return x + 1


def total(values):
    return sum(values)


def _forgotten(client):
    start = time.perf_counter()
    while client.scheduler_info()["n_tasks"]:
        time.sleep(0.01)
    return time.perf_counter() - start


def _row(name, n, submit, compute, forget):
    print(f"{name:<22} {n:>9,} {submit:>9.2f} {compute:>9.2f} {forget:>9.2f} "
          f"{1e6 * (submit + compute) / n:>9.0f}")


def end_to_end(n):
    print(f"{'graph':<22} {'tasks':>9} {'submit s':>9} {'compute s':>9} {'forget s':>9} "
          f"{'µs/task':>9}")
    with Client(processes=False, n_workers=1, threads_per_worker=1,
                dashboard_address=None) as client:
        t0 = time.perf_counter()
        f = client.submit(inc, 0)
        for _ in range(n - 1):
            f = client.submit(inc, f)
        t1 = time.perf_counter()
        assert f.result(timeout=3600) == n
        t2 = time.perf_counter()
        del f
        _row("chain", n, t1 - t0, t2 - t1, _forgotten(client))

        t0 = time.perf_counter()
        fs = client.map(inc, range(n))
        t1 = time.perf_counter()
        assert sum(client.gather(fs)) == sum(range(1, n + 1))
        t2 = time.perf_counter()
        del fs
        _row("independent", n, t1 - t0, t2 - t1, _forgotten(client))

        width = max(1, n // 10)
        t0 = time.perf_counter()
        parts = client.map(inc, range(width))
        t = client.submit(total, parts)
        t1 = time.perf_counter()
        assert t.result(timeout=3600) == sum(range(1, width + 1))
        t2 = time.perf_counter()
        del parts, t
        _row("fan-in", width + 1, t1 - t0, t2 - t1, _forgotten(client))


def core_only(n):
    state = SchedulerState()
    state.handle(ev.ClientConnected("c"))
    state.handle(ev.WorkerJoined("w", 1))
    specs = (ev.TaskSpec("t-0", b"f"),) + tuple(
        ev.TaskSpec(f"t-{i}", b"f", (f"t-{i - 1}",)) for i in range(1, n))
    t0 = time.perf_counter()
    state.handle(ev.GraphSubmitted("c", specs, (f"t-{n - 1}",)))
    t1 = time.perf_counter()
    state.handle(ev.KeysCancelled("c", (f"t-{n - 1}",)))
    t2 = time.perf_counter()
    assert not state.tasks
    print(f"core alone, {n:,}-task chain: submit {t1 - t0:.2f} s, cancel {t2 - t1:.2f} s "
          f"({1e6 * (t2 - t0) / n:.0f} µs/task)")


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    end_to_end(n)
    core_only(max(n, 100_000))
