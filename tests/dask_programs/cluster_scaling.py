# dask examples: a LocalCluster scaled by hand and adaptively
import time

from dask.distributed import Client, LocalCluster, wait


def slow_inc(x):
    time.sleep(0.1)
    return x + 1


if __name__ == "__main__":
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None)
    client = Client(cluster)
    cluster.scale(2)
    client.wait_for_workers(2)
    data = client.map(slow_inc, range(12))
    wait(data)
    sizes = [len(cluster.workers), len(cluster.scheduler_info["workers"])]
    cluster.scale(1)
    deadline = time.time() + 30
    while len(client.scheduler_info()["workers"]) > 1 and time.time() < deadline:
        time.sleep(0.1)
    kept = client.gather(data)
    cluster.adapt(minimum=1, maximum=2)
    results = client.gather(client.map(slow_inc, range(10)))
    logs = cluster.get_logs()
    print("RESULT", [sizes, sum(kept), sum(results), "Scheduler" in logs,
                     cluster.scheduler_address == client.scheduler.address])
    client.close()
    cluster.close()
