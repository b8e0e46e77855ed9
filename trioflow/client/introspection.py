"""Client calls that look into the cluster or manage it: versions, logs,
task stream, call stacks, memory, processing, retiring workers, cluster dumps,
and the 'current client' context.  Mixed into ``Client``."""
from __future__ import annotations

import contextlib
import gzip
import importlib.metadata
import inspect
import platform

from trioflow.client.current import current_client, default_client
from trioflow.client.options import optional_workers
from trioflow.core.keys import key_prefix

_VERSION_PACKAGES = ("trioflow", "trio", "anyio", "msgpack", "cloudpickle", "tblib", "psutil")
#: what must match everywhere for the cluster to work
_MUST_MATCH = ("python", "trioflow", "msgpack", "cloudpickle")


def versions(packages=()) -> dict:
    found = {"python": platform.python_version()}
    for name in (*_VERSION_PACKAGES, *packages):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _versions_on_worker(packages=(), dask_worker=None):
    return versions(packages)


def _versions_on_scheduler(packages=(), dask_scheduler=None):
    return versions(packages)


def _recent_logs(n=None, names=("trioflow",)):
    from trioflow.server.logs import recent
    return recent(n, names)


def _task_stream(dask_worker=None):
    return list(dask_worker.task_stream)


def _worker_profile(start, stop, key, server, dask_worker=None):
    return dask_worker.get_profile(start, stop, key, server)


def _scheduler_profile(start, stop, dask_scheduler=None):
    from trioflow.server.sampler import require_server_profiles
    require_server_profiles()
    return dask_scheduler.profiler.get(start, stop, server=True)


def _call_stacks(keys=None, dask_worker=None):
    return dask_worker.call_stacks(keys)


class IntrospectionMixin:
    # ---------------------------------------------------------------- current client

    @contextlib.contextmanager
    def as_current(self):
        """Within the block, ``Client.current()`` and ``default_client()`` give this client."""
        token = current_client.set(self)
        try:
            yield self
        finally:
            current_client.reset(token)

    @classmethod
    def current(cls, allow_global=True):
        """The client made current by ``as_current()``; else (with
        ``allow_global``) the default client.  Raises ValueError if none."""
        client = current_client.get()
        if client is not None and client.status == "running":
            return client
        if allow_global:
            return default_client()
        raise ValueError("no current client: use 'with client.as_current():'")

    def start(self, **kwargs):
        """Start the client: a no-op for a blocking client (it starts when
        made); an awaitable for an asynchronous one."""
        if self._asynchronous:
            return self._start_async()
        return None

    # ---------------------------------------------------------------- graphs

    @staticmethod
    def collections_to_dsk(collections, *args, **kwargs) -> dict:
        """The merged task graph (a dict) of dask collections."""
        from trioflow.client.graphs import as_dict
        graph: dict = {}
        for collection in collections:
            graph.update(as_dict(collection.__dask_graph__()))
        return graph

    def normalize_collection(self, collection):
        """The collection with each task whose key this client already holds a
        future for replaced by that future (so it is not computed again)."""
        from trioflow.client.future import Future
        from trioflow.client.graphs import as_dict
        graph = as_dict(collection.__dask_graph__())
        held = [k for k in graph if k in self._core.futures]
        if not held:
            return collection
        graph.update({k: Future(k, self, inform=False) for k in held})
        rebuild, extra = collection.__dask_postpersist__()
        return rebuild(graph, *extra)

    # ---------------------------------------------------------------- looking in

    def get_versions(self, check=False, packages=None):
        """Python and package versions of the client, the scheduler and each
        worker.  ``check=True`` raises ValueError if what must match does not."""
        return self._sync(self._get_versions, tuple(packages or ()), check)

    async def _get_versions(self, packages, check):
        result = {"client": versions(packages),
                  "scheduler": await self._run_on_scheduler(_versions_on_scheduler,
                                                            (packages,), {}),
                  "workers": await self._run(_versions_on_worker, (packages,), {}, None,
                                             "raise")}
        if check:
            mismatched = {
                name for name in _MUST_MATCH
                if len({result["client"][name], result["scheduler"][name],
                        *(w[name] for w in result["workers"].values())}) > 1}
            if mismatched:
                raise ValueError(f"version mismatch across the cluster for {sorted(mismatched)}")
        return result

    def nbytes(self, keys=None, summary=True, **kwargs):
        """Bytes in memory per key, or per key prefix with ``summary=True``."""
        sizes = self._request({"op": "nbytes", "keys": None if keys is None else list(keys)})
        return sizes if not summary else _then(sizes, _per_prefix)

    def story(self, *keys_or_stimuli, on_error="raise"):
        """What happened to these keys (or futures, or stimulus ids), on the
        scheduler and on every worker, merged in time order: a list of
        ``(where, key, start, finish, stimulus_id, time)`` where ``where`` is
        ``"scheduler"`` or a worker's address and ``time`` is seconds since
        the epoch.  ``on_error="ignore"`` leaves out workers that do not answer."""
        keys = [getattr(k, "key", k) if getattr(k, "_trioflow_is_future", False) else k
                for k in keys_or_stimuli]
        return self._sync(self._story, keys, on_error)

    async def _story(self, keys, on_error):
        story = await self._core.request({"op": "story", "keys": keys, "on_error": on_error})
        return [tuple(entry) for entry in story]

    def processing(self, workers=None):
        """Keys each worker is running or has been told to run."""
        workers = optional_workers(workers, "processing()")
        return self._request({"op": "processing", "workers": workers})

    def call_stack(self, futures=None, keys=None):
        """Stacks of the running tasks (all, or those of ``futures``/``keys``)
        on every worker: ``{address: {key: [frame lines]}}``."""
        wanted = None
        if futures is not None or keys is not None:
            from trioflow.client.containers import futures_of
            wanted = [f.key for f in futures_of(futures or [])] + list(keys or [])
        return _then(self.run(_call_stacks, wanted), lambda stacks: {
            address: found for address, found in stacks.items() if found})

    def get_task_stream(self, start=None, stop=None, count=None, plot=False,
                        filename="task-stream.html", bokeh_resources=None):
        """Records of recently run tasks: key, worker, thread, start/stop
        times (epoch seconds), status.  ``plot=True`` returns ``(records,
        html)``, a self-contained HTML page drawing them; ``plot="save"``
        also writes it to ``filename``.  ``bokeh_resources`` is accepted and
        unused (trioflow's plots need no bokeh)."""
        if plot not in (False, True, "save"):
            raise ValueError(f"plot must be False, True or 'save', not {plot!r}")
        return _then(self.run(_task_stream), lambda streams: _chosen_records(
            streams, start, stop, count, plot, filename))

    # ---------------------------------------------------------------- logs

    def get_scheduler_logs(self, n=None):
        """The scheduler process's recent log records as (level, message)."""
        return self.run_on_scheduler(_recent_logs, n, ("trioflow.scheduler", "trioflow.comm"))

    def get_worker_logs(self, n=None, workers=None, nanny=False):
        """Each worker process's recent log records as (level, message).  With
        in-process workers all workers share their process's records."""
        names = ("trioflow.nanny",) if nanny else ("trioflow.worker", "trioflow.comm")
        return self.run(_recent_logs, n, names, workers=workers)

    def dump_cluster_state(self, filename="dask-cluster-dump", exclude=(), format="msgpack"):
        """Write what the scheduler and every worker know (identities, versions,
        task states, recent logs) to ``filename.msgpack.gz`` or ``filename.yaml``."""
        if self._asynchronous:
            raise TypeError("dump_cluster_state is available on blocking clients only: make "
                            "one with Client(address) next to the asynchronous one")
        state = {
            "scheduler": self.scheduler_info(),
            "scheduler_tasks": self.run_on_scheduler(_scheduler_task_states),
            "workers": self.run(_worker_state_dump),
            "versions": self.get_versions(),
            "scheduler_logs": self.get_scheduler_logs(),
        }
        for name in exclude or ():
            state.pop(name, None)
        if format == "msgpack":
            import msgpack
            path = f"{filename}.msgpack.gz"
            with gzip.open(path, "wb") as f:
                f.write(msgpack.packb(state, default=str))
        elif format == "yaml":
            import yaml
            path = f"{filename}.yaml"
            with open(path, "w") as f:
                yaml.safe_dump(_plain(state), f)
        else:
            raise ValueError(f"format must be 'msgpack' or 'yaml', not {format!r}")
        return path

    # ---------------------------------------------------------------- managing

    def retire_workers(self, workers=None, close_workers=True, **kwargs):
        """Move the data only these workers hold to the others, then close
        them (nannies stop too).  Returns the retired workers' info."""
        workers = optional_workers(workers, "retire_workers()")
        return self._request({"op": "retire", "workers": workers,
                              "close": bool(close_workers)})

    def run_coroutine(self, function, *args, **kwargs):
        """Run an ``async def`` function on every worker (as ``run`` does)."""
        return self.run(function, *args, **kwargs)

    def profile(self, key=None, start=None, stop=None, workers=None, merge_workers=True,
                plot=False, filename=None, server=False, scheduler=False):
        """Statistical profile of recent work: the call stacks each worker's
        sync tasks were in, sampled every 10 ms, counted into a tree (dask's
        format).  ``key``: only tasks whose key prefix is this (a function
        name such as ``"inc"``); ``start``/``stop``: epoch seconds;
        ``workers``: only these; ``merge_workers=False``: one tree per
        worker address; ``server=True``: the workers' own event-loop threads
        instead of their tasks; ``scheduler=True``: the scheduler's (these two
        only when the servers were started with TRIOFLOW_PROFILE_SERVERS=1).
        ``plot=True`` returns ``(tree, html)``, a self-contained HTML page
        drawing it; ``filename=`` (or ``plot="save"``, to
        ``dask-profile.html``) also writes that page there."""
        if filename is not None or plot == "save":
            filename = filename or "dask-profile.html"
            plot = True
        if plot and not merge_workers:
            raise ValueError("profile(plot=...) draws one merged tree: drop merge_workers=False")
        if scheduler:
            tree = self.run_on_scheduler(_scheduler_profile, start, stop)
        else:
            trees = self.run(_worker_profile, start, stop, key, server, workers=workers)
            if not merge_workers:
                return trees
            from trioflow.profiling import merge
            tree = _then(trees, lambda found: merge(*found.values()))
        return _then(tree, lambda found: _profile_plot(found, plot, filename))

    def start_ipython_workers(self, workers=None, magic_names=False, qtconsole=False,
                              qtconsole_args=None):
        """Not available: trioflow does not embed IPython kernels in its servers."""
        raise NotImplementedError(
            "start_ipython_workers: trioflow does not embed IPython kernels in workers; run "
            "code on every worker with client.run(func), or on one from a task "
            "(get_worker() inside it)")

    def start_ipython_scheduler(self, magic_name="scheduler_if_ipython", qtconsole=False,
                                qtconsole_args=None):
        """Not available: trioflow does not embed IPython kernels in its servers."""
        raise NotImplementedError(
            "start_ipython_scheduler: trioflow does not embed IPython kernels in the "
            "scheduler; run code there with client.run_on_scheduler(func), whose "
            "dask_scheduler argument is the Scheduler")


def _then(value, finish):
    """``finish(value)``; for an asynchronous client's awaitable, an awaitable of it."""
    if inspect.isawaitable(value):
        async def finished():
            return finish(await value)
        return finished()
    return finish(value)


def _per_prefix(sizes: dict) -> dict:
    totals: dict = {}
    for key, n in sizes.items():
        prefix = key_prefix(key)
        totals[prefix] = totals.get(prefix, 0) + n
    return totals


def _chosen_records(streams: dict, start, stop, count, plot, filename):
    records = [r for per_worker in streams.values() for r in per_worker]
    records.sort(key=lambda r: r["start"])
    if start is not None:
        records = [r for r in records if r["start"] >= start]
    if stop is not None:
        records = [r for r in records if r["stop"] <= stop]
    if count is not None:
        records = records[-count:]
    if not plot:
        return records
    from trioflow.client import report
    document = report.task_stream_html(records)
    if plot == "save":
        report.write(filename, document)
    return records, document


def _profile_plot(tree, plot, filename):
    if not plot:
        return tree
    from trioflow.client import report
    document = report.profile_html(tree)
    if filename is not None:
        report.write(filename, document)
    return tree, document


def _scheduler_task_states(dask_scheduler=None):
    return {str(k): ts.state for k, ts in dask_scheduler.state.tasks.items()}


def _worker_state_dump(dask_worker=None):
    return {"tasks": {str(k): ts.state for k, ts in dask_worker.state.tasks.items()},
            "busy_slots": dask_worker.state.busy_slots, "nthreads": dask_worker.nthreads,
            "memory_keys": len(dask_worker.data)}


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)

