"""A trio program that feeds a trioflow cluster from a nursery of tasks.

    python examples/trio_pipeline.py              # workers as threads, in this trio run
    python examples/trio_pipeline.py --processes  # workers in their own processes

Weather stations report hourly readings. For each station a trio task
submits a small pipeline to the cluster — `measure` every hour, then `clean`
each reading (which depends on the measurement: it runs where the data is,
without a round trip through this process) — and follows the cleaned
readings with `as_completed`, passing each to a collector over a trio memory
channel as soon as it is ready. When every station is done, the per-station
summaries are computed on the cluster too and gathered.

Everything lives in one structured tree: the client (and, with workers as
threads, the whole cluster) is entered with `async with`, the station tasks
run in a nursery, and leaving the blocks closes it all.
"""
from __future__ import annotations

import hashlib
import statistics
import sys

import trio

from trioflow import Client, as_completed

STATIONS = ["north", "harbour", "airport", "hill", "valley"]
HOURS = 24


def measure(station: str, hour: int) -> float:
    """A deterministic stand-in for reading a sensor: a temperature in degrees C."""
    digest = hashlib.sha256(f"{station}:{hour}".encode()).digest()
    base = {"north": 8.0, "harbour": 12.0, "airport": 11.0, "hill": 6.0, "valley": 14.0}[station]
    daily = 4.0 * (1 - abs(hour - 14) / 14)
    noise = digest[0] / 255 - 0.5
    glitch = 100.0 if digest[1] < 8 else 0.0  # the odd broken reading
    return round(base + daily + noise + glitch, 2)


def clean(reading: float) -> float | None:
    """Drop readings no thermometer on this planet would give."""
    return reading if -60.0 < reading < 60.0 else None


def summarize(readings: list[float]) -> dict:
    return {"n": len(readings), "min": min(readings), "max": max(readings),
            "mean": round(statistics.fmean(readings), 2)}


async def follow_station(client: Client, station: str,
                         results: trio.MemorySendChannel) -> None:
    measured = client.map(measure, [station] * HOURS, range(HOURS))
    cleaned = client.map(clean, measured)
    async with results:
        # each reading is passed on as soon as it is ready, in completion order
        async for _, value in as_completed(cleaned, with_results=True):
            await results.send((station, value))


async def main(processes: bool) -> None:
    with trio.fail_after(120):
        async with Client(asynchronous=True, processes=processes, n_workers=2,
                          threads_per_worker=2, dashboard_address=None) as client:
            readings: dict[str, list[float]] = {station: [] for station in STATIONS}
            dropped = 0
            send, receive = trio.open_memory_channel(0)
            async with trio.open_nursery() as nursery:
                for station in STATIONS:
                    nursery.start_soon(follow_station, client, station, send.clone())
                send.close()  # the collector ends when every station task has closed its clone
                async with receive:
                    async for station, value in receive:
                        if value is None:
                            dropped += 1
                        else:
                            readings[station].append(value)

            summaries = await client.gather(
                {station: client.submit(summarize, values) for station, values in readings.items()})
            for station in STATIONS:
                s = summaries[station]
                print(f"{station:<8} {s['n']:>2} readings  min {s['min']:>6.2f}  "
                      f"max {s['max']:>6.2f}  mean {s['mean']:>6.2f}")
            total = sum(s["n"] for s in summaries.values())
            print(f"{total} readings kept, {dropped} dropped as implausible")
            assert total + dropped == len(STATIONS) * HOURS


if __name__ == "__main__":
    trio.run(main, "--processes" in sys.argv[1:])
