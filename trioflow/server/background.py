"""Keep an async context manager (a client core, a cluster) entered in a task
of its own, and drive it from any of the three faces:

- blocking code: the task runs in the shared loop thread (``LoopRunner``);
- trio code: the task is a system task of the caller's own trio run, so the
  servers share the caller's loop and no thread is involved;
- asyncio code: the task runs in the shared loop thread and asyncio awaits it
  through ``asyncio.wrap_future``.

The host task owns the context manager's nursery; ``stop`` asks it to leave
the ``async with`` block and waits until it has, so closing returns only when
everything the context manager started is gone.
"""
from __future__ import annotations

import trio

from trioflow.server.loop_thread import LoopRunner


def current_library() -> str | None:
    """``"trio"``, ``"asyncio"``, or None outside any event loop."""
    import sniffio
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None


class BackgroundContext:
    def __init__(self, make_cm):
        self._make_cm = make_cm
        self.value = None
        self.mode: str | None = None  # "blocking", "trio" or "asyncio"
        self.loop: LoopRunner | None = None
        self.trio_token = None
        self._stop: trio.Event | None = None
        self._started: trio.Event | None = None
        self._done: trio.Event | None = None
        self._error: BaseException | None = None

    async def _host(self):
        try:
            async with self._make_cm() as value:
                self.value = value
                self._started.set()
                await self._stop.wait()
        except BaseException as exc:  # noqa: B036 - reported to whoever starts or stops us
            self._error = exc
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            self._started.set()
            self._done.set()

    def _make_events(self):
        self._stop, self._started, self._done = trio.Event(), trio.Event(), trio.Event()
        self.trio_token = trio.lowlevel.current_trio_token()

    async def _spawn_and_wait(self):
        self._make_events()
        trio.lowlevel.spawn_system_task(self._host)
        await self._started.wait()
        self._raise_error()

    def request_stop(self):
        """From inside the host loop: leave the context manager soon."""
        if self._stop is not None:
            self._stop.set()

    async def _stop_and_wait(self):
        if self._stop is None:
            return
        self._stop.set()
        with trio.CancelScope(shield=True):
            await self._done.wait()
        self._raise_error()

    def _raise_error(self):
        if self._error is not None and not isinstance(self._error, trio.Cancelled):
            error, self._error = self._error, None
            raise error

    # ---------------------------------------------------------------- blocking

    def start_blocking(self):
        if current_library() == "trio":
            raise RuntimeError(
                "a blocking Client or LocalCluster cannot be started inside trio code, "
                "whose loop it would block: pass asynchronous=True and await it")
        self.mode = "blocking"
        self.loop = LoopRunner.acquire()
        try:
            self.loop.call(self._spawn_and_wait)
        except BaseException:
            self.loop.release()
            self.loop = None
            raise
        return self.value

    def stop_blocking(self):
        try:
            self.loop.call(self._stop_and_wait)
        finally:
            self.loop.release()

    # ---------------------------------------------------------------- async

    async def start_async(self):
        library = current_library()
        if library == "trio":
            self.mode = "trio"
            await self._spawn_and_wait()
        elif library == "asyncio":
            import asyncio
            self.mode = "asyncio"
            self.loop = LoopRunner.acquire()
            try:
                await asyncio.wrap_future(self.loop.portal.start_task_soon(self._spawn_and_wait))
            except BaseException:
                self.loop.release()
                self.loop = None
                raise
        else:
            raise RuntimeError(f"asynchronous=True needs trio or asyncio, not {library!r}")
        return self.value

    async def stop_async(self):
        if self.mode == "trio":
            await self._stop_and_wait()
        else:
            import asyncio
            try:
                await asyncio.wrap_future(self.loop.portal.start_task_soon(self._stop_and_wait))
            finally:
                self.loop.release()

    async def run(self, async_fn, *args):
        """Await ``async_fn(*args)`` in the loop that hosts the context manager."""
        if self.mode == "trio":
            return await async_fn(*args)
        import asyncio
        return await asyncio.wrap_future(self.loop.portal.start_task_soon(async_fn, *args))

    def call_blocking(self, async_fn, *args):
        return self.loop.call(async_fn, *args)

    async def run_from_other_loop(self, async_fn, *args):
        """Await ``async_fn(*args)``, run in the loop thread of a blocking
        host, from trio or asyncio code running elsewhere."""
        if current_library() == "asyncio":
            import asyncio
            return await asyncio.wrap_future(self.loop.portal.start_task_soon(async_fn, *args))
        # the portal refuses calls from a trio thread, even of another trio run
        return await trio.to_thread.run_sync(self.loop.call, async_fn, *args,
                                             abandon_on_cancel=True)

    def in_host_loop(self) -> bool:
        try:
            return trio.lowlevel.current_trio_token() is self.trio_token
        except RuntimeError:
            return False


class EnteredFromAsyncio:
    """For servers: entered from asyncio code, a server runs its trio side in
    trioflow's loop thread (kept by a ``BackgroundContext``), and its async
    methods are awaited there; leaving the ``async with`` block returns when
    the server is closed, as under trio."""

    _asyncio_host: BackgroundContext | None = None

    async def _start_under_asyncio(self):
        host = BackgroundContext(lambda: _TrioLifetime(self))
        await host.start_async()
        self._asyncio_host = host
        return self

    async def _close_under_asyncio(self):
        host, self._asyncio_host = self._asyncio_host, None
        if host is not None:
            await host.stop_async()

    async def _run_under_asyncio(self, async_fn, *args):
        if self._asyncio_host is None:
            raise RuntimeError(f"{type(self).__name__} was not started from asyncio code: "
                               "start it with 'async with' in the loop that awaits it")
        return await self._asyncio_host.run(async_fn, *args)


class _TrioLifetime:
    """A server's own ``async with``, entered inside the loop thread."""

    def __init__(self, server):
        self.server = server

    async def __aenter__(self):
        return await self.server.__aenter__()

    async def __aexit__(self, *exc_info):
        await self.server.close()
