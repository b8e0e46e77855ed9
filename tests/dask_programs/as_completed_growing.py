# dask docs, futures.rst: as_completed with futures added while iterating
from dask.distributed import Client, as_completed


def inc(x):
    return x + 1


if __name__ == "__main__":
    with Client(processes=False, n_workers=2, threads_per_worker=1,
                dashboard_address=None) as client:
        futures = client.map(inc, range(5))
        seq = as_completed(futures)
        seen = []
        for future in seq:
            y = future.result()
            seen.append(y)
            if y < 10:
                seq.add(client.submit(inc, y + 5))
        batches = [len(batch) for batch in as_completed(client.map(inc, range(6)),
                                                        with_results=False).batches()]
        print("RESULT", [sorted(seen), sum(batches)])
