"""The ordered log behind one channel: appends, a bounded window, reads by
position, stop.  Pure state: no I/O, no clock, no keys semantics (entries
are opaque).

Entries get consecutive absolute indices from 0.  With ``maxlen`` only the
newest ``maxlen`` entries stay readable: the window ``[start, end)``.  A
reader keeps the index it wants next; one whose index fell out of the window
(it was slower than the appends) resumes at the window's start.

``stop()`` ends every reader: reads never have to wait any more, and a read
that reaches ``end`` says ``done``.  Appends after a stop are still recorded
(as dask's channels did), so stopping loses nothing a later snapshot could
show; they only stop keeping iterations alive.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import islice


@dataclass(frozen=True)
class Read:
    """What ``ChannelLog.read`` returns."""

    #: absolute index of ``entries[0]`` (where the reader resumed)
    start: int
    entries: tuple
    #: the log was stopped and this read reached its end: the reader is finished
    done: bool

    @property
    def next(self) -> int:
        """The index to read from next."""
        return self.start + len(self.entries)


class ChannelLog:
    def __init__(self, maxlen: int | None = None):
        self._entries: deque = deque()
        self.start = 0
        self.maxlen: int | None = None
        self.stopped = False
        if maxlen is not None:
            self.set_maxlen(maxlen)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def end(self) -> int:
        """One past the absolute index of the newest entry (= entries ever appended)."""
        return self.start + len(self._entries)

    @property
    def window(self) -> tuple:
        return tuple(self._entries)

    def set_maxlen(self, maxlen: int) -> list:
        """Bound the window, if it is not bounded yet (the first bound given
        stays).  Returns the entries that fell out of it, oldest first."""
        maxlen = int(maxlen)
        if maxlen < 1:
            raise ValueError(f"a channel's maxlen must be at least 1, got {maxlen}")
        if self.maxlen is not None:
            return []
        self.maxlen = maxlen
        return self._trim()

    def append(self, entry) -> list:
        """Add ``entry`` at index ``end``.  Returns the entries this pushed out
        of the window, oldest first (at most one, unless the bound shrank)."""
        self._entries.append(entry)
        return self._trim()

    def _trim(self) -> list:
        evicted = []
        if self.maxlen is not None:
            while len(self._entries) > self.maxlen:
                evicted.append(self._entries.popleft())
                self.start += 1
        return evicted

    def stop(self) -> None:
        self.stopped = True

    def position(self, index: int) -> int:
        """Where a reader that wants ``index`` actually continues."""
        return min(max(int(index), self.start), self.end)

    def ready(self, index: int) -> bool:
        """Would ``read(index)`` return without anything new happening first:
        entries are there for it, or the log is stopped."""
        return self.stopped or self.position(index) < self.end

    def read(self, index: int, limit: int | None = None) -> Read:
        """The entries from ``index`` on (from the window's start if ``index``
        fell out of it), at most ``limit`` of them."""
        first = self.position(index)
        offset = first - self.start
        stop = len(self._entries) if limit is None else min(len(self._entries), offset + limit)
        entries = tuple(islice(self._entries, offset, stop))
        done = self.stopped and first + len(entries) == self.end
        return Read(first, entries, done)

    def validate(self) -> None:
        assert self.start >= 0
        if self.maxlen is not None:
            assert len(self._entries) <= self.maxlen, (len(self._entries), self.maxlen)
