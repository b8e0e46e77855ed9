"""The cluster administration methods of ``Client`` whose logic lives with
a coordination primitive's user side (``trioflow/client/primitives/``):
datasets, event logs, metadata, worker plugins, uploads.  Each is a plain
method handing the client's port to that module."""
from __future__ import annotations

from trioflow.client.primitives import datasets as _datasets
from trioflow.client.primitives import event_log as _event_log
from trioflow.client.primitives import metadata as _metadata
from trioflow.client.primitives import plugins as _plugins
from trioflow.client.primitives import uploads as _uploads
from trioflow.client.primitives.datasets import NO_DEFAULT as _no_default


class AdminMixin:
    # ---------------------------------------------------------------- datasets

    def publish_dataset(self, *args, name=None, override=False, **kwargs):
        """Publish named datasets to the scheduler, for other clients to
        ``get_dataset``: ``publish_dataset(my_data=futures)``,
        ``publish_dataset(futures, name="my_data")`` or
        ``publish_dataset({"my_data": futures})``.

        The scheduler keeps the data of the futures inside alive until the
        dataset is unpublished, also after this client's futures are gone.  Raises
        ``KeyError`` if a name is taken, unless ``override=True``."""
        return _datasets.publish_dataset(self.port, args, name, override, kwargs)

    def get_dataset(self, name, default=_no_default, **kwargs):
        """The dataset published under ``name`` (a list of names gives a list),
        with its futures belonging to this client.  A missing name raises
        ``KeyError``, or gives ``default`` if one is passed."""
        return _datasets.get_dataset(self.port, name, default)

    def list_datasets(self, **kwargs):
        """Names of the datasets published on the scheduler."""
        return _datasets.list_datasets(self.port)

    def unpublish_dataset(self, name, **kwargs):
        """Remove the dataset ``name`` (or each of a list of names); its data is
        freed once no client holds futures of it.  Unknown names are ignored."""
        return _datasets.unpublish_dataset(self.port, name)

    @property
    def datasets(self):
        """The published datasets as a mapping: ``client.datasets["x"] = futures``
        publishes (replacing), ``client.datasets["x"]`` gets, ``del`` unpublishes.
        For blocking clients."""
        return _datasets.Datasets(self)

    # ---------------------------------------------------------------- event logs

    def log_event(self, topic, msg):
        """Log ``msg`` (msgpack-serializable) under ``topic``, or under each of a
        list of topics, with the scheduler's timestamp.  Inside a task, use the
        worker's client: ``get_client().log_event(...)``."""
        return _event_log.log_event(self.port, topic, msg)

    def get_events(self, topic=None):
        """The logged ``(timestamp, msg)`` events of ``topic``, oldest first; with
        no topic, a dict of every topic's events."""
        return _event_log.get_events(self.port, topic)

    def subscribe_topic(self, topic, handler):
        """Call ``handler(event)`` for every event logged under ``topic`` from now
        on; ``event`` is ``(timestamp, msg)``.  A coroutine function is awaited.
        One handler per topic: subscribing again replaces it."""
        _event_log.subscribe_topic(self, topic, handler)

    def unsubscribe_topic(self, topic):
        """Stop calling the handler of ``topic``."""
        _event_log.unsubscribe_topic(self, topic)

    def events(self, topic) -> _event_log.EventStream:
        """Follow ``topic`` as an iterator of its new events: ``async with
        client.events("alerts") as stream: async for timestamp, msg in stream``
        (``with`` and ``for`` with a blocking client)."""
        return _event_log.EventStream(self, topic)

    # ---------------------------------------------------------------- metadata

    def set_metadata(self, key, value):
        """Store ``value`` (msgpack-serializable) on the scheduler under ``key``.
        A list of keys is a path into nested dicts, made as needed:
        ``set_metadata(["a", "b", "c"], 1)`` sets ``metadata["a"]["b"]["c"]``."""
        return _metadata.set_metadata(self.port, key, value)

    def get_metadata(self, keys, default=_no_default):
        """The value stored under ``keys`` (a key, or a list/tuple path into
        nested dicts).  Missing: ``default`` if given, else ``KeyError``."""
        return _metadata.get_metadata(self.port, keys, default)

    # ---------------------------------------------------------------- worker plugins, uploads

    def register_worker_plugin(self, plugin=None, name=None, nanny=None, **kwargs):
        """Register a worker plugin on all current and future workers: its
        ``setup(worker)`` runs on each (``teardown(worker)`` on unregistering and
        when a worker closes).  A class is instantiated with ``kwargs``.  ``name``
        (default: ``plugin.name``, else a random one) makes it replaceable.
        Returns ``{worker address: {"status": "OK"}}``; a failing ``setup``
        raises its exception here.  Worker plugins are reachable in tasks as
        ``get_worker().plugins[name]``."""
        return _plugins.register_worker_plugin(self.port, plugin, name, nanny, kwargs)

    def register_plugin(self, plugin, name=None, idempotent=None):
        """Register a plugin; trioflow has worker plugins (see
        ``register_worker_plugin``), not scheduler or nanny plugins."""
        return _plugins.register_plugin(self.port, plugin, name, idempotent)

    def unregister_worker_plugin(self, name, nanny=None):
        """Remove the worker plugin ``name``: its ``teardown(worker)`` runs on
        every worker.  Unknown names raise ``ValueError``."""
        return _plugins.unregister_worker_plugin(self.port, name, nanny)

    def upload_file(self, filename, load: bool = True, **kwargs):
        """Send a local .py, .zip, .egg or .pyz file to every worker, now and
        joining later, where tasks can import it.  ``load=True`` imports it on
        each worker right away (reloading a module already imported), so an
        import error is raised here.  Uploading a file of the same name again
        replaces it.  Returns ``{worker address: {"status": "OK"}}``."""
        return _uploads.upload_file(self.port, filename, load)
