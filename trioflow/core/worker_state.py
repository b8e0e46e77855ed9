"""One worker's state machine: which tasks wait, fetch, run and hold data.

``WorkerState.handle(event)`` applies one event and returns instructions for
the shell: ``Execute``, ``Fetch``, ``SendToScheduler``, ``DeleteData``,
``CancelExecution``, ``GrantRejoin``, ``Spill``, ``Unspill``.  The shell owns threads, sockets and
the data itself; this object owns every decision and the slot accounting.

Task states: waiting (for dependencies), fetch, flight, missing (dependencies
held elsewhere), ready, executing, long-running (seceded: running without a
slot), cancelled (still running but no longer wanted), memory.

Memory.  Every key in memory is in exactly one of two storages: ``fast``
(the value is in the process) or ``slow`` (the shell wrote it to disk).
Given a ``memory_limit`` and dask's fractions, the state decides which keys
move: past ``target`` x limit of managed bytes (the ``nbytes`` of the keys in
fast) it spills the least recently used ones; when a measured process memory
(``MemoryMeasured``) passes ``spill`` x limit it spills until the estimate is
below target; past ``pause`` x limit it pauses (starts no new task and no
fetch, and tells the scheduler) until the process memory drops below it.
A task about to run has its spilled dependencies read back first
(``Unspill``), and its dependencies count as just used.
"""
from __future__ import annotations

import heapq
from itertools import count

from trioflow.core import events as ev
from trioflow.core.transitions import (TRANSITION_LOG_LENGTH, InvalidTransition,
                                       TransitionLog, validate_moved)

RUNNING = ("executing", "long-running", "cancelled")
STATES = ("waiting", "fetch", "flight", "missing", "ready", "memory", *RUNNING)

_HELD = ("waiting", "fetch", "flight", "missing", "ready", "memory")
#: the legal moves, start -> possible finishes; any other raises
#: InvalidTransition.  "released" is a new task's start, "forgotten" its end.
MOVES = {
    "released": {"waiting", "fetch", "memory"},
    "waiting": {"ready", "fetch", "missing", "memory", "forgotten"},
    "ready": {"executing", "fetch", "missing", "memory", "forgotten"},
    "fetch": {"flight", "waiting", "memory", "forgotten"},
    "missing": {"fetch", "waiting", "memory", "forgotten"},
    "flight": {"memory", "waiting", "fetch", "missing", "forgotten"},
    "executing": {"long-running", "cancelled", "memory", "ready", "fetch", "missing",
                  "forgotten"},
    "long-running": {"executing", "cancelled", "memory", "ready", "fetch", "missing",
                     "forgotten"},
    "cancelled": {"executing", "long-running", "memory", "fetch", "missing", "forgotten"},
    "memory": {"memory", "forgotten"},
}

#: up to this many tasks validation after an event checks everything, above
#: it only the tasks the event moved (so that it stays linear)
FULL_VALIDATE_TASKS = 300

#: peers fetched from at once
FETCH_CONCURRENCY = 4


class WTask:
    __slots__ = ("key", "state", "run_spec", "priority", "dependencies", "dependents",
                 "waiting_for", "who_has", "nbytes", "resources", "actor", "timeout",
                 "holds_slot", "seceded", "computed", "peer", "is_async", "released",
                 "scattered", "unspillable")

    def __init__(self, key):
        self.key = key
        self.state = "released"
        self.run_spec = None
        self.priority: tuple = ()
        self.dependencies: set[WTask] = set()
        self.dependents: set[WTask] = set()
        self.waiting_for: set[WTask] = set()
        self.who_has: set[str] = set()
        self.nbytes = 0
        self.resources: dict | None = None
        self.actor = False
        self.timeout = None
        self.holds_slot = False
        self.seceded = False
        self.computed = False  # the scheduler asked this worker to compute it
        self.peer: str | None = None  # while in flight
        self.is_async = False
        # the scheduler freed it while a task here still needed it: forget it
        # once the last such task lets go
        self.released = False
        # data for it was put here (scatter) while it ran: the run ends in memory
        self.scattered = False
        # never moved to disk: an actor's proxy, or a value the shell failed to write
        self.unspillable = False

    def __repr__(self):
        return f"<WTask {self.key!r} {self.state}>"

    def __hash__(self):
        # by key, not id(): set iteration order must not change from run to run
        return hash(self.key)


def _fraction(name: str, value):
    if value is False or value is None:
        return False
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"{name} must be a fraction in (0, 1] or False, not {value!r}")
    return float(value)


class WorkerState:
    def __init__(self, address: str, nthreads: int, resources: dict | None = None,
                 validate: bool = False, async_slots: int = 1000,
                 transition_log_length: int = TRANSITION_LOG_LENGTH,
                 memory_limit: int = 0, memory_target_fraction=False,
                 memory_spill_fraction=False, memory_pause_fraction=False):
        self.address = address
        self.nthreads = nthreads
        #: ``async def`` tasks have slots of their own: they wait on I/O, not CPU
        self.async_slots = async_slots
        self.async_busy = 0
        self.ready_async: list = []
        self.total_resources = dict(resources or {})
        self.available_resources = dict(resources or {})
        self.tasks: dict = {}
        self.busy_slots = 0
        self.ready: list = []  # heap of (priority, n, task); stale entries skipped
        self.rejoin_queue: list = []  # heap of (priority, n, task)
        self.peers_in_flight: set[str] = set()
        self.to_fetch: set[WTask] = set()  # tasks in state "fetch"
        self.closing = False
        # ---- memory: see the module docstring
        self.memory_limit = int(memory_limit or 0)
        self.target_fraction = _fraction("memory_target_fraction", memory_target_fraction)
        self.spill_fraction = _fraction("memory_spill_fraction", memory_spill_fraction)
        self.pause_fraction = _fraction("memory_pause_fraction", memory_pause_fraction)
        self.fast: dict = {}  # key -> WTask, least recently used first
        self.slow: dict = {}  # key -> WTask
        self.fast_bytes = 0  # managed memory: nbytes of the keys in fast
        self.slow_bytes = 0
        self.spilled_total = 0  # bytes ever moved to disk (a counter)
        self.spill_count = 0
        self.process_memory = 0  # last measured
        self.memory_after_spill = 0  # less what that measurement made it spill: pauses
        self.paused = False
        self.validate_each_step = validate
        self.log = TransitionLog(transition_log_length)
        self.stimulus_id = ""
        self.now = 0.0
        self._moved: list[WTask] = []
        self._counter = count()
        self._out: list = []
        self._handlers = {
            ev.ComputeTask: self._compute_task,
            ev.FreeKeys: self._free_keys,
            ev.ExecuteSuccess: self._execute_success,
            ev.ExecuteFailure: self._execute_failure,
            ev.ExecuteCancelled: self._execute_cancelled,
            ev.ExecuteTimedOut: self._execute_timed_out,
            ev.GatherDone: self._gather_done,
            ev.DataReceived: self._data_received,
            ev.Seceded: self._seceded,
            ev.RejoinRequested: self._rejoin_requested,
            ev.WorkerClosing: self._closing,
            ev.MemoryMeasured: self._memory_measured,
            ev.SpillFailed: self._spill_failed,
        }

    # ------------------------------------------------------------ entry point

    def handle(self, event, now: float = 0.0) -> list:
        """Apply one event; return instructions.  An exception escaping from
        here is a bug in trioflow: the caller must stop using this object."""
        self.now = now
        self.stimulus_id = event.stimulus_id or type(event).__name__
        self._handlers[type(event)](event)
        self._ensure_fetching()
        self._ensure_computing()
        self._spill_past_target()
        out, self._out = self._out, []
        moved, self._moved = self._moved, []
        if self.validate_each_step:
            if len(self.tasks) <= FULL_VALIDATE_TASKS:
                self.validate()
            else:
                self.validate_tasks(moved)
        return out

    def story(self, *keys_or_stimuli) -> list[tuple]:
        """This worker's transitions of these keys (or caused by these
        stimuli): ``(key, start, finish, stimulus_id, time)``, oldest first."""
        return self.log.story(*keys_or_stimuli)

    def _move(self, ts: WTask, finish: str):
        start = ts.state
        if finish not in MOVES.get(start, ()):
            raise InvalidTransition(ts.key, start, finish, self.stimulus_id,
                                    self.story(ts.key))
        ts.state = finish
        if start == "memory" and finish != "memory":
            self._unstore(ts)
        self.log.record(ts.key, start, finish, self.stimulus_id, self.now)
        if self.validate_each_step:
            self._moved.append(ts)

    def _new_task(self, key, state: str) -> WTask:
        ts = self.tasks[key] = WTask(key)
        self._move(ts, state)
        return ts

    def _send(self, msg: dict):
        msg["stimulus_id"] = self.stimulus_id
        self._out.append(ev.SendToScheduler(msg))

    # ------------------------------------------------------------ events

    def _compute_task(self, e: ev.ComputeTask):
        if self.closing:
            return
        ts = self.tasks.get(e.key)
        if ts is None:
            ts = self._new_task(e.key, "waiting")
        elif ts.computed and ts.state != "cancelled":
            if ts.state == "memory":
                self._send({"op": "task-finished", "key": ts.key, "nbytes": ts.nbytes,
                            "type": "", "duration": 0.0})
            return
        ts.computed = True
        ts.released = False
        if ts.state == "cancelled":
            # told to forget it while it ran, now wanted again: keep the run going,
            # with the slot kind and resources it took
            self._move(ts, "long-running" if ts.seceded else "executing")
            return
        ts.run_spec = e.run_spec
        ts.priority = tuple(e.priority)
        ts.resources = dict(e.resources) if e.resources else None
        ts.actor = e.actor
        ts.is_async = e.is_async
        ts.timeout = e.timeout
        if ts.state == "memory":
            self._send({"op": "task-finished", "key": ts.key, "nbytes": ts.nbytes,
                        "type": "", "duration": 0.0})
            return
        if ts.state in ("fetch", "flight", "missing"):
            # it was a dependency here; its data will still do if it arrives
            if ts.state != "flight":
                self._move(ts, "waiting")
        for dep_key, holders in e.who_has.items():
            dep = self.tasks.get(dep_key)
            if dep is None:
                dep = self._new_task(dep_key, "fetch")
                self.to_fetch.add(dep)
                dep.priority = ts.priority
                dep.nbytes = e.nbytes.get(dep_key, 0)
            if dep.state != "memory":  # also a run here: its holders, should it fail
                dep.who_has = {h for h in holders if h != self.address} or dep.who_has
                if dep.state == "missing" and dep.who_has:
                    self._move(dep, "fetch")
                    self.to_fetch.add(dep)
            ts.dependencies.add(dep)
            dep.dependents.add(ts)
            if dep.state != "memory":
                ts.waiting_for.add(dep)
        if ts.state == "waiting" and not ts.waiting_for:
            self._to_ready(ts)

    def _free_keys(self, e: ev.FreeKeys):
        for key in e.keys:
            ts = self.tasks.get(key)
            if ts is None:
                continue
            ts.computed = False
            if ts.scattered:  # a copy scattered onto its run is freed with the key
                ts.scattered = False
                self._out.append(ev.DeleteData(key))
            if ts.state in ("executing", "long-running"):
                self._move(ts, "cancelled")
                self._out.append(ev.CancelExecution(key))
                self._drop_dependencies(ts)
            elif ts.state == "cancelled":
                pass
            elif any(d.computed and d.state not in ("memory",) for d in ts.dependents):
                ts.released = True  # still needed here as a dependency: forget it later
                if ts.state in ("waiting", "ready"):
                    self._fetch_instead(ts)  # no longer to be computed here
                continue
            else:
                self._forget(ts)

    def _execute_success(self, e: ev.ExecuteSuccess):
        ts = self.tasks.get(e.key)
        if ts is None or ts.state not in RUNNING:
            self._out.append(ev.DeleteData(e.key))
            return
        self._stop_running(ts)
        if ts.state == "cancelled" and not ts.scattered:
            if ts.dependents:
                # freed, but tasks here wait for it: keep it as a replica
                self._to_memory(ts, e.nbytes)
                self._send({"op": "add-keys", "nbytes": {ts.key: e.nbytes}})
                self._dependency_arrived(ts)
                self._drop_dependencies(ts)
                return
            self._out.append(ev.DeleteData(e.key))
            self._forget(ts)
            return
        freed = ts.state == "cancelled"  # kept only for data scattered after the free
        self._to_memory(ts, e.nbytes)
        ts.scattered = False
        if not freed:
            self._send({"op": "task-finished", "key": ts.key, "nbytes": e.nbytes,
                        "type": e.type_name, "duration": e.duration})
        self._dependency_arrived(ts)
        self._drop_dependencies(ts)

    def _execute_timed_out(self, e: ev.ExecuteTimedOut):
        """Past its deadline: the run errs (and retries= may run it again)."""
        ts = self.tasks.get(e.key)
        if ts is not None:
            text = f"task {e.key!r} ran longer than its timeout of {ts.timeout} s and was stopped"
            self._execute_failure(ev.ExecuteFailure(e.key, None, None, text, "TimeoutError",
                                                    e.stimulus_id))

    def _execute_failure(self, e: ev.ExecuteFailure):
        ts = self.tasks.get(e.key)
        if ts is None or ts.state not in RUNNING:
            return
        self._stop_running(ts)
        if ts.scattered:
            self._scattered_run_ended(ts)
            return
        if ts.state != "cancelled":
            self._send({"op": "task-erred", "key": ts.key, "exception": e.exception,
                        "traceback": e.traceback, "text": e.text, "kind": e.kind})
        self._run_lost(ts)

    def _execute_cancelled(self, e: ev.ExecuteCancelled):
        ts = self.tasks.get(e.key)
        if ts is None or ts.state not in RUNNING:
            return
        self._stop_running(ts)
        if ts.scattered:
            self._scattered_run_ended(ts)
            return
        if ts.state == "cancelled" or self.closing:
            if ts.state != "cancelled":
                self._send({"op": "task-cancelled", "key": ts.key})
            self._run_lost(ts)
        else:
            # cancelled, then wanted again before the cancellation landed: run anew
            self._to_ready(ts)

    def _gather_done(self, e: ev.GatherDone):
        self.peers_in_flight.discard(e.peer)
        replicas = {}
        for key, nbytes in e.nbytes.items():
            ts = self.tasks.get(key)
            if ts is None or ts.state != "flight":
                if ts is None or ts.state != "memory":
                    self._out.append(ev.DeleteData(key))
                else:  # scattered here meanwhile: the shell holds the new copy in memory
                    self._to_memory(ts, nbytes)
                continue
            self._to_memory(ts, nbytes)
            ts.peer = None
            self._drop_dependencies(ts)  # it may have been asked to compute it meanwhile
            if ts.computed:
                self._send({"op": "task-finished", "key": key, "nbytes": nbytes,
                            "type": "", "duration": 0.0})
            else:
                replicas[key] = nbytes
            self._dependency_arrived(ts)
        if replicas:
            self._send({"op": "add-keys", "nbytes": replicas})
        for key in e.missing:
            self._fetch_failed(key, e.peer)
        if e.failed:
            for ts in list(self.tasks.values()):
                if ts.state == "flight" and ts.peer == e.peer:
                    self._fetch_failed(ts.key, e.peer)

    def _fetch_failed(self, key, peer):
        ts = self.tasks.get(key)
        if ts is None or ts.state != "flight" or ts.peer != peer:
            return
        ts.peer = None
        ts.who_has.discard(peer)
        self._send({"op": "missing-data", "key": key, "holder": peer})
        if ts.computed:
            # the scheduler asked for it to be computed here while it was in
            # flight: do that rather than wait for another copy
            self._move(ts, "waiting")
            if not ts.waiting_for:
                self._to_ready(ts)
        elif not ts.dependents:
            self._forget(ts)
        else:
            self._move(ts, "fetch" if ts.who_has else "missing")
            if ts.who_has:
                self.to_fetch.add(ts)

    def _data_received(self, e: ev.DataReceived):
        arrived = []
        for key, nbytes in e.nbytes.items():
            ts = self.tasks.get(key)
            if ts is None:
                ts = self.tasks[key] = WTask(key)
            elif ts.state in RUNNING:
                # keep the run; the shell holds the scattered copy, so however
                # the run ends, the key ends in memory here
                ts.scattered = True
                ts.nbytes = nbytes
                continue
            self._to_memory(ts, nbytes)  # the shell's new copy is in memory
            ts.peer = None
            ts.released = False
            arrived.append(ts)
        # all keys first: dropping one's dependencies must not forget another
        # key of this same batch (its DeleteData would remove the new copy)
        for ts in arrived:
            self._drop_dependencies(ts)  # a task waiting for its inputs needs them no more
            self._dependency_arrived(ts)

    def _seceded(self, e: ev.Seceded):
        ts = self.tasks.get(e.key)
        if ts is None or ts.state not in RUNNING or ts.seceded:
            return
        ts.seceded = True
        if ts.holds_slot:
            self._release_slot(ts)
        if ts.state == "executing":
            self._move(ts, "long-running")
            self._send({"op": "long-running", "key": ts.key})

    def _rejoin_requested(self, e: ev.RejoinRequested):
        ts = self.tasks.get(e.key)
        if ts is None or not ts.seceded or ts.state not in RUNNING:
            # unknown task (or never seceded): let it go on rather than hang it
            self._out.append(ev.GrantRejoin(e.key))
            return
        heapq.heappush(self.rejoin_queue, (ts.priority, next(self._counter), ts))

    def _memory_measured(self, e: ev.MemoryMeasured):
        self.process_memory = rss = max(0, int(e.process_memory))
        limit = self.memory_limit
        if not limit:
            return
        if self.spill_fraction and rss > self.spill_fraction * limit:
            # as dask: spill until the process would be below target
            goal = (self.target_fraction or self.spill_fraction) * limit
            before = self.slow_bytes
            self._spill_lru(rss - goal)
            rss -= self.slow_bytes - before  # what the process is about to free
        self.memory_after_spill = rss
        if self.pause_fraction:
            over = rss > self.pause_fraction * limit
            if over != self.paused:
                self.paused = over
                self._send({"op": "worker-status-change",
                            "status": "paused" if over else "running"})

    def _spill_failed(self, e: ev.SpillFailed):
        ts = self.tasks.get(e.key)
        if ts is None or self.slow.get(e.key) is not ts:
            return  # forgotten (or read back) since
        del self.slow[ts.key]
        self.slow_bytes -= ts.nbytes
        self.spilled_total -= ts.nbytes
        self.spill_count -= 1
        self.fast[ts.key] = ts
        self.fast_bytes += ts.nbytes
        ts.unspillable = True

    def _closing(self, e: ev.WorkerClosing):
        self.closing = True
        for ts in list(self.tasks.values()):
            if ts.state in ("executing", "long-running"):
                self._out.append(ev.CancelExecution(ts.key))
        self.ready.clear()
        self.ready_async.clear()

    # ------------------------------------------------------------ memory

    def _to_memory(self, ts: WTask, nbytes: int):
        """``ts`` is in memory with a value the shell just put in fast storage
        (replacing any copy it had on disk)."""
        if ts.state != "memory":
            self._move(ts, "memory")
        else:
            self._unstore(ts)
        ts.nbytes = nbytes
        if ts.actor:
            ts.unspillable = True  # its data is a proxy of an object that lives here
        self.fast[ts.key] = ts
        self.fast_bytes += nbytes

    def _unstore(self, ts: WTask):
        if self.fast.pop(ts.key, None) is not None:
            self.fast_bytes -= ts.nbytes
        elif self.slow.pop(ts.key, None) is not None:
            self.slow_bytes -= ts.nbytes

    def _use(self, ts: WTask):
        """A task here is about to read ``ts``: it is the most recently used,
        and read back into memory if it was spilled."""
        if self.slow.pop(ts.key, None) is not None:
            self.slow_bytes -= ts.nbytes
            self._out.append(ev.Unspill(ts.key))
        elif self.fast.pop(ts.key, None) is not None:
            self.fast_bytes -= ts.nbytes
        else:
            return
        self.fast[ts.key] = ts
        self.fast_bytes += ts.nbytes

    def _spill_past_target(self):
        if self.memory_limit and self.target_fraction:
            excess = self.fast_bytes - self.target_fraction * self.memory_limit
            if excess > 0:
                self._spill_lru(excess)

    def _spill_lru(self, excess: float):
        """Spill the least recently used keys until ``excess`` bytes have gone."""
        for ts in list(self.fast.values()):
            if excess <= 0:
                return
            if ts.unspillable:
                continue
            del self.fast[ts.key]
            self.fast_bytes -= ts.nbytes
            self.slow[ts.key] = ts
            self.slow_bytes += ts.nbytes
            self.spilled_total += ts.nbytes
            self.spill_count += 1
            excess -= ts.nbytes
            self._out.append(ev.Spill(ts.key))

    def memory_report(self) -> dict:
        """What the scheduler and the dashboard show of this worker's memory."""
        return {"managed": self.fast_bytes, "spilled_bytes": self.slow_bytes,
                "spilled_keys": len(self.slow), "spilled_total": self.spilled_total,
                "spill_count": self.spill_count, "paused": self.paused}

    # ------------------------------------------------------------ helpers

    def _run_lost(self, ts: WTask):
        """A run ended with no result. Tasks here that were sent it as a
        dependency held elsewhere (it was a cancelled run) fetch it instead."""
        if not ts.dependents:
            self._forget(ts)
        else:
            self._fetch_instead(ts)

    def _fetch_instead(self, ts: WTask):
        """Tasks here need ``ts`` but it will not be computed here: fetch it
        from the holders the scheduler named for it."""
        self._drop_dependencies(ts)
        ts.computed = False
        self._move(ts, "fetch" if ts.who_has else "missing")
        if ts.who_has:
            self.to_fetch.add(ts)

    def _scattered_run_ended(self, ts: WTask):
        """A run without a result ended, but a scatter put the key here meanwhile
        (the scheduler counts this worker as its holder): keep that copy."""
        ts.scattered = False
        self._to_memory(ts, ts.nbytes)
        self._dependency_arrived(ts)
        self._drop_dependencies(ts)

    def _to_ready(self, ts: WTask):
        self._move(ts, "ready")
        queue = self.ready_async if ts.is_async else self.ready
        heapq.heappush(queue, (ts.priority, next(self._counter), ts))

    def _dependency_arrived(self, dep: WTask):
        for ts in sorted(dep.dependents, key=lambda t: t.priority):
            if dep in ts.waiting_for:  # also for one in flight that was asked to compute
                ts.waiting_for.discard(dep)
                if ts.state == "waiting" and not ts.waiting_for:
                    self._to_ready(ts)

    def _drop_dependencies(self, ts: WTask):
        """``ts`` no longer needs its dependencies; release those fetched only for it."""
        doomed = self._detach_dependencies(ts)
        if doomed:
            self._forget_all(doomed)

    def _detach_dependencies(self, ts: WTask) -> list[WTask]:
        """Cut ``ts`` from its dependencies; those now needed by nothing here."""
        doomed = []
        for dep in ts.dependencies:
            dep.dependents.discard(ts)
            if not dep.dependents and not dep.computed and (
                    dep.state in ("fetch", "flight", "missing") or dep.released):
                doomed.append(dep)
        ts.dependencies = set()
        ts.waiting_for = set()
        return doomed

    def _forget(self, ts: WTask):
        self._forget_all([ts])

    def _forget_all(self, doomed: list[WTask]):
        """Forget these tasks and, as a worklist (never recursing), the
        dependencies that were held only for them."""
        while doomed:
            ts = doomed.pop()
            if ts.state == "forgotten":
                continue
            if ts.state == "memory":
                self._out.append(ev.DeleteData(ts.key))
            if ts.holds_slot:
                self._release_slot(ts)
            if self.tasks.get(ts.key) is ts:
                del self.tasks[ts.key]
            doomed.extend(self._detach_dependencies(ts))
            for dependent in ts.dependents:
                dependent.dependencies.discard(ts)
                dependent.waiting_for.discard(ts)
            ts.dependents = set()
            self._move(ts, "forgotten")

    def _stop_running(self, ts: WTask):
        if ts.holds_slot:
            self._release_slot(ts)
        ts.seceded = False

    def _release_slot(self, ts: WTask):  # also gives back the task's resources
        ts.holds_slot = False
        if ts.is_async:
            self.async_busy -= 1
        else:
            self.busy_slots -= 1
        if ts.resources:
            for r, amount in ts.resources.items():
                self.available_resources[r] = self.available_resources.get(r, 0) + amount

    def _has_resources(self, ts: WTask) -> bool:
        return not ts.resources or all(
            self.available_resources.get(r, 0) >= amount for r, amount in ts.resources.items())

    def _ensure_computing(self):
        if self.closing:
            return
        while self.rejoin_queue:
            _, _, ts = self.rejoin_queue[0]
            if ts.state not in RUNNING or not ts.seceded:
                heapq.heappop(self.rejoin_queue)
                continue
            if not self._slot_free(ts) or not self._has_resources(ts):
                break  # seceding gave its resources back too: wait for both
            heapq.heappop(self.rejoin_queue)
            ts.seceded = False
            self._take_slot(ts)
            if ts.state == "long-running":
                self._move(ts, "executing")
            self._out.append(ev.GrantRejoin(ts.key))
        if self.paused:
            return  # past the pause threshold: no new run (a rejoin is not new)
        for queue, has_room in ((self.ready, lambda: self.busy_slots < self.nthreads),
                                (self.ready_async, lambda: self.async_busy < self.async_slots)):
            skipped = []
            while queue and has_room():
                item = heapq.heappop(queue)
                ts = item[2]
                if ts.state != "ready" or self.tasks.get(ts.key) is not ts:
                    continue
                if not self._has_resources(ts):
                    skipped.append(item)
                    continue
                self._move(ts, "executing")
                self._take_slot(ts)
                for dep in ts.dependencies:
                    self._use(dep)
                self._out.append(ev.Execute(ts.key, ts.timeout))
            for item in skipped:
                heapq.heappush(queue, item)

    def _slot_free(self, ts: WTask) -> bool:
        if ts.is_async:
            return self.async_busy < self.async_slots
        return self.busy_slots < self.nthreads

    def _take_slot(self, ts: WTask):
        ts.holds_slot = True
        if ts.is_async:
            self.async_busy += 1
        else:
            self.busy_slots += 1
        if ts.resources:
            for r, amount in ts.resources.items():
                self.available_resources[r] -= amount

    def _ensure_fetching(self):
        if self.closing or self.paused or len(self.peers_in_flight) >= FETCH_CONCURRENCY:
            return
        if not self.to_fetch:
            return
        by_peer: dict[str, list[WTask]] = {}
        for ts in list(self.to_fetch):
            if ts.state != "fetch" or self.tasks.get(ts.key) is not ts:
                self.to_fetch.discard(ts)
                continue
            free = [p for p in ts.who_has if p not in self.peers_in_flight]
            if not free:
                continue
            peer = next((p for p in free if p in by_peer), None) or min(free)
            by_peer.setdefault(peer, []).append(ts)
        for peer, tasks in by_peer.items():
            if len(self.peers_in_flight) >= FETCH_CONCURRENCY:
                break
            self.peers_in_flight.add(peer)
            for ts in tasks:
                self._move(ts, "flight")
                ts.peer = peer
                self.to_fetch.discard(ts)
            self._out.append(ev.Fetch(peer, tuple(ts.key for ts in tasks)))

    # ------------------------------------------------------------ invariants

    def validate(self) -> None:
        held = held_async = 0
        for key, ts in self.tasks.items():
            assert ts.key == key, ts
            self._validate_task(ts)
            if ts.holds_slot:
                if ts.is_async:
                    held_async += 1
                else:
                    held += 1
        assert held == self.busy_slots, (held, self.busy_slots)
        assert held_async == self.async_busy, (held_async, self.async_busy)
        for store in (self.fast, self.slow):
            for key, ts in store.items():
                assert self.tasks.get(key) is ts and ts.state == "memory", (key, ts)
        assert self.fast_bytes == sum(ts.nbytes for ts in self.fast.values()), self.fast_bytes
        assert self.slow_bytes == sum(ts.nbytes for ts in self.slow.values()), self.slow_bytes
        self._validate_counters()

    def validate_tasks(self, tasks) -> None:
        """The invariants of these tasks only, and of the slot counters."""
        validate_moved(tasks, self.tasks, self._validate_task)
        self._validate_counters()

    def _validate_task(self, ts: WTask) -> None:
        assert ts.state in STATES, ts
        in_fast, in_slow = self.fast.get(ts.key) is ts, self.slow.get(ts.key) is ts
        if ts.state == "memory":  # in exactly one of fast and slow storage
            assert in_fast != in_slow, (ts, in_fast, in_slow)
        else:
            assert ts.key not in self.fast and ts.key not in self.slow, ts
        if ts.holds_slot:
            assert ts.state in RUNNING and not ts.seceded, ts
        if ts.state == "long-running":
            assert ts.seceded and not ts.holds_slot, ts
        if ts.state == "waiting":
            assert ts.waiting_for, f"runnable task left waiting: {ts}"
        if ts.state == "ready":
            assert not ts.waiting_for, ts
            assert all(d.state == "memory" for d in ts.dependencies), ts
        if ts.state == "flight":
            assert ts.peer in self.peers_in_flight, ts
        if ts.state == "fetch":
            assert ts in self.to_fetch, ts
        for dep in ts.waiting_for:
            assert dep in ts.dependencies and dep.state != "memory", (ts, dep)
        for dep in ts.dependencies:
            assert self.tasks.get(dep.key) is dep and ts in dep.dependents, (ts, dep)

    def _validate_counters(self) -> None:
        assert self.fast_bytes >= 0 and self.slow_bytes >= 0, (self.fast_bytes, self.slow_bytes)
        if self.memory_limit and self.target_fraction:
            assert self.fast_bytes <= self.target_fraction * self.memory_limit or all(
                ts.unspillable for ts in self.fast.values()), "past target with keys to spill"
        assert 0 <= self.busy_slots <= self.nthreads, self.busy_slots
        assert 0 <= self.async_busy <= self.async_slots, self.async_busy
        for r, amount in self.available_resources.items():
            assert 0 <= amount <= self.total_resources.get(r, 0), (r, amount)
