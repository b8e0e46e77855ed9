"""``as_completed``: futures in the order they finish.

The queue of finished futures lives in the client's loop: one watcher task
per future (in the client core's nursery) appends it when it is done, and
every read goes through the client's loop, so one object serves ``for``,
``async for`` under trio, and ``async for`` under asyncio.
"""
from __future__ import annotations

from collections import deque

import trio

from trioflow.client.future import Future

_END = object()


class as_completed:
    """Iterate over futures as they complete.

    ``with_results=True`` yields ``(future, result)`` pairs; an erred future
    then raises its exception when reached, unless ``raise_errors=False``,
    which yields ``(future, exception)``.  Futures may be added while
    iterating (``add``, ``update``); iteration ends when nothing is pending.
    """

    def __init__(self, futures=None, loop=None, with_results=False, raise_errors=True, *,
                 timeout=None):
        self.with_results = with_results
        self.raise_errors = raise_errors
        self.client = None
        self._pending: set = set()  # ids of futures being watched (loop thread only)
        self._futures: dict = {}
        self._queue: deque = deque()
        self._changed: trio.Event | None = None
        # count() is added - yielded: add() may run in any thread and the
        # watcher it starts reaches the loop later, so _pending can lag behind
        self._added = 0
        self._yielded = 0
        if futures is not None:
            self.update(futures)

    # ---------------------------------------------------------------- adding

    def add(self, future):
        """Track one more future."""
        if not isinstance(future, Future):
            raise TypeError(f"as_completed tracks futures, got {future!r}: pass an "
                            "iterable of futures (use trioflow.futures_of to find those "
                            "inside containers or collections)")
        if self.client is None:
            self.client = future.client
        self._added += 1
        self.client._core._in_loop(lambda: self._watch(future))

    def update(self, futures):
        """Track each future of an iterable (a list, set, iterator...)."""
        for future in futures:
            self.add(future)

    def _watch(self, future):
        self._pending.add(id(future))
        self._futures[id(future)] = future
        self.client._core.nursery.start_soon(self._track, future)

    async def _track(self, future):
        await future._state.wait()
        item = future
        if self.with_results:
            try:
                item = (future, await self.client._core.gather_one(future), None)
            except Exception as exc:
                item = (future, exc, exc)
        self._pending.discard(id(future))
        self._futures.pop(id(future), None)
        self._queue.append(item)
        self._notify()

    def _notify(self):
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    # ---------------------------------------------------------------- reading (in the loop)

    async def _wait_ready(self) -> bool:
        """Wait until something is queued; False if nothing is pending either."""
        await trio.lowlevel.checkpoint()
        while not self._queue:
            if not self._pending:
                return False
            self._changed = self._changed or trio.Event()
            await self._changed.wait()
        return True

    def _unwrap(self, item):
        if not self.with_results:
            return item
        future, value, error = item
        if error is not None and self.raise_errors:
            raise error
        return future, value

    async def _next(self):
        if not await self._wait_ready():
            return _END
        self._yielded += 1
        return self._unwrap(self._queue.popleft())

    async def _batch(self, block: bool):
        if block and not await self._wait_ready():
            return []
        items = list(self._queue)
        self._queue.clear()
        self._yielded += len(items)
        return [self._unwrap(item) for item in items]

    # ---------------------------------------------------------------- public

    def _call(self, async_fn, *args):
        if self.client is None:
            raise StopIteration
        return self.client._sync(async_fn, *args)

    def __iter__(self):
        return self

    def __next__(self):
        if self.client is None:
            raise StopIteration
        item = self.client._sync(self._next)
        if item is _END:
            raise StopIteration
        return item

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.client is None:
            raise StopAsyncIteration
        item = await self.client._sync(self._next)
        if item is _END:
            raise StopAsyncIteration
        return item

    def next_batch(self, block=True):
        """Everything finished so far (waiting for at least one if ``block``)."""
        if self.client is None:
            return []
        return self.client._sync(self._batch, block)

    def batches(self):
        """Yield lists of finished futures until nothing is pending."""
        while True:
            batch = self.next_batch(block=True)
            if not batch:
                return
            yield batch

    def count(self) -> int:
        """Futures not yet yielded (pending or finished and waiting)."""
        return max(0, self._added - self._yielded)

    def __len__(self):
        return self.count()

    def is_empty(self) -> bool:
        return self.count() == 0

    def clear(self):
        """Stop tracking everything."""
        self._queue.clear()
        self._pending.clear()
        self._futures.clear()
        self._yielded = self._added
