"""The server halves of the coordination primitives: one module per
primitive, each a ``SchedulerExtension`` (and, for Pub/Sub, actors, plugins
and uploads, a ``WorkerExtension``; see ``base``).  Their user objects live
in ``trioflow/client/primitives/``; the ops both halves agree on in
``trioflow/protocol/primitives.py``.

A server is given the classes to build (``Scheduler(extensions=...)``,
``Worker(extensions=...)``); without that it builds the lists below, in
their order.
"""
from __future__ import annotations


def scheduler_extensions() -> list:
    """The scheduler halves a ``Scheduler`` builds by default."""
    from trioflow.server.extensions.channels import ChannelExtension
    from trioflow.server.extensions.datasets import DatasetExtension
    from trioflow.server.extensions.event import EventExtension
    from trioflow.server.extensions.event_log import EventLogExtension
    from trioflow.server.extensions.metadata import MetadataExtension
    from trioflow.server.extensions.plugins import PluginSchedulerExtension
    from trioflow.server.extensions.pubsub import PubSubSchedulerExtension
    from trioflow.server.extensions.queue import QueueExtension
    from trioflow.server.extensions.semaphore import LockExtension, SemaphoreExtension
    from trioflow.server.extensions.variable import VariableExtension
    return [QueueExtension, VariableExtension, LockExtension, EventExtension,
            SemaphoreExtension, ChannelExtension, PubSubSchedulerExtension, DatasetExtension,
            EventLogExtension, MetadataExtension, PluginSchedulerExtension]


def worker_extensions() -> list:
    """The worker halves a ``Worker`` builds by default (handlers for what
    peers, clients and the scheduler halves send straight to a worker)."""
    from trioflow.server.extensions.actors import ActorWorkerExtension
    from trioflow.server.extensions.plugins import PluginWorkerExtension
    from trioflow.server.extensions.pubsub import PubSubWorkerExtension
    from trioflow.server.extensions.uploads import UploadWorkerExtension
    return [ActorWorkerExtension, PluginWorkerExtension, UploadWorkerExtension,
            PubSubWorkerExtension]


def named(classes) -> list:
    """``[(name, class)]`` of what a server's ``extensions=`` gives: a list
    of classes, or a dict ``{name: class}`` as dask's ``Scheduler`` takes.
    TypeError, at once, for anything else."""
    pairs = list(classes.items()) if isinstance(classes, dict) else [
        (getattr(cls, "name", None) or getattr(cls, "__name__", None), cls) for cls in classes]
    for _, cls in pairs:
        if not isinstance(cls, type):
            raise TypeError(f"extensions= takes extension classes, not {cls!r}")
    return pairs


def build(pairs, server) -> tuple[dict, dict]:
    """``({name: instance}, {op: handler})`` for ``server`` of ``named()``'s pairs."""
    built = {name: cls(server) for name, cls in pairs}
    return built, {op: handler for ext in built.values() for op, handler in ext.handlers.items()}


def preload() -> None:
    """Import every default extension now rather than when the first
    scheduler or worker starts (a LocalCluster's module calls this: its
    scheduler runs in the importing process)."""
    scheduler_extensions()
    worker_extensions()
