# dask docs, resilience.rst: a worker process dies mid-computation; the work is redone
import os
import signal
import time

from dask.distributed import Client, wait


def slow_square(x):
    time.sleep(0.05)
    return x * x


if __name__ == "__main__":
    client = Client(n_workers=2, threads_per_worker=1, dashboard_address=None)
    client.wait_for_workers(2)
    futures = client.map(slow_square, range(40))
    time.sleep(0.3)
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    os.kill(pids[victim], signal.SIGKILL)
    wait(futures)
    print("RESULT", [sum(client.gather(futures)), all(f.status == "finished" for f in futures)])
    client.close()
