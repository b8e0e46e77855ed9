"""A worker's record of what it recently ran and fetched.

Bounded (old records fall off), numbered (a reader asks for everything after
the last number it saw, so the dashboard polls without missing or repeating
records) and cheap to append to from the worker's event loop.
"""
from __future__ import annotations

from collections import deque
from itertools import islice

#: records kept per worker; a dashboard polling once a second misses some only
#: when a worker runs more than this many tasks a second
TASK_STREAM_LENGTH = 10_000


class TaskStream:
    """Task runs (``key``, ``worker``, ``start``, ``stop`` in epoch seconds,
    ``duration``, ``status``, ``thread``, ``async``) and transfers (``peer``,
    ``keys``, ``start``, ``stop``, ``nbytes``).  Iterating gives the task runs,
    oldest first."""

    def __init__(self, maxlen: int = TASK_STREAM_LENGTH):
        self._runs: deque = deque(maxlen=maxlen)
        self._transfers: deque = deque(maxlen=maxlen)
        self._next = 0  # the number the next record gets
        self.transfer_count = 0
        self.transfer_bytes = 0
        self.transfer_seconds = 0.0

    def add_run(self, record: dict) -> None:
        self._runs.append((self._next, record))
        self._next += 1

    def add_transfer(self, record: dict) -> None:
        self._transfers.append((self._next, record))
        self._next += 1
        self.transfer_count += 1
        self.transfer_bytes += record.get("nbytes", 0)
        self.transfer_seconds += record["stop"] - record["start"]

    def __iter__(self):
        return (record for _, record in list(self._runs))

    def __len__(self):
        return len(self._runs)

    def since(self, cursor: int, limit: int = 2_000) -> dict:
        """Records numbered ``cursor`` and later (at most ``limit`` of each
        kind, the newest), and the cursor to pass next time."""
        return {"cursor": self._next,
                "runs": _newest_after(self._runs, cursor, limit),
                "transfers": _newest_after(self._transfers, cursor, limit)}


def _newest_after(records: deque, cursor: int, limit: int) -> list:
    # walk from the newest end: a poll costs what it returns, not the buffer's size
    found = []
    for number, record in islice(reversed(records), limit):
        if number < cursor:
            break
        found.append(record)
    found.reverse()
    return found
