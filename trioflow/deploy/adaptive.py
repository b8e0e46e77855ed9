"""``cluster.adapt()``: a LocalCluster that follows its load.

Every ``interval`` the adaptive task counts the tasks that could run now
(running, queued for a thread, or waiting for a worker that fits) and
wants enough workers for each to have a thread, between ``minimum`` and
``maximum``.  It scales up at once; it scales down only after
``wait_count`` looks in a row wanted fewer, retiring idle workers first,
their data moved to the others (``LocalCluster.scale``).  The task lives
in the cluster's nursery, so closing the cluster stops it.
"""
from __future__ import annotations

import logging
import math

import trio

from trioflow.utils import parse_timedelta

logger = logging.getLogger("trioflow.deploy")

_RUNNABLE = ("processing", "queued", "no-worker")


class Adaptive:
    def __init__(self, cluster, minimum=0, maximum=math.inf, minimum_cores=None,
                 maximum_cores=None, interval="1s", wait_count=3):
        per_worker = cluster.threads_per_worker
        if minimum_cores is not None:
            minimum = max(minimum, math.ceil(minimum_cores / per_worker))
        if maximum_cores is not None:
            maximum = min(maximum, math.floor(maximum_cores / per_worker))
        if minimum < 0 or maximum < minimum:
            raise ValueError(f"adapt() needs 0 <= minimum <= maximum, got minimum={minimum}, "
                             f"maximum={maximum}")
        self.cluster = cluster
        self.minimum = minimum
        self.maximum = maximum
        self.interval = parse_timedelta(interval)
        self.wait_count = int(wait_count)
        self.log: list = []  # (time, "up"/"down", n): what it did
        self._scope: trio.CancelScope | None = None
        self._stopped = False
        self._lower = 0

    def __repr__(self):
        return f"<Adaptive minimum={self.minimum} maximum={self.maximum}>"

    def recommendation(self) -> int:
        """How many workers the load asks for now, within the bounds."""
        state = self.cluster.scheduler.state
        runnable = sum(1 for ts in state.tasks.values() if ts.state in _RUNNABLE)
        wanted = math.ceil(runnable / max(self.cluster.threads_per_worker, 1))
        return int(max(self.minimum, min(self.maximum, wanted)))

    def start(self):
        host = self.cluster._host
        if host.mode == "trio":
            self.cluster._nursery.start_soon(self._run)
        else:
            host.loop.run_sync_soon(self.cluster._nursery.start_soon, self._run)

    def stop(self):
        """Stop adapting; the workers stay as they are."""
        self._stopped = True
        scope = self._scope
        if scope is None:
            return
        host = self.cluster._host
        if host.mode == "blocking" or host.mode == "asyncio":
            try:
                host.loop.run_sync_soon(scope.cancel)
            except (RuntimeError, AttributeError):
                pass
        else:
            scope.cancel()

    async def _run(self):
        with trio.CancelScope() as self._scope:
            if self._stopped:
                return
            while True:
                await self._step()
                await trio.sleep(self.interval)

    async def _step(self):
        target = self.recommendation()
        have = len(self.cluster.workers)
        if target > have:
            self._lower = 0
            await self._scale(target, "up")
        elif target < have:
            self._lower += 1
            if self._lower >= self.wait_count:
                self._lower = 0
                await self._scale(target, "down")
        else:
            self._lower = 0

    async def _scale(self, n, direction):
        logger.info("adaptive: scaling %s to %d workers", direction, n)
        self.log.append((trio.current_time(), direction, n))
        try:
            await self.cluster._scale_to(n)
        except Exception:
            logger.exception("adaptive: scaling %s to %d workers failed", direction, n)
