"""Dask graphs as scheduler tasks, and the messages that carry them.

Used on both sides: the client converts a raw graph (``client.get``) or a
collection the scheduler cannot build, and the scheduler builds the graph of
a collection from its pickled expression (``update-graph-expr``), so that the
per-task work of materializing a million-task graph is not the caller's.
Without dask, legacy tuples ``(func, *args)`` are evaluated directly.
"""
from __future__ import annotations

import importlib.util
import io
import pickle
import sys
from collections.abc import Callable, Iterator

import cloudpickle

from trioflow.errors import SerializationError
from trioflow.protocol.serialize import describe, pickle_error
from trioflow.protocol.tasks import (
    KeyRef, _is_dep, dumps_args, dumps_shared, execute_legacy_task, token)


def dask_available() -> bool:
    """Whether dask can be imported here, without importing it."""
    return "dask" in sys.modules or importlib.util.find_spec("dask") is not None


def _dask():
    """dask if installed, imported on first use (it takes a while to import,
    and most programs never hand trioflow a dask graph), else None."""
    if dask_available():
        import dask
        import dask._task_spec  # noqa: F401
        return dask
    return None


def _identity(x):
    return x


def as_dict(dsk) -> dict:
    if hasattr(dsk, "__dask_graph__"):
        dsk = dsk.__dask_graph__()
    if _dask() is not None:
        from dask.utils import ensure_dict
        return ensure_dict(dsk)
    return dict(dsk)


def tasks_of_graph(dsk: dict, options: dict, overrides: dict,
                   function_payload: Callable[[Callable], bytes],
                   future_key: Callable[[object], object], consume: bool = False) -> list[dict]:
    """The scheduler tasks of graph ``dsk``, each with ``options`` updated by
    ``overrides.get(key)``; with ``consume`` the nodes are let go of as they
    are packed (``dsk`` is emptied), so the graph and its tasks are not held
    whole at once.  ``future_key(value)`` is the key of a value that
    stands for data already on the cluster (a Future), else None: a key whose
    value is such a reference to itself is not resubmitted, and one that
    names another key becomes an alias of it."""
    tasks = []
    existing = set()
    for key, value in list(dsk.items()):
        ref = future_key(value)
        if ref is not None:
            if ref == key:
                existing.add(key)
            else:
                dsk[key] = (_identity, KeyRef(ref))
    graph = {k: v for k, v in dsk.items() if k not in existing}
    if _dask() is None:
        func_payload = function_payload(execute_legacy_task)
        for key, value in graph.items():
            args_payload, deps = dumps_args((_replace_keys(value, set(dsk)),), {})
            tasks.append({"key": key, "run_spec": (func_payload, args_payload),
                          "deps": list(deps), **options, **overrides.get(key, {})})
        return tasks
    from dask._task_spec import convert_legacy_graph
    nodes = convert_legacy_graph(graph, all_keys=set(dsk))
    if consume:
        dsk.clear()
    del graph
    items = list(nodes.items())
    del nodes
    return _part_tasks(function_payload, items, options, overrides)


#: graph nodes pickled together into one part (see _part_tasks)
PART_TASKS = 1_000


def _part_tasks(function_payload, items: list, options: dict, overrides: dict) -> list[dict]:
    """Scheduler tasks for dask task-spec nodes, a part at a time: the nodes
    of a part are pickled once, together (so that what they share, such as
    functions and common arguments, is written once), as the value of a task
    ``graph-part-<token>`` that every task of the part depends on.  A task's
    own run_spec is then just ``("graph-part", part key, index)``: the worker
    calls that node of the part with its dependencies' values."""
    tasks = []
    load_payload = function_payload(_identity)
    items.reverse()  # packed from the end, so that each part is let go of once packed
    while items:
        part = items[-PART_TASKS:]
        del items[-PART_TASKS:]
        part.reverse()
        payload, found = dumps_shared([node for _, node in part])
        part_key = f"graph-part-{token(payload)}"
        tasks.append({"key": part_key, "run_spec": (load_payload, payload),
                      "deps": list(found), **options})
        for index, (key, node) in enumerate(part):
            deps = [part_key]
            deps += node.dependencies
            task = {"key": key, "run_spec": ("graph-part", part_key, index), "deps": deps}
            if options:
                task.update(options)
            if key in overrides:
                task.update(overrides[key])
            tasks.append(task)
    return tasks


def _replace_keys(task, graph_keys):
    """Legacy tuples without dask: references to other keys become KeyRefs."""
    if isinstance(task, tuple) and task and callable(task[0]):
        return (task[0], *(_replace_keys(a, graph_keys) for a in task[1:]))
    if isinstance(task, list):
        return [_replace_keys(a, graph_keys) for a in task]
    try:
        if task in graph_keys:
            return KeyRef(task)
    except TypeError:
        pass
    return task


# ------------------------------------------------------------ expressions

class FutureRef:
    """A client's Future inside an expression the scheduler unpickled: only
    its key, which is all the graph needs (the data is on the cluster)."""

    __slots__ = ("key",)
    _trioflow_is_future = True  # pickled into task payloads as a dependency

    def __init__(self, key):
        self.key = key

    def __repr__(self):
        return f"FutureRef({self.key!r})"

    def __dask_tokenize__(self):
        return ("trioflow-future", self.key)


class _ExpressionPickler(cloudpickle.Pickler):
    def persistent_id(self, obj):
        if _is_dep(type(obj)):
            return ("future", obj.key)
        return None


class _ExpressionUnpickler(pickle.Unpickler):
    def persistent_load(self, pid):
        kind, key = pid
        if kind != "future":
            raise pickle.UnpicklingError(f"unknown reference {kind!r} in an expression")
        return FutureRef(key)


def dumps_expression(expr) -> bytes:
    """Pickle a dask expression for the scheduler, its Futures as references
    to their keys."""
    buffer = io.BytesIO()
    try:
        _ExpressionPickler(buffer, protocol=5).dump(expr)
    except Exception as exc:
        raise SerializationError(pickle_error(describe(expr), exc)) from exc
    return buffer.getvalue()


def expression_tasks(payload: bytes, options: dict,
                     function_payload: Callable[[Callable], bytes]) -> list[dict]:
    """The scheduler tasks of a pickled, already optimized dask expression
    (``dumps_expression``): what the client would have sent, built here."""
    expr = _ExpressionUnpickler(io.BytesIO(payload)).load()
    dsk = as_dict(expr.__dask_graph__())
    del expr
    return tasks_of_graph(dsk, options, {}, function_payload,
                          lambda v: v.key if type(v) is FutureRef else None, consume=True)


# ------------------------------------------------------------ messages

#: tasks per update-graph message of a large graph: the scheduler takes
#: one message in one step, ~20 us a task, so a part keeps it busy ~40 ms
GRAPH_PART = 2_000


def graph_messages(tasks: list, wanted: list, part_size: int = GRAPH_PART) -> Iterator[dict]:
    """The messages that submit a graph: one update-graph, or for a large
    one parts of it, dependencies first, so that the scheduler never spends
    more than a part's time on it at once.  Each part is held by the client's
    graph hold (the scheduler keeps and starts running it although nothing
    is wanted yet); once all are in, the wanted keys are asked for and the
    hold is let go of, again in parts."""
    if len(tasks) <= part_size:
        yield {"op": "update-graph", "tasks": tasks, "wanted": wanted}
        return
    tasks = _dependencies_first(tasks)
    for start in range(0, len(tasks), part_size):
        part = tasks[start:start + part_size]
        yield {"op": "update-graph", "tasks": part, "wanted": [t["key"] for t in part],
               "hold": True}
    yield {"op": "update-graph", "tasks": [], "wanted": wanted}
    for start in range(0, len(tasks), part_size):
        yield {"op": "release-keys", "keys": [t["key"] for t in tasks[start:start + part_size]],
               "hold": True}


def _dependencies_first(tasks: list) -> list:
    """``tasks`` in an order where each comes after those of its
    dependencies that are among them (Kahn's algorithm, no recursion)."""
    index = {t["key"]: t for t in tasks}
    missing = {}
    dependents: dict = {}
    for t in tasks:
        inside = [d for d in t["deps"] if d in index]
        missing[t["key"]] = len(inside)
        for d in inside:
            dependents.setdefault(d, []).append(t["key"])
    ready = [t["key"] for t in reversed(tasks) if not missing[t["key"]]]
    order = []
    while ready:
        key = ready.pop()
        order.append(index[key])
        for dependent in dependents.get(key, ()):
            missing[dependent] -= 1
            if not missing[dependent]:
                ready.append(dependent)
    if len(order) != len(tasks):
        raise ValueError("the graph has a cycle: "
                         f"{[k for k, n in missing.items() if n][:5]!r} depend on each other")
    return order
