"""The scheduler's event handlers: one method per event of core/events.py.

Each turns an event into bookkeeping and recommendations for the worklist
(scheduler_moves.py); none sets a task's state itself.  ``EventHandlers``
is a part of ``SchedulerState`` (scheduler_state.py), whose ``handle``
dispatches to these methods.
"""
from __future__ import annotations

from trioflow.core import events as ev
from trioflow.core import scheduler_messages as out
from trioflow.core import stealing
from trioflow.core.records import TaskState, WorkerState, plus, priority_int


class EventHandlers:
    """What each event does to the scheduler's state."""

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
                self._to_client(out.KeyErred(e.client, key, None, None,
                                             f"the scheduler does not know key {key!r}",
                                             "FutureLostError"))
                continue
            ts.who_wants = self._share(ts.who_wants | {e.client})
            if ts.state == "released":
                self._run({ts: "waiting"})
            self._report_state(ts, {e.client})

    def _keys_fire_and_forget(self, e: ev.KeysFireAndForget):
        self._keys_wanted(ev.KeysWanted(out.FIRE_AND_FORGET, e.keys, e.stimulus_id))

    def _report_state(self, ts: TaskState, clients):
        """Tell clients about a task that already reached a final state."""
        if ts.state == "memory":
            self._tell_in_memory(ts, clients)
        elif ts.state == "erred":
            self._tell_erred(ts, clients)

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
                self._to_client(out.KeyCancelled(c, ts.key))
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
                if ts.state == "memory":  # the key is held elsewhere: its future is done
                    self._report_state(ts, {e.client})
                else:
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
        if ws is None or ws.status == e.status or ws.status == "closing_gracefully":
            return  # a retiring worker's own pause or resume changes nothing
        ws.status = e.status
        if e.status == "running":  # queued tasks drain after every event
            for ts in sorted(self.unrunnable, key=lambda t: t.priority):
                if ts.state == "no-worker":
                    self._run({ts: "waiting"})

    def _check_heartbeats(self, e: ev.CheckHeartbeats):
        for ws in list(self.workers.values()):
            if self.now - ws.last_seen > self.worker_ttl:
                self._remove_worker(ws, "missed its heartbeats")
                self._out.append(out.CloseWorker(ws.address, "missed its heartbeats"))

    def could_steal(self) -> bool:
        """Whether a ``BalanceWork`` tick could move anything (cheap: the
        shell asks before every tick)."""
        return stealing.could_steal(self.workers.values())

    def _balance_work(self, e: ev.BalanceWork):
        """Steal: a task that has not started moves from a saturated worker
        to an idle one when the rule of ``core/stealing.py`` says it pays.
        The victim is told to free it and the thief to compute it; should the
        victim have started it meanwhile, whichever run finishes first gives
        the result, and the other is freed (as after any reassignment)."""
        if not self.could_steal():
            return
        workers = list(self.workers.values())
        for ts, victim, thief in stealing.steal_moves(workers, self.expected_duration):
            self._abandon(ts)
            self._send_to(ts, thief)
            self.log.record(ts.key, "processing", "processing", self.stimulus_id, self.now)
            self.steals += 1

    def expected_duration(self, ts: TaskState) -> float:
        """Seconds a run of ``ts`` is expected to take: the average of its
        prefix, or dask's unknown-task-duration before one has finished."""
        duration = self.prefix_duration.get(ts.prefix)
        return stealing.UNKNOWN_TASK_DURATION if duration is None else duration

    def _worker_left(self, e: ev.WorkerLeft):
        ws = self.workers.get(e.address)
        if ws is not None:
            self._remove_worker(ws, e.cause)

    def _remove_worker(self, ws: WorkerState, cause: str = ""):
        del self.workers[ws.address]
        self._worker_batches.pop(ws.address, None)
        # count the death against every run this worker had started before
        # anything else moves: losing its data below can send such a task back
        # to waiting (a dependency to recompute) or err it (a scattered one
        # lost), and it still died with this worker, as dask counts it
        # unless it was retired: then the scheduler closed it, as dask does
        # not count an expected removal
        died_running = set() if ws.status == "closing_gracefully" else {
            ts for ts in ws.processing if ts.processing_on is ws and ts.executing_on is ws}
        for ts in died_running:
            ts.deaths += (f"{ws.address} ({cause})" if cause else ws.address,)
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
            counted = ts in died_running
            self._detach(ts)
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
                self._to_client(out.KeyLost(c, ts.key))
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
            old = self.prefix_duration.get(ts.prefix)
            self.prefix_duration[ts.prefix] = (
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

    def _reported_run(self, e) -> TaskState | None:
        """The task ``e`` is about, if it is processing on the worker that sent
        ``e`` (a report from an earlier run, or another worker, is stale)."""
        ws = self.workers.get(e.worker)
        ts = self.tasks.get(e.key)
        if ws is None or ts is None or ts.processing_on is not ws:
            return None
        return ts

    def _task_erred(self, e: ev.TaskErred):
        ts = self._reported_run(e)
        if ts is None:
            return
        self._detach(ts)
        if ts.retries > 0:
            ts.retries -= 1
            self._run({ts: "waiting"})
        else:
            self._err(ts, exception=e.exception, traceback=e.traceback, text=e.text,
                      kind=e.kind, blame=ts)

    def _task_cancelled_on_worker(self, e: ev.TaskCancelledOnWorker):
        ts = self._reported_run(e)
        if ts is not None:
            self._detach(ts)
            self._run({ts: "waiting"})

    def _task_started(self, e: ev.TaskStarted):
        ts = self._reported_run(e)
        if ts is not None:
            ts.executing_on = ts.processing_on

    def _task_seceded(self, e: ev.TaskSeceded):
        ts = self._reported_run(e)
        if ts is not None:
            ts.long_running = True
            ts.processing_on.long_running.add(ts)

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
                self._to_client(out.KeyCancelled(c, ts.key, e.reason))
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

