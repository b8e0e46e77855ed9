"""The client's public port: everything a coordination primitive's user
object (``trioflow/client/primitives/``) may use of its client.

A primitive speaks to its scheduler half through ``request`` and ``send``,
turns keys from a reply into futures with ``future``, and runs its own
coroutine functions with ``run``, which gives the caller's face: a blocking
caller blocks, an asynchronous one gets an awaitable (trio or asyncio).  The
three faces are implemented here once; a primitive never builds its own.

Everything else (``ClientCore``, the loop host) stays private to
``client.py``/``core.py`` and this module.
"""
from __future__ import annotations

import inspect
import logging
from functools import partial

import trio

from trioflow.errors import TrioflowError

logger = logging.getLogger("trioflow.client")


class ClientPort:
    """The port of one ``Client`` (``client.port``).

    Methods that say "loop" run in the client's event loop: call them from a
    coroutine given to ``run``, or from a callback given to ``call_soon``."""

    __slots__ = ("_client", "__weakref__")

    def __init__(self, client):
        self._client = client

    def __repr__(self):
        return f"<ClientPort of {self._client!r}>"

    @property
    def client(self):
        return self._client

    @property
    def running(self) -> bool:
        return self._client.status == "running"

    @property
    def asynchronous(self) -> bool:
        """Whether calls through this port return awaitables for the caller."""
        return self._client.asynchronous

    @property
    def mode(self) -> str | None:
        """How the client's loop is hosted: "blocking" (a thread of its own),
        "trio" (the caller's trio run) or "asyncio" (a thread, awaited from asyncio)."""
        host = self._client._host
        return None if host is None else host.mode

    def in_loop(self) -> bool:
        """Whether the caller runs in the client's event loop."""
        host = self._client._host
        return host is not None and host.in_host_loop()

    # ---------------------------------------------------------------- the caller's face

    def run(self, async_fn, *args, asynchronous=None, undo=None, finish=None):
        """Run ``async_fn(*args)`` in the client's loop, in the caller's face,
        and give ``finish(result)`` (the result itself without ``finish``).
        Blocking clients block; asynchronous ones return an awaitable.  A
        client hosted in a trio loop (``asynchronous=True`` under trio, and
        every worker's client) also serves other threads, blocking them: that
        is how sync tasks on a worker use the worker's client.
        ``asynchronous=True`` makes a blocking client return an awaitable for
        trio or asyncio code instead.

        ``finish`` runs in the caller.  ``undo(result)`` (in the loop) gets a
        result the caller gave up on after ``async_fn`` had returned it: an
        asyncio caller cancelled in between (a trio caller is cancelled
        inside ``async_fn`` itself, which must then leave nothing taken)."""
        client = self._client
        host = client._host
        if client.status in ("lost-scheduler", "connecting"):
            client._core.check_connected()
        if host is None or client.status != "running":
            raise TrioflowError(f"{client!r} is not running" + (
                ": await it or use 'async with' first" if client._asynchronous else ""))
        mode = host.mode
        if mode == "blocking":
            if asynchronous:
                return _then(host.run_from_other_loop(async_fn, *args), finish)
            if host.in_host_loop():
                raise RuntimeError("a blocking Client method was called from inside the "
                                   "event loop; use the async client (asynchronous=True) there")
            return _finished(host.call_blocking(async_fn, *args), finish)
        if mode == "trio" and not host.in_host_loop():
            return _finished(trio.from_thread.run(async_fn, *args, trio_token=host.trio_token),
                             finish)
        if mode == "asyncio" and undo is not None:
            return _then(_asyncio_cancel_safe(host, async_fn, args, undo), finish)
        return _then(host.run(async_fn, *args), finish)

    def request(self, msg: dict, finish=None, undo=None):
        """Send request ``msg`` to the scheduler and return ``finish(result)``
        (the result itself without ``finish``), in the caller's face.

        Cancel-safe: if the caller gives up (is cancelled) after the
        scheduler acted, ``undo(result)`` runs in the client's loop instead,
        whether the reply was still on its way or had already arrived."""
        # a trio caller's cancellation reaches Connection.request, which hands
        # a reply that arrives anyway to undo; an asyncio caller's is run's
        return self.run(self.ask, msg, undo, undo=undo, finish=finish)

    # ---------------------------------------------------------------- in the loop

    async def ask(self, msg: dict, undo=None):
        """Loop: the scheduler's reply to ``msg``.  If the awaiting task is
        cancelled and the reply arrives anyway, ``undo(reply)`` gets it."""
        return await self._client._core.request(msg, on_abandoned=undo)

    async def connect_worker(self, address: str):
        """Loop: the client's (pooled) connection to the worker at ``address``."""
        return await self._client._core.pool.get(address)

    def start_soon(self, async_fn, *args) -> None:
        """Loop: run ``async_fn(*args)`` in the client's nursery, which
        cancels it when the client closes.  RuntimeError once it closed."""
        self._client._core.nursery.start_soon(async_fn, *args)

    # ---------------------------------------------------------------- any thread

    def send(self, msg: dict) -> None:
        """Queue one-way ``msg`` to the scheduler; any thread.  Messages leave
        in the order of the calls, after the futures' own messages sent before."""
        self._client._core.send(msg)

    def call_soon(self, fn, *args) -> None:
        """Call ``fn(*args)`` in the client's loop: now if the caller is in
        it, else soon, in the order of the calls; any thread."""
        self._client._core._in_loop(partial(fn, *args) if args else fn)

    def future(self, key, inform: bool = True):
        """A Future of ``key`` for this client; any thread.  ``inform``: tell
        the scheduler this client wants the key (if it had no future of it)."""
        from trioflow.client.future import Future
        return Future(key, self._client, inform=inform)

    def callback(self, fn):
        """A coroutine function for the client's loop that calls ``fn(*args)``
        where this caller expects its callbacks: in the caller's asyncio loop
        for an asyncio client made there; else a coroutine function is
        awaited in the client's loop, and a plain function runs in a thread
        for a blocking client (so it may block, or use the client) and in the
        loop for an async one.  Call this in the subscribing caller."""
        asyncio_loop = None
        if self.mode == "asyncio":
            import asyncio
            try:
                asyncio_loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
        blocking = self.mode == "blocking"

        async def call(*args):
            if asyncio_loop is not None:
                asyncio_loop.call_soon_threadsafe(_call_in_asyncio, fn, args)
                return
            if inspect.iscoroutinefunction(fn):
                await fn(*args)
                return
            result = await trio.to_thread.run_sync(fn, *args) if blocking else fn(*args)
            if inspect.isawaitable(result):
                await result
        return call

    def on_message(self, op: str, handler) -> None:
        """Call ``handler(msg)`` (in the loop) for each message ``op`` the
        scheduler sends this client."""
        self._client._core.handlers[op] = handler


def _call_in_asyncio(fn, args):
    import asyncio
    try:
        result = fn(*args)
        if inspect.isawaitable(result):
            asyncio.ensure_future(result)
    except Exception:
        logger.exception("callback %r raised", fn)


def _finished(result, finish):
    return result if finish is None else finish(result)


def _then(awaitable, finish):
    return awaitable if finish is None else _finish_after(awaitable, finish)


async def _finish_after(awaitable, finish):
    result = await awaitable
    return result if finish is None else finish(result)


async def _asyncio_cancel_safe(host, async_fn, args, undo):
    """The asyncio face of ``run`` with ``undo``.  Cancelling the portal's
    future would drop a result the trio side already has; instead the trio
    side is shielded from the future and told to give up, and undoes what it got."""
    import asyncio
    call = _Abandonable(async_fn, args, undo)
    outcome = asyncio.wrap_future(host.loop.portal.start_task_soon(call.run))
    try:
        return await asyncio.shield(outcome)
    except asyncio.CancelledError:
        host.loop.run_sync_soon(call.abandon)
        outcome.add_done_callback(_ignore_outcome)  # nobody will read it
        raise


def _ignore_outcome(future):
    if not future.cancelled():
        future.exception()


class _Abandonable:
    """One call run in the trio loop on behalf of an asyncio caller, which
    may abandon it at any moment (``abandon`` runs in the trio loop)."""

    def __init__(self, async_fn, args, undo):
        self.async_fn, self.args, self.undo = async_fn, args, undo
        self.scope: trio.CancelScope | None = None
        self.abandoned = False
        self.done = False
        self.result = None

    async def run(self):
        with trio.CancelScope() as self.scope:
            if self.abandoned:
                self.scope.cancel()
            self.result = await self.async_fn(*self.args)
            self.done = True
            return self.result
        return None

    def abandon(self):
        self.abandoned = True
        if self.done:
            self.undo(self.result)
        elif self.scope is not None:
            self.scope.cancel()
