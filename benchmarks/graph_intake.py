"""Client CPU per task of turning a dask collection into scheduler tasks.

    python benchmarks/graph_intake.py 100000

builds ``da.ones(10 * N, chunks=10).sum()`` (about 1.33 N tasks) and prints
the microseconds of CPU per task spent by dask building the graph
(``collections_graph``) and by trioflow pickling it into tasks
(``graph_tasks``), with the pickled bytes per task (parts of nodes pickled together).  No
cluster is started: this is the part of ``client.compute`` that runs in the
caller before anything is sent.
"""
import sys
import time

import dask.array as da

from trioflow.client.client import Client
from trioflow.client.graphs import collections_graph, graph_tasks


def main(n: int) -> None:
    client = Client.__new__(Client)  # only its function-payload cache is used
    client._func_cache = {}
    x = da.ones(n * 10, chunks=10).sum()
    t0 = time.process_time()
    dsk, _ = collections_graph([x], True, finalize=True)
    t1 = time.process_time()
    tasks = graph_tasks(client, dsk, {})
    t2 = time.process_time()
    size = sum(len(t["run_spec"][1]) for t in tasks if type(t["run_spec"][1]) is bytes) / len(tasks)
    print(f"{len(tasks)} tasks: dask graph {1e6 * (t1 - t0) / len(tasks):.1f} us/task, "
          f"graph_tasks {1e6 * (t2 - t1) / len(tasks):.1f} us/task, {size:.0f} B/task")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
