"""Stateful tests of a channel's ordered log (``ChannelLog``).

Several writers append in random interleavings; readers join at random
positions (the start, the middle, past the end, before a trimmed window) and
read in random chunk sizes; the bound may be set late; the log may be
stopped at any moment, and writers may keep appending after that.  The
machine keeps the full history of appends and checks after every step:

* a read returns exactly the history's slice from where the reader resumes:
  entries in append order, consecutive, never one the reader saw before;
* each writer's entries reach every reader in the order that writer appended;
* a reader whose position fell out of the window resumes at the window start;
* the window holds the newest ``maxlen`` entries, and what ``append`` or
  ``set_maxlen`` evicts is exactly the oldest entries, once each;
* once stopped, no read waits (``ready`` everywhere), and every reader that
  keeps reading is done after a bounded number of reads.
"""
from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from trioflow.core.channel_log import ChannelLog

pytestmark = pytest.mark.timeout(300)

WRITERS = ("w0", "w1", "w2")


class _Reader:
    def __init__(self, position):
        self.position = position
        self.seen: list = []  # absolute indices, in the order read
        self.finished = False


class ChannelLogMachine(RuleBasedStateMachine):
    readers = Bundle("readers")

    @initialize(maxlen=st.one_of(st.none(), st.integers(1, 6)))
    def start(self, maxlen):
        self.log = ChannelLog(maxlen)
        self.history: list = []  # every entry ever appended, by absolute index
        self.evicted: list = []  # what the log reported as evicted, in order
        self.sequence = dict.fromkeys(WRITERS, 0)

    # ------------------------------------------------------------ writers

    @rule(writer=st.sampled_from(WRITERS), n=st.integers(1, 4))
    def append(self, writer, n):
        for _ in range(n):
            entry = (writer, self.sequence[writer])
            self.sequence[writer] += 1
            before = self.log.start
            evicted = self.log.append(entry)
            self.history.append(entry)
            assert evicted == self.history[before:self.log.start]
            self.evicted.extend(evicted)

    @rule(maxlen=st.integers(1, 6))
    def bound(self, maxlen):
        before_bound, before_start = self.log.maxlen, self.log.start
        evicted = self.log.set_maxlen(maxlen)
        if before_bound is not None:
            assert evicted == [] and self.log.maxlen == before_bound
        assert evicted == self.history[before_start:self.log.start]
        self.evicted.extend(evicted)

    @rule()
    def stop(self):
        self.log.stop()

    # ------------------------------------------------------------ readers

    @rule(target=readers, where=st.sampled_from(["zero", "start", "middle", "end", "beyond"]),
          offset=st.integers(0, 3))
    def add_reader(self, where, offset):
        start, end = self.log.start, self.log.end
        position = {"zero": 0, "start": start, "middle": (start + end) // 2, "end": end,
                    "beyond": end + 1 + offset}[where]
        return _Reader(position)

    @rule(reader=readers, limit=st.one_of(st.none(), st.integers(1, 3)))
    def read(self, reader, limit):
        if reader.finished:
            return
        self._read_once(reader, limit)

    def _read_once(self, reader, limit):
        log = self.log
        read = log.read(reader.position, limit)
        expected_start = min(max(reader.position, log.start), log.end)
        assert read.start == expected_start
        if reader.position < log.start:
            assert read.start == log.start, "a reader behind the window resumes at its start"
        indices = list(range(read.start, read.next))
        assert list(read.entries) == self.history[read.start:read.next]
        if limit is not None:
            assert len(read.entries) <= limit
        else:
            assert read.next == log.end
        assert not set(indices) & set(reader.seen), "an entry was read twice"
        if reader.seen and indices:
            assert indices[0] > reader.seen[-1], "entries out of append order"
        reader.seen.extend(indices)
        reader.position = read.next
        assert read.done == (log.stopped and read.next == log.end)
        if read.done:
            reader.finished = True
        return read

    @rule(reader=readers)
    def drain_after_stop(self, reader):
        """Once stopped, a reader that keeps reading ends, within a bounded
        number of reads, and never has to wait on the way."""
        if not self.log.stopped or reader.finished:
            return
        bound = (self.log.end - self.log.position(reader.position)) // 2 + 2
        for _ in range(bound):
            assert self.log.ready(reader.position), "a read after stop would wait"
            if self._read_once(reader, 2).done:
                break
        assert reader.finished

    # ------------------------------------------------------------ invariants

    @invariant()
    def window_is_newest_entries(self):
        log = self.log
        log.validate()
        assert log.end == len(self.history)
        assert list(log.window) == self.history[log.start:]
        if log.maxlen is not None:
            assert len(log.window) == min(log.maxlen, len(self.history))
        assert self.evicted == self.history[:log.start], "evicted once each, oldest first"

    @invariant()
    def readiness(self):
        log = self.log
        for index in (0, log.start, log.end, log.end + 2):
            expected = log.stopped or min(max(index, log.start), log.end) < log.end
            assert log.ready(index) == expected
        if log.stopped:
            assert log.read(log.end).done

    @invariant()
    def writers_order_kept(self):
        # the history itself is per-writer ordered, and readers see slices of it
        last = {}
        for writer, seq in self.history:
            assert seq == last.get(writer, -1) + 1
            last[writer] = seq


ChannelLogMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40,
                                               deadline=None)
TestChannelLog = ChannelLogMachine.TestCase


def test_bound_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        ChannelLog(0)


def test_reader_past_window_resumes_at_start():
    log = ChannelLog(2)
    for i in range(5):
        log.append(i)
    read = log.read(0)
    assert (read.start, read.entries, read.done) == (3, (3, 4), False)
    assert not log.ready(5)
    log.stop()
    assert log.ready(5) and log.read(5).done
