# dask docs: collections computed and persisted on the cluster
import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd

from dask.distributed import Client


def inc(x):
    return x + 1


if __name__ == "__main__":
    client = Client(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None)
    x = da.from_array(np.arange(10_000, dtype="f8").reshape(100, 100), chunks=(25, 25))
    x = client.persist(x)
    array_total = float((x + x.T).sum().compute())
    df = dd.from_pandas(pd.DataFrame({"b": [-1, -2, -3, -4, -5, 6], "c": list("abcabc")}),
                        npartitions=2)
    negative = client.persist(df[df.b < 0])
    frame = [int(negative.b.sum().compute()), len(negative),
             int(client.compute(df.b.sum()).result()),
             {k: int(v) for k, v in df.groupby("c").b.sum().compute().items()}]
    bag = db.from_sequence(["a b", "b c", "c a b"], npartitions=2)
    words = dict(bag.map(str.split).flatten().frequencies().compute())
    delayed = sum(dask.compute(*[dask.delayed(inc)(i) for i in range(10)]))
    client.publish_dataset(negative=negative)
    with Client(client.scheduler.address) as other:
        published = float(other.get_dataset("negative").b.sum().compute())
    print("RESULT", [array_total, frame, sorted(words.items()), delayed, published])
    client.close()
