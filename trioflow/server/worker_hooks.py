"""What a worker takes from the layers above the servers, given to it rather
than imported: the server layer must not import the client.

- ``client_factory(worker)`` returns the client that tasks on ``worker`` get
  from ``get_client()``/``worker_client()``, not yet started: an async
  context manager the worker enters on first use and leaves when it closes.
- ``actor_handle(instance, worker_address, key)`` returns what dependents
  and clients get in place of an actor task's result (the instance stays
  on the worker, in ``Worker.actors``).

``trioflow/__init__`` registers the defaults (the client layer's ``Client``
and ``Actor``); ``Worker(hooks=WorkerHooks(...))`` gives a worker others.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class WorkerHooks:
    client_factory: Callable | None = None
    actor_handle: Callable | None = None

    def make_client(self, worker):
        if self.client_factory is None:
            raise RuntimeError(f"{worker!r} has no client factory, so its tasks cannot get a "
                               "client: import trioflow, or give Worker(hooks=WorkerHooks("
                               "client_factory=...))")
        return self.client_factory(worker)

    def wrap_actor(self, instance, address: str, key):
        if self.actor_handle is None:
            raise RuntimeError(f"task {key!r} is an actor, but this worker has no actor_handle "
                               "hook to give it out with: import trioflow first")
        return self.actor_handle(instance, address, key)


_defaults = WorkerHooks()


def set_default_hooks(**hooks) -> None:
    """Change the hooks of workers made from now on without ``hooks=``."""
    global _defaults
    _defaults = dataclasses.replace(_defaults, **hooks)


def default_hooks() -> WorkerHooks:
    return _defaults
