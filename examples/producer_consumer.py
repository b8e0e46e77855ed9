"""A producer/consumer pipeline between tasks, with a Queue in the middle.

    python examples/producer_consumer.py              # workers as threads in this process
    python examples/producer_consumer.py --processes  # workers in their own processes

Two producer tasks submit one `square` task per number and put each
*future* on a bounded queue (so the data stays on the workers; only the
small future goes through the scheduler, and a full queue slows the
producers down). Two consumer tasks — one sync, one `async def` — take
futures off the queue until they see the end marker, gather them and add
them up. A Lock keeps the consumers' progress lines whole. Once the
producers are done, this script puts one end marker per consumer.
"""
from __future__ import annotations

import sys

from trioflow import Client, Lock, Queue, get_client

END = "end"


def square(x: int) -> int:
    return x * x


def produce(numbers: list[int], queue: Queue) -> int:
    client = get_client()
    for x in numbers:
        queue.put(client.submit(square, x, pure=False))  # waits while the queue is full
    return len(numbers)


def consume(name: str, queue: Queue, log: Lock) -> int:
    total = count = 0
    while (item := queue.get(timeout=30)) != END:
        total += item.result()
        count += 1
        if count % 10 == 0:
            with log:
                print(f"  {name}: {count} items so far", flush=True)
    return total


async def consume_async(name: str, queue: Queue, log: Lock) -> int:
    total = count = 0
    while (item := await queue.get(timeout=30)) != END:
        total += await item
        count += 1
        if count % 10 == 0:
            async with log:
                print(f"  {name}: {count} items so far", flush=True)
    return total


def main() -> None:
    processes = "--processes" in sys.argv[1:]
    numbers = list(range(100))
    with Client(n_workers=2, threads_per_worker=3, processes=processes,
                dashboard_address=None) as client:
        queue = Queue("squares", maxsize=8)
        log = Lock()

        consumers = [client.submit(consume, "sync consumer", queue, log, pure=False),
                     client.submit(consume_async, "async consumer", queue, log, pure=False)]
        halves = [numbers[0::2], numbers[1::2]]
        producers = [client.submit(produce, half, queue, pure=False) for half in halves]

        produced = sum(client.gather(producers))
        for _ in consumers:
            queue.put(END)  # one end marker per consumer, after every item
        totals = client.gather(consumers)
        print(f"produced {produced} items; consumers' totals: {totals}")
        assert sum(totals) == sum(x * x for x in numbers), "lost or duplicated items"
        print(f"sum of squares: {sum(totals)}")


if __name__ == "__main__":
    main()
