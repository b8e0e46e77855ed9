"""The scheduler building the graphs of clients' dask collections.

``client.compute``/``persist`` send a collection's optimized expression
(``update-graph-expr``) rather than its graph, as dask.distributed does, so
the caller never spends the per-task time of materializing a large graph.
Here a worker thread builds the graph and its tasks (one build at a time,
so that the scheduler's loop keeps most of the interpreter), and the loop
takes the tasks a part at a time, exactly the messages a client would have
sent (``protocol.dask_graph.graph_messages``), with a checkpoint between
parts so other clients' work goes on.

Until a client's build is in, its later messages wait, in order: they may
release the futures the expression holds, or name the keys being built.
A build that fails errs the keys the client asked for with the reason.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from trioflow.protocol.dask_graph import dask_available, expression_tasks, graph_messages
from trioflow.protocol.exceptions import pack_exception
from trioflow.protocol.tasks import dumps_task_function
from trioflow.server.heap import collector_paused

logger = logging.getLogger("trioflow.scheduler")


#: tasks the loop takes in one step: a client's parts are bigger (fewer
#: frames), but here nothing is saved by them, and on a busy machine 2,000
#: tasks kept the loop from other clients for ~200 ms
PART = 500


def features() -> list[str]:
    """What the scheduler tells connecting clients it can do."""
    return ["graph-expr"] if dask_available() else []


class GraphBuilds:
    def __init__(self, apply: Callable[[str, dict], None],
                 replay: Callable[[str, object, dict, trio.Nursery], None]):
        #: ``apply(client_id, msg)`` takes an update-graph or release-keys message
        self._apply = apply
        #: ``replay(client_id, conn, msg, requests)`` handles a message that waited
        self._replay = replay
        self._waiting: dict[object, list] = {}  # connection -> its messages held back
        self._threads = trio.CapacityLimiter(1)

    def hold_back(self, conn, msg: dict) -> bool:
        """Whether ``msg`` must wait for a build of ``conn``'s (it is kept)."""
        waiting = self._waiting.get(conn)
        if waiting is None:
            return False
        waiting.append(msg)
        return True

    def start(self, client_id: str, conn, msg: dict, requests: trio.Nursery) -> None:
        """Build the graph of an ``update-graph-expr`` message; the task is
        the connection's, so it ends with it."""
        self._waiting[conn] = []
        requests.start_soon(self._build, client_id, conn, msg, requests)

    async def _build(self, client_id, conn, msg, requests):
        wanted = list(msg["wanted"])
        try:
            try:
                parts = await trio.to_thread.run_sync(
                    _build_messages, msg["expr"], msg.get("options") or {}, wanted,
                    limiter=self._threads)
                parts.reverse()
                while parts:  # each part let go of once the core has it
                    self._apply(client_id, parts.pop())
                    await trio.lowlevel.checkpoint()
            except Exception as exc:
                logger.info("client %s: cannot build the graph of %d key(s): %r",
                            client_id, len(wanted), exc)
                _err(conn, wanted, exc)
        finally:
            waiting = self._waiting.pop(conn, [])
        for later in waiting:
            self._replay(client_id, conn, later, requests)


def _build_messages(payload: bytes, options: dict, wanted: list) -> list[dict]:
    """In the build thread: the messages that submit the expression's graph
    (ordering a large graph dependencies first takes a while, too)."""
    with collector_paused():
        tasks = expression_tasks(payload, options, dumps_task_function)
        return list(graph_messages(tasks, wanted, PART))


def _err(conn, keys: list, exc: Exception) -> None:
    error = RuntimeError(
        f"the scheduler could not build the graph of this dask collection: "
        f"{type(exc).__name__}: {exc} (the scheduler needs dask and every module the "
        "collection's graph uses; with dask.config.set({'trioflow.graph-build': 'client'}) "
        "or DASK_TRIOFLOW__GRAPH_BUILD=client the client builds it instead)")
    error.__cause__ = exc
    exception, traceback, text = pack_exception(error)
    for key in keys:
        conn.send({"op": "task-erred", "key": key, "exception": exception,
                   "traceback": traceback, "text": text, "kind": ""})
