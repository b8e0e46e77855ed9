"""The worker half of actors (user side: ``trioflow/client/primitives/actors.py``):
runs the calls sent to the actors a worker holds (``Worker.actors``), one at
a time per actor in the order they arrived: sync methods in the worker's
task threads, ``async def`` methods in its event loop.
"""
from __future__ import annotations

import inspect
import logging
from collections import deque
from functools import partial

import trio

from trioflow.errors import ActorLostError, SerializationError, TrioflowError
from trioflow.protocol.serialize import deserialize, serialize
from trioflow.server.extensions.base import WorkerExtension

logger = logging.getLogger("trioflow.actors")


class _Calls:
    """One actor's calls waiting on its worker, in arrival order."""

    __slots__ = ("key", "instance", "items", "running")

    def __init__(self, key, instance):
        self.key = key
        self.instance = instance
        self.items: deque = deque()
        self.running = False


class _Pending:
    """A call's reply, set from a task thread or the loop."""

    __slots__ = ("event", "reply")

    def __init__(self):
        self.event = trio.Event()
        self.reply = None

    def set(self, reply):
        self.reply = reply
        self.event.set()

    async def wait(self):
        await self.event.wait()
        return self.reply


class ActorWorkerExtension(WorkerExtension):
    """Runs actor calls on the worker that holds the actors."""

    name = "actors"

    def __init__(self, worker):
        super().__init__(worker)
        self.handlers = {"actor-call": self._call, "actor-getattr": self._getattr}
        self._calls: dict = {}

    def _queue(self, key) -> _Calls:
        instance = self.worker.actors.get(key)
        if instance is None:
            raise ActorLostError(
                f"worker {self.worker.address} does not hold actor {key!r}: it was released "
                "(no future or gathered proxy refers to it any more)")
        calls = self._calls.get(key)
        if calls is None or calls.instance is not instance:
            calls = self._calls[key] = _Calls(key, instance)
        return calls

    def _enqueue(self, kind, msg, inproc):
        # called as each message arrives, so calls queue in the order they were sent
        calls = self._queue(msg["key"])
        pending = _Pending()
        calls.items.append((kind, msg, inproc, pending))
        if not calls.running:
            calls.running = True
            self.worker.nursery.start_soon(self._drain, calls)
        return _unwrap(pending)

    def _call(self, msg, inproc):
        return self._enqueue("call", msg, inproc)

    def _getattr(self, msg, inproc):
        return self._enqueue("getattr", msg, inproc)

    async def _drain(self, calls: _Calls):
        """Run the queued calls of one actor, one at a time (async methods are
        started in order and then run on their own)."""
        try:
            while calls.items:
                kind, msg, inproc, pending = calls.items.popleft()
                if kind == "getattr":
                    pending.set(_attribute_reply(calls.instance, msg, inproc))
                    continue
                try:
                    method = getattr(calls.instance, msg["method"])
                except Exception as exc:
                    pending.set(("error", exc))
                    continue
                if inspect.iscoroutinefunction(method):
                    self.worker.nursery.start_soon(self._run_async, calls.key, method, msg,
                                                   inproc, pending)
                    continue
                # the sync calls queued behind it go to the thread in the same trip
                batch = [(method, msg, inproc, pending)]
                while calls.items and calls.items[0][0] == "call":
                    _, msg, inproc, pending = calls.items[0]
                    try:
                        method = getattr(calls.instance, msg["method"])
                    except Exception:
                        break
                    if inspect.iscoroutinefunction(method):
                        break
                    calls.items.popleft()
                    batch.append((method, msg, inproc, pending))
                await self.worker.executor.threads.run(partial(_run_calls, self.worker, calls.key, batch))
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else TrioflowError(
                f"worker {self.worker.address} is closing")
            if isinstance(exc, Exception):
                logger.exception("actor %r on %s failed to run its calls", calls.key,
                                 self.worker.address)
            for *_, pending in calls.items:
                pending.set(("error", error))
            calls.items.clear()
            if not isinstance(exc, Exception):
                raise
        finally:
            calls.running = False
            if not calls.items and self._calls.get(calls.key) is calls:
                del self._calls[calls.key]

    async def _run_async(self, key, method, msg, inproc, pending):
        from trioflow.server.asyncio_bridge import run_coroutine
        from trioflow.server.context import TaskContext, _task_var, set_async_task
        from trioflow.server.execution import Execution
        if self.worker.client is None:
            await self.worker.get_client_async()  # so get_client() works inside the method
        token = set_async_task(TaskContext(self.worker, key, Execution(key, True)))
        try:
            args, kwargs = msg["args"] if inproc else deserialize(msg["args"])
            value = await run_coroutine(method(*args, **kwargs))
            pending.set(("ok", value if inproc else _serialize_result(value, key, msg)))
        except Exception as exc:
            pending.set(("error", exc))
        finally:
            _task_var.reset(token)


async def _unwrap(pending: _Pending):
    status, value = await pending.wait()
    if status == "error":
        raise value
    return value


def _serialize_result(value, key, msg):
    try:
        return serialize(value)
    except Exception as exc:
        raise SerializationError(f"cannot pickle what {msg['method']!r} of actor {key!r} "
                                 f"returned ({type(value).__name__}): {exc}") from exc


def _attribute_reply(instance, msg, inproc):
    try:
        value = getattr(instance, msg["attribute"])
        if not inproc:
            value = serialize(value)
        return ("ok", value)
    except Exception as exc:
        return ("error", exc)


def _run_calls(worker, key, batch):
    """In a task thread: run sync calls of one actor in order, handing each
    reply to the loop as soon as it is ready."""
    from trioflow.server.context import TaskContext, set_thread_task
    from trioflow.server.execution import Execution
    set_thread_task(TaskContext(worker, key, Execution(key, False)))
    token = worker.trio_token
    try:
        for method, msg, inproc, pending in batch:
            try:
                args, kwargs = msg["args"] if inproc else deserialize(msg["args"])
                value = method(*args, **kwargs)
                outcome = ("ok", value if inproc else _serialize_result(value, key, msg))
            except BaseException as exc:  # noqa: B036 - the caller gets it, the thread goes on
                outcome = ("error", exc if isinstance(exc, Exception) else
                           TrioflowError(f"{type(exc).__name__} in {msg['method']!r}: {exc}"))
            try:
                token.run_sync_soon(pending.set, outcome)
            except trio.RunFinishedError:
                return None
    finally:
        set_thread_task(None)
    return None
