"""The Client's calls on task graphs and dask collections: ``get``,
``compute`` and ``persist``, built as dask.distributed builds them (see
``graphs.collections_graph``).  Mixed into ``Client``."""
from __future__ import annotations

from collections.abc import Iterator

from trioflow.client.future import Future
from trioflow.client.graphs import (
    as_dict, collections_graph, flatten, graph_tasks, is_dask_collection, keys_of_target)
from trioflow.client.options import graph_options


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
        finalizing task (compute), which is restricted with them."""
        options, per_key = graph_options(workers, resources, retries, priority,
                                         allow_other_workers, call)
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
            dsk, keys = collections_graph(variables, optimize_graph, finalize=True)
            final = list(flatten(keys))  # one key per collection, in their order
            finalized = {k: out for v, out in zip(variables, final)
                         for k in flatten(v.__dask_keys__())} if isinstance(
                             workers, dict) or isinstance(resources, dict) else None
            computed = iter(self._submit_graph(dsk, final, workers, allow_other_workers,
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
            dsk, keys = collections_graph(variables, optimize_graph, finalize=False)
            names = list(flatten(keys))
            futures = self._submit_graph(dsk, names, workers, allow_other_workers, resources,
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


#: tasks per update-graph message of a large graph: the scheduler takes
#: one message in one step, ~20 us a task, so a part keeps it busy ~40 ms
GRAPH_PART = 2_000


def send_graph(send, tasks: list, wanted: list):
    """Send a graph as one update-graph message, or a large one in parts,
    dependencies first, so that the scheduler never spends more than a part's
    time on it at once.  Each part is held by the client's graph hold (the
    scheduler keeps and starts running it although nothing is wanted yet);
    once all are in, the wanted keys are asked for and the hold is let go of,
    again in parts."""
    if len(tasks) <= GRAPH_PART:
        send({"op": "update-graph", "tasks": tasks, "wanted": wanted})
        return
    tasks = _dependencies_first(tasks)
    for start in range(0, len(tasks), GRAPH_PART):
        part = tasks[start:start + GRAPH_PART]
        send({"op": "update-graph", "tasks": part, "wanted": [t["key"] for t in part],
              "hold": True})
    send({"op": "update-graph", "tasks": [], "wanted": wanted})
    for start in range(0, len(tasks), GRAPH_PART):
        send({"op": "release-keys", "keys": [t["key"] for t in tasks[start:start + GRAPH_PART]],
              "hold": True})


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
