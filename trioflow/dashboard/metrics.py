"""``/metrics`` in Prometheus's text format, with dask's metric names where
the concept is the same (so existing dashboards and alerts keep working) and
``trioflow_...`` for what dask lacks.  See docs/dashboard.md for the list."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from trioflow.dashboard.feed import count_tasks

#: the task states dask reports under dask_scheduler_tasks, always present
SCHEDULER_TASK_STATES = ("released", "waiting", "queued", "processing", "memory", "erred",
                         "no-worker")
WORKER_TASK_STATES = ("waiting", "fetch", "ready", "executing", "memory", "erred")


class _Families:
    """A collector that yields families built beforehand (so the async
    counting happens before prometheus_client's synchronous collect)."""

    def __init__(self, families):
        self._families = families

    def collect(self):
        return iter(self._families)


def _single(kind: str, name: str, documentation: str, value):
    family = (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(name, documentation)
    family.add_metric([], value)
    return family


def _exposition(families) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


async def scheduler_metrics(scheduler) -> bytes:
    state = scheduler.state
    counts = await count_tasks(state.tasks)
    by_state: dict = dict.fromkeys(SCHEDULER_TASK_STATES, 0)
    for per_prefix in counts.values():
        for task_state, n in per_prefix.items():
            by_state[task_state] = by_state.get(task_state, 0) + n

    workers = _single("gauge", "dask_scheduler_workers",
                      "Number of workers connected", len(state.workers))
    clients = _single("gauge", "dask_scheduler_clients",
                      "Number of clients connected", len(scheduler.clients))
    tasks = GaugeMetricFamily("dask_scheduler_tasks", "Number of tasks known by the scheduler",
                              labels=["state"])
    for task_state, n in by_state.items():
        tasks.add_metric([task_state], n)
    forgotten = _single("counter", "dask_scheduler_tasks_forgotten",
                        "Total number of tasks the scheduler has forgotten",
                        getattr(state, "n_forgotten", 0))
    prefixes = GaugeMetricFamily("trioflow_scheduler_prefix_tasks",
                                 "Tasks the scheduler holds now, per key prefix and state",
                                 labels=["task_prefix_name", "state"])
    for prefix, per_state in counts.items():
        for task_state, n in per_state.items():
            prefixes.add_metric([prefix, task_state], n)
    threads = _single("gauge", "trioflow_scheduler_worker_threads",
                      "Threads of all connected workers",
                      sum(ws.nthreads for ws in state.workers.values()))
    processing = GaugeMetricFamily("trioflow_scheduler_worker_processing",
                                   "Tasks assigned to each worker and not yet done",
                                   labels=["worker"])
    managed = GaugeMetricFamily("trioflow_scheduler_worker_managed_bytes",
                                "Bytes of results each worker holds, as the scheduler counts them",
                                labels=["worker"])
    for address, ws in state.workers.items():
        processing.add_metric([address], len(ws.processing))
        managed.add_metric([address], ws.nbytes)
    return _exposition([workers, clients, tasks, forgotten, prefixes, threads, processing,
                        managed])


def worker_metrics(worker) -> bytes:
    m = worker.metrics()
    tasks = GaugeMetricFamily("dask_worker_tasks", "Number of tasks at the worker",
                              labels=["state"])
    by_state = dict.fromkeys(WORKER_TASK_STATES, 0)
    by_state.update(m["tasks"])
    for task_state, n in by_state.items():
        tasks.add_metric([task_state], n)
    threads = _single("gauge", "dask_worker_threads", "Number of worker threads", m["nthreads"])
    # managed: results in memory; spilled: results the worker wrote to disk
    managed, spilled = m.get("managed", sum(_sizes(worker))), m.get("spilled_bytes", 0)
    memory = GaugeMetricFamily("dask_worker_memory_bytes", "Memory breakdown",
                               labels=["type"])
    memory.add_metric(["managed"], managed)
    memory.add_metric(["unmanaged"], max(0, m["memory"] - managed))
    memory.add_metric(["spilled"], spilled)
    limit = _single("gauge", "trioflow_worker_memory_limit_bytes",
                    "The worker's memory limit (0: none)", m["memory_limit"])
    incoming_count = _single("counter", "dask_worker_transfer_incoming_count",
                             "Total number of data transfers from other workers",
                             m["transfer_count"])
    incoming_bytes = _single("counter", "dask_worker_transfer_incoming_bytes",
                             "Total bytes fetched from other workers", m["transfer_bytes"])
    incoming_seconds = _single("counter", "trioflow_worker_transfer_incoming_seconds",
                               "Total seconds spent fetching from other workers",
                               m["transfer_seconds"])
    executing = _single("gauge", "trioflow_worker_executing", "Tasks running now", m["executing"])
    return _exposition([tasks, threads, memory, limit, incoming_count, incoming_bytes,
                        incoming_seconds, executing])


def _sizes(worker):
    state = worker.state
    if state is None:
        return []
    return [ts.nbytes for ts in list(state.tasks.values()) if ts.state == "memory"]
