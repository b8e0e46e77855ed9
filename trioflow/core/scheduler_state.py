"""The scheduler's state machine: tasks, workers and clients, no I/O.

``SchedulerState.handle(event, now)`` applies one event and returns the
messages it causes as ``(kind, address, msg)`` tuples where ``kind`` is
``"worker"`` or ``"client"``.  The shell sends them; it makes no decisions.

Task states follow dask's vocabulary: released, waiting, queued, processing,
memory, erred, no-worker.  A task that no client wants and no remaining task
depends on is forgotten (removed).
"""
from __future__ import annotations

import heapq
import math
from collections import defaultdict
from itertools import count
from typing import Any

from trioflow.core import events as ev
from trioflow.core.records import (EMPTY, TaskState, WorkerState, minus, plus, priority_int,
                                   priority_tuple, SetSharer)
from trioflow.core.transitions import (TRANSITION_LOG_LENGTH, InvalidTransition,
                                       TransitionLog, validate_moved)

_ACTIVE = ("waiting", "queued", "processing", "no-worker")
STATES = ("released", "waiting", "queued", "processing", "memory", "erred", "no-worker")

#: dask's ``distributed.scheduler.allowed-failures``: a task may be executing on
#: this many workers that die; one more death makes it KilledWorker
ALLOWED_FAILURES = 3

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

#: up to this many tasks, validation after an event checks everything;
#: above it only the tasks the event moved, so that it stays linear
FULL_VALIDATE_TASKS = 300


class SchedulerState:
    """All of the scheduler's bookkeeping.  Every public method is an event
    handler: it never blocks and returns the messages to send.

    Handlers never change a task's state themselves: they recommend
    ``{task: finish}`` and ``_run`` applies the recommendations one at a
    time through the methods named in ``MOVES``; each move may recommend
    more.  So no path recurses per task, however deep or wide the graph."""

    def __init__(self, worker_ttl: float = 30.0, validate: bool = False,
                 allowed_failures: int = ALLOWED_FAILURES,
                 transition_log_length: int = TRANSITION_LOG_LENGTH):
        if isinstance(allowed_failures, bool) or not isinstance(allowed_failures, int) \
                or allowed_failures < 0:
            raise ValueError(f"allowed_failures must be an int >= 0, not {allowed_failures!r}")
        self.allowed_failures = allowed_failures
        self.tasks: dict[Any, TaskState] = {}
        self.workers: dict[str, WorkerState] = {}
        self.clients: set[str] = set()
        self.queued: list[tuple[tuple, TaskState]] = []  # heap; entries not in queued_set are stale
        self.queued_set: set[TaskState] = set()
        self.unrunnable: set[TaskState] = set()
        self.worker_ttl = worker_ttl
        self.validate_each_step = validate
        self.now = 0.0
        self.log = TransitionLog(transition_log_length)
        self.stimulus_id = ""
        self._moved: list[TaskState] = []  # tasks moved by the current event (for validation)
        self._generation = count()
        self._prefix_duration: dict[str, float] = {}
        self.n_forgotten = 0  # tasks ever forgotten (a Prometheus counter)
        self._out: list[tuple[str, str, dict]] = []
        self._share = SetSharer()
        self._worker_batches: dict[str, list] = defaultdict(list)
        self._moves = {pair: getattr(self, name) for pair, name in MOVES.items()}
        self._handlers = {
            ev.ClientConnected: self._client_connected,
            ev.ClientDisconnected: self._client_disconnected,
            ev.GraphSubmitted: self._graph_submitted,
            ev.KeysWanted: self._keys_wanted,
            ev.KeysReleased: self._keys_released,
            ev.KeysCancelled: self._keys_cancelled,
            ev.TasksRetried: self._tasks_retried,
            ev.DataScattered: self._data_scattered,
            ev.WorkerJoined: self._worker_joined,
            ev.WorkerLeft: self._worker_left,
            ev.WorkerHeartbeat: self._worker_heartbeat,
            ev.WorkerStatusChanged: self._worker_status_changed,
            ev.CheckHeartbeats: self._check_heartbeats,
            ev.TaskFinished: self._task_finished,
            ev.TaskErred: self._task_erred,
            ev.TaskCancelledOnWorker: self._task_cancelled_on_worker,
            ev.TaskStarted: self._task_started,
            ev.TaskSeceded: self._task_seceded,
            ev.ReplicaAdded: self._replica_added,
            ev.DataMissing: self._data_missing,
            ev.DataUnserializable: self._data_unserializable,
            ev.ClusterRestarted: self._cluster_restarted,
            ev.ReplicaDropped: self._replica_dropped,
        }

    # ------------------------------------------------------------ entry point

    def handle(self, event, now: float = 0.0) -> list[tuple[str, str, dict]]:
        """Apply one event; return ``(kind, address, msg)`` messages.

        An exception escaping from here is a bug in trioflow and leaves the
        state inconsistent: the caller must stop using this object."""
        self.now = now
        self.stimulus_id = event.stimulus_id or type(event).__name__
        self._handlers[type(event)](event)
        self._drain_queue()
        return self._flush()

    def story(self, *keys_or_stimuli) -> list[tuple]:
        """This scheduler's transitions of these keys (or caused by these
        stimuli): ``(key, start, finish, stimulus_id, time)``, oldest first."""
        return self.log.story(*keys_or_stimuli)

    def _flush(self):
        for address, compute_msgs in self._worker_batches.items():
            if address in self.workers:
                self._out.extend(("worker", address, m) for m in compute_msgs)
        self._worker_batches.clear()
        out, self._out = self._out, []
        moved, self._moved = self._moved, []
        if self.validate_each_step:
            if len(self.tasks) <= FULL_VALIDATE_TASKS:
                self.validate()
            else:
                self.validate_tasks(moved)
        return out

    def _to_worker(self, ws: WorkerState, msg: dict):
        msg["stimulus_id"] = self.stimulus_id
        self._worker_batches[ws.address].append(msg)

    def _free_on_worker(self, ws: WorkerState, keys: list):
        self._to_worker(ws, {"op": "free-keys", "keys": keys})

    def _to_client(self, client: str, msg: dict):
        if client in self.clients:
            self._out.append(("client", client, msg))

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
        if self._is_rootish(ts) and self.workers:
            ws = self._least_busy_with_room(ts)
            if ws is None:
                recs[ts] = "queued"
                return
        else:
            ws = self._decide_worker(ts)
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
        ws = self._least_busy_with_room(ts)
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
        if ts.who_wants:
            msg = {"op": "key-in-memory", "key": ts.key, "type": ts.type_name,
                   "workers": [ws.address for ws in ts.who_has]}
            for c in ts.who_wants:
                self._to_client(c, msg)
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
            elif dependent.state in _ACTIVE:
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
        if ts.who_wants:
            msg = self._erred_msg(ts)
            for c in ts.who_wants:
                self._to_client(c, msg)
        blame = ts.exception_blame or ts
        for dependent in ts.dependents:
            if dependent.state in _ACTIVE:
                self._recommend_erred(dependent, recs, blame=blame)
        for dep in ts.dependencies:
            self._recommend_release(dep, recs)
        self._recommend_release(ts, recs)

    def _erred_to_released(self, ts: TaskState, recs: dict):
        """Retried: its futures, in every client, are pending again."""
        ts.state = "released"
        ts.error = ts.exception_blame = None
        for c in ts.who_wants:
            self._to_client(c, {"op": "task-retried", "key": ts.key})

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

    # ------------------------------------------------------------ clients

    def _client_connected(self, e: ev.ClientConnected):
        self.clients.add(e.client)

    def _client_disconnected(self, e: ev.ClientDisconnected):
        self.clients.discard(e.client)
        wanted = [ts for ts in self.tasks.values() if e.client in ts.who_wants]
        for ts in wanted:
            ts.who_wants = self._share(ts.who_wants - {e.client})
        self._release(wanted)

    def _graph_submitted(self, e: ev.GraphSubmitted):
        if e.client not in self.clients:
            return
        generation = next(self._generation)
        existing = [k for k in e.wanted if k in self.tasks]
        new: list[TaskState] = []
        for order, spec in enumerate(e.tasks):
            ts = self.tasks.get(spec.key)
            if ts is not None and ts.run_spec is not None:
                continue  # a pure resubmission: reuse the existing task
            if ts is None:
                ts = self.tasks[spec.key] = TaskState(spec.key, spec.run_spec)
            else:
                ts.run_spec = spec.run_spec
            ts.priority = priority_int(spec.priority, generation, order)
            ts.retries = spec.retries
            ts.worker_restrictions = set(spec.workers) if spec.workers else None
            ts.allow_other_workers = spec.allow_other_workers
            ts.resources = dict(spec.resources) if spec.resources else None
            ts.actor = spec.actor
            ts.timeout = spec.timeout
            ts.is_async = spec.is_async
            new.append((ts, spec))
        lost = []
        for ts, spec in new:
            for dep_key in spec.dependencies:
                dep = self.tasks.get(dep_key)
                if dep is None:
                    lost.append((ts, dep_key))
                    continue
                ts.dependencies = plus(ts.dependencies, dep)
                dep.dependents = plus(dep.dependents, ts)
        for key in e.wanted:
            ts = self.tasks.get(key)
            if ts is not None:
                ts.who_wants = self._share(ts.who_wants | {e.client})
        for ts, dep_key in lost:
            if ts.state == "memory":
                # scattered data given a recipe it cannot use: keep the value, and
                # no recipe, so that losing it errs instead of recomputing wrongly
                ts.run_spec = None
                continue
            self._err(ts, text=f"lost dependency {dep_key!r}: the scheduler no longer "
                               "knows it (were its futures released?)",
                      kind="FutureLostError", blame=ts)
        for ts, _ in new:  # one at a time, so tasks are placed in priority order
            if ts.state == "released" and (ts.waiters or ts.who_wants):
                self._run({ts: "waiting"})
        # tasks submitted only as dependencies of nothing wanted are dropped
        self._release([ts for ts, _ in new])
        for key in existing:
            ts = self.tasks.get(key)
            if ts is not None:
                if ts.state == "released" and ts.who_wants:
                    self._run({ts: "waiting"})  # kept only for its dependents, wanted again
                self._report_state(ts, {e.client})

    def _keys_wanted(self, e: ev.KeysWanted):
        if e.client not in self.clients:
            return
        for key in e.keys:
            ts = self.tasks.get(key)
            if ts is None:
                self._to_client(e.client, {"op": "task-erred", "key": key, "exception": None,
                                           "traceback": None, "kind": "FutureLostError",
                                           "text": f"the scheduler does not know key {key!r}"})
                continue
            ts.who_wants = self._share(ts.who_wants | {e.client})
            if ts.state == "released":
                self._run({ts: "waiting"})
            self._report_state(ts, {e.client})

    def _report_state(self, ts: TaskState, clients):
        """Tell clients about a task that already reached a final state."""
        if ts.state == "memory":
            for c in clients:
                self._to_client(c, {"op": "key-in-memory", "key": ts.key, "type": ts.type_name,
                                    "workers": [ws.address for ws in ts.who_has]})
        elif ts.state == "erred":
            for c in clients:
                self._to_client(c, self._erred_msg(ts))

    def _keys_released(self, e: ev.KeysReleased):
        touched = []
        for key in e.keys:
            ts = self.tasks.get(key)
            if ts is not None and e.client in ts.who_wants:
                ts.who_wants = self._share(ts.who_wants - {e.client})
                touched.append(ts)
        self._release(touched)

    def _keys_cancelled(self, e: ev.KeysCancelled):
        """Cancel keys and everything that depends on them; clients holding
        futures for any of those are told so."""
        doomed: list[TaskState] = []
        seen = set()
        stack = [self.tasks[k] for k in e.keys if k in self.tasks]
        cancelled_keys = set(e.keys)
        while stack:
            ts = stack.pop()
            if ts in seen:
                continue
            seen.add(ts)
            if ts.key in cancelled_keys:
                clients = set(ts.who_wants) if e.force else {e.client} & ts.who_wants
            elif ts.state == "memory":
                continue  # a finished dependent keeps its value
            else:
                clients = set(ts.who_wants)
            for c in clients:
                self._to_client(c, {"op": "cancelled-key", "key": ts.key})
            ts.who_wants = self._share(ts.who_wants - clients)
            if ts.key in cancelled_keys and ts.who_wants:
                continue  # another client still wants it: only this client lets go
            doomed.append(ts)
            stack.extend(ts.dependents)
        self._release(doomed)

    def _tasks_retried(self, e: ev.TasksRetried):
        roots = set()
        for key in e.keys:
            ts = self.tasks.get(key)
            if ts is not None and ts.state == "erred":
                roots.add(ts.exception_blame or ts)
        for root in roots:
            erred = self._erred_closure(root)
            # all released before any is computed: a dependent computed while a
            # dependency of it is still erred would err again at once
            for ts in erred:
                self._run({ts: "released"})
            for ts in erred:
                if ts.who_wants and ts.state == "released":
                    self._run({ts: "waiting"})
            self._release(erred)

    def _erred_closure(self, root: TaskState) -> list[TaskState]:
        out, stack, seen = [], [root], set()
        while stack:
            ts = stack.pop()
            if ts in seen or ts.state != "erred":
                continue
            seen.add(ts)
            out.append(ts)
            stack.extend(d for d in ts.dependents if d.exception_blame is root)
        return out

    def _data_scattered(self, e: ev.DataScattered):
        if e.client not in self.clients:
            return
        for key, nbytes in e.nbytes.items():
            holders = [self.workers[w] for w in e.who_has.get(key, ()) if w in self.workers]
            ts = self.tasks.get(key)
            if ts is None:
                ts = self.tasks[key] = TaskState(key)
            ts.who_wants = self._share(ts.who_wants | {e.client})
            if not holders:
                if ts.state != "memory":
                    self._err(ts, text=f"scattered data for {key!r} was lost: its "
                                       "workers left before the scatter finished",
                              kind="FutureLostError", blame=ts)
                continue
            if ts.state not in ("memory", "released"):
                # a holder that was running it keeps its copy: no free-keys there
                self._abandon(ts, free_on_worker=ts.processing_on not in holders)
            for ws in ts.who_has:  # keep the current holders' totals right
                ws.nbytes += nbytes - ts.nbytes
            ts.nbytes = nbytes
            ts.type_name = e.type_names.get(key, ts.type_name)
            for ws in holders:
                self._add_holder(ts, ws)
            if ts.state != "memory":
                self._run({ts: "memory"})
            self._report_state(ts, {e.client})

    # ------------------------------------------------------------ workers

    def _worker_joined(self, e: ev.WorkerJoined):
        if e.address in self.workers:
            return
        ws = WorkerState(e.address, e.nthreads, e.memory_limit, e.name, e.resources)
        ws.last_seen = self.now
        self.workers[e.address] = ws
        for ts in sorted(self.unrunnable, key=lambda t: t.priority):
            if ts.state == "no-worker":
                self._run({ts: "waiting"})

    def _worker_heartbeat(self, e: ev.WorkerHeartbeat):
        ws = self.workers.get(e.address)
        if ws is not None:
            ws.last_seen = self.now
            if e.metrics:
                ws.metrics = e.metrics

    def _worker_status_changed(self, e: ev.WorkerStatusChanged):
        ws = self.workers.get(e.address)
        if ws is None or ws.status == e.status:
            return
        ws.status = e.status
        if e.status == "running":  # queued tasks drain after every event
            for ts in sorted(self.unrunnable, key=lambda t: t.priority):
                if ts.state == "no-worker":
                    self._run({ts: "waiting"})

    def _check_heartbeats(self, e: ev.CheckHeartbeats):
        for ws in list(self.workers.values()):
            if self.now - ws.last_seen > self.worker_ttl:
                self._remove_worker(ws, "missed its heartbeats")

    def _worker_left(self, e: ev.WorkerLeft):
        ws = self.workers.get(e.address)
        if ws is not None:
            self._remove_worker(ws, e.cause)

    def _remove_worker(self, ws: WorkerState, cause: str = ""):
        del self.workers[ws.address]
        self._worker_batches.pop(ws.address, None)
        # data first, so that rescheduled tasks never name the dead worker as a
        # holder: detach all of it, then recompute the lost keys dependencies
        # first, so that none is scheduled while a lost dependency still looks
        # like it is in memory
        lost = []
        self._share.clear()  # none may keep the gone worker alive
        for ts in ws.has_what:
            ts.who_has = self._share(ts.who_has - {ws})
            if not ts.who_has and ts.state == "memory":
                lost.append(ts)
        ws.has_what.clear()
        ws.nbytes = 0
        for ts in _dependencies_first(lost):
            if self.tasks.get(ts.key) is ts and ts.state == "memory" and not ts.who_has:
                self._data_lost(ts)
        for ts in sorted(ws.processing, key=lambda t: t.priority):
            if ts.processing_on is not ws:
                continue
            counted = ts.executing_on is ws
            self._detach(ts)
            if counted:
                ts.deaths += (f"{ws.address} ({cause})" if cause else ws.address,)
            if counted and ts.suspicious > self.allowed_failures:
                self._err(ts, text=_killed_worker_text(ts, self.allowed_failures),
                          kind="KilledWorker", blame=ts)
            else:
                self._run({ts: "waiting"})
        ws.processing.clear()
        ws.long_running.clear()

    def _data_lost(self, ts: TaskState):
        """The last copy of a key is gone: recompute it if it is needed."""
        if not (ts.who_wants or ts.waiters):
            self._run({ts: "released"})
        elif ts.run_spec is None:
            self._err(ts, text=f"the only copy of {ts.key!r} was on a worker that "
                               "left, and it was scattered data, so it cannot be "
                               "recomputed", kind="FutureLostError", blame=ts)
        elif ts.actor:
            # a new instance would silently have lost the old one's state
            self._err(ts, text=f"actor {ts.key!r} was lost with the worker that held "
                               "it; actors are never recomputed: submit a new one",
                      kind="ActorLostError", blame=ts)
        else:
            # its futures are not done until it is back in memory (dask's "lost")
            for c in ts.who_wants:
                self._to_client(c, {"op": "lost-data", "key": ts.key})
            self._run({ts: "released"})

    def _task_finished(self, e: ev.TaskFinished):
        ws = self.workers.get(e.worker)
        ts = self.tasks.get(e.key)
        if ws is None:
            return
        if ts is None or ts.state in ("released", "erred"):
            self._free_on_worker(ws, [e.key])
            return
        if e.duration:
            old = self._prefix_duration.get(ts.prefix)
            self._prefix_duration[ts.prefix] = (
                e.duration if old is None else 0.5 * old + 0.5 * e.duration)
        if ts.state == "memory":
            self._add_holder(ts, ws)
            return
        if ts.processing_on is ws:
            self._detach(ts)
        else:
            self._abandon(ts)  # running elsewhere too, or rescheduled meanwhile
        ts.nbytes = e.nbytes
        ts.type_name = e.type_name
        self._add_holder(ts, ws)
        self._run({ts: "memory"})

    def _task_erred(self, e: ev.TaskErred):
        ws = self.workers.get(e.worker)
        ts = self.tasks.get(e.key)
        if ws is None or ts is None or ts.processing_on is not ws:
            return
        self._detach(ts)
        if ts.retries > 0:
            ts.retries -= 1
            self._run({ts: "waiting"})
        else:
            self._err(ts, exception=e.exception, traceback=e.traceback, text=e.text,
                      kind=e.kind, blame=ts)

    def _task_cancelled_on_worker(self, e: ev.TaskCancelledOnWorker):
        ws = self.workers.get(e.worker)
        ts = self.tasks.get(e.key)
        if ws is None or ts is None or ts.processing_on is not ws:
            return
        self._detach(ts)
        self._run({ts: "waiting"})

    def _task_started(self, e: ev.TaskStarted):
        ws = self.workers.get(e.worker)
        ts = self.tasks.get(e.key)
        if ws is not None and ts is not None and ts.processing_on is ws:
            ts.executing_on = ws

    def _task_seceded(self, e: ev.TaskSeceded):
        ws = self.workers.get(e.worker)
        ts = self.tasks.get(e.key)
        if ws is None or ts is None or ts.processing_on is not ws:
            return
        ts.long_running = True
        ws.long_running.add(ts)

    def _replica_added(self, e: ev.ReplicaAdded):
        ws = self.workers.get(e.worker)
        if ws is None:
            return
        unknown = []
        for key, nbytes in e.nbytes.items():
            ts = self.tasks.get(key)
            if ts is not None and ts.state == "memory":
                self._add_holder(ts, ws)
            elif ts is not None and ts.processing_on is ws:
                # a fetched copy crossed our compute-task: the worker will report it
                # finished; a free-keys here would cancel that run and hang the task
                continue
            else:
                unknown.append(key)
        if unknown:
            self._free_on_worker(ws, unknown)

    def _data_missing(self, e: ev.DataMissing):
        ts = self.tasks.get(e.key)
        holder = self.workers.get(e.holder)
        if ts is None or holder is None or holder not in ts.who_has:
            return
        ts.who_has = self._share(ts.who_has - {holder})
        holder.has_what.discard(ts)
        holder.nbytes -= ts.nbytes
        if not ts.who_has and ts.state == "memory":
            self._data_lost(ts)

    def _data_unserializable(self, e: ev.DataUnserializable):
        ts = self.tasks.get(e.key)
        if ts is None or ts.state != "memory":
            return
        self._err(ts, text=e.text, kind="SerializationError", blame=ts)

    def _cluster_restarted(self, e: ev.ClusterRestarted):
        for ts in self.tasks.values():
            for c in ts.who_wants:
                self._to_client(c, {"op": "cancelled-key", "key": ts.key, "reason": e.reason})
            self.log.record(ts.key, ts.state, "forgotten", self.stimulus_id, self.now)
        for ws in self.workers.values():
            keys = [ts.key for ts in ws.has_what | ws.processing]
            if keys:
                self._free_on_worker(ws, keys)
            ws.processing.clear()
            ws.long_running.clear()
            ws.has_what.clear()
            ws.nbytes = 0
        self.tasks.clear()
        self.queued.clear()
        self.queued_set.clear()
        self.unrunnable.clear()

    def _replica_dropped(self, e: ev.ReplicaDropped):
        ts = self.tasks.get(e.key)
        ws = self.workers.get(e.worker)
        if ts is None or ws is None or ws not in ts.who_has or len(ts.who_has) < 2:
            return
        ts.who_has = self._share(ts.who_has - {ws})
        ws.has_what.discard(ts)
        ws.nbytes -= ts.nbytes
        self._free_on_worker(ws, [ts.key])

    def rebalance_plan(self, keys=None, workers=None) -> list[tuple]:
        """Moves ``(key, sender, recipient)`` that even out the bytes of
        ``keys`` (default: all in memory) across ``workers`` (default: all)."""
        pool = [self.workers[w] for w in (workers or self.workers) if w in self.workers]
        if len(pool) < 2:
            return []
        in_scope = [self.tasks[k] for k in (keys if keys is not None else self.tasks)
                    if k in self.tasks and self.tasks[k].state == "memory"
                    and not self.tasks[k].actor]  # an actor stays on its worker
        load = {ws: 0 for ws in pool}
        held = {ws: [] for ws in pool}
        for ts in in_scope:
            for ws in ts.who_has:
                if ws in load:
                    load[ws] += ts.nbytes
                    held[ws].append(ts)
        mean = sum(load.values()) / len(pool)
        moves = []
        for sender in sorted(pool, key=load.get, reverse=True):
            for ts in sorted(held[sender], key=lambda t: t.nbytes, reverse=True):
                if load[sender] <= mean:
                    break
                recipient = min(pool, key=load.get)
                if recipient in ts.who_has or load[recipient] + ts.nbytes > load[sender]:
                    continue
                moves.append((ts.key, sender.address, recipient.address))
                load[sender] -= ts.nbytes
                load[recipient] += ts.nbytes
        return moves

    # ------------------------------------------------------------ placement

    def _is_rootish(self, ts: TaskState) -> bool:
        # async tasks wait on I/O, not CPU: thousands may share a worker, so
        # they are not held back by the per-thread in-flight limit
        # the part of a dask graph a task was packed in (client/graphs.py)
        # does not tie it to a worker: such tasks queue as if they had no
        # dependencies, and the part is fetched where they run
        return (not ts.worker_restrictions and not ts.resources and not ts.is_async
                and all(d.prefix == "graph-part" for d in ts.dependencies))

    def _room(self, ws: WorkerState, ts: TaskState) -> bool:
        duration = self._prefix_duration.get(ts.prefix)
        if duration is None or duration >= 0.005:
            per_thread = 1.0
        else:
            # tiny tasks: keep enough in flight to hide a scheduler round trip
            per_thread = 1 + min(50, int(0.005 / max(duration, 1e-5)))
        limit = max(1, math.ceil(ws.nthreads * per_thread))
        return len(ws.processing) - len(ws.long_running) < limit

    def _least_busy_with_room(self, ts) -> WorkerState | None:
        best = None
        for ws in self.workers.values():
            if ws.status == "running" and self._room(ws, ts) and (
                    best is None or ws.occupancy < best.occupancy):
                best = ws
        return best

    def _candidates(self, ts: TaskState) -> list[WorkerState]:
        # a paused worker gets no new task until its memory drops
        workers = [ws for ws in self.workers.values() if ws.status == "running"]
        # resources are hard limits; loose worker restrictions only a preference
        # among the workers that fit, else a preferred worker lacking the
        # resource would leave the task no-worker while another one could run it
        if ts.resources:
            workers = [ws for ws in workers
                       if all(ws.resources.get(r, 0) >= amount for r, amount in ts.resources.items())]
        if ts.worker_restrictions:
            allowed = [ws for ws in workers if ws.address in ts.worker_restrictions
                       or ws.name in ts.worker_restrictions
                       or _host(ws.address) in ts.worker_restrictions]
            if allowed or not ts.allow_other_workers:
                workers = allowed
        return workers

    def _decide_worker(self, ts: TaskState) -> WorkerState | None:
        workers = self._candidates(ts)
        if not workers:
            return None
        if len(workers) == 1:
            return workers[0]
        if ts.dependencies:
            local_bytes: dict[WorkerState, int] = defaultdict(int)
            allowed = set(workers)
            for dep in ts.dependencies:
                for holder in dep.who_has:
                    if holder in allowed:
                        local_bytes[holder] += dep.nbytes
            if local_bytes:
                return max(workers, key=lambda ws: (local_bytes.get(ws, 0) - _transfer_penalty(ws),
                                                    -ws.occupancy))
        return min(workers, key=lambda ws: ws.occupancy)

    def _send_to(self, ts: TaskState, ws: WorkerState):
        ts.state = "processing"
        ts.processing_on = ws
        ts.executing_on = None  # until this worker says it started this run
        ws.processing.add(ts)
        if ts.is_async:
            # async tasks use no thread: like seceded ones they do not occupy the worker
            ts.long_running = True
            ws.long_running.add(ts)
        self._to_worker(ws, {
            "op": "compute-task",
            "key": ts.key,
            "run_spec": ts.run_spec,
            "who_has": {d.key: [w.address for w in d.who_has] for d in ts.dependencies},
            "nbytes": {d.key: d.nbytes for d in ts.dependencies},
            "priority": priority_tuple(ts.priority),
            "resources": ts.resources,
            "actor": ts.actor,
            "timeout": ts.timeout,
            "is_async": ts.is_async,
        })

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

    def _erred_msg(self, ts: TaskState) -> dict:
        src = ts.exception_blame or ts
        return {"op": "task-erred", "key": ts.key, "exception": src.exception,
                "traceback": src.traceback, "text": src.text, "kind": src.kind}

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

    # ------------------------------------------------------------ queries

    def who_has(self, keys=None) -> dict:
        keys = self.tasks.keys() if keys is None else keys
        return {k: [ws.address for ws in self.tasks[k].who_has] if k in self.tasks else []
                for k in keys}

    def has_what(self, workers=None) -> dict:
        workers = self.workers.keys() if workers is None else workers
        return {w: [ts.key for ts in self.workers[w].has_what] if w in self.workers else []
                for w in workers}

    def identity(self) -> dict:
        return {
            "workers": {
                ws.address: {"nthreads": ws.nthreads, "memory_limit": ws.memory_limit,
                             "name": ws.name, "resources": ws.resources,
                             "processing": len(ws.processing), "nbytes": ws.nbytes,
                             "metrics": ws.metrics, "status": ws.status,
                             "paused": ws.status == "paused",
                             # as of its last heartbeat: process memory, managed
                             # memory, and the managed bytes spilled to disk
                             "memory": ws.metrics.get("memory", 0),
                             "managed": ws.metrics.get("managed", 0),
                             "spilled_bytes": ws.metrics.get("spilled_bytes", 0)}
                for ws in self.workers.values()
            },
            "n_tasks": len(self.tasks),
        }

    # ------------------------------------------------------------ invariants

    def validate(self) -> None:
        """Raise AssertionError if any invariant is broken."""
        for key, ts in self.tasks.items():
            assert ts.key == key
            self._validate_task(ts)
        for ts in self.queued_set:
            assert self.tasks.get(ts.key) is ts, ts
        for ts in self.unrunnable:
            assert ts.state == "no-worker" and ts.key in self.tasks, ts
        for address, ws in self.workers.items():
            assert ws.address == address
            for ts in ws.processing:
                assert ts.processing_on is ws and self.tasks.get(ts.key) is ts, ts
            assert ws.long_running <= ws.processing
            for ts in ws.has_what:
                assert ws in ts.who_has and self.tasks.get(ts.key) is ts, ts

    def validate_tasks(self, tasks) -> None:
        """The invariants of these tasks only (those still known)."""
        validate_moved(tasks, self.tasks, self._validate_task)

    def _validate_task(self, ts: TaskState) -> None:
        assert ts.state in STATES, ts
        if ts.state == "processing":
            assert ts.processing_on is not None, ts
            assert ts.processing_on.address in self.workers, ts
            assert self.workers[ts.processing_on.address] is ts.processing_on, ts
            assert ts in ts.processing_on.processing, ts
            assert not ts.waiting_on, ts
            assert all(d.state == "memory" for d in ts.dependencies), ts
            assert ts.executing_on in (None, ts.processing_on), ts
        else:
            assert ts.processing_on is None, ts
            assert not ts.long_running, ts
        if ts.state == "memory":
            assert ts.who_has, ts
            for ws in ts.who_has:
                assert ws.address in self.workers and self.workers[ws.address] is ws, ts
                assert ts in ws.has_what, ts
        else:
            assert not ts.who_has, ts
        if ts.state == "waiting":
            assert ts.waiting_on, f"runnable task left waiting: {ts}"
            assert ts.waiting_on <= ts.dependencies, ts
            assert all(d.state in ("waiting", "queued", "processing", "no-worker")
                       for d in ts.waiting_on), (ts, ts.waiting_on)
        else:
            assert not ts.waiting_on, ts
        if ts.state == "no-worker":
            assert ts in self.unrunnable, ts
        assert (ts.state == "queued") == (ts in self.queued_set), ts
        if ts.state == "released":
            assert not ts.who_wants and not ts.waiters, f"needed task left released: {ts}"
        if ts.state in _ACTIVE:
            for dep in ts.dependencies:
                assert ts in dep.waiters, (ts, dep)
        for dep in ts.dependencies:
            assert self.tasks.get(dep.key) is dep, (ts, dep)
            assert ts in dep.dependents, (ts, dep)
        for dependent in ts.dependents:
            assert dependent.key in self.tasks, (ts, dependent)
        for waiter in ts.waiters:
            assert waiter.state in _ACTIVE, waiter
        assert ts.who_wants or ts.dependents, f"unneeded task not forgotten: {ts}"
        assert ts.who_wants <= self.clients, ts


def _dependencies_first(tasks) -> list:
    """``tasks`` ordered so that each comes after its transitive dependencies."""
    selected, order, seen = set(tasks), [], set()
    for root in sorted(tasks, key=lambda t: t.priority):
        stack = [(root, False)]
        while stack:
            ts, expanded = stack.pop()
            if expanded:
                if ts in selected:
                    order.append(ts)
                continue
            if ts in seen:
                continue
            seen.add(ts)
            stack.append((ts, True))
            stack.extend((dep, False) for dep in ts.dependencies)
    return order


def _killed_worker_text(ts: TaskState, allowed_failures: int) -> str:
    return (f"task {ts.key!r} was executing on {ts.suspicious} workers that died, more "
            f"than allowed_failures={allowed_failures}, so it is suspected of killing them: "
            + ", ".join(ts.deaths)
            + ". Look at those workers' logs; an exit code or signal says how each ended")


def _host(address: str) -> str:
    rest = address.split("://", 1)[-1]
    return rest.rsplit(":", 1)[0]


def _transfer_penalty(ws: WorkerState) -> float:
    # a busy worker's local bytes are worth less: prefer moving small data to
    # an idle worker over queueing behind a long backlog
    return ws.occupancy * 1_000_000
