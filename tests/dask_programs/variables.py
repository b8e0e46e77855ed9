# dask docs, futures.rst: a Variable as a stop signal for a long-running task
import time

from dask.distributed import Client, Variable


def long_running(stop_name):
    stop = Variable(stop_name)
    while not stop.get():
        time.sleep(0.05)
    return "stopped"


if __name__ == "__main__":
    client = Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None)
    stop = Variable("stop")
    stop.set(False)
    future = client.submit(long_running, "stop")
    time.sleep(0.5)
    stop.set(True)
    shared = Variable("shared-data")
    shared.set(client.scatter([1, 2, 3], broadcast=True)[0])
    print("RESULT", [future.result(), shared.get().result()])
    client.close()
