"""``Scheduler.workers``: what dask's scheduler offers as its workers, for
code that looks at an in-process scheduler (``cluster.scheduler.workers``,
``client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.workers)``).

A read-only mapping of address -> ``WorkerView``: the scheduler's own
record of the worker (``address``, ``name``, ``nthreads``,
``memory_limit``, ``resources``, ``processing``, ``has_what``, ``nbytes``
as in dask's ``WorkerState``) with what the worker said of itself when it
joined (``pid``, ``host``, ``nanny``).
"""
from __future__ import annotations

from collections.abc import Mapping


class WorkerView:
    __slots__ = ("_state", "_info")

    def __init__(self, state, info: dict):
        self._state = state
        self._info = info

    @property
    def pid(self):
        return self._info.get("pid")

    @property
    def host(self):
        return self._info.get("host") or self._state.address.split("://")[-1].rsplit(":", 1)[0]

    @property
    def nanny(self):
        return self._info.get("nanny")

    @property
    def status(self):
        return self._state.status  # "running", or "paused" past its memory's pause threshold

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in ("send", "request", "send_request", "close"):
            raise AttributeError(f"Scheduler.workers[address] is the worker's state, as in "
                                 f"dask; its connection is Scheduler.worker_comms[address] "
                                 f"(no {name!r} here)")
        return getattr(self._state, name)

    def __dir__(self):
        return sorted({"pid", "host", "nanny", "status",
                       *(n for n in type(self._state).__slots__ if not n.startswith("_"))})

    def __repr__(self):
        return (f"<WorkerState {self._state.address!r}, name: {self._state.name}, "
                f"memory: {len(self._state.has_what)}, "
                f"processing: {len(self._state.processing)}>")


class WorkersView(Mapping):
    """address -> WorkerView, live: it follows the scheduler's state."""

    def __init__(self, state, info: dict):
        self._state = state
        self._info = info

    def __getitem__(self, address) -> WorkerView:
        return WorkerView(self._state.workers[address], self._info.get(address, {}))

    def __iter__(self):
        return iter(list(self._state.workers))

    def __len__(self):
        return len(self._state.workers)

    def __repr__(self):
        return f"{{{', '.join(f'{a!r}: {self[a]!r}' for a in self)}}}"
