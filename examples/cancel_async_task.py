"""Cancelling a running task really stops it.

An async task is interrupted at once (its finally block runs); a sync task
stops at its next trioflow.checkpoint().  Run: python examples/cancel_async_task.py
"""
import time

import trio

from trioflow import CancelledError, Client, checkpoint


async def download(n_chunks):
    try:
        for i in range(n_chunks):
            await trio.sleep(0.1)  # waiting on the network, say
        return "done"
    finally:
        print("download task: cleaning up (this runs on cancel too)")


def crunch():
    total = 0
    while True:
        checkpoint()  # stops here once the future is cancelled
        total += 1
        time.sleep(0.01)


def running(client):
    return sum(client.run(lambda dask_worker: len(dask_worker.executing)).values())


if __name__ == "__main__":
    with Client(processes=False, n_workers=1, threads_per_worker=1) as client:
        for make in (lambda: client.submit(download, 1000), lambda: client.submit(crunch)):
            future = make()
            while running(client) == 0:
                time.sleep(0.01)
            future.cancel()
            try:
                future.result()
            except CancelledError as exc:
                print("result():", exc)
            while running(client):
                time.sleep(0.01)
            print("the worker's slot is free again:", client.submit(lambda: "next task ran").result())
