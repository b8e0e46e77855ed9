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
from trioflow.protocol.dask_graph import PART_TASKS, as_dict, tasks_of_graph  # noqa: F401

import sys


def graph_tasks(client, dsk: dict, options: dict, overrides: dict | None = None) -> list[dict]:
    """The scheduler tasks of a graph built here, each with ``options``
    updated by ``overrides.get(key)``.  Keys whose value is a Future for the
    same key are already on the cluster and are not resubmitted."""
    return tasks_of_graph(dsk, options, overrides or {}, client._function_payload,
                          lambda v: v.key if isinstance(v, Future) else None)


def collections_expression(collections: list, optimize_graph: bool, finalize: bool):
    """The optimized expression of dask collections, built as
    dask.distributed builds it: one expression for all of them
    (``collections_to_expr``), with a finalizing step per collection for
    ``compute``, optimized by the expression itself.  (``dask.optimize`` is
    not the same thing: it materializes and re-wraps the collections, which
    dask.distributed never does.)  Its ``__dask_keys__()`` are each
    collection's (nested) keys; its graph is built only where it is sent."""
    from dask.base import collections_to_expr
    expr = collections_to_expr(list(collections), optimize_graph)
    if finalize:
        from dask._expr import FinalizeCompute
        expr = FinalizeCompute(expr)
    return expr.optimize()


def collections_graph(collections: list, optimize_graph: bool, finalize: bool):
    """The graph of dask collections and each one's (nested) keys."""
    expr = collections_expression(collections, optimize_graph, finalize)
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
