"""The one implementation of the client's logic, on trio.

``ClientCore`` owns the connection to the scheduler and a pool of
connections to workers (data moves directly between the client and the
workers).  The blocking ``Client`` calls it through the loop thread's portal;
the async faces await it.  Methods named ``*_threadsafe`` or documented as
such may be called from any thread.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from functools import partial

import trio

from trioflow._concurrency import run_all
from trioflow.comm import connect
from trioflow.comm.connection import Connection, ConnectionPool
from trioflow.errors import (AuthenticationError, CancelledError, CommClosedError,
                             SerializationError, TimeoutError)
from trioflow.client.future import FutureState
from trioflow.protocol.exceptions import exception_from_reply
from trioflow.protocol.messages import FROM_CLIENT, BadMessage
from trioflow.protocol.serialize import deserialize, serialize, dumps

logger = logging.getLogger("trioflow.client")

#: how long gather keeps looking for a key's data after its holders vanished
GATHER_PATIENCE = 120.0


class ClientCore:
    def __init__(self, address: str, *, client_id: str, name=None, timeout: float = 30,
                 token: str | None = None, security=None, security_role: str = "client",
                 token_source=None):
        self.address = address
        self.id = client_id
        self.name = name
        self.timeout = timeout
        self.token = token
        #: where a token comes from when the scheduler is connected to again
        #: (it may have restarted with a new one): given a token, that one; a
        #: scheduler file, the file read anew; neither, this machine's runtime file
        self._token_source = token_source or ((lambda: token) if token is not None
                                              else (lambda: None))
        self.security = security
        self.security_role = security_role  # whose certificate it shows (a worker's client: the worker's)
        self.futures: dict = {}  # key -> FutureState
        self.refcount: dict = {}
        self._lock = threading.Lock()
        # Messages to the scheduler, in the order they were decided on.  A
        # want or release is queued under the same lock as the reference
        # count change that caused it, so the scheduler sees them in the
        # order they happened even when threads and the loop race.
        self._outbox: list = []
        self._drain_pending = False
        self.scheduler: Connection | None = None
        self.scheduler_builds_graphs = False
        self.pool: ConnectionPool | None = None
        self.nursery: trio.Nursery | None = None
        self._nursery_manager = None
        self.trio_token = None
        self._callback_limiter = trio.CapacityLimiter(4)
        self.status = "newly-created"
        #: why the connection to the scheduler was lost, once it was
        self.lost: str | None = None
        self.closed_event = threading.Event()
        #: op -> ``handler(msg)`` for extensions' messages from the scheduler (loop thread)
        self.handlers: dict = {}

    # ---------------------------------------------------------------- lifetime

    async def __aenter__(self):
        self.trio_token = trio.lowlevel.current_trio_token()
        self._nursery_manager = trio.open_nursery()
        self.nursery = await self._nursery_manager.__aenter__()
        try:
            await self._connect(self.token, self.timeout)
            self.nursery.start_soon(self._run_scheduler_connection)
        except BaseException:
            self.nursery.cancel_scope.cancel()
            await self._nursery_manager.__aexit__(None, None, None)
            raise
        self.status = "running"
        return self

    async def __aexit__(self, *exc_info):
        await self.close()

    async def close(self):
        if self.status in ("closing", "closed") or self._nursery_manager is None:
            return
        self._drain()  # what was sent before close() goes out before the close
        self.status = "closing"
        try:
            self.scheduler.close("client closed")
            with trio.move_on_after(2):
                await self.scheduler.wait_closed()
            self.pool.close()
            self.nursery.cancel_scope.cancel()
            await self._nursery_manager.__aexit__(None, None, None)
        finally:
            self.status = "closed"
            for state in list(self.futures.values()):
                if not state.done():
                    state.cancel()
            self.closed_event.set()

    async def _connect(self, token, timeout):
        comm = await connect(self.address, self.nursery, token=token, timeout=timeout,
                             security=self.security, role=self.security_role,
                             info={"role": "client", "id": self.id, "name": self.name})
        if token is None:  # found on this machine: workers require it too
            token = comm.token
        self.token = token
        if self.pool is not None:
            self.pool.close()
        self.scheduler = Connection(comm, self._on_message)
        # a scheduler with dask builds the graphs of collections itself
        self.scheduler_builds_graphs = "graph-expr" in (comm.peer_info.get("features") or ())
        self.pool = ConnectionPool(self.nursery, {"role": "client", "id": self.id},
                                   self.token, security=self.security, role=self.security_role)

    async def _run_scheduler_connection(self):
        """Serve the scheduler connection; when it drops, connect again for
        up to ``timeout`` seconds (dask's comm.timeouts.connect), as dask's
        client does.  Meanwhile every call fails at once."""
        while True:
            await self.scheduler.run()
            if self.status != "running":
                return
            self._scheduler_lost(self.scheduler.close_reason)
            if not await self._reconnect():
                return

    def _scheduler_lost(self, reason) -> None:
        logger.warning("client %s lost its scheduler at %s: %s; connecting again for up to %s s",
                       self.id, self.address, reason, self.timeout)
        self.lost = f"lost the connection to the scheduler at {self.address}"
        self.status = "connecting"
        with self._lock:
            states = list(self.futures.values())
            # The scheduler took every key's state with it (and its workers
            # their data): each Future held so far errs, and futures made
            # from now on start afresh.  Reference counts stay, so releasing
            # an old Future still balances.
            self.futures.clear()
            self._outbox.clear()
        for state in states:
            if state.status != "error":
                state.err(None, None, self.lost, "CommClosedError")
            self._run_callbacks(state)

    async def _reconnect(self) -> bool:
        deadline = trio.current_time() + self.timeout
        while self.status == "connecting":
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                break
            try:
                await self._connect(self._token_source(), remaining)
            except (OSError, CommClosedError, TimeoutError) as exc:
                logger.debug("client %s: connecting again to %s failed: %s",
                             self.id, self.address, exc)
                break
            except AuthenticationError as exc:
                # a restarted scheduler may not have written its new token yet
                logger.debug("client %s: %s", self.id, exc)
                await trio.sleep(min(0.2, max(0.0, deadline - trio.current_time())))
                continue
            logger.info("client %s connected again to its scheduler at %s", self.id, self.address)
            self.lost = None
            self.status = "running"
            return True
        if self.status == "connecting":
            logger.warning("client %s gave up on its scheduler at %s after %s s",
                           self.id, self.address, self.timeout)
            self.lost = (f"lost the connection to the scheduler at {self.address} and could "
                         f"not connect again within {self.timeout} s")
            self.status = "lost-scheduler"
        return False

    def check_connected(self) -> None:
        """Raise the connection error at once if the scheduler is gone: no
        call of a client without a scheduler waits for its timeout."""
        lost = self.lost
        if lost is not None:
            raise CommClosedError(lost + ("; connecting again" if self.status == "connecting"
                                          else ""))

    # ---------------------------------------------------------------- sending

    def send(self, msg: dict) -> None:
        """Queue a message to the scheduler; callable from any thread.
        Messages leave in the order of the calls, from every thread."""
        with self._lock:
            first = self._queue_locked(msg)
        if first:
            self._kick()

    def _queue_locked(self, msg: dict) -> bool:
        """Append ``msg`` (caller holds ``_lock``); True if nothing is yet set
        to drain the outbox, in which case the caller calls ``_kick()`` once
        the lock is released."""
        if self.status not in ("running", "newly-created"):
            return False
        self._outbox.append(msg)
        first, self._drain_pending = not self._drain_pending, True
        return first

    def _kick(self) -> None:
        """Have the outbox sent: now in the loop thread, soon from others."""
        try:
            in_loop = trio.lowlevel.current_trio_token() is self.trio_token
        except RuntimeError:
            in_loop = False
        if in_loop:
            self._drain()
            return
        try:
            self.trio_token.run_sync_soon(self._drain)
        except trio.RunFinishedError:
            pass

    def _drain(self) -> None:
        with self._lock:
            msgs, self._outbox = self._outbox, []
            self._drain_pending = False
        if self.scheduler is not None:
            for msg in msgs:
                self.scheduler.send(msg)

    async def request(self, msg: dict, on_abandoned=None):
        """Ask the scheduler; see ``Connection.request`` for ``on_abandoned``
        (undo a reply that arrives after the caller was cancelled).  Goes out
        after every message sent before it.  A message the scheduler would
        refuse (and close the connection for) raises TypeError here instead."""
        check_outgoing(msg, self.address)
        self.check_connected()
        self._drain()
        return await self.scheduler.request(msg, on_abandoned=on_abandoned)

    # ---------------------------------------------------------------- references

    def acquire(self, key, inform: bool) -> FutureState:
        """Count a new Future for ``key``; any thread."""
        self.check_connected()
        with self._lock:
            state = self.futures.get(key)
            new = state is None
            if new:
                state = self.futures[key] = FutureState(key)
            # futures of a cancelled (detached) state may still count here
            self.refcount[key] = self.refcount.get(key, 0) + 1
            first = inform and new and self._queue_locked({"op": "want-keys", "keys": [key]})
        if first:
            self._kick()
        return state

    def release(self, key) -> None:
        """A Future for ``key`` is gone; any thread, also from ``__del__``."""
        with self._lock:
            n = self.refcount.get(key, 0) - 1
            if n > 0:
                self.refcount[key] = n
                return
            self.refcount.pop(key, None)
            self.futures.pop(key, None)
            first = self._queue_locked({"op": "release-keys", "keys": [key]})
        if first:
            self._kick()

    def detach(self, state: FutureState) -> None:
        """Stop routing news about ``state``'s key to it (it was cancelled):
        futures made for the key from now on start from a fresh state, while
        the existing ones keep reporting cancelled.  Loop thread."""
        with self._lock:
            if self.futures.get(state.key) is state:
                del self.futures[state.key]

    # ---------------------------------------------------------------- incoming

    def _on_message(self, msg: dict):
        op = msg.get("op")
        state = self.futures.get(msg.get("key"))
        if op == "key-in-memory":
            if state is not None:
                state.finish(msg.get("type"), msg.get("workers"))
                self._run_callbacks(state)
        elif op == "task-erred":
            if state is not None:
                state.err(msg.get("exception"), msg.get("traceback"), msg.get("text") or "",
                          msg.get("kind") or "")
                self._run_callbacks(state)
        elif op == "task-retried":
            if state is not None and state.status == "error":
                state.reset()
        elif op == "lost-data":
            if state is not None and state.status == "finished":
                state.reset("lost")
        elif op == "cancelled-key":
            if state is not None:
                state.cancel(msg.get("reason") or "")
                self.detach(state)
                self._run_callbacks(state)
        else:
            handler = self.handlers.get(op)
            if handler is not None:
                handler(msg)
            else:
                logger.debug("client %s: unhandled op %r", self.id, op)

    # ---------------------------------------------------------------- callbacks

    def add_done_callback(self, future, fn):
        def schedule():
            state = future._state
            state.callbacks.append((future, fn))
            if state.done():
                self._run_callbacks(state)
        self._in_loop(schedule)

    def _in_loop(self, fn):
        try:
            if trio.lowlevel.current_trio_token() is self.trio_token:
                fn()
                return
        except RuntimeError:
            pass
        self.trio_token.run_sync_soon(fn)

    def _run_callbacks(self, state: FutureState):
        callbacks, state.callbacks = state.callbacks, []
        for future, fn in callbacks:
            self.nursery.start_soon(self._callback, future, fn)

    async def _callback(self, future, fn):
        try:
            await trio.to_thread.run_sync(fn, future, limiter=self._callback_limiter)
        except Exception:
            logger.exception("done-callback %r of %r raised", fn, future)

    # ---------------------------------------------------------------- waiting and gathering

    async def wait_done(self, states, timeout=None):
        with _timeout(timeout, f"{len(states)} future(s) not done"):
            for state in states:
                await state.wait()

    async def gather_one(self, future, timeout=None):
        state = future._state
        with _timeout(timeout, f"future {future.key!r} not done"):
            await state.wait()
            if state.status != "finished":
                raise state.error_to_raise()
            values = await self.fetch([state])
        return _bound(values[future.key], future.client)

    async def exception_of(self, future, timeout=None):
        state = future._state
        with _timeout(timeout, f"future {future.key!r} not done"):
            await state.wait()
        if state.status == "finished":
            return None
        return state.error_to_raise()

    async def traceback_of(self, future, timeout=None):
        state = future._state
        with _timeout(timeout, f"future {future.key!r} not done"):
            await state.wait()
        if state.status != "error":
            return None
        return state.traceback_object()

    async def gather(self, futures, errors: str = "raise"):
        """Values of the finished futures: dict key -> value.  Erred ones raise
        (errors="raise") or are left out (errors="skip")."""
        states = {}
        for future in futures:
            states[future.key] = future._state
        for state in states.values():
            await state.wait()
            if state.status != "finished" and errors == "raise":
                raise state.error_to_raise()
        wanted = [s for s in states.values() if s.status == "finished"]
        values = await self.fetch(wanted)
        if any(hasattr(type(v), "_trioflow_bind") for v in values.values()):
            client = futures[0].client
            values = {k: _bound(v, client) for k, v in values.items()}
        return values

    async def fetch(self, states: list) -> dict:
        """Get the data of finished keys directly from the workers holding them."""
        results: dict = {}
        remaining = {s.key: s for s in states}
        with trio.move_on_after(GATHER_PATIENCE):
            while remaining:
                by_worker: dict[str, list] = {}
                unknown = [s for s in remaining.values() if not s.workers]
                if unknown:
                    who_has = await self.request({"op": "who-has",
                                                  "keys": [s.key for s in unknown]})
                    for s in unknown:
                        s.workers = list(who_has.get(s.key) or ()) or None
                waiting = []
                for s in remaining.values():
                    if s.status in ("error", "cancelled"):
                        raise s.error_to_raise()
                    if s.workers:
                        by_worker.setdefault(s.workers[0], []).append(s.key)
                    else:
                        waiting.append(s)
                if by_worker:
                    await run_all([
                        partial(self._get_from_worker, address, keys, remaining, results)
                        for address, keys in by_worker.items()])
                if waiting and len(waiting) == len(remaining):
                    # no copy anywhere right now: the scheduler is recomputing; wait for news
                    with trio.move_on_after(0.5):
                        await waiting[0].refreshed()
            return results
        raise TimeoutError(f"could not find the data of {len(remaining)} key(s) "
                           f"({list(remaining)[:3]}) on any worker for {GATHER_PATIENCE} s")

    async def _get_from_worker(self, address, keys, remaining, results):
        try:
            conn = await self.pool.get(address)
            reply = await conn.request({"op": "get-data", "keys": keys})
        except (CommClosedError, OSError, TimeoutError) as exc:
            logger.info("gather from %s failed (%s); asking the scheduler again", address, exc)
            for key in keys:
                state = remaining.get(key)
                if state is not None:
                    state.workers = None
            return
        errors = reply.get("errors") or {}
        if errors:
            key, text = next(iter(errors.items()))
            raise SerializationError(text)
        data = reply.get("data") or {}
        for key in keys:
            state = remaining.get(key)
            if key in data:
                results[key] = deserialize(data[key])
                remaining.pop(key, None)
            elif state is not None:
                # that worker no longer has it: ask the scheduler again
                state.workers = None

    # ---------------------------------------------------------------- scatter

    async def scatter(self, items: dict, targets: dict, types: dict) -> None:
        """Put ``items`` (key -> value) on workers: ``targets`` key -> [addresses]."""
        by_worker: dict[str, dict] = {}
        for key, addresses in targets.items():
            for address in addresses:
                by_worker.setdefault(address, {})[key] = items[key]
        nbytes: dict = {}

        async def send_to(address, data):
            conn = await self.pool.get(address)
            inproc = address.startswith("inproc://")
            payload = data if inproc else {k: serialize(v) for k, v in data.items()}
            reply = await conn.request({"op": "update-data", "data": payload})
            nbytes.update(reply["nbytes"])

        await run_all([partial(send_to, address, data) for address, data in by_worker.items()])
        await self.request({"op": "scatter-done", "nbytes": {k: nbytes.get(k, 0) for k in items},
                            "who_has": targets, "types": types})

    async def replicate(self, keys, n, workers):
        """Copy keys to more workers until each is on ``n`` of ``workers``
        (all of them if n is None)."""
        # the scheduler plans the copies (core/placement.py) and asks the
        # recipients: a worker's own port takes no replicate requests
        await self.request({"op": "replicate", "keys": list(keys), "n": n,
                            "workers": list(workers) if workers else None})

    # ---------------------------------------------------------------- run on workers

    async def run_on_workers(self, function, args, kwargs, workers, on_error="raise"):
        """``client.run``: the scheduler passes the function to each worker
        over that worker's own connection (a worker's port takes no ``run``)."""
        replies = await self.request({
            "op": "broadcast", "workers": list(workers), "function": serialize(function),
            "args": serialize(tuple(args)), "kwargs": serialize(dict(kwargs))})
        results: dict = {}
        for address in workers:
            reply = replies[address]
            if "error" in reply:
                exc = exception_from_reply(reply)
                if on_error == "raise":
                    raise exc
                results[address] = exc
            else:
                results[address] = deserialize(reply.get("result"))
        return results


class _timeout:
    """``with _timeout(seconds, what):`` raises trioflow.TimeoutError on expiry."""

    def __init__(self, seconds, what):
        self.scope = trio.CancelScope(deadline=trio.current_time() + seconds
                                      if seconds is not None else float("inf"))
        self.seconds = seconds
        self.what = what

    def __enter__(self):
        self.scope.__enter__()
        return self

    def __exit__(self, *exc_info):
        handled = self.scope.__exit__(*exc_info)
        if self.scope.cancelled_caught:
            raise TimeoutError(f"{self.what} after {self.seconds} s")
        return handled


def _bound(value, client):
    """A value as ``client`` should see it: an actor proxy is bound to the
    client that gathered it (and keeps its actor alive)."""
    bind = getattr(type(value), "_trioflow_bind", None)
    return value if bind is None else bind(value, client)


def data_token(value) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for frame in dumps(value):
        digest.update(frame)
    return digest.hexdigest()


def check_outgoing(msg: dict, address: str) -> None:
    """Raise TypeError, naming what is wrong, if the scheduler would refuse
    ``msg`` (a user's argument of the wrong type inside it)."""
    try:
        FROM_CLIENT.check(msg, address.startswith("inproc://"))
    except BadMessage as exc:
        raise TypeError(f"an argument of this call cannot be sent to the scheduler: {exc}") from None


def new_client_id() -> str:
    return f"Client-{uuid.uuid4()}"
