"""Keeping Python's cyclic garbage collector from stopping the scheduler.

A full collection (generation 2) walks every object the process holds and
stops every thread meanwhile: with a few hundred thousand tasks' records
that took 0.6-0.8 s at a time, several times while one large graph came in
(``benchmarks/scaling.py`` with a trio instrument timing each task step),
and no client or worker was served during it. A task's records are freed by
reference counting when the core forgets it, so they need no collector: once
the scheduler has taken many tasks it moves everything the process holds
into the collector's permanent generation (``gc.freeze``), which later
collections skip, and it lets the collector see everything again once it
holds no task at all, when a full collection is cheap.

``gc.freeze`` is process-wide: in a process that embeds the scheduler
(``Client(processes=False)``) the program's own objects are frozen with the
scheduler's until it is idle again; a cycle among them is then collected
late, not lost.
"""
from __future__ import annotations

import gc

#: tasks taken since the last freeze that make the next one worth it
FREEZE_AFTER = 50_000


class collector_paused:
    """Automatic collections off while a graph is built: materializing a
    dask graph allocates millions of objects, which set off full
    collections that walked the whole heap, loop and all (what the build
    makes is freed by reference counting).  Nested uses share one pause."""

    depth = 0

    def __enter__(self):
        if collector_paused.depth == 0:
            self._was_enabled = gc.isenabled()
            gc.disable()
        collector_paused.depth += 1

    def __exit__(self, *exc_info):
        collector_paused.depth -= 1
        if collector_paused.depth == 0 and self._was_enabled:
            gc.enable()


class HeapFreezer:
    def __init__(self):
        self.frozen = False
        self._taken = 0

    def took(self, n_tasks: int) -> None:
        """The scheduler took ``n_tasks`` new tasks."""
        self._taken += n_tasks
        if self._taken >= FREEZE_AFTER:
            self._taken = 0
            gc.freeze()
            self.frozen = True

    def idle(self) -> None:
        """The scheduler holds no task: let the collector see everything."""
        self._taken = 0
        if self.frozen:
            self.frozen = False
            gc.unfreeze()
