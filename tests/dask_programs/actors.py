# dask docs, actors.rst: a stateful actor whose methods run on its worker
from dask.distributed import Client


class Tally:
    """Keeps a running total of what it is given."""

    # dask reads an actor's attributes through its class: they must be declared here
    total = 0
    calls = 0

    def __init__(self, start=0):
        self.total = start
        self.calls = 0

    def record(self, amount=1):
        self.calls += 1
        self.total += amount
        return self.total


if __name__ == "__main__":
    client = Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None)
    tally = client.submit(Tally, actor=True).result()
    first = tally.record().result()
    pending = [tally.record() for _ in range(10)]
    last = max(p.result() for p in pending)
    added = tally.record(10).result()
    print("RESULT", [first, last, added, tally.calls, "record" in dir(tally)])
    client.close()
