"""``client.task_group()``: a nursery for remote tasks.

Leaving the block waits for every task submitted through the group.  The
first task that errs cancels the others (running ``async def`` tasks stop at
once, sync ones at their next ``checkpoint()``, queued ones never start) and
the block raises an ``ExceptionGroup`` of the real errors.  An exception in
the block, or the enclosing trio/asyncio scope being cancelled, cancels the
group's remote tasks too.
"""
from __future__ import annotations

import trio


class TaskGroup:
    def __init__(self, client):
        self.client = client
        self.futures: list = []

    # ---------------------------------------------------------------- submitting

    def submit(self, func, *args, pure=False, **kwargs):
        """Like ``Client.submit``; ``pure`` defaults to False so the group's
        tasks are its own and cancelling them touches nobody else's."""
        future = self.client.submit(func, *args, pure=pure, **kwargs)
        self.futures.append(future)
        return future

    def map(self, func, *iterables, pure=False, **kwargs):
        futures = self.client.map(func, *iterables, pure=pure, **kwargs)
        self.futures.extend(futures)
        return futures

    # ---------------------------------------------------------------- leaving the block

    def cancel(self):
        """Cancel every task of the group that is not done."""
        pending = [f for f in self.futures if not f.done()]
        if pending:
            self.client.port.call_soon(lambda: [f._state.cancel("its task group was cancelled")
                                                for f in pending])
            self.client.port.send({"op": "cancel-keys", "keys": [f.key for f in pending],
                                   "force": False})

    async def _join(self):
        errors: list = []
        watched = 0
        try:
            while watched < len(self.futures):
                batch = self.futures[watched:]
                watched = len(self.futures)
                async with trio.open_nursery() as nursery:
                    for future in batch:
                        nursery.start_soon(self._watch, future, errors, nursery)
                if errors:
                    break
        except BaseException:
            self.cancel()
            raise
        if errors:
            self.cancel()
            raise ExceptionGroup(f"{len(errors)} task(s) of the group failed", errors)

    async def _watch(self, future, errors, nursery):
        state = future._state
        await state.wait()
        if state.status == "error":
            errors.append(state.error_to_raise())
            self.cancel()
            nursery.cancel_scope.cancel()

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.cancel()
            return False
        try:
            await self.client.port.run(self._join)
        except BaseException:
            # under asyncio the join runs in another thread; cancel from here too
            self.cancel()
            raise
        return False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.cancel()
            return False
        self.client.port.run(self._join)
        return False
