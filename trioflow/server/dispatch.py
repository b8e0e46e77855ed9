"""How a server answers requests: one implementation for the scheduler and
the workers.

A handler is called at once, in the order messages arrived, so sync handlers
see one peer's messages in the order it sent them (Pub/Sub relies on it); an
awaitable it returns is awaited in a task of its own, under a cancel scope
that a ``cancel-request`` for its ``rid`` cancels.  A message without a
``rid`` is one-way: no reply, and a failure is logged.
"""
from __future__ import annotations

import inspect
import logging

import trio

from trioflow.comm.connection import Connection, reply_error, reply_ok
from trioflow.protocol.serialize import deserialize
from trioflow.server.asyncio_bridge import run_coroutine


class RequestDispatch:
    """The requests one server is answering, by connection and ``rid``."""

    def __init__(self, logger: logging.Logger, server_name):
        self._logger = logger
        #: what log lines name the server by: a string, or a callable giving one
        self._server_name = server_name
        self._scopes: dict = {}  # connection -> rid -> cancel scope of a request

    def start(self, conn: Connection, msg: dict, call, peer: str, requests: trio.Nursery):
        """Answer ``msg`` with what ``call()`` returns (or awaits to)."""
        try:
            result = call()
        except Exception as exc:
            self._failed(conn, msg, peer, exc)
            return
        if inspect.isawaitable(result):
            # registered now, not when the task starts: a cancel-request in the
            # same batch as its request must find the scope
            scope = trio.CancelScope()
            if "rid" in msg:
                self._scopes.setdefault(conn, {})[msg["rid"]] = scope
            requests.start_soon(self._answer, conn, msg, result, peer, scope)
        elif "rid" in msg:
            conn.send(reply_ok(msg, result))

    def refuse(self, conn: Connection, msg: dict, peer: str, error: Exception) -> None:
        """Answer ``msg`` with ``error`` without calling anything (an unknown op)."""
        self._failed(conn, msg, peer, error)

    def cancel(self, conn: Connection, msg: dict) -> None:
        """A ``cancel-request``: stop the awaited request it names, if still running."""
        scope = self._scopes.get(conn, {}).get(msg.get("rid"))
        if scope is not None:
            scope.cancel()

    def connection_closed(self, conn: Connection) -> None:
        self._scopes.pop(conn, None)

    async def _answer(self, conn: Connection, msg: dict, awaitable, peer: str,
                      scope: trio.CancelScope):
        scopes = self._scopes.get(conn, {})
        rid = msg.get("rid")
        with scope:
            try:
                result = await awaitable
            except Exception as exc:
                self._failed(conn, msg, peer, exc)
            else:
                if "rid" in msg:
                    conn.send(reply_ok(msg, result))
            finally:
                scopes.pop(rid, None)
        if scope.cancelled_caught and "rid" in msg:
            conn.send({"op": "reply", "rid": rid, "cancelled": True})

    def _failed(self, conn: Connection, msg: dict, peer: str, exc: Exception) -> None:
        if "rid" in msg:
            conn.send(reply_error(msg, exc))
        else:
            name = self._server_name() if callable(self._server_name) else self._server_name
            self._logger.warning("%s: one-way %r from %s failed: %r", name, msg.get("op"), peer, exc)


def takes(function, name: str) -> bool:
    """Whether ``function`` has a parameter ``name`` (``dask_worker``,
    ``dask_scheduler``: what ``client.run`` passes the server in)."""
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


async def call_sent_function(msg: dict, keyword: str, server):
    """Call the function a ``client.run``/``run_on_scheduler`` message carries
    with its arguments, passing ``server`` as ``keyword`` if it takes it; an
    awaitable result is awaited (a coroutine in whichever loop it needs)."""
    function = deserialize(msg["function"])
    args = deserialize(msg.get("args")) or ()
    kwargs = deserialize(msg.get("kwargs")) or {}
    if takes(function, keyword):
        kwargs[keyword] = server
    result = function(*args, **kwargs)
    if inspect.iscoroutine(result):
        return await run_coroutine(result)
    if inspect.isawaitable(result):
        return await result
    return result
