"""Answers about the scheduler's state, as plain data: what the shell
replies to ``who_has``, ``has_what``, ``nbytes``, ``processing``,
``nthreads`` and ``scheduler_info``.  Read-only."""
from __future__ import annotations


def who_has(state, keys=None) -> dict:
    """key -> the addresses of the workers holding it ([] if unknown)."""
    tasks = state.tasks
    keys = tasks.keys() if keys is None else keys
    return {k: [ws.address for ws in tasks[k].who_has] if k in tasks else [] for k in keys}


def has_what(state, workers=None) -> dict:
    """worker address -> the keys it holds ([] if unknown)."""
    known = state.workers
    workers = known.keys() if workers is None else workers
    return {w: [ts.key for ts in known[w].has_what] if w in known else [] for w in workers}


def nbytes(state, keys=None) -> dict:
    """key -> its size, for the keys in memory (of ``keys``, default all)."""
    tasks = state.tasks
    chosen = tasks if keys is None else [k for k in keys if k in tasks]
    return {k: tasks[k].nbytes for k in chosen if tasks[k].state == "memory"}


def _named(ws, workers) -> bool:
    return workers is None or ws.address in workers or ws.name in workers


def processing(state, workers=None) -> dict:
    """worker address -> the keys assigned to it (of ``workers``, by address or name)."""
    return {a: [ts.key for ts in ws.processing] for a, ws in state.workers.items()
            if _named(ws, workers)}


def nthreads(state, workers=None) -> dict:
    """worker address -> its threads (of ``workers``, by address or name)."""
    return {a: ws.nthreads for a, ws in state.workers.items() if _named(ws, workers)}


def identity(state) -> dict:
    """The workers as ``scheduler_info()`` describes them, and the task count."""
    return {
        "workers": {
            ws.address: {"nthreads": ws.nthreads, "memory_limit": ws.memory_limit,
                         "name": ws.name, "resources": ws.resources,
                         "processing": len(ws.processing), "nbytes": ws.nbytes,
                         "metrics": ws.metrics, "status": ws.status,
                         "paused": ws.status == "paused",
                         # as of its last heartbeat: process memory, managed
                         # memory, and the managed bytes spilled to disk
                         "memory": ws.metrics.get("memory", 0),
                         "managed": ws.metrics.get("managed", 0),
                         "spilled_bytes": ws.metrics.get("spilled_bytes", 0),
                         # on the state's clock; the shell turns it into wall time
                         "last_seen": ws.last_seen}
            for ws in state.workers.values()
        },
        "n_tasks": len(state.tasks),
    }
