# dask docs, futures.rst: submit, map, gather, result
from dask.distributed import Client


def inc(x):
    return x + 1


def add(x, y):
    return x + y


if __name__ == "__main__":
    client = Client(n_workers=2, threads_per_worker=1, dashboard_address=None)
    a = client.submit(inc, 10)
    b = client.submit(inc, 20)
    c = client.submit(add, a, b)
    futures = client.map(inc, range(100))
    total = client.submit(sum, futures)
    [data] = client.scatter([list(range(1000))])
    x = client.submit(sum, data)
    print("RESULT", [c.result(), sum(client.gather(futures)), total.result(), x.result(),
                     a.done(), b.status])
    client.close()
