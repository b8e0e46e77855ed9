# dask docs, task-launching.rst: tasks that submit tasks (get_client, secede, rejoin)
from dask.distributed import Client, get_client, rejoin, secede, worker_client


def fib(n):
    if n < 2:
        return n
    client = get_client()
    a_future = client.submit(fib, n - 1)
    b_future = client.submit(fib, n - 2)
    secede()
    a, b = client.gather([a_future, b_future])
    rejoin()
    return a + b


def total_of(lo, hi):
    """Sum of range(lo, hi), split in halves, each half a task of its own."""
    if hi - lo <= 4:
        return sum(range(lo, hi))
    middle = (lo + hi) // 2
    with worker_client() as client:
        halves = [client.submit(total_of, lo, middle), client.submit(total_of, middle, hi)]
        return sum(half.result() for half in halves)


async def total_async(n):
    # an async task awaits the tasks it launches (dask runs it in the worker's loop)
    client = get_client()
    return sum(await client.gather(client.map(abs, range(-n, 0))))


if __name__ == "__main__":
    with Client(processes=False, n_workers=2, threads_per_worker=2,
                dashboard_address=None) as client:
        print("RESULT", [client.submit(fib, 9).result(),
                         client.submit(total_of, 0, 30).result(),
                         client.submit(total_async, 10).result()])
