"""How far one client->scheduler round trip is from the machine's floor.

Prints microseconds per round trip (median and p99 of --n sequential calls
after 50 untimed) for:

- a bare Python socket echo: a blocking TCP client in this process, an echo
  server in another process (the floor between two Python processes);
- a bare trio socket echo: the same with trio on both ends;
- trioflow's identity RPC (``scheduler_info()``) from the blocking client and
  from the asynchronous client under trio, to a scheduler in this process
  (``inproc://``) and to a standalone ``trioflow scheduler`` process (``ws://``).

Then each figure over the bare trio echo (issue 19's target is <= 3x for the
ws figures), and this process's CPU time per call, which moves much less
than wall time when other work shares the machine.

    python benchmarks/roundtrip.py [--n 2000]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time

import trio

MESSAGE = b"x" * 64

_PY_ECHO = """
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while True:
    b = c.recv(65536)
    if not b:
        break
    c.sendall(b)
"""

_TRIO_ECHO = """
import trio
async def echo(stream):
    async for b in stream:
        await stream.send_all(b)
async def main():
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    await trio.serve_listeners(echo, listeners)
trio.run(main)
"""


@contextlib.contextmanager
def _process(argv):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cpu(measure, *args):
    """``measure(*args)``'s samples, and this process's CPU time per call."""
    n = args[-1]
    start = time.process_time()
    samples = measure(*args)
    return samples, (time.process_time() - start) / (n + 50) * 1e6


def _summary(samples):
    samples = sorted(samples)
    p99 = samples[max(0, int(len(samples) * 0.99) - 1)]
    return statistics.median(samples) * 1e6, p99 * 1e6


def python_echo(n):
    with _process([sys.executable, "-c", _PY_ECHO]) as proc:
        port = int(proc.stdout.readline())
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            samples = []
            for i in range(n + 50):
                t0 = time.perf_counter()
                s.sendall(MESSAGE)
                got = 0
                while got < len(MESSAGE):
                    got += len(s.recv(65536))
                if i >= 50:
                    samples.append(time.perf_counter() - t0)
    return samples


def trio_echo(n):
    with _process([sys.executable, "-c", _TRIO_ECHO]) as proc:
        port = int(proc.stdout.readline())

        async def main():
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                samples = []
                for i in range(n + 50):
                    t0 = time.perf_counter()
                    await stream.send_all(MESSAGE)
                    got = 0
                    while got < len(MESSAGE):
                        got += len(await stream.receive_some(65536))
                    if i >= 50:
                        samples.append(time.perf_counter() - t0)
                return samples

        return trio.run(main)


def blocking_identity(client, n):
    samples = []
    for i in range(n + 50):
        t0 = time.perf_counter()
        client.scheduler_info()
        if i >= 50:
            samples.append(time.perf_counter() - t0)
    return samples


async def _timed_async(client, n):
    samples = []
    for i in range(n + 50):
        t0 = time.perf_counter()
        await client.scheduler_info()
        if i >= 50:
            samples.append(time.perf_counter() - t0)
    return samples


def async_identity(address, n):
    from trioflow import Client

    async def main():
        async with Client(address, asynchronous=True) as client:
            return await _timed_async(client, n)

    return trio.run(main)


@contextlib.contextmanager
def _standalone_scheduler():
    argv = [sys.executable, "-m", "trioflow.cli", "scheduler", "--port", "0", "--no-dashboard"]
    with _process(argv) as proc:
        for line in proc.stdout:
            if line.startswith("trioflow scheduler at "):
                yield line.split(" at ", 1)[1].strip()
                return
        raise RuntimeError("the scheduler process ended before printing its address")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="timed round trips per figure")
    args = parser.parse_args(argv)
    from trioflow import Client, LocalCluster

    rows = [("bare python socket echo (2 processes)", _cpu(python_echo, args.n)),
            ("bare trio socket echo (2 processes)", _cpu(trio_echo, args.n))]
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            rows.append(("trioflow blocking, inproc", _cpu(blocking_identity, client, args.n)))
    # the async client under trio owns its loop, so an inproc scheduler would
    # have to live in that loop too: measure it against an in-loop scheduler
    rows.append(("trioflow async (trio), inproc", _cpu(_async_inproc, args.n)))
    with _standalone_scheduler() as address:
        with Client(address) as client:
            rows.append(("trioflow blocking, ws", _cpu(blocking_identity, client, args.n)))
        rows.append(("trioflow async (trio), ws", _cpu(async_identity, address, args.n)))

    floor = statistics.median(rows[1][1][0]) * 1e6
    print(f"{'round trip':<40}{'median us':>11}{'p99 us':>10}{'/ trio echo':>13}"
          f"{'cpu us':>9}")
    for name, (samples, cpu) in rows:
        median, p99 = _summary(samples)
        print(f"{name:<40}{median:>11.1f}{p99:>10.1f}{median / floor:>13.2f}{cpu:>9.1f}")
    print("# cpu us: CPU time of this process (all its threads) per call; for the inproc rows "
          "that includes the scheduler, for the others only the calling side")
    print(f"# n={args.n}, load average {os.getloadavg()[0]:.2f}")


def _async_inproc(n):
    from trioflow import Client
    from trioflow.server.scheduler import Scheduler

    async def run():
        async with Scheduler(protocol="inproc", dashboard_address=None) as scheduler:
            async with Client(scheduler.address, asynchronous=True) as client:
                return await _timed_async(client, n)

    return trio.run(run)


if __name__ == "__main__":
    main()
