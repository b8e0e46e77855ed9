"""Task graphs from users and from dask collections, as scheduler tasks.

A raw graph is a dict of key -> task.  With dask installed its own task spec
is used (``convert_legacy_graph`` understands legacy tuples and dask's Task
objects alike); each node runs on the worker as ``node(values_of_deps)``.
Without dask, legacy tuples ``(func, *args)`` are evaluated directly.  Graph
values that are Futures of this client stand for data already on the
cluster.
"""
from __future__ import annotations

from trioflow.client.future import Future
from trioflow.protocol.tasks import KeyRef, dumps_args, dumps_shared, execute_legacy_task, token

import importlib.util
import sys


def _dask():
    """dask if installed, imported on first use (it takes a while to import,
    and most programs never hand trioflow a dask graph), else None."""
    if "dask" in sys.modules or importlib.util.find_spec("dask") is not None:
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


def graph_tasks(client, dsk: dict, options: dict, overrides: dict | None = None) -> list[dict]:
    """The scheduler tasks of a graph, each with ``options`` updated by
    ``overrides.get(key)``.  Keys whose value is a Future for the same key
    are already on the cluster and are not resubmitted."""
    overrides = overrides or {}
    tasks = []
    existing = {}
    for key, value in list(dsk.items()):
        if isinstance(value, Future):
            if value.key == key:
                existing[key] = value
            else:
                dsk[key] = (_identity, KeyRef(value.key))
    graph = {k: v for k, v in dsk.items() if k not in existing}
    if _dask() is None:
        func_payload = client._function_payload(execute_legacy_task)
        for key, value in graph.items():
            args_payload, deps = dumps_args((_replace_keys(value, set(dsk)),), {})
            tasks.append({"key": key, "run_spec": (func_payload, args_payload),
                          "deps": list(deps), **options, **overrides.get(key, {})})
        return tasks
    from dask._task_spec import convert_legacy_graph
    nodes = convert_legacy_graph(graph, all_keys=set(dsk))
    return _part_tasks(client, list(nodes.items()), options, overrides)


#: graph nodes pickled together into one part (see _part_tasks)
PART_TASKS = 1_000


def _part_tasks(client, items: list, options: dict, overrides: dict) -> list[dict]:
    """Scheduler tasks for dask task-spec nodes, a part at a time: the nodes
    of a part are pickled once, together (so that what they share, such as
    functions and common arguments, is written once), as the value of a task
    ``graph-part-<token>`` that every task of the part depends on.  A task's
    own run_spec is then just ``("graph-part", part key, index)``: the worker
    calls that node of the part with its dependencies' values."""
    tasks = []
    load_payload = client._function_payload(_identity)
    for start in range(0, len(items), PART_TASKS):
        part = items[start:start + PART_TASKS]
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


def collections_graph(collections: list, optimize_graph: bool, finalize: bool):
    """The graph of dask collections and each one's (nested) keys, built as
    dask.distributed builds it: one expression for all of them
    (``collections_to_expr``), with a finalizing step per collection for
    ``compute``, optimized by the expression itself.  (``dask.optimize`` is
    not the same thing: it materializes and re-wraps the collections, which
    dask.distributed never does.)"""
    from dask.base import collections_to_expr
    expr = collections_to_expr(list(collections), optimize_graph)
    if finalize:
        from dask._expr import FinalizeCompute
        expr = FinalizeCompute(expr)
    expr = expr.optimize()
    return as_dict(expr.__dask_graph__()), expr.__dask_keys__()


def is_dask_collection(obj) -> bool:
    if "dask" not in sys.modules:
        return False  # nothing can be a dask collection before dask is imported
    from dask.base import is_dask_collection as check
    return check(obj)


def flatten(keys):
    if isinstance(keys, list):
        for k in keys:
            yield from flatten(k)
    else:
        yield keys


def keys_of_target(target) -> list:
    """The keys a mapping entry of ``workers=`` names: a dask collection's
    keys, a key, or each of a tuple of collections."""
    if is_dask_collection(target):
        return list(flatten(target.__dask_keys__()))
    if isinstance(target, tuple) and target and all(is_dask_collection(t) for t in target):
        return [k for t in target for k in flatten(t.__dask_keys__())]
    if getattr(target, "_trioflow_is_future", False):
        return [target.key]
    from trioflow.client.options import check_key
    return [check_key(target, "a key of the workers= mapping")]
