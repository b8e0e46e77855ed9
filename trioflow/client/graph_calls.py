"""The Client's calls on task graphs and dask collections: ``get``,
``compute`` and ``persist``, built as dask.distributed builds them (see
``graphs.collections_expression``).  Mixed into ``Client``."""
from __future__ import annotations

import sys
from collections.abc import Iterator

from trioflow.client.future import Future
from trioflow.client.graphs import (
    as_dict, collections_expression, flatten, graph_tasks, is_dask_collection, keys_of_target)
from trioflow.client.options import graph_options
from trioflow.config import config_value
from trioflow.protocol.dask_graph import dumps_expression, graph_messages


class GraphsMixin:
    def get(self, dsk, keys, workers=None, allow_other_workers=None, resources=None,
            sync=True, asynchronous=None, direct=None, retries=None, priority=0,
            fifo_timeout="60s", actors=None, **kwargs):
        """Compute a task graph (a dict of key -> task tuple or value) and
        return the values of ``keys`` (one key or a nested list of keys), or
        futures for them in the same shape with ``sync=False``."""
        flat = list(flatten(keys))
        futures = self._submit_graph(dsk, flat, workers, allow_other_workers, resources,
                                     retries, priority, call="get()")
        if not sync:
            return _pack_keys(keys, {f.key: f for f in futures})
        return self._sync(self._get_values, keys, flat, futures, asynchronous=asynchronous)

    async def _get_values(self, keys, flat, futures):
        try:
            values = await self._core.gather(futures)
        finally:
            for f in futures:
                f.release()
        by_key = {f.key: values[f.key] for f in futures}
        return _pack_keys(keys, by_key)

    def _submit_graph(self, dsk, wanted_keys, workers=None, allow_other_workers=None,
                      resources=None, retries=None, priority=0, call="get()",
                      finalized=None) -> list:
        """Send graph ``dsk`` and return futures for ``wanted_keys``.  The
        mapping forms of ``workers=``/``resources=`` restrict the keys they
        name; ``finalized`` maps a collection's own keys to the key of its
        finalizing task (compute), which is restricted with them.

        ``dsk`` may be a dask expression (compute, persist): then, unless a
        mapping names keys of it, the expression itself goes to a scheduler
        that can build its graph, as dask.distributed sends it, and the call
        returns without the per-task work of materializing the graph."""
        options, per_key = graph_options(workers, resources, retries, priority,
                                         allow_other_workers, call)
        if not per_key and _is_expression(dsk) and self._core.scheduler_builds_graphs and (
                config_value("trioflow.graph-build", "scheduler") != "client"):
            payload = dumps_expression(dsk)
            futures = [Future(k, self, inform=False) for k in wanted_keys]
            self._core.send({"op": "update-graph-expr", "expr": payload,
                             "wanted": list(wanted_keys), "options": options})
            return futures
        dsk = as_dict(dsk)
        overrides: dict = {}
        for target, extra in per_key:
            keys = keys_of_target(target)
            found = [k for k in keys if k in dsk]
            found += [finalized[k] for k in keys if finalized and k in finalized]
            if not found:
                raise ValueError(f"{call}: the workers=/resources= mapping names {target!r:.80}, "
                                 "which is not part of what is computed")
            for k in found:
                overrides.setdefault(k, {}).update(extra)
        tasks = graph_tasks(self, dsk, options, overrides)
        futures = [Future(k, self, inform=False) for k in wanted_keys]
        send_graph(self._core.send, tasks, list(wanted_keys))
        return futures

    # ---------------------------------------------------------------- dask collections

    def compute(self, collections, sync=False, optimize_graph=True, workers=None,
                allow_other_workers=False, resources=None, retries=0, priority=0,
                fifo_timeout="60s", actors=None, traverse=True, **kwargs):
        """Start computing dask collections; return a Future for each (a single
        one for a single collection).  ``sync=True`` returns the results.
        With ``traverse`` (the default) a list, tuple, set, dict or iterator
        among ``collections`` is computed as one task, with the dask
        collections inside it replaced by their values; anything else that is
        not a dask collection is returned unchanged."""
        singleton = not isinstance(collections, (list, tuple, set, frozenset))
        items = [collections] if singleton else list(collections)
        if traverse:
            items = [_dask().delayed(item) if isinstance(item, (list, tuple, set, dict, Iterator))
                     else item for item in items]
        variables = [item for item in items if is_dask_collection(item)]
        computed = iter(())
        if variables:
            expr = collections_expression(variables, optimize_graph, finalize=True)
            keys = expr.__dask_keys__()
            final = list(flatten(keys))  # one key per collection, in their order
            finalized = {k: out for v, out in zip(variables, final)
                         for k in flatten(v.__dask_keys__())} if isinstance(
                             workers, dict) or isinstance(resources, dict) else None
            computed = iter(self._submit_graph(expr, final, workers, allow_other_workers,
                                               resources, retries, priority,
                                               call="compute()", finalized=finalized))
        results = [next(computed) if is_dask_collection(item) else item for item in items]
        if sync:
            results = self.gather(results)
        return results[0] if singleton else results

    def persist(self, collections, optimize_graph=True, workers=None,
                allow_other_workers=None, resources=None, retries=None, priority=0,
                fifo_timeout="60s", actors=None, **kwargs):
        """Start computing dask collections and return them rebuilt on futures:
        computing the result later reuses the cluster's copies.  Objects that
        are not dask collections are returned unchanged."""
        singleton = not isinstance(collections, (list, tuple, set, frozenset))
        items = [collections] if singleton else list(collections)
        variables = [item for item in items if is_dask_collection(item)]
        rebuilt = iter(())
        if variables:
            expr = collections_expression(variables, optimize_graph, finalize=False)
            keys = expr.__dask_keys__()
            names = list(flatten(keys))
            futures = self._submit_graph(expr, names, workers, allow_other_workers, resources,
                                         retries, priority, call="persist()")
            by_key = dict(zip(names, futures))
            rebuilt = iter([
                rebuild({k: by_key[k] for k in flatten(item_keys)}, *extra)
                for (rebuild, extra), item_keys in zip(
                    (v.__dask_postpersist__() for v in variables), keys, strict=True)])
        out = [next(rebuilt) if is_dask_collection(item) else item for item in items]
        return out[0] if singleton else out


def _pack_keys(keys, by_key):
    if isinstance(keys, list):
        return [_pack_keys(k, by_key) for k in keys]
    return by_key[keys]


def _dask():
    import dask
    import dask.base  # noqa: F401
    return dask


def _is_expression(dsk) -> bool:
    expr_module = sys.modules.get("dask._expr")
    return expr_module is not None and isinstance(dsk, expr_module.Expr)


def send_graph(send, tasks: list, wanted: list):
    """Send a graph built here (see ``graph_messages``)."""
    for msg in graph_messages(tasks, wanted):
        send(msg)
