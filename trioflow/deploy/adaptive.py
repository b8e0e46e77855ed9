"""``cluster.adapt()``: a SpecCluster (LocalCluster too) that follows its load.

Every ``interval`` the adaptive task asks the scheduler for its
``adaptive_target(target_duration)`` (trioflow/core/adaptive.py: dask's
rules), keeps it between ``minimum`` and ``maximum``, and compares it with
the cluster's plan, as dask's ``AdaptiveCore`` does:

- more wanted: scale up to it at once;
- fewer: close first the workers asked for that have not arrived yet, then
  those the scheduler's ``workers_to_close`` names (idle, least data);
  a worker is closed only once ``wait_count`` looks in a row named it,
  so a short lull does not throw away a warm worker.  Closing retires it
  gracefully: the data only it holds moves to the others first.

The task lives in the cluster's nursery, so closing the cluster stops it.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict

import trio

from trioflow.utils import parse_bytes, parse_timedelta

logger = logging.getLogger("trioflow.deploy")


class Adaptive:
    def __init__(self, cluster, minimum=0, maximum=math.inf, minimum_cores=None,
                 maximum_cores=None, minimum_memory=None, maximum_memory=None,
                 interval="1s", wait_count=3, target_duration="5s"):
        if minimum_cores is not None or maximum_cores is not None:
            per_worker = cluster._threads_per_worker()
            if minimum_cores is not None:
                minimum = max(minimum, math.ceil(minimum_cores / per_worker))
            if maximum_cores is not None:
                maximum = min(maximum, math.floor(maximum_cores / per_worker))
        if minimum_memory is not None or maximum_memory is not None:
            per_worker = cluster._memory_per_worker()
            if minimum_memory is not None:
                minimum = max(minimum, math.ceil(parse_bytes(minimum_memory) / per_worker))
            if maximum_memory is not None:
                maximum = min(maximum, math.floor(parse_bytes(maximum_memory) / per_worker))
        if minimum < 0 or maximum < minimum:
            raise ValueError(f"adapt() needs 0 <= minimum <= maximum, got minimum={minimum}, "
                             f"maximum={maximum}")
        self.cluster = cluster
        self.minimum = minimum
        self.maximum = maximum
        self.interval = parse_timedelta(interval)
        self.wait_count = int(wait_count)
        self.target_duration = parse_timedelta(target_duration)
        if not self.target_duration or self.target_duration <= 0:
            raise ValueError(f"adapt() needs target_duration > 0, not {target_duration!r}")
        self.log: list = []  # (time, "up"/"down", n): what it did
        self.close_counts: defaultdict = defaultdict(int)
        self._scope: trio.CancelScope | None = None
        self._stopped = False

    def __repr__(self):
        return f"<Adaptive minimum={self.minimum} maximum={self.maximum}>"

    async def _ask(self) -> dict:
        maximum = None if math.isinf(self.maximum) else self.maximum
        msg = {"op": "adaptive-target", "target_duration": self.target_duration,
               "minimum": self.minimum}
        if maximum is not None:
            msg["maximum"] = maximum
        return await self.cluster._ask(msg)

    async def target(self) -> int:
        """What the scheduler's ``adaptive_target()`` asks for now, within the bounds."""
        return self._bounded((await self._ask())["target"])

    def _bounded(self, n) -> int:
        return int(max(self.minimum, min(self.maximum, n)))

    async def recommendations(self, target: int, closable=None) -> dict:
        """``{"status": "up", "n": n}``, ``{"status": "down", "workers": [...]}``
        or ``{"status": "same"}``, by dask's rules (see the module docstring)."""
        plan = self.cluster.plan
        if target >= len(plan):
            self.close_counts.clear()
            return {"status": "same"} if target == len(plan) else {"status": "up", "n": target}
        observed = {str(name) for name in self.cluster.observed}
        not_arrived = [name for name in self.cluster.requested if str(name) not in observed]
        to_close = set(not_arrived[:len(plan) - target])
        if target < len(plan) - len(to_close):
            if closable is None:
                closable = (await self._ask())["close"]
            by_text = {str(name): name for name in plan}
            extra = [by_text[str(n)] for n in closable if str(n) in by_text]
            to_close.update(extra[:len(plan) - target - len(to_close)])
        firmly = set()
        for name in to_close:
            self.close_counts[name] += 1
            if self.close_counts[name] >= self.wait_count:
                firmly.add(name)
        for name in list(self.close_counts):
            if name not in to_close:
                del self.close_counts[name]
        if firmly:
            return {"status": "down", "workers": sorted(firmly, key=str)}
        return {"status": "same"}

    async def adapt(self):
        """One look: ask, decide, scale."""
        reply = await self._ask()
        target = self._bounded(reply["target"])
        recommendation = await self.recommendations(target, reply["close"])
        status = recommendation["status"]
        if status == "same":
            return
        try:
            if status == "up":
                self._note("up", recommendation["n"])
                await self.cluster.scale_up(recommendation["n"])
            else:
                workers = recommendation["workers"]
                for name in workers:
                    self.close_counts.pop(name, None)
                self._note("down", len(self.cluster.plan) - len(workers))
                await self.cluster.scale_down(workers)
        except Exception:
            logger.exception("adaptive: scaling %s failed", status)

    def _note(self, direction, n):
        logger.info("adaptive: scaling %s to %d workers", direction, n)
        self.log.append((trio.current_time(), direction, n))

    # ---------------------------------------------------------------- task

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
        if host.mode in ("blocking", "asyncio") and not host.loop.in_loop_thread():
            try:
                host.loop.run_sync_soon(scope.cancel)
            except (RuntimeError, AttributeError):
                pass
        else:
            scope.cancel()

    def stop_now(self):
        """From the cluster's loop, as it closes."""
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()

    async def _run(self):
        with trio.CancelScope() as self._scope:
            if self._stopped:
                return
            while True:
                try:
                    await self.adapt()
                except Exception:
                    logger.exception("adaptive: a look at the load failed")
                await trio.sleep(self.interval)
