# distributed docs, locality.rst and resources.rst: workers= and resources=
import dask

from dask.distributed import Client, LocalCluster, wait


def inc(x):
    return x + 1


if __name__ == "__main__":
    dask.config.set({"distributed.worker.resources.GPU": 2})
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.wait_for_workers(2)
            addresses = sorted(client.scheduler_info()["workers"])
            z = dask.delayed(inc)(41)
            first = client.compute(z, workers=[addresses[1]])
            second = client.compute(z, workers=[addresses[1]])
            wait([first, second])
            placed = list(client.who_has([first])[first.key])
            gpu = client.submit(inc, 1, resources={"GPU": 1}).result()
            pinned = client.submit(inc, 2, workers=addresses[0]).result()
            resources = sorted(w["resources"]["GPU"]
                               for w in client.scheduler_info()["workers"].values())
            print("RESULT", [first.result(), second.result(), placed == [addresses[1]], gpu,
                             pinned, resources])
