# dask docs, semaphores/locks: at most two tasks in the guarded section at once
import time

from dask.distributed import Client, Lock, Semaphore, get_client


def access_limited(sem, i):
    with sem:
        time.sleep(0.1)
        return i


def increment_under_lock(i):
    client = get_client()
    with Lock("counter"):
        value = client.get_metadata("count", 0)
        client.set_metadata("count", value + 1)
    return i


if __name__ == "__main__":
    client = Client(processes=False, n_workers=2, threads_per_worker=2, dashboard_address=None)
    sem = Semaphore(max_leases=2, name="database")
    results = client.gather(client.map(access_limited, [sem] * 8, range(8)))
    client.set_metadata("count", 0)
    client.gather(client.map(increment_under_lock, range(20)))
    print("RESULT", [results, client.get_metadata("count")])
    client.close()
