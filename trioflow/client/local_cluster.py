"""How ``Client()`` with no address starts a cluster of its own.

The cluster classes live in ``trioflow.deploy``, a layer above the client, so
the client does not import them: ``trioflow/__init__`` registers the factory
(``LocalCluster``) here when the package is imported.
"""
from __future__ import annotations

_factory = None


def set_local_cluster(factory) -> None:
    """Make ``factory(**cluster_kwargs)`` (``asynchronous=True`` for an async
    client, which then awaits what it returns) what ``Client()`` starts."""
    global _factory
    _factory = factory


def local_cluster():
    if _factory is None:
        raise RuntimeError("Client() with no address starts a LocalCluster, but none is "
                           "registered: import trioflow (or trioflow.deploy.local) first, "
                           "or give Client a scheduler address")
    return _factory
