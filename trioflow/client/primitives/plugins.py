"""Worker plugins, the client side of ``Client.register_worker_plugin`` and
friends (server halves, and ``WorkerPlugin``: ``trioflow/server/extensions/plugins.py``)."""
from __future__ import annotations

import uuid

from trioflow.errors import SerializationError
from trioflow.protocol.serialize import serialize


def register_worker_plugin(port, plugin=None, name=None, nanny=None, kwargs=None):
    """``Client.register_worker_plugin``."""
    kwargs = kwargs or {}
    if nanny:
        raise NotImplementedError("nanny plugins (nanny=True) are not supported: register a "
                                  "worker plugin (nanny=False), whose setup runs in each "
                                  "worker process")
    if isinstance(plugin, type):
        plugin = plugin(**kwargs)
    elif kwargs:
        raise TypeError(f"unexpected keyword arguments {sorted(kwargs)}: they are for "
                        "instantiating a plugin class")
    if plugin is None:
        raise TypeError("register_worker_plugin needs a plugin")
    if name is None:
        name = getattr(plugin, "name", None) or f"{type(plugin).__name__}-{uuid.uuid4().hex}"
    try:
        payload = serialize(plugin)
    except Exception as exc:
        raise SerializationError(f"cannot pickle the plugin {plugin!r}: {exc}") from exc
    return port.request({"op": "register-worker-plugin", "name": name, "plugin": payload,
                         "idempotent": bool(getattr(plugin, "idempotent", False))})


def register_plugin(port, plugin, name=None, idempotent=None):
    """``Client.register_plugin``."""
    kinds = {cls.__name__ for cls in type(plugin).__mro__}
    if kinds & {"SchedulerPlugin", "NannyPlugin"} and "WorkerPlugin" not in kinds:
        raise NotImplementedError(f"{type(plugin).__name__} is a scheduler or nanny plugin, "
                                  "which trioflow does not support: make it a WorkerPlugin, "
                                  "or run code on the scheduler with client.run_on_scheduler")
    if idempotent is not None and bool(getattr(plugin, "idempotent", False)) != idempotent:
        try:
            plugin.idempotent = bool(idempotent)
        except AttributeError:
            pass
    return register_worker_plugin(port, plugin, name=name)


def unregister_worker_plugin(port, name, nanny=None):
    """``Client.unregister_worker_plugin``."""
    if nanny:
        raise NotImplementedError("nanny plugins (nanny=True) are not supported: trioflow "
                                  "has worker plugins only (nanny=False)")
    return port.request({"op": "unregister-worker-plugin", "name": name})
