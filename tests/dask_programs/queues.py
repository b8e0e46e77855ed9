# dask docs, futures.rst: queues of futures between producers and a consumer
from dask.distributed import Client, Queue, fire_and_forget, get_client


def load(i):
    return list(range(i))


def process(data):
    return sum(data)


def load_and_submit(i):
    data = load(i)
    client = get_client()
    future = client.submit(process, data)
    queue = Queue("results")
    queue.put(future)


if __name__ == "__main__":
    client = Client(n_workers=1, threads_per_worker=2, dashboard_address=None)
    queue = Queue("results")
    for i in range(10):
        fire_and_forget(client.submit(load_and_submit, i))
    results = sorted(queue.get().result() for _ in range(10))
    small = Queue()
    small.put(1)
    small.put(2)
    print("RESULT", [results, small.qsize(), small.get(batch=True)])
    client.close()
