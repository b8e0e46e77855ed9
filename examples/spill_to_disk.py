"""A job whose results are three times the cluster's memory (needs numpy).

    python examples/spill_to_disk.py

Two workers of 300 MB each hold 60 arrays of 30 MB (1.8 GB) as futures: past
60% of its limit each worker writes the arrays it has not used for a while to
files in its own directory and reads them back when a task needs them.  The
arrays are then summed, and the script prints what each worker reported
spilling, and checks that no worker was restarted.  See docs/memory.md.
"""
from __future__ import annotations

import numpy as np

from trioflow import Client, LocalCluster, wait

N_ARRAYS = 60
ARRAY_BYTES = 30_000_000
LIMIT = 300_000_000


def make(i: int) -> np.ndarray:
    return np.full(ARRAY_BYTES, i % 251, dtype=np.uint8)


def total(x: np.ndarray) -> int:
    return int(x.sum(dtype=np.int64))


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main() -> None:
    with LocalCluster(n_workers=2, threads_per_worker=1, memory_limit=LIMIT,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        arrays = client.map(make, range(N_ARRAYS))
        wait(arrays)
        print(f"holding {N_ARRAYS} arrays, {mib(N_ARRAYS * ARRAY_BYTES)}, on workers of "
              f"{mib(LIMIT)} each")
        answer = client.submit(sum, client.map(total, arrays)).result()
        assert answer == sum((i % 251) * ARRAY_BYTES for i in range(N_ARRAYS)), answer
        print(f"sum of every byte: {answer:,} (right)")

        client.wait_for_workers(2)
        # the figures are as of each worker's last heartbeat (once a second)
        client.submit(total, arrays[0]).result()
        for address, info in client.scheduler_info()["workers"].items():
            print(f"{address}: process {mib(info['memory'])}, managed in memory "
                  f"{mib(info['managed'])}, spilled to disk {mib(info['spilled_bytes'])}, "
                  f"spilled in all {mib(info['metrics'].get('spilled_total', 0))}")
        restarts = sum(getattr(nanny, "restarts", 0) for nanny in cluster.workers.values())
        print(f"workers restarted: {restarts}")


if __name__ == "__main__":
    main()
