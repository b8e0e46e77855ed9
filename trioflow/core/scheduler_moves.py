"""The scheduler's transition table and the moves it names.

A handler never sets a task's state: it recommends ``{task: finish}`` and
``_run`` applies the recommendations one at a time through the method
``MOVES`` names for ``(start, finish)``; a move may recommend more.  Any
other pair raises ``InvalidTransition``.  So no path recurses per task,
however deep or wide the graph.

``TaskMoves`` is a part of ``SchedulerState`` (scheduler_state.py), which
holds the records it works on: ``tasks``, ``workers``, ``queued``,
``queued_set``, ``unrunnable``, the transition ``log`` and the outgoing
messages (``_to_worker``, ``_to_client``, typed in scheduler_messages.py).
"""
from __future__ import annotations

import heapq

from trioflow.core import placement
from trioflow.core import scheduler_messages as out
from trioflow.core.records import EMPTY, TaskState, WorkerState, minus, plus, priority_tuple
from trioflow.core.transitions import InvalidTransition

#: the states a task can be in (dask's); "forgotten" means removed
STATES = ("released", "waiting", "queued", "processing", "memory", "erred", "no-worker")
#: the states of a task on its way to running
ACTIVE = ("waiting", "queued", "processing", "no-worker")

#: the legal moves: (start, finish) -> the method that makes it.  Anything else
#: raises InvalidTransition.  "forgotten" is not a state: the task is removed.
MOVES = {
    ("released", "waiting"): "_released_to_waiting",
    ("released", "memory"): "_to_memory",
    ("released", "erred"): "_to_erred",
    ("released", "forgotten"): "_to_forgotten",
    ("waiting", "processing"): "_waiting_to_processing",
    ("waiting", "queued"): "_waiting_to_queued",
    ("waiting", "no-worker"): "_waiting_to_no_worker",
    ("waiting", "memory"): "_to_memory",
    ("waiting", "erred"): "_to_erred",
    ("waiting", "released"): "_active_to_released",
    ("queued", "processing"): "_queued_to_processing",
    ("queued", "waiting"): "_active_to_waiting",
    ("queued", "memory"): "_to_memory",
    ("queued", "erred"): "_to_erred",
    ("queued", "released"): "_active_to_released",
    ("no-worker", "waiting"): "_active_to_waiting",
    ("no-worker", "memory"): "_to_memory",
    ("no-worker", "erred"): "_to_erred",
    ("no-worker", "released"): "_active_to_released",
    ("processing", "memory"): "_to_memory",
    ("processing", "waiting"): "_active_to_waiting",
    ("processing", "erred"): "_to_erred",
    ("processing", "released"): "_active_to_released",
    ("memory", "released"): "_memory_to_released",
    ("memory", "erred"): "_to_erred",
    ("erred", "released"): "_erred_to_released",
    ("erred", "memory"): "_to_memory",
    ("erred", "forgotten"): "_to_forgotten",
}


class TaskMoves:
    """The worklist, the moves of ``MOVES`` and the bookkeeping they share."""

    # ------------------------------------------------------------ the worklist

    def _run(self, recs: dict):
        """Apply recommendations ``{task: finish}`` until none is left."""
        moves = self._moves
        while recs:
            ts, finish = recs.popitem()
            if self.tasks.get(ts.key) is not ts:
                continue  # forgotten since it was recommended
            start = ts.state
            if start == finish:
                continue
            move = moves.get((start, finish))
            if move is None:
                raise InvalidTransition(ts.key, start, finish, self.stimulus_id,
                                        self.story(ts.key))
            move(ts, recs)
            if ts.state != start:
                self.log.record(ts.key, start, ts.state, self.stimulus_id, self.now)
                if self.validate_each_step:
                    self._moved.append(ts)

    def _recommend_release(self, ts: TaskState, recs: dict):
        """Recommend letting go of ``ts`` if no client and no task needs it."""
        if ts.who_wants or ts.waiters:
            return
        recs[ts] = "forgotten" if ts.state in ("released", "erred") else "released"

    def _recommend_erred(self, ts: TaskState, recs: dict, exception=None, traceback=None,
                         text="", kind="", blame: TaskState | None = None):
        if blame is ts:
            ts.error = (exception, traceback, text, kind)
        ts.exception_blame = None if blame is ts else blame
        recs[ts] = "erred"

    def _err(self, ts: TaskState, **error):
        recs: dict = {}
        self._recommend_erred(ts, recs, **error)
        self._run(recs)

    def _release(self, tasks):
        recs: dict = {}
        for ts in tasks:
            if self.tasks.get(ts.key) is ts:
                self._recommend_release(ts, recs)
        self._run(recs)

    # ------------------------------------------------------------ the moves

    def _released_to_waiting(self, ts: TaskState, recs: dict):
        if not (ts.who_wants or ts.waiters):
            recs[ts] = "forgotten"  # its dependent erred since it was recommended
            return
        if ts.run_spec is None:
            self._recommend_erred(ts, recs, text=f"key {ts.key!r} has no task to compute it",
                                  kind="FutureLostError", blame=ts)
            return
        erred_dep = next((d for d in ts.dependencies if d.state == "erred"), None)
        if erred_dep is not None:
            self._recommend_erred(ts, recs, blame=erred_dep.exception_blame or erred_dep)
            return
        ts.state = "waiting"
        self._wait_for_dependencies(ts, recs)

    def _wait_for_dependencies(self, ts: TaskState, recs: dict):
        ts.waiting_on = {d for d in ts.dependencies if d.state != "memory"} or EMPTY
        for dep in ts.dependencies:
            dep.waiters = plus(dep.waiters, ts)
        for dep in ts.waiting_on:
            if dep.state == "erred":
                self._recommend_erred(ts, recs, blame=dep.exception_blame or dep)
                return
        for dep in ts.waiting_on:
            if dep.state == "released":
                recs[dep] = "waiting"
        if not ts.waiting_on:
            recs[ts] = "processing"

    def _waiting_to_processing(self, ts: TaskState, recs: dict):
        if ts.waiting_on:
            return  # a dependency was lost since it was recommended
        if placement.is_rootish(ts) and self.workers:
            ws = placement.least_busy_with_room(self.workers.values(), ts, self.prefix_duration)
            if ws is None:
                recs[ts] = "queued"
                return
        else:
            ws = placement.decide_worker(self.workers.values(), ts)
            if ws is None:
                recs[ts] = "no-worker"
                return
        self._send_to(ts, ws)

    def _waiting_to_queued(self, ts: TaskState, recs: dict):
        ts.state = "queued"
        self.queued_set.add(ts)
        heapq.heappush(self.queued, (ts.priority, ts))

    def _waiting_to_no_worker(self, ts: TaskState, recs: dict):
        ts.state = "no-worker"
        self.unrunnable.add(ts)

    def _queued_to_processing(self, ts: TaskState, recs: dict):
        ws = placement.least_busy_with_room(self.workers.values(), ts, self.prefix_duration)
        if ws is not None:
            self.queued_set.discard(ts)  # its heap entry is skipped as stale
            self._send_to(ts, ws)

    def _active_to_waiting(self, ts: TaskState, recs: dict):
        """Run it again: its worker died or stopped it, or a dependency was lost."""
        self._abandon(ts)
        ts.state = "waiting"
        self._wait_for_dependencies(ts, recs)

    def _active_to_released(self, ts: TaskState, recs: dict):
        if ts.who_wants or ts.waiters:
            return  # needed again since it was recommended
        self._abandon(ts)
        ts.state = "released"
        for dep in ts.dependencies:
            dep.waiters = minus(dep.waiters, ts)
        for dep in ts.dependencies:
            self._recommend_release(dep, recs)
        recs[ts] = "forgotten"

    def _to_memory(self, ts: TaskState, recs: dict):
        """Its value is on ``ts.who_has``, computed there or put there."""
        self._abandon(ts)
        if ts.state == "erred":
            ts.error = ts.exception_blame = None
        ts.state = "memory"
        self._tell_in_memory(ts, ts.who_wants)
        # the worklist pops last-in first: the highest priority goes in last
        for dependent in sorted(ts.waiters, key=lambda t: t.priority, reverse=True):
            if dependent.state == "waiting":
                dependent.waiting_on = minus(dependent.waiting_on, ts)
                if not dependent.waiting_on:
                    recs[dependent] = "processing"
        for dep in ts.dependencies:
            dep.waiters = minus(dep.waiters, ts)
            self._recommend_release(dep, recs)
        self._recommend_release(ts, recs)

    def _memory_to_released(self, ts: TaskState, recs: dict):
        """Free its data because nobody needs it, or after its last copy was
        lost (then it is computed again if it is needed)."""
        if (ts.who_wants or ts.waiters) and ts.who_has:
            return  # needed again since it was recommended
        self._free_data(ts)
        ts.state = "released"
        for dependent in ts.waiters:
            if dependent.state == "waiting":
                dependent.waiting_on = plus(dependent.waiting_on, ts)
            elif dependent.state in ACTIVE:
                recs[dependent] = "waiting"
        if ts.who_wants or ts.waiters:
            recs[ts] = "waiting"
        else:
            recs[ts] = "forgotten"

    def _to_erred(self, ts: TaskState, recs: dict):
        """Err it (the recommender set the error or its blame), and every
        dependent on its way to running."""
        if ts.state == "memory":
            self._free_data(ts)
        self._abandon(ts)
        ts.state = "erred"
        for dep in ts.dependencies:
            dep.waiters = minus(dep.waiters, ts)
        self._tell_erred(ts, ts.who_wants)
        blame = ts.exception_blame or ts
        for dependent in ts.dependents:
            if dependent.state in ACTIVE:
                self._recommend_erred(dependent, recs, blame=blame)
        for dep in ts.dependencies:
            self._recommend_release(dep, recs)
        self._recommend_release(ts, recs)

    def _erred_to_released(self, ts: TaskState, recs: dict):
        """Retried: its futures, in every client, are pending again."""
        ts.state = "released"
        ts.error = ts.exception_blame = None
        for c in ts.who_wants:
            self._to_client(out.KeyRetried(c, ts.key))

    def _to_forgotten(self, ts: TaskState, recs: dict):
        if ts.who_wants or ts.waiters or ts.dependents:
            return  # still needed, or kept for a dependent's sake
        del self.tasks[ts.key]
        self.n_forgotten += 1
        self._abandon(ts)
        for dep in ts.dependencies:
            dep.dependents = minus(dep.dependents, ts)
            dep.waiters = minus(dep.waiters, ts)
            self._recommend_release(dep, recs)
        ts.dependencies = EMPTY
        ts.state = "forgotten"


    def _send_to(self, ts: TaskState, ws: WorkerState):
        ts.state = "processing"
        ts.processing_on = ws
        ts.executing_on = None  # until this worker says it started this run
        ws.processing.add(ts)
        if ts.is_async:
            # async tasks use no thread: like seceded ones they do not occupy the worker
            ts.long_running = True
            ws.long_running.add(ts)
        self._to_worker(out.ComputeTaskOnWorker(
            ws.address, ts.key, ts.run_spec,
            {d.key: [w.address for w in d.who_has] for d in ts.dependencies},
            {d.key: d.nbytes for d in ts.dependencies},
            priority_tuple(ts.priority), ts.resources, ts.actor, ts.timeout, ts.is_async,
            self.stimulus_id))

    def _drain_queue(self):
        """Send queued tasks to workers with room, highest priority first."""
        while self.queued:
            _, ts = self.queued[0]
            if ts not in self.queued_set:
                heapq.heappop(self.queued)
                continue
            self._run({ts: "processing"})
            if ts.state == "queued":
                return  # no worker has room
            heapq.heappop(self.queued)

    # ------------------------------------------------------------ bookkeeping

    def _add_holder(self, ts: TaskState, ws: WorkerState):
        if ws not in ts.who_has:
            ts.who_has = self._share(ts.who_has | {ws})
            ws.has_what.add(ts)
            ws.nbytes += ts.nbytes

    def _tell_in_memory(self, ts: TaskState, clients):
        workers = tuple(ws.address for ws in ts.who_has)
        for c in clients:
            self._to_client(out.KeyInMemory(c, ts.key, ts.type_name, workers))

    def _tell_erred(self, ts: TaskState, clients):
        src = ts.exception_blame or ts
        for c in clients:
            self._to_client(out.KeyErred(c, ts.key, src.exception, src.traceback, src.text,
                                         src.kind))

    def _detach(self, ts: TaskState):
        """It no longer runs on its worker (which said so, or died)."""
        ws = ts.processing_on
        if ws is not None:
            ws.processing.discard(ts)
            ws.long_running.discard(ts)
            ts.processing_on = None
            ts.long_running = False
        ts.executing_on = None

    def _abandon(self, ts: TaskState, free_on_worker: bool = True):
        """Take a task out of wherever it is queued or running, without
        changing its state label (the move making it does)."""
        ws = ts.processing_on
        if ws is not None:
            self._detach(ts)
            if free_on_worker:
                self._free_on_worker(ws, [ts.key])
        self.unrunnable.discard(ts)
        self.queued_set.discard(ts)  # its heap entry is skipped as stale
        ts.waiting_on = EMPTY

    def _free_data(self, ts: TaskState):
        for ws in ts.who_has:
            ws.has_what.discard(ts)
            ws.nbytes -= ts.nbytes
            self._free_on_worker(ws, [ts.key])
        ts.who_has = EMPTY
