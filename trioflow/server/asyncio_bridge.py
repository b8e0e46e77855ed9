"""asyncio code inside trio servers.

trio runs natively in every trioflow thread.  The asyncio code of ``async
def`` tasks and actor methods runs on a side loop: an asyncio loop in a
thread of its own (``trioflow-asyncio``), started by the first coroutine
that might need it and owned by the trio run, which stops and joins it when
the run ends.  A coroutine is awaited through ``run_coroutine``:

- its first step runs in the calling trio task while the side loop is parked
  (its thread waits inside a callback, so asyncio's loop structures may be
  touched from here) and set as this thread's running asyncio loop;
- if that step waits on an asyncio future, the rest of the coroutine runs as
  an asyncio task on the side loop, cancelled through asyncio when the trio
  cancel scope around ``run_coroutine`` is, and waited for; otherwise it goes
  on in the trio task as if awaited there;
- what its first await chose is remembered per function: later runs of a trio
  function are awaited directly (no parking, no thread), later runs of an
  asyncio function go straight to the side loop.

An asyncio loop already running on the calling thread (trio in guest mode
under the program's own asyncio) is used as the host instead, with no
parking.  Running trio natively matters: as asyncio's guest, every wake-up
of trio crosses two threads (docs/architecture.md, "Performance").
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
import types

import trio

# asyncio's current task during the first step, so asyncio.timeout(),
# wait_for() and libraries that look up their task work from the first line
_enter_task = getattr(asyncio.tasks, "_enter_task", None)
_leave_task = getattr(asyncio.tasks, "_leave_task", None)
_set_running_loop = asyncio.events._set_running_loop

CHANGED_LOOP = (
    "this async function awaited trio on an earlier run and asyncio on this one: trioflow "
    "runs a function's coroutines on the loop its first run chose; use one loop per "
    "function, or anyio, which works on both")

# code objects of coroutine functions whose first await chose trio / asyncio
_TRIO_CODE: set = set()
_ASYNCIO_CODE: set = set()


class AsyncioTaskCancelled(Exception):
    """The asyncio task of an ``async def`` task was cancelled by something
    other than trioflow (the task cancelled itself)."""


class _SideLoop:
    """An asyncio loop running in its own thread until ``stop``."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._parking = trio.Lock()  # one parker at a time
        self._thread = threading.Thread(target=self._main, name="trioflow-asyncio", daemon=True)
        self._thread.start()

    def _main(self):
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            _cancel_leftovers(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    @contextlib.asynccontextmanager
    async def parked(self):
        """While inside, the loop's thread waits in a callback: the loop may be
        used from the trio thread as if it were not running."""
        async with self._parking:
            parked = trio.Event()
            token = trio.lowlevel.current_trio_token()
            resume = threading.Lock()  # one per park: a later park never takes an earlier's
            resume.acquire()

            def park():
                token.run_sync_soon(parked.set)
                resume.acquire()

            try:
                self.loop.call_soon_threadsafe(park)
                with trio.CancelScope(shield=True):  # the park is on its way: wait for it
                    await parked.wait()
                yield self.loop
            finally:
                resume.release()

    def stop(self):
        """Cancel what still runs on the loop, close it, join its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()


class _OnThisThread:
    """A host loop running on the trio thread itself: nothing to park."""

    def __init__(self, loop):
        self.loop = loop

    @contextlib.asynccontextmanager
    async def parked(self):
        yield self.loop


_SIDE = trio.lowlevel.RunVar("trioflow_asyncio_side_loop", default=None)


def _side_loop() -> _SideLoop:
    side = _SIDE.get()
    if side is None:
        side = _SideLoop()
        _SIDE.set(side)
        trio.lowlevel.spawn_system_task(_own_side_loop, side, name="trioflow asyncio side loop")
    return side


async def _own_side_loop(side):
    try:
        await trio.sleep_forever()
    finally:  # the run is ending: nothing of it may outlive it
        side.stop()


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


def _yields_to_asyncio(yielded) -> bool:
    return yielded is None or getattr(yielded, "_asyncio_future_blocking", None) is not None


async def run_coroutine(coro):
    """Await ``coro``, a user's coroutine, whichever loop it needs: trio (and
    anyio under trio) code runs in the calling trio task as if awaited here;
    asyncio code runs as an asyncio task on the side loop (or the host loop).
    Cancelling the caller's scope cancels that asyncio task and waits until
    it has stopped."""
    code = getattr(coro, "cr_code", None)
    host = asyncio_host()
    if code in _TRIO_CODE and host is None:
        return await _as_trio_again(coro)
    side = _OnThisThread(host) if host is not None else _side_loop()
    if code in _ASYNCIO_CODE:
        return await _wait_for_asyncio_task(side.loop, _start_whole(side.loop, coro))
    async with side.parked() as loop:
        handoff = loop.create_future()
        carrier = loop.create_task(_carry(handoff))
        if host is None:
            _set_running_loop(loop)
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
        finally:
            if host is None:
                _set_running_loop(None)
        if _yields_to_asyncio(yielded):
            if code is not None:
                _ASYNCIO_CODE.add(code)
            handoff.set_result((coro, yielded))
            waiting = _watch(loop, carrier)
        else:
            if code is not None:
                _TRIO_CODE.add(code)
            carrier.cancel()
            waiting = None
    if waiting is not None:
        return await _wait_for_asyncio_task(loop, waiting)
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
    if _yields_to_asyncio(yielded):
        return RuntimeError(
            "this async task awaited trio first and asyncio later: a task's coroutine runs "
            "on one loop, chosen by its first await; run the asyncio part in a coroutine "
            "of its own task, or use anyio, which works on both")
    return None


def _changed_loop(yielded):
    return RuntimeError(CHANGED_LOOP) if _yields_to_asyncio(yielded) else None


async def _as_trio_again(coro):
    """A coroutine of a function whose first run chose trio: awaited here, with
    no side loop; if it turns to asyncio at once, say why that fails."""
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return stop.value
    except RuntimeError as exc:
        if "no running event loop" in str(exc):
            raise RuntimeError(CHANGED_LOOP) from exc
        raise
    if _yields_to_asyncio(yielded):
        return await _forward(coro, yielded, _changed_loop)
    return await _forward(coro, yielded, _trio_yield)


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


async def _whole(coro):
    try:
        return await coro
    except (SystemExit, KeyboardInterrupt) as exc:
        raise _Escaped(exc) from None


class _Watched:
    """An asyncio task and a trio Event set (in trio) when it is done."""

    def __init__(self):
        self.task = None
        self.done = trio.Event()


def _watch(loop, task) -> _Watched:
    """Call from the loop's thread, or with the loop parked."""
    watched = _Watched()
    watched.task = task
    token = trio.lowlevel.current_trio_token()
    task.add_done_callback(lambda _: token.run_sync_soon(watched.done.set))
    return watched


def _start_whole(loop, coro) -> _Watched:
    """Run all of ``coro`` as an asyncio task on ``loop`` (in its own thread)."""
    watched = _Watched()
    token = trio.lowlevel.current_trio_token()

    def start():
        watched.task = loop.create_task(_whole(coro))
        watched.task.add_done_callback(lambda _: token.run_sync_soon(watched.done.set))

    loop.call_soon_threadsafe(start)
    return watched


async def _wait_for_asyncio_task(loop, watched: _Watched):
    try:
        await watched.done.wait()
    except trio.Cancelled:
        # callbacks run in order: the task exists by the time this one runs
        loop.call_soon_threadsafe(lambda: watched.task.cancel())
        with trio.CancelScope(shield=True):
            await watched.done.wait()
        if not watched.task.cancelled():
            watched.task.exception()  # retrieved: what it did after the cancel is discarded
        raise
    task = watched.task
    if task.cancelled():
        raise AsyncioTaskCancelled("the task's asyncio task was cancelled from inside it")
    try:
        return task.result()
    except _Escaped as escaped:
        raise escaped.exc from None
