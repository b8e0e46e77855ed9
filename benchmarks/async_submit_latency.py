"""submit_latency for the three faces of one client, in one run.

The same measurement as ../shared/bench's submit_latency (500 sequential
``submit(inc, i, pure=False)`` round trips after 20 untimed, on a local
cluster of 2 workers x 1 thread), made with the blocking client, the async
client under trio, and the async client under asyncio.  Prints the median
and p99 in microseconds for each.

    python benchmarks/async_submit_latency.py [--processes] [--n 500]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import trio

from trioflow import Client


def inc(x):
    return x + 1


def _summary(name, samples):
    samples.sort()
    p99 = samples[max(0, int(len(samples) * 0.99) - 1)]
    print(f"{name:<18} median {statistics.median(samples) * 1e6:8.0f} us   "
          f"p99 {p99 * 1e6:8.0f} us")


def blocking(n, processes):
    with Client(n_workers=2, threads_per_worker=1, processes=processes) as client:
        client.wait_for_workers(2)
        for i in range(20):
            client.submit(inc, i, pure=False).result()
        samples = []
        for i in range(n):
            t0 = time.perf_counter()
            assert client.submit(inc, i, pure=False).result() == i + 1
            samples.append(time.perf_counter() - t0)
    _summary("blocking", samples)


async def asynchronous(n, processes, name):
    async with Client(n_workers=2, threads_per_worker=1, processes=processes,
                      asynchronous=True) as client:
        await client.wait_for_workers(2)
        for i in range(20):
            await client.submit(inc, i, pure=False)
        samples = []
        for i in range(n):
            t0 = time.perf_counter()
            assert await client.submit(inc, i, pure=False) == i + 1
            samples.append(time.perf_counter() - t0)
    _summary(name, samples)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", action="store_true")
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args(argv)
    print(f"{args.n} sequential submit(...).result(), processes={args.processes}")
    blocking(args.n, args.processes)
    trio.run(asynchronous, args.n, args.processes, "async (trio)")
    asyncio.run(asynchronous(args.n, args.processes, "async (asyncio)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
