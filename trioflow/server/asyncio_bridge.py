"""asyncio code inside trio servers.

A worker's trio loop runs as a guest of an asyncio loop on the same thread
(``run_as_guest``), so both kinds of code run natively there.  An ``async
def`` task or actor method is awaited through ``run_coroutine``: its first
step runs in the calling trio task; if it then waits on an asyncio future,
the rest of it runs as an asyncio task, which is cancelled through asyncio
when the trio cancel scope around ``run_coroutine`` is, and waited for.
"""
from __future__ import annotations

import asyncio
import types

import trio

# asyncio's current task during the first step, so asyncio.timeout(),
# wait_for() and libraries that look up their task work from the first line
_enter_task = getattr(asyncio.tasks, "_enter_task", None)
_leave_task = getattr(asyncio.tasks, "_leave_task", None)

NO_ASYNCIO_HOST = (
    "this async task uses asyncio, but its worker runs in a trio program's own loop "
    "(trio.run), which has no asyncio loop to run it on; run the worker in its own "
    "process (LocalCluster()/Client() with processes=True, or `trioflow worker`), or "
    "start the worker from asyncio code or a blocking LocalCluster(processes=False), "
    "whose loop thread hosts asyncio")


class AsyncioTaskCancelled(Exception):
    """The asyncio task of an ``async def`` task was cancelled by something
    other than trioflow (the task cancelled itself)."""


def run_as_guest(async_fn, *args):
    """Like ``trio.run(async_fn, *args)``, with trio as a guest of a new
    asyncio loop on this thread; returns when both are done.  asyncio tasks
    still running when ``async_fn`` returns are cancelled and awaited."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_host(async_fn, args)).unwrap()
    finally:
        try:
            _cancel_leftovers(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


async def _host(async_fn, args):
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    trio.lowlevel.start_guest_run(
        async_fn, *args, run_sync_soon_threadsafe=loop.call_soon_threadsafe,
        run_sync_soon_not_threadsafe=loop.call_soon, done_callback=done.set_result,
        host_uses_signal_set_wakeup_fd=False)
    # trio owns the lifetime: its run ends only when everything in it has
    return await asyncio.shield(done)


def _cancel_leftovers(loop):
    leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in leftovers:
        task.cancel()
    if leftovers:
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))


def asyncio_host() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop running on this thread (the host of trio), if any."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def run_coroutine(coro):
    """Await ``coro``, a user's coroutine, whichever loop it needs: trio (and
    anyio under trio) code runs in the calling trio task as if awaited here;
    asyncio code runs as an asyncio task on the host loop.  Cancelling the
    caller's scope cancels that asyncio task and waits until it has stopped."""
    loop = asyncio_host()
    if loop is None:
        try:
            return await coro
        except RuntimeError as exc:
            if "no running event loop" in str(exc):
                raise RuntimeError(NO_ASYNCIO_HOST) from exc
            raise
    handoff = loop.create_future()
    carrier = loop.create_task(_carry(handoff))
    try:
        if _enter_task is not None:
            _enter_task(loop, carrier)
        try:
            yielded = coro.send(None)
        finally:
            if _leave_task is not None:
                _leave_task(loop, carrier)
    except StopIteration as stop:
        carrier.cancel()
        return stop.value
    except BaseException:
        carrier.cancel()
        raise
    if yielded is None or getattr(yielded, "_asyncio_future_blocking", None) is not None:
        handoff.set_result((coro, yielded))
        return await _wait_for_asyncio_task(carrier)
    carrier.cancel()
    return await _forward(coro, yielded, _trio_yield)


@types.coroutine
def _forward(coro, yielded, check):
    """Pass what ``coro`` yields up to the loop driving us, and what the loop
    sends or throws back down, until ``coro`` returns (``await`` on a
    coroutine already started).  ``check`` may turn a yield into an error."""
    while True:
        error = check(yielded)
        try:
            if error is not None:
                yielded = coro.throw(error)
                continue
            try:
                sent = yield yielded
            except BaseException as exc:  # noqa: B036 - delivered to the coroutine
                yielded = coro.throw(exc)
            else:
                yielded = coro.send(sent)
        except StopIteration as stop:
            return stop.value


def _trio_yield(yielded):
    if yielded is None or getattr(yielded, "_asyncio_future_blocking", None) is not None:
        return RuntimeError(
            "this async task awaited trio first and asyncio later: a task's coroutine runs "
            "on one loop, chosen by its first await; run the asyncio part in a coroutine "
            "of its own task, or use anyio, which works on both")
    return None


def _no_check(yielded):
    return None


def carries_cancel(exc: BaseException) -> bool:
    """True if ``exc`` is trio's Cancelled, or a group holding one (from a
    nursery inside a task): it belongs to the cancel scope, not the task."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[0] is not None
    return isinstance(exc, trio.Cancelled)


class _Escaped(Exception):
    """Carries a task's SystemExit or KeyboardInterrupt out of its asyncio task:
    asyncio re-raises those two out of the loop itself, which would end the
    worker process instead of erring the task."""

    def __init__(self, exc: BaseException):
        super().__init__(exc)
        self.exc = exc


async def _carry(handoff):
    coro, yielded = await handoff
    try:
        return await _forward(coro, yielded, _no_check)
    except (SystemExit, KeyboardInterrupt) as exc:
        raise _Escaped(exc) from None


async def _wait_for_asyncio_task(task: asyncio.Task):
    done = trio.Event()
    token = trio.lowlevel.current_trio_token()
    task.add_done_callback(lambda _: token.run_sync_soon(done.set))
    try:
        await done.wait()
    except trio.Cancelled:
        task.cancel()
        with trio.CancelScope(shield=True):
            await done.wait()
        if not task.cancelled():
            task.exception()  # retrieved: what it did after the cancel is discarded
        raise
    if task.cancelled():
        raise AsyncioTaskCancelled("the task's asyncio task was cancelled from inside it")
    try:
        return task.result()
    except _Escaped as escaped:
        raise escaped.exc from None
