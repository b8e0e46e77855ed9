"""Scheduler extensions: each coordination primitive is one module holding
its scheduler-side handlers and its client-side object.

They are registered here, in one place; the scheduler instantiates each at
start.  See ``base.SchedulerExtension`` for what an extension gets.
"""
from __future__ import annotations

from importlib import import_module

#: "module:Class" of every scheduler extension, loaded in this order
SCHEDULER_EXTENSIONS: list[str] = [
    "trioflow.server.extensions.queue:QueueExtension",
    "trioflow.server.extensions.variable:VariableExtension",
    "trioflow.server.extensions.semaphore:LockExtension",
    "trioflow.server.extensions.event:EventExtension",
    "trioflow.server.extensions.semaphore:SemaphoreExtension",
    "trioflow.server.extensions.channels:ChannelExtension",
    "trioflow.server.extensions.pubsub:PubSubSchedulerExtension",
    "trioflow.server.extensions.datasets:DatasetExtension",
    "trioflow.server.extensions.event_log:EventLogExtension",
    "trioflow.server.extensions.metadata:MetadataExtension",
    "trioflow.server.extensions.plugins:PluginSchedulerExtension",
]

#: "module:Class" of every worker extension (handlers for requests that peers
#: and clients send straight to a worker, e.g. Pub/Sub between workers, actors)
WORKER_EXTENSIONS: list[str] = [
    "trioflow.server.extensions.actors:ActorWorkerExtension",
    "trioflow.server.extensions.plugins:PluginWorkerExtension",
    "trioflow.server.extensions.uploads:UploadWorkerExtension",
    "trioflow.server.extensions.pubsub:PubSubWorkerExtension",
]


def _load(spec: str):
    module, _, name = spec.partition(":")
    return getattr(import_module(module), name)


def scheduler_extensions(scheduler) -> dict:
    return {cls.name: cls(scheduler) for cls in map(_load, SCHEDULER_EXTENSIONS)}


def worker_extensions(worker) -> dict:
    return {cls.name: cls(worker) for cls in map(_load, WORKER_EXTENSIONS)}


def preload() -> None:
    """Import every extension now rather than when the first scheduler or
    worker starts (a LocalCluster's module calls this: its scheduler runs in
    the importing process)."""
    for spec in SCHEDULER_EXTENSIONS + WORKER_EXTENSIONS:
        import_module(spec.partition(":")[0])
