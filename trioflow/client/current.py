"""Which client is current: the one ``as_current()`` made current in this
context, else the default one (the client made most recently with
``set_as_default=True``), and the running clients by id.

Kept apart from ``Client`` so that ``Future``, the task context and the
diagnostics can find a client without importing the class that uses them.
"""
from __future__ import annotations

import contextvars
import weakref

from trioflow.client import dask_default

#: the client ``as_current()`` made current in this context
current_client: contextvars.ContextVar = contextvars.ContextVar("trioflow_current_client",
                                                                 default=None)

_default: "weakref.ref | None" = None
_running: "weakref.WeakValueDictionary" = weakref.WeakValueDictionary()


def default_client():
    """The client made current with ``as_current()``, else the one made most
    recently with ``set_as_default=True``."""
    client = current_client.get()
    if client is not None and client.status == "running":
        return client
    client = _default() if _default is not None else None
    if client is None or client.status == "closed":
        raise ValueError("No clients found: start one with trioflow.Client()")
    return client


def client_started(client, set_as_default: bool) -> None:
    global _default
    _running[client.id] = client
    if set_as_default:
        _default = weakref.ref(client)
        dask_default.set_scheduler(client.get)


def client_closing(client) -> None:
    """Stop giving ``client`` as the default one (if it was)."""
    global _default
    if _default is not None and _default() is client:
        _default = None
        dask_default.unset_scheduler(client.get)


def running_client_of(address):
    """A running client connected to the scheduler at ``address``, or None."""
    for client in list(_running.values()):
        if client.status == "running" and client.scheduler_address == address:
            return client
    return None
