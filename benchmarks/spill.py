"""Data three times the cluster's memory, on trioflow and on dask.distributed
side by side (issue 16).

    /work/benchvenv/bin/python benchmarks/spill.py            # both, 3 rounds interleaved
    python benchmarks/spill.py --impl trioflow --repeat 1     # one of them

Each measurement is a fresh process: ``LocalCluster(n_workers=2,
threads_per_worker=1, memory_limit=300 MB)`` (workers in processes under
nannies, dask's default thresholds 0.6/0.7/0.8/0.95), ``client.map`` of 60
arrays of 30 MB held as futures (1.8 GB: three times the 600 MB of the two
workers), then a sum of each and a sum of the sums, checked.  Timed: from
the first map to the answer (the cluster's start is not included).  While it
runs, the parent samples the RSS of every worker process every 20 ms and
reports the peak per worker; at the end it asks each worker how many bytes
it has on disk, and counts restarted workers.  The interpreter that runs
this must be able to import both (``/work/benchvenv`` has
distributed==2026.8.0; this checkout is put on ``PYTHONPATH``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
N_ARRAYS = 60
ARRAY_BYTES = 30_000_000
LIMIT = 300_000_000


def make(i, nbytes):
    import numpy as np
    return np.full(nbytes, i % 251, dtype=np.uint8)


def total(x):
    return int(x.sum(dtype="int64"))


def _dask_on_disk(dask_worker):
    data = dask_worker.data
    spilled = getattr(data, "spilled_total", None)
    return int(spilled[0]) if spilled is not None else 0


class PeakSampler(threading.Thread):
    """The highest RSS of each worker process (by pid) while it runs."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids = list(pids)
        self.peaks: dict[int, int] = {}
        self.stop = threading.Event()

    def run(self):
        import psutil
        procs = {pid: psutil.Process(pid) for pid in self.pids}
        while not self.stop.wait(0.02):
            for pid, p in list(procs.items()):
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    procs.pop(pid)
                    continue
                self.peaks[pid] = max(self.peaks.get(pid, 0), rss)


def child(impl: str) -> dict:
    if impl == "dask":
        import dask
        dask.config.set({"distributed.worker.daemon": False})
        from distributed import Client, LocalCluster, wait
    else:
        from trioflow import Client, LocalCluster, wait
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=LIMIT,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        pids = set(client.run(os.getpid).values())
        sampler = PeakSampler(pids)
        sampler.start()
        start = time.perf_counter()
        arrays = client.map(make, range(N_ARRAYS), nbytes=ARRAY_BYTES)
        wait(arrays)
        held = time.perf_counter() - start
        answer = client.submit(sum, client.map(total, arrays)).result()
        elapsed = time.perf_counter() - start
        assert answer == sum((i % 251) * ARRAY_BYTES for i in range(N_ARRAYS)), answer
        if impl == "dask":
            on_disk = client.run(_dask_on_disk)
        else:
            time.sleep(1.2)  # the figures are as of each worker's heartbeat (once a second)
            info = client.scheduler_info()["workers"]
            on_disk = {a: w["spilled_bytes"] for a, w in info.items()}
        # a restarted worker is a new process: count the pids that are not the first ones
        client.wait_for_workers(2)
        restarts = len(set(client.run(os.getpid).values()) - pids)
        sampler.stop.set()
        sampler.join()
        del arrays
    return {"impl": impl, "elapsed_s": elapsed, "hold_s": held,
            "peak_rss_MiB": sorted(round(v / 2**20, 1) for v in sampler.peaks.values()),
            "restarts": restarts, "spilled_MiB": round(sum(on_disk.values()) / 2**20, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", default="trioflow,dask")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="also write every measurement here")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)), flush=True)
        return 0
    impls = args.impl.split(",")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [HERE, ROOT, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    results: dict[str, list[dict]] = {impl: [] for impl in impls}
    for round_ in range(args.repeat):
        for impl in impls:  # interleaved, so drift in the machine hits both alike
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", impl],
                                 capture_output=True, text=True, env=env, timeout=600,
                                 cwd=HERE)
            lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
            if out.returncode or not lines:
                print(f"{impl} round {round_ + 1} failed:\n{out.stderr[-3000:]}")
                return 1
            result = json.loads(lines[-1])
            results[impl].append(result)
            print(f"  {impl:9s} round {round_ + 1}: {result['elapsed_s']:.2f} s, peak RSS "
                  f"{result['peak_rss_MiB']} MiB, spilled {result['spilled_MiB']} MiB, "
                  f"restarts {result['restarts']}", flush=True)
    print(f"\n{N_ARRAYS} x {ARRAY_BYTES / 1e6:.0f} MB on 2 workers x {LIMIT / 1e6:.0f} MB "
          f"(median of {args.repeat})")
    print(f"{'impl':9s} {'time s':>7s} {'peak RSS per worker MiB':>24s} {'spilled MiB':>12s} "
          f"{'restarts':>8s}")
    for impl, rows in results.items():
        peak = max(max(r["peak_rss_MiB"] or [0]) for r in rows)
        print(f"{impl:9s} {statistics.median(r['elapsed_s'] for r in rows):7.2f} "
              f"{peak:24.1f} {statistics.median(r['spilled_MiB'] for r in rows):12.1f} "
              f"{max(r['restarts'] for r in rows):8d}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
