"""Time and scheduler memory per task from 10k to 1M tasks, trioflow and dask
side by side in one run (issue 14, point 4).

    python benchmarks/scaling.py                              # 10k, 100k, 1M; both
    python benchmarks/scaling.py --sizes 10000,100000 --impl trioflow,dask
    python benchmarks/scaling.py --workloads array --sizes 100000

Run it with an interpreter that has both trioflow and distributed (e.g.
/work/benchvenv/bin/python). Every measurement is a fresh standalone cluster
(``<impl> scheduler`` and two ``<impl> worker --nthreads 1`` processes, as
the shared harness's ``scheduler_scale``) in a child process with a timeout;
the implementations are interleaved size by size. Workloads:

``map``    ``client.map(inc, range(N))`` and ``wait``, holding every result:
           µs per task, and the scheduler's RSS growth per held task.
``array``  ``client.compute(da.ones(10 * N / 1.33, chunks=10).sum())`` (about N
           tasks): µs of the caller's CPU per task until ``compute`` returns,
           wall time to the result, and the scheduler's peak RSS per task.

All the while, a second client (a process of its own) alternates a
``scheduler_info()`` call and one tiny task at the highest priority:
``probe_call_max_ms`` is the longest call, i.e. the longest the scheduler's
loop kept other clients waiting, and ``probe_task_max_ms`` the longest tiny
task's round trip (that, plus the wait for a worker slot behind the big job).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)


def inc(x):
    return x + 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _commands(impl: str, port: int):
    if impl == "dask":
        address = f"tcp://127.0.0.1:{port}"
        scheduler = [os.path.join(BIN, "dask"), "scheduler", "--host", "127.0.0.1",
                     "--port", str(port), "--no-dashboard"]
        worker = [os.path.join(BIN, "dask"), "worker", address, "--nthreads", "1",
                  "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"]
    else:
        address = f"ws://127.0.0.1:{port}"
        scheduler = [os.path.join(BIN, "trioflow"), "scheduler", "--port", str(port)]
        worker = [os.path.join(BIN, "trioflow"), "worker", address, "--nthreads", "1"]
    return address, scheduler, worker


class _Peak(threading.Thread):
    """Samples one process's RSS every 20 ms, keeping the highest."""

    def __init__(self, pid):
        import psutil
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = self.rss()
        self.stop = threading.Event()

    def rss(self) -> int:
        return self.process.memory_info().rss

    def run(self):
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self.rss())


def probe(impl: str, address: str) -> None:
    """A second client, in a process of its own so that the first one's CPU
    does not slow it: submits one tiny task at a time at the highest priority
    until its stdin closes, then prints the longest round trip in seconds."""
    module = __import__("distributed" if impl == "dask" else "trioflow")
    client = module.Client(address, timeout=60)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    longest_call = longest_task = 0.0
    i = 0
    while not stop.is_set():
        t0 = time.perf_counter()
        client.scheduler_info()
        t1 = time.perf_counter()
        future = client.submit(inc, i, pure=False, priority=1_000_000)
        assert future.result(timeout=600) == i + 1
        longest_call = max(longest_call, t1 - t0)
        longest_task = max(longest_task, time.perf_counter() - t1)
        i += 1
    client.close()
    print(longest_call, longest_task, flush=True)


class _Probe:
    def __init__(self, impl, address):
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--probe", impl, address],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    def finish(self) -> tuple[float, float]:
        stdout, _ = self.process.communicate("", timeout=600)
        call, task = stdout.strip().splitlines()[-1].split()
        return float(call), float(task)


def measure(impl: str, workload: str, n: int) -> dict:
    """One measurement (runs in the child process)."""
    import gc
    module = __import__("distributed" if impl == "dask" else "trioflow")
    port = _free_port()
    address, scheduler_cmd, worker_cmd = _commands(impl, port)
    procs = [subprocess.Popen(scheduler_cmd, stdin=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen(worker_cmd, stdin=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        client = module.Client(address, timeout=60)
        client.wait_for_workers(2, timeout=60)
        assert client.submit(inc, 0, pure=False).result(timeout=60) == 1
        probe = _Probe(impl, address)
        peak = _Peak(procs[0].pid)
        gc.collect()
        before = peak.rss()
        peak.start()
        if workload == "map":
            t0 = time.perf_counter()
            futures = module.wait(client.map(inc, range(n)), timeout=3600)
            elapsed = time.perf_counter() - t0
            probe_max = probe.finish()
            held = peak.rss()
            assert not futures.not_done
            out = {"tasks": n, "us_per_task": 1e6 * elapsed / n,
                   "scheduler_bytes_per_task": (held - before) / n}
        else:
            import dask.array as da
            chunks = max(1, round(n / 1.33))
            x = da.ones(10 * chunks, chunks=10).sum()
            n = round(chunks * 4 / 3)  # the tasks of the optimized graph
            t0, c0 = time.perf_counter(), time.process_time()
            future = client.compute(x)
            submit_cpu = time.process_time() - c0
            submit_wall = time.perf_counter() - t0
            assert future.result(timeout=3600) == 10 * chunks
            elapsed = time.perf_counter() - t0
            probe_max = probe.finish()
            out = {"tasks": n, "compute_call_cpu_us_per_task": 1e6 * submit_cpu / n,
                   "compute_call_s": submit_wall, "us_per_task": 1e6 * elapsed / n}
        peak.stop.set()
        peak.join()
        out["scheduler_peak_bytes_per_task"] = (peak.peak - before) / n
        out["probe_call_max_ms"] = 1e3 * probe_max[0]
        out["probe_task_max_ms"] = 1e3 * probe_max[1]
        client.close()
        return out
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


COLUMNS = ("tasks", "us_per_task", "scheduler_bytes_per_task", "scheduler_peak_bytes_per_task",
           "compute_call_cpu_us_per_task", "compute_call_s", "probe_call_max_ms",
           "probe_task_max_ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--impl", default="trioflow,dask")
    parser.add_argument("--workloads", default="map,array")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds one measurement may take")
    parser.add_argument("--json")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--probe", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(*args.probe)
        return
    if args.child:
        impl, workload, n = args.child
        print(json.dumps(measure(impl, workload, int(n))))
        return
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [HERE] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    rows = []
    print(f"{'workload':<8} {'impl':<9} " + " ".join(f"{c:>14}" for c in COLUMNS), flush=True)
    for workload in args.workloads.split(","):
        for n in [int(s) for s in args.sizes.split(",")]:
            for impl in args.impl.split(","):
                cmd = [sys.executable, os.path.abspath(__file__), "--child", impl, workload, str(n)]
                child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, start_new_session=True)
                try:
                    stdout, stderr = child.communicate(timeout=args.timeout)
                    row = (json.loads(stdout.strip().splitlines()[-1]) if child.returncode == 0
                           else {"error": stderr.strip().splitlines()[-1:]})
                except subprocess.TimeoutExpired:
                    row = {"error": f"timed out after {args.timeout:.0f} s"}
                finally:
                    # the whole session: the child's scheduler and workers too
                    try:
                        os.killpg(child.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    child.wait()
                row.update(impl=impl, workload=workload, size=n)
                rows.append(row)
                cells = [f"{row[c]:>14,.1f}" if isinstance(row.get(c), float) else
                         f"{row.get(c, '-'):>14}" for c in COLUMNS]
                print(f"{workload:<8} {impl:<9} " + " ".join(cells)
                      + (f"  {row['error']}" if "error" in row else ""), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
