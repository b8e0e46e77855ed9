"""Tasks that launch tasks: a recursive Fibonacci on ONE worker with ONE thread.

Each task submits its two subproblems and waits for them inside
worker_client(), which gives the task's slot back while it waits, so the
single thread is never deadlocked.  Run: python examples/recursive_fib.py
"""
from trioflow import Client, worker_client


def fib(n):
    if n < 2:
        return n
    with worker_client() as client:
        a = client.submit(fib, n - 1)
        b = client.submit(fib, n - 2)
        return a.result() + b.result()


if __name__ == "__main__":
    with Client(processes=False, n_workers=1, threads_per_worker=1) as client:
        for n in (5, 10, 15):
            print(f"fib({n}) = {client.submit(fib, n).result()}")
