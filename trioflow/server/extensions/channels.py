"""The scheduler half of channels (spec: "Shared futures with channels"; user
object: ``trioflow/client/primitives/channels.py``): a named, ordered stream
of futures shared by every client of one scheduler.

On the scheduler, ``ChannelExtension`` keeps each channel's ``ChannelLog`` of
keys and holds the keys in its window under the pseudo-client
``channel-<name>``: a client may append and leave, and the work stays.  When
``maxlen`` pushes old entries out, their keys are let go.

A read answers at most ``protocol.primitives.CHANNEL_READ_LIMIT`` entries.
"""
from __future__ import annotations

from collections import Counter

import trio

from trioflow.core.channel_log import ChannelLog
from trioflow.protocol.primitives import CHANNEL_READ_LIMIT
from trioflow.server.extensions.base import SchedulerExtension


class _ChannelState:
    __slots__ = ("log", "holder", "counts", "_changed")

    def __init__(self, name):
        self.log = ChannelLog()
        self.holder = f"channel-{name}"
        # the scheduler's wants are a set; the same key may be in the window twice
        self.counts: Counter = Counter()
        self._changed = trio.Event()

    def changed(self) -> trio.Event:
        return self._changed

    def wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


class ChannelExtension(SchedulerExtension):
    """The channels' logs, and the keys they keep alive."""

    name = "channels"

    def __init__(self, scheduler):
        super().__init__(scheduler)
        self.channels: dict = {}
        self.handlers = {"channel-append": self._append, "channel-read": self._read}

    def _channel(self, msg: dict) -> _ChannelState:
        name = msg["name"]
        channel = self.channels.get(name)
        if channel is None:
            channel = self.channels[name] = _ChannelState(name)
        maxlen = msg.get("maxlen")
        if maxlen is not None and channel.log.maxlen is None:
            # the first bound anyone gives stays the channel's bound
            self._let_go(channel, channel.log.set_maxlen(maxlen))
        return channel

    def _hold(self, channel: _ChannelState, keys) -> None:
        new = []
        for key in keys:
            if not channel.counts[key]:
                new.append(key)
            channel.counts[key] += 1
        self.hold_keys(channel.holder, new)

    def _let_go(self, channel: _ChannelState, keys) -> None:
        gone = []
        for key in keys:
            channel.counts[key] -= 1
            if channel.counts[key] <= 0:
                del channel.counts[key]
                gone.append(key)
        self.release_keys(channel.holder, gone)

    def _append(self, peer, msg):
        """Append keys (then stop, if asked); returns the new end index."""
        channel = self._channel(msg)
        keys = list(msg.get("keys") or ())
        evicted = []
        for key in keys:
            evicted.extend(channel.log.append(key))
        # hold before letting go: a key appended again must stay held throughout
        self._hold(channel, keys)
        self._let_go(channel, evicted)
        if msg.get("stop"):
            channel.log.stop()
        channel.wake()
        return channel.log.end

    def _read(self, peer, msg):
        channel = self._channel(msg)
        index = int(msg.get("index") or 0)
        wait = float(msg.get("wait") or 0)
        if wait > 0 and not channel.log.ready(index):
            return self._read_when_ready(peer, channel, index, wait)
        return self._answer_read(peer, channel, index)

    async def _read_when_ready(self, peer, channel, index, wait):
        with trio.move_on_after(wait):
            while not channel.log.ready(index):
                await channel.changed().wait()
        return self._answer_read(peer, channel, index)

    def _answer_read(self, peer, channel, index) -> dict:
        read = channel.log.read(index, CHANNEL_READ_LIMIT)
        # the reader wants the keys before the reply leaves: the channel may let
        # go of them (maxlen) before the reader's own want-keys arrives
        if read.entries and peer in self.scheduler.state.clients:
            self.hold_keys(peer, dict.fromkeys(read.entries))
        return {"start": read.start, "keys": list(read.entries), "done": read.done,
                "window": channel.log.start, "maxlen": channel.log.maxlen}
