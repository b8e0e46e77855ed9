"""The base of the client-side primitives: a name shared by every client,
the client (and its port) to talk through, travel by name, and the
``timeout=`` every blocking call takes."""
from __future__ import annotations

import uuid

from trioflow.client.task_context import get_client
from trioflow.utils import timeout_seconds as seconds  # noqa: F401 - the primitives' name for it


def find_client(client=None):
    """``client``, or the one ``get_client()`` finds (the worker's, in a task)."""
    return get_client() if client is None else client


class UsesClient:
    """The client an object talks through, and its port.

    An object unpickled on a worker (passed to a task) has none
    (``_client`` is None) and finds it on first use with ``get_client()`` —
    inside a task that is the worker's client, so it is resolved in the
    task, not where arguments are loaded."""

    _client = None

    @property
    def client(self):
        if self._client is None:
            self._client = find_client()
        return self._client

    @property
    def port(self):
        """The client's port: everything this object does to the cluster goes through it."""
        return self.client.port


#: attributes dask.distributed's primitives have and trioflow's have not,
#: with what to do instead
DASK_ONLY = {
    "loop": "trioflow runs on trio, not a tornado IOLoop: call the methods, which "
            "return awaitables on an asynchronous client",
    "sync": "call the methods directly: on an asynchronous client they return awaitables",
    "scheduler": "use .client.scheduler (the address and identity of the scheduler)",
    "register": "a trioflow primitive is made on the scheduler on first use: there is "
                "nothing to register",
}


class ClientObject(UsesClient):
    """Base of the client-side primitives: a name shared by every client, and
    the client to talk through."""

    _prefix = "primitive"

    @property
    def asynchronous(self) -> bool:
        """Whether this object's methods return awaitables (its client's)."""
        return self.client.asynchronous

    def __getattr__(self, name):
        hint = DASK_ONLY.get(name)
        if hint is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        raise AttributeError(f"trioflow's {type(self).__name__} has no {name!r}, which "
                             f"dask's has: {hint}")

    def __init__(self, name=None, client=None):
        self.name = name if name is not None else f"{self._prefix}-{uuid.uuid4().hex}"
        self._client = find_client(client)

    def _state_for_pickle(self) -> dict:
        return {}

    def __await__(self):
        """``await Queue(...)`` (and the other primitives) gives the object,
        as in dask, where awaiting creates it on the scheduler; trioflow
        creates it there on first use, so there is nothing to wait for."""
        return _itself(self).__await__()

    def __reduce__(self):
        return (_rebuild, (type(self), self.name, self._state_for_pickle()))

    def _rebuilt(self) -> None:
        """Called on a freshly unpickled object (``name`` and the pickled state set)."""

    def __repr__(self):
        return f"<{type(self).__name__}: {self.name}>"


async def _itself(obj):
    return obj


def _rebuild(cls, name, state):
    obj = cls.__new__(cls)
    obj.name = name
    obj._client = None
    obj.__dict__.update(state)
    obj._rebuilt()
    return obj
