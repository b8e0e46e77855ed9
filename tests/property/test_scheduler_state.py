"""Stateful tests of the scheduler's sans-I/O core (``SchedulerState``).

The machine plays a few clients and workers against one ``SchedulerState``:
it submits random small graphs, joins and removes workers at any moment, and
answers for the workers only what a real worker could say (finishing, erring,
seceding tasks it was sent, reporting replicas and missing data, stale
reports that crossed a ``free-keys`` on the wire).  Besides
``state.validate()`` it keeps its own picture of the cluster, built only from
the events it sent and the messages it got back, and checks the scheduler
against it after every step:

* ``who_wants`` of every task is exactly the set of clients holding a future;
* clients hear about a key only while they hold a future for it;
* messages go only to live workers and connected clients;
* a worker is only sent ``compute-task`` with dependencies on live holders,
  and the scheduler only thinks a worker holds data the worker really holds;
* a worker's death counts against a task only if that worker had reported
  starting it (dask's ``suspicious``), and the task errs with KilledWorker
  exactly when its count passes ``allowed_failures``.

The ``drain`` rule (also run at teardown) runs the cluster to quiescence and
checks that every wanted key reached memory or erred, or is stuck for the one
legitimate reason (its restrictions exclude every live worker).  Teardown then
releases everything and checks that nothing is left behind.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trioflow.core import events as ev, scheduler_messages
from trioflow.core.scheduler_messages import FIRE_AND_FORGET
from trioflow.core.scheduler_state import SchedulerState
from trioflow.server import scheduler_wire

pytestmark = pytest.mark.timeout(300)

CLIENTS = ("c0", "c1", "c2")
ADDRESSES = tuple(f"tcp://10.0.0.{i}:8000" for i in range(5))
NAMES = ("alice", "bob")
# what a TaskSpec's ``workers=`` may name: addresses, worker names, bare hosts
RESTRICTION_TARGETS = ADDRESSES[:3] + NAMES + ("10.0.0.1", "tcp://10.0.0.7:8000")
# joined by the drain so that every task without worker restrictions can run
DRAIN_WORKER = "tcp://10.0.0.9:8000"
DRAIN_RESOURCES = {"GPU": 2}
PREFIXES = ("inc", "add", "sum")
DURATIONS = (0.0, 1e-4, 0.003, 0.5)
WORKER_TTL = 30.0
# low, so that runs reach KilledWorker and the retries after it
ALLOWED_FAILURES = 1

CLIENT_KEY_OPS = ("key-in-memory", "task-erred", "cancelled-key", "task-retried", "lost-data")


def _host(address: str) -> str:
    return address.split("://", 1)[-1].rsplit(":", 1)[0]


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.state = SchedulerState(worker_ttl=WORKER_TTL, allowed_failures=ALLOWED_FAILURES)
        self.now = 0.0
        self.connected: set[str] = set()
        # client -> keys it holds futures for (the client's view)
        self.wants: dict[str, set] = {c: set() for c in CLIENTS}
        # client -> keys it was told are in memory (and not lost since)
        self.told_in_memory: dict[str, set] = {c: set() for c in CLIENTS}
        # worker -> keys the worker really holds / was told to compute
        self.held: dict[str, set] = {}
        self.running: dict[str, set] = {}
        # worker -> keys it reported starting (its current run of them)
        self.started: dict[str, set] = {}
        # key -> deaths of workers that were executing it, for the key's
        # current task (a key forgotten and submitted again starts afresh)
        self.deaths: dict = {}
        self.ever_sent: set[tuple[str, object]] = set()  # (worker, key) compute-tasks
        self.closed: list = []  # workers whose connection the last event closed
        self.specs: dict = {}  # key -> TaskSpec, for every computed key ever submitted
        self.known_keys: list = []  # every key ever submitted or scattered, in order
        self._counter = 0
        self.restarted = False
        self.reconnects = 0
        # set while an event is being applied and checked; teardown skips its
        # own checks if a failure is already on its way out
        self._pending = False

    # ------------------------------------------------------------ plumbing

    def _new_key(self, prefix):
        self._counter += 1
        if self._counter % 5 == 0:
            return (f"{prefix}-0123456789abcdef", self._counter)
        return f"{prefix}-{self._counter}"

    def handle(self, event):
        self._pending = True
        added = set()
        # the client holds its new futures before any reply can arrive
        if isinstance(event, ev.GraphSubmitted):
            added = set(event.wanted)
        elif isinstance(event, ev.KeysWanted):
            added = set(event.keys)
        elif isinstance(event, ev.DataScattered):
            added = set(event.nbytes)
        client = getattr(event, "client", None)
        if client in self.connected:
            self.wants[client] |= added
        if isinstance(event, ev.WorkerJoined) and event.address not in self.state.workers:
            self.held[event.address] = set()
            self.running[event.address] = set()
            self.started[event.address] = set()
        # a retired worker's closing is expected: it kills nothing
        executing = {address: {k for k in keys if self._processing_on(k) == address}
                     for address, keys in self.started.items()
                     if getattr(self.state.workers.get(address), "status", "") != "closing_gracefully"}
        msgs = self.state.handle(event, self.now)
        self.closed = []
        for m in msgs:
            if isinstance(m, scheduler_messages.CloseWorker):
                assert m.worker in self.held and m.worker not in self.state.workers, m
                self.closed.append(m.worker)
                continue
            # checked as the wire message the shell sends (scheduler_wire.py)
            msg = scheduler_wire.to_worker(m)
            if msg is not None:
                self._worker_msg(m.worker, msg)
            else:
                assert isinstance(m, scheduler_messages.TO_CLIENT), m
                self._client_msg(m.client, scheduler_wire.to_client(m))
        # a KeysWanted for a key the scheduler does not know errs the future
        # at once; the client holds nothing the scheduler will track
        if isinstance(event, ev.KeysWanted):
            self.wants[event.client] -= {k for k in event.keys if k not in self.state.tasks}
        self._count_deaths(executing)
        for address in list(self.held):
            if address not in self.state.workers:
                del self.held[address]
                del self.running[address]
                del self.started[address]
        return msgs

    def _processing_on(self, key):
        ts = self.state.tasks.get(key)
        if ts is None or ts.processing_on is None:
            return None
        return ts.processing_on.address

    def _count_deaths(self, executing_before):
        """The model's count: one death per worker gone while running a key."""
        newly_killed = set()
        for address, keys in executing_before.items():
            if address in self.state.workers:
                continue
            for key in keys:
                self.deaths[key] = self.deaths.get(key, 0) + 1
                if self.deaths[key] > ALLOWED_FAILURES:
                    newly_killed.add(key)
        for key in list(self.deaths):
            if key not in self.state.tasks:
                del self.deaths[key]  # forgotten: a new submission is a new task
        for key, ts in self.state.tasks.items():
            assert ts.suspicious == self.deaths.get(key, 0), (ts, ts.suspicious, self.deaths)
            if key in newly_killed:
                assert ts.state == "erred" and ts.kind == "KilledWorker", ts

    def _worker_msg(self, address, msg):
        assert address in self.state.workers, f"message to a worker that left: {address} {msg}"
        op = msg["op"]
        if op == "compute-task":
            for dep, holders in msg["who_has"].items():
                assert holders, f"compute-task {msg['key']!r}: no holder for dependency {dep!r}"
                for h in holders:
                    assert h in self.state.workers, (msg["key"], dep, h)
            assert set(msg["nbytes"]) == set(msg["who_has"]), msg
            self.running[address].add(msg["key"])
            self.started[address].discard(msg["key"])  # a new run, not started yet
            self.ever_sent.add((address, msg["key"]))
        elif op == "free-keys":
            self.held[address] -= set(msg["keys"])
            self.running[address] -= set(msg["keys"])
            self.started[address] -= set(msg["keys"])
        else:
            raise AssertionError(f"unknown worker op {msg!r}")

    def _client_msg(self, client, msg):
        assert client in self.connected, (client, msg)
        op = msg["op"]
        assert op in CLIENT_KEY_OPS, msg
        assert msg["key"] in self.wants[client], (
            f"{client} was sent {op} for {msg['key']!r} but holds no future for it")
        if op == "cancelled-key":
            self.wants[client].discard(msg["key"])
            self.told_in_memory[client].discard(msg["key"])
        elif op == "key-in-memory":
            for w in msg["workers"]:
                assert w in self.state.workers, msg
            self.told_in_memory[client].add(msg["key"])
        elif op == "lost-data":
            # only a future that was finished can become lost, and the key is
            # being computed again, not forgotten
            assert msg["key"] in self.told_in_memory[client], msg
            self.told_in_memory[client].discard(msg["key"])
            assert msg["key"] in self.state.tasks, msg
        else:
            self.told_in_memory[client].discard(msg["key"])

    def _live(self):
        return sorted(self.state.workers)

    def _tasks_in(self, *states):
        return sorted((k for k, ts in self.state.tasks.items() if ts.state in states), key=repr)

    def _finish(self, worker, key, nbytes=8, duration=0.01):
        self.held[worker].add(key)
        self.running[worker].discard(key)
        self.started[worker].discard(key)
        self.handle(ev.TaskFinished(worker, key, nbytes, "int", duration, "task-finished"))

    # ------------------------------------------------------------ clients

    @initialize(nthreads=st.lists(st.integers(1, 3), min_size=0, max_size=2))
    def start_cluster(self, nthreads):
        for client in CLIENTS:
            self.handle(ev.ClientConnected(client, "client-connected"))
            self.connected.add(client)
        for address, n in zip(ADDRESSES, nthreads):
            self.handle(ev.WorkerJoined(address, n, 2**30, None, None, "worker-joined"))
        self.check()

    # rare, as it drops all of a client's futures at once
    @precondition(lambda self: self.reconnects < 2)
    @rule(client=st.sampled_from(CLIENTS), stays_away=st.booleans())
    def client_reconnects(self, client, stays_away):
        self.reconnects += 1
        self.connected.discard(client)
        self.wants[client] = set()
        self.told_in_memory[client] = set()
        self.handle(ev.ClientDisconnected(client, "client-disconnected"))
        # a client that stays away sends nothing: its keys are a closed book
        if not stays_away:
            self.handle(ev.ClientConnected(client, "client-connected"))
            self.connected.add(client)

    @precondition(lambda self: self.connected)
    @rule(data=st.data())
    def submit_graph(self, data):
        client = data.draw(st.sampled_from(sorted(self.connected)), label="client")
        specs: list[ev.TaskSpec] = []
        included = set()

        def include(key):
            """Resubmit a known computed key, with whatever of its graph the
            scheduler has forgotten (as a client resubmitting the same graph)."""
            if key in included or key not in self.specs:
                return
            for dep in self.specs[key].dependencies:
                if dep not in self.state.tasks:
                    include(dep)
            included.add(key)
            specs.append(self.specs[key])

        resubmit = []
        if self.specs and data.draw(st.booleans(), label="resubmit?"):
            resubmit = data.draw(st.lists(st.sampled_from(sorted(self.specs, key=repr)),
                                          max_size=3, unique=True), label="resubmit")
            for key in resubmit:
                include(key)

        existing = sorted(self.state.tasks, key=repr)
        new_keys = []
        n_new = data.draw(st.integers(0 if resubmit else 1, 4), label="n_new")
        for _ in range(n_new):
            key = self._new_key(data.draw(st.sampled_from(PREFIXES)))
            pool = existing + new_keys
            deps = data.draw(st.lists(st.sampled_from(pool), max_size=3, unique=True),
                             label="deps") if pool else []
            if (self.known_keys and data.draw(st.integers(0, 19), label="lost?") == 0):
                # a dependency the scheduler may have forgotten meanwhile
                deps.append(data.draw(st.sampled_from(self.known_keys), label="old dep"))
                deps = list(dict.fromkeys(deps))
            workers = None
            if data.draw(st.integers(0, 3), label="restricted?") == 0:
                workers = tuple(data.draw(st.lists(st.sampled_from(RESTRICTION_TARGETS),
                                                   min_size=1, max_size=2, unique=True)))
            spec = ev.TaskSpec(
                key=key,
                run_spec=("func", key),
                dependencies=tuple(deps),
                priority=data.draw(st.integers(-1, 1), label="priority"),
                workers=workers,
                allow_other_workers=workers is not None and data.draw(st.booleans()),
                retries=data.draw(st.integers(0, 2), label="retries"),
                resources=data.draw(st.sampled_from([None, None, None, {"GPU": 1},
                                                     {"GPU": 2}]), label="resources"),
                is_async=data.draw(st.integers(0, 4), label="async?") == 0,
                actor=data.draw(st.integers(0, 9), label="actor?") == 0,
            )
            self.specs[key] = spec
            self.known_keys.append(key)
            new_keys.append(key)
            specs.append(spec)
        wanted = list(resubmit)
        if new_keys:
            wanted += [k for k in new_keys if data.draw(st.booleans(), label="want")]
            if not wanted:
                wanted.append(new_keys[-1])
        self.handle(ev.GraphSubmitted(client, tuple(specs), tuple(dict.fromkeys(wanted)),
                                      0.0, "update-graph"))

    @precondition(lambda self: any(self.wants[c] for c in self.connected))
    @rule(data=st.data())
    def release_keys(self, data):
        client = data.draw(st.sampled_from(sorted(c for c in self.connected if self.wants[c])))
        keys = data.draw(st.lists(st.sampled_from(sorted(self.wants[client], key=repr)),
                                  min_size=1, unique=True))
        if self.known_keys and data.draw(st.booleans()):
            keys.append(data.draw(st.sampled_from(self.known_keys)))  # maybe not its own
        for key in keys:
            self.wants[client].discard(key)
        self.handle(ev.KeysReleased(client, tuple(dict.fromkeys(keys)), "client-releases-keys"))

    @precondition(lambda self: self.connected and self.known_keys)
    @rule(data=st.data())
    def want_keys(self, data):
        client = data.draw(st.sampled_from(sorted(self.connected)))
        keys = data.draw(st.lists(st.sampled_from(self.known_keys), min_size=1, max_size=3,
                                  unique=True))
        self.handle(ev.KeysWanted(client, tuple(keys), "client-wants-keys"))

    @precondition(lambda self: self.connected and self.known_keys)
    @rule(data=st.data(), force=st.booleans())
    def cancel_keys(self, data, force):
        client = data.draw(st.sampled_from(sorted(self.connected)))
        pool = sorted(self.wants[client], key=repr) or self.known_keys
        keys = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True))
        self.handle(ev.KeysCancelled(client, tuple(keys), force, "client-cancels-keys"))

    @precondition(lambda self: self.connected and self.known_keys)
    @rule(data=st.data())
    def retry_keys(self, data):
        client = data.draw(st.sampled_from(sorted(self.connected)))
        pool = self._tasks_in("erred") or self.known_keys
        keys = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True))
        self.handle(ev.TasksRetried(client, tuple(keys), "client-retries-keys"))

    @precondition(lambda self: self.connected)
    @rule(data=st.data())
    def scatter(self, data):
        client = data.draw(st.sampled_from(sorted(self.connected)))
        keys = []
        for _ in range(data.draw(st.integers(1, 2))):
            if self.known_keys and data.draw(st.integers(0, 4)) == 0:
                # scatter({key: value}) may name any key, even a computed one
                keys.append(data.draw(st.sampled_from(self.known_keys)))
            else:
                self._counter += 1
                keys.append(f"data-{self._counter}")
                self.known_keys.append(keys[-1])
        keys = list(dict.fromkeys(keys))
        if self.state.workers and data.draw(st.integers(0, 7), label="holder gone?"):
            holders = data.draw(st.lists(st.sampled_from(self._live()), min_size=1, max_size=2,
                                         unique=True))
        else:  # the holder left before the scatter was reported
            holders = [ADDRESSES[4]] if ADDRESSES[4] not in self.state.workers else []
        for w in holders:
            if w in self.held:
                self.held[w] |= set(keys)
        self.handle(ev.DataScattered(client, {k: 16 for k in keys},
                                     {k: tuple(holders) for k in keys}, {k: "int" for k in keys},
                                     "scatter"))

    # ------------------------------------------------------------ workers joining and leaving

    @precondition(lambda self: len(self.state.workers) < 3)
    @rule(address=st.sampled_from(ADDRESSES), nthreads=st.integers(1, 3),
          name=st.sampled_from([None, None, *NAMES]),
          resources=st.sampled_from([None, None, {"GPU": 1}, {"GPU": 2}]))
    def join_worker(self, address, nthreads, name, resources):
        self.handle(ev.WorkerJoined(address, nthreads, 2**30, name, resources, "worker-joined"))

    @precondition(lambda self: self.state.workers)
    @rule(data=st.data())
    def remove_worker(self, data):
        address = data.draw(st.sampled_from(self._live()))
        cause = data.draw(st.sampled_from(["", "exit code 3", "signal SIGKILL"]))
        self.handle(ev.WorkerLeft(address, "worker-connection-closed", cause))
        assert address not in self.state.workers

    @precondition(lambda self: self.state.workers)
    @rule(data=st.data(), status=st.sampled_from(["paused", "closing_gracefully", "running"]))
    def worker_status_changes(self, data, status):
        """Paused for memory, retiring, or running again: only a running
        worker is sent new tasks."""
        address = data.draw(st.sampled_from(sorted(self.state.workers)))
        assigned = set(self.state.workers[address].processing)
        before = self.state.workers[address].status
        self.handle(ev.WorkerStatusChanged(address, status, "worker-status-change"))
        after = self.state.workers[address].status
        assert after == ("closing_gracefully" if before == "closing_gracefully" else status)
        if after != "running":
            assert self.state.workers[address].processing <= assigned

    @precondition(lambda self: self.state.workers)
    @rule(data=st.data(), dt=st.sampled_from([0.5, 5.0, 20.0]))
    def tick_and_check_heartbeats(self, data, dt):
        """Time passes; some workers send heartbeats; the silent ones time out."""
        self.now += dt
        for address in data.draw(st.lists(st.sampled_from(self._live()), unique=True)):
            self.handle(ev.WorkerHeartbeat(address, {"executing": 0}, "heartbeat"))
        before = set(self.state.workers)
        self.handle(ev.CheckHeartbeats("heartbeat-check"))
        for ws in self.state.workers.values():
            assert self.now - ws.last_seen <= WORKER_TTL, ws
        # the shell closes exactly the connections of the workers removed
        assert sorted(self.closed) == sorted(before - set(self.state.workers)), self.closed

    @precondition(lambda self: self.known_keys)
    @rule(data=st.data())
    def fire_and_forget(self, data):
        """Keys nobody holds a future for, computed anyway and forgotten once done."""
        keys = data.draw(st.lists(st.sampled_from(self.known_keys), min_size=1, max_size=3,
                                  unique=True))
        self.handle(ev.KeysFireAndForget(tuple(keys), "fire-and-forget"))

    # ------------------------------------------------------------ worker reports

    def _draw_processing(self, data):
        key = data.draw(st.sampled_from(self._tasks_in("processing")), label="processing")
        return self.state.tasks[key].processing_on.address, key

    @precondition(lambda self: self._tasks_in("processing"))
    @rule(data=st.data(), nbytes=st.integers(0, 1000), duration=st.sampled_from(DURATIONS))
    def task_finished(self, data, nbytes, duration):
        keys = data.draw(st.lists(st.sampled_from(self._tasks_in("processing")), min_size=1,
                                  max_size=3, unique=True), label="finishing")
        for key in keys:
            ts = self.state.tasks.get(key)
            if ts is None or ts.state != "processing":
                continue  # an earlier result in this batch released it
            self._finish(ts.processing_on.address, key, nbytes, duration)
            assert self.state.tasks.get(key) is None or self.state.tasks[key].state in (
                "memory", "released"), self.state.tasks[key]

    @precondition(lambda self: self._tasks_in("processing"))
    @rule(data=st.data(), kind=st.sampled_from(["", "", "TimeoutError"]))
    def task_erred(self, data, kind):
        worker, key = self._draw_processing(data)
        self.running[worker].discard(key)
        self.started[worker].discard(key)
        self.handle(ev.TaskErred(worker, key, b"exc", b"tb", "ZeroDivisionError", kind,
                                 "task-erred"))

    @precondition(lambda self: self._tasks_in("processing"))
    @rule(data=st.data())
    def task_started(self, data):
        worker, key = self._draw_processing(data)
        self.started[worker].add(key)
        self.handle(ev.TaskStarted(worker, key, "task-started"))
        assert self.state.tasks[key].executing_on is self.state.workers[worker]

    @precondition(lambda self: self._tasks_in("processing"))
    @rule(data=st.data())
    def task_seceded(self, data):
        worker, key = self._draw_processing(data)
        self.handle(ev.TaskSeceded(worker, key, "secede"))

    @precondition(lambda self: self._tasks_in("processing"))
    @rule(data=st.data())
    def task_cancelled_on_worker(self, data):
        worker, key = self._draw_processing(data)
        self.running[worker].discard(key)
        self.started[worker].discard(key)
        self.handle(ev.TaskCancelledOnWorker(worker, key, "task-cancelled"))

    @precondition(lambda self: len(self.state.workers) > 1)
    @rule()
    def balance_work(self):
        """A work-stealing tick: only tasks not started, not pinned, move, each
        from the worker it was on to another, which is told to compute it
        while the first is told to free it."""
        where = {key: self._processing_on(key) for key in self._tasks_in("processing")}
        started = {key for keys in self.started.values() for key in keys}
        steals, could = self.state.steals, self.state.could_steal()
        msgs = self.handle(ev.BalanceWork("steal"))
        moved = {key for key, address in where.items() if self._processing_on(key) != address}
        assert self.state.steals - steals == len(moved), (moved, self.state.steals - steals)
        assert not moved & started, f"started tasks were stolen: {moved & started}"
        for key in moved:
            ts = self.state.tasks[key]
            assert ts.state == "processing" and ts.processing_on is not None, ts
            assert not ts.worker_restrictions and not ts.resources and not ts.actor, ts
            assert ts.processing_on.status == "running", ts.processing_on
            sent = [m for m in msgs if getattr(m, "key", None) == key]
            assert [m.worker for m in sent] == [ts.processing_on.address], sent
        assert could or not moved

    def _stale_pairs(self):
        out = []
        for worker, key in self.ever_sent:
            if worker not in self.state.workers:
                continue
            ts = self.state.tasks.get(key)
            if ts is None or ts.processing_on is not self.state.workers[worker]:
                out.append((worker, key))
        return sorted(out, key=repr)

    @precondition(lambda self: self._stale_pairs())
    @rule(data=st.data(),
          report=st.sampled_from(["finished", "erred", "cancelled", "seceded", "started"]))
    def stale_report(self, data, report):
        """A report that crossed a free-keys (or a reschedule) on the wire."""
        worker, key = data.draw(st.sampled_from(self._stale_pairs()))
        if report == "finished":
            self._finish(worker, key, 8, 0.01)
        elif report == "erred":
            self.handle(ev.TaskErred(worker, key, b"exc", b"tb", "boom", "", "task-erred"))
        elif report == "cancelled":
            self.handle(ev.TaskCancelledOnWorker(worker, key, "task-cancelled"))
        elif report == "started":
            # the run it started is not the scheduler's current one: no count
            self.handle(ev.TaskStarted(worker, key, "task-started"))
        else:
            self.handle(ev.TaskSeceded(worker, key, "secede"))

    @precondition(lambda self: self.state.workers and self.known_keys)
    @rule(data=st.data())
    def finished_for_unknown_key(self, data):
        """A worker reports a key it was never sent, or one since forgotten."""
        worker = data.draw(st.sampled_from(self._live()))
        key = data.draw(st.sampled_from(self.known_keys))
        ts = self.state.tasks.get(key)
        if ts is not None and ts.state not in ("released", "erred"):
            return  # only stale here; fresh results are task_finished's business
        self._finish(worker, key, 8, 0.0)

    @precondition(lambda self: self.state.workers and self.known_keys)
    @rule(data=st.data())
    def replica_added(self, data):
        worker = data.draw(st.sampled_from(self._live()))
        memory = [k for k in self._tasks_in("memory")
                  if self.state.workers[worker] not in self.state.tasks[k].who_has]
        keys = data.draw(st.lists(st.sampled_from(memory or self.known_keys), min_size=1,
                                  max_size=2, unique=True))
        if data.draw(st.booleans()):
            keys.append(data.draw(st.sampled_from(self.known_keys)))
        keys = list(dict.fromkeys(keys))
        self.held[worker] |= set(keys)
        ws = self.state.workers[worker]
        crossed = [k for k in keys if k in self.state.tasks
                   and self.state.tasks[k].processing_on is ws]
        self.handle(ev.ReplicaAdded(worker, {k: 8 for k in keys}, "add-keys"))
        # a copy fetched here while our compute-task for it was on the wire:
        # the worker answers that compute-task with task-finished at once
        for key in crossed:
            ts = self.state.tasks.get(key)
            if ts is not None and ts.processing_on is ws:
                self._finish(worker, key, 8, 0.0)

    def _holdings(self):
        return sorted(((ws.address, k) for k in self._tasks_in("memory")
                       for ws in self.state.tasks[k].who_has), key=repr)

    @precondition(lambda self: self._holdings())
    @rule(data=st.data())
    def data_missing(self, data):
        holder, key = data.draw(st.sampled_from(self._holdings()))
        reporter = data.draw(st.sampled_from(self._live()))
        self.held[holder].discard(key)
        self.handle(ev.DataMissing(reporter, key, holder, "missing-data"))

    @precondition(lambda self: self.state.workers and self.known_keys)
    @rule(data=st.data())
    def data_missing_stale(self, data):
        """The holder named no longer holds it in the scheduler's view either."""
        holder = data.draw(st.sampled_from(self._live() + [ADDRESSES[4]]))
        key = data.draw(st.sampled_from(self.known_keys))
        ts = self.state.tasks.get(key)
        if ts is not None and holder in {ws.address for ws in ts.who_has}:
            return
        if holder in self.held:
            self.held[holder].discard(key)
        self.handle(ev.DataMissing(self._live()[0], key, holder, "missing-data"))

    @precondition(lambda self: self._holdings())
    @rule(data=st.data())
    def data_unserializable(self, data):
        holder, key = data.draw(st.sampled_from(self._holdings()))
        self.handle(ev.DataUnserializable(holder, key, f"cannot pickle {key!r}",
                                          "unserializable"))
        ts = self.state.tasks.get(key)
        assert ts is None or ts.state == "erred", ts

    @precondition(lambda self: self._holdings())
    @rule(data=st.data())
    def replica_dropped(self, data):
        """Rebalancing drops one copy (ignored unless another copy remains)."""
        holder, key = data.draw(st.sampled_from(self._holdings()))
        several = len(self.state.tasks[key].who_has) > 1
        self.handle(ev.ReplicaDropped(holder, key, "rebalance"))
        ts = self.state.tasks.get(key)
        assert ts is not None and ts.state == "memory", ts
        assert (holder not in {ws.address for ws in ts.who_has}) == several, ts

    @precondition(lambda self: len(self.state.workers) >= 2 and self._holdings())
    @rule(data=st.data())
    def rebalance(self, data):
        """The shell's rebalance: plan, copy each key to its recipient, drop
        the sender's copy; some copies fail on the way."""
        moves = self.state.rebalance_plan()
        for key, sender, recipient in moves:
            ts = self.state.tasks[key]
            holders = {ws.address for ws in ts.who_has}
            assert ts.state == "memory" and sender in holders and recipient not in holders
            assert sender != recipient and {sender, recipient} <= set(self.state.workers)
        for key, sender, recipient in moves:
            ts = self.state.tasks.get(key)
            if ts is None or ts.state != "memory" or not data.draw(st.integers(0, 4)):
                continue  # gone meanwhile, or the copy failed
            self.held[recipient].add(key)
            self.handle(ev.ReplicaAdded(recipient, {key: ts.nbytes}, "rebalance"))
            self.handle(ev.ReplicaDropped(sender, key, "rebalance"))

    # at most once per run, with something to forget: it wipes the state
    @precondition(lambda self: not self.restarted and len(self.state.tasks) >= 3)
    @rule()
    def restart_cluster(self):
        self.restarted = True
        self.handle(ev.ClusterRestarted("restart requested", "restart"))
        assert not self.state.tasks
        for client in self.connected:
            assert not self.wants[client], (client, self.wants[client])

    # ------------------------------------------------------------ liveness

    @precondition(lambda self: self.state.tasks)
    @rule()
    def drain(self):
        self._drain()

    def _drain(self):
        for address, ws in list(self.state.workers.items()):
            if ws.status == "paused":  # its memory fell
                self.handle(ev.WorkerStatusChanged(address, "running", "worker-status-change"))
            elif ws.status == "closing_gracefully":  # the retirement ends
                self.handle(ev.WorkerLeft(address, "worker-connection-closed", "retired"))
        if DRAIN_WORKER not in self.state.workers:
            self.handle(ev.WorkerJoined(DRAIN_WORKER, 2, 2**30, None, DRAIN_RESOURCES,
                                        "worker-joined"))
        if self._finish_all_running(10_000):
            raise AssertionError("the scheduler did not quiesce")
        assert not self._tasks_in("queued"), "queued tasks while workers are idle"
        for key, ts in self.state.tasks.items():
            if ts.state == "waiting":
                # blocked only behind a task no live worker may run
                stack, seen, blocked = [ts], set(), False
                while stack:
                    t = stack.pop()
                    if t in seen:
                        continue
                    seen.add(t)
                    if t.state == "no-worker":
                        blocked = True
                    stack.extend(t.waiting_on)
                assert blocked, f"{ts} waits on {ts.waiting_on} and nothing runs"
            elif ts.state == "no-worker":
                assert not self._could_run(ts), f"{ts} stuck although a live worker fits it"
        for client in self.connected:
            for key in self.wants[client]:
                ts = self.state.tasks[key]
                assert ts.state in ("memory", "erred", "no-worker", "waiting"), ts

    def _finish_all_running(self, rounds) -> bool:
        """Finish every task the workers run, ``rounds`` times over; True if
        tasks were still running after the last round."""
        for _ in range(rounds):
            processing = self._tasks_in("processing")
            if not processing:
                return False
            for key in processing:
                ts = self.state.tasks.get(key)
                if ts is not None and ts.state == "processing":
                    self._finish(ts.processing_on.address, key)
        return bool(self._tasks_in("processing"))

    def _could_run(self, ts) -> bool:
        """Could any live worker run ``ts``?  Resources must fit; worker
        restrictions bind unless ``allow_other_workers``."""
        fits = [ws for ws in self.state.workers.values()
                if all(ws.resources.get(r, 0) >= n for r, n in (ts.resources or {}).items())]
        if ts.worker_restrictions and not ts.allow_other_workers:
            fits = [ws for ws in fits
                    if {ws.address, ws.name, _host(ws.address)} & ts.worker_restrictions]
        return bool(fits)

    def teardown(self):
        if self._pending:
            return  # a step already failed; do not mask its error
        self._drain()
        self.check()
        for client in sorted(self.connected):
            if self.wants[client]:
                keys = tuple(sorted(self.wants[client], key=repr))
                self.wants[client] = set()
                self.handle(ev.KeysReleased(client, keys, "client-releases-keys"))
                self.check()
        # fire-and-forget keys that no live worker may run: nobody else lets go
        unowned = tuple(k for k, ts in self.state.tasks.items() if FIRE_AND_FORGET in ts.who_wants)
        for key in unowned:
            assert self.state.tasks[key].state in ("no-worker", "waiting"), self.state.tasks[key]
        if unowned:
            self.handle(ev.KeysReleased(FIRE_AND_FORGET, unowned, "teardown"))
        assert not self.state.tasks, f"released keys left a trace: {self.state.tasks}"
        for ws in self.state.workers.values():
            assert not ws.has_what and not ws.processing and ws.nbytes == 0, ws
        for address, keys in self.held.items():
            assert not keys, f"{address} was never told to free {keys}"
        assert not self.state.queued_set and not self.state.unrunnable

    # ------------------------------------------------------------ invariants

    @invariant()
    def check(self):
        state = self.state
        state.validate()
        for key, ts in state.tasks.items():
            holders = {c for c in self.connected if key in self.wants[c]}
            assert ts.who_wants - {FIRE_AND_FORGET} == holders, (ts, ts.who_wants, holders)
            # the pseudo-client lets go of a key in the event that finishes it
            assert FIRE_AND_FORGET not in ts.who_wants or ts.state not in ("memory", "erred"), ts
            if ts.state in ("waiting", "queued", "processing", "no-worker"):
                assert ts.who_wants or ts.waiters, f"{ts} is on its way to run for nobody"
        for client in self.connected:
            for key in self.wants[client]:
                assert key in state.tasks, f"{client} holds a future for forgotten {key!r}"
        assert set(self.held) == set(state.workers), (set(self.held), set(state.workers))
        for address, ws in state.workers.items():
            on_worker = self.held[address]
            believed = {ts.key for ts in ws.has_what}
            assert believed <= on_worker, (address, believed - on_worker)
            assert ws.nbytes == sum(ts.nbytes for ts in ws.has_what), ws
            processing = {ts.key for ts in ws.processing}
            assert processing <= self.running[address], (address, processing)
        self._pending = False


SchedulerMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSchedulerState = SchedulerMachine.TestCase


# ---------------------------------------------------------------- death counting


def _one_task_cluster(allowed_failures=3):
    state = SchedulerState(allowed_failures=allowed_failures)
    state.handle(ev.ClientConnected("c", "client-connected"))
    spec = ev.TaskSpec("f-1", b"run-spec")
    state.handle(ev.GraphSubmitted("c", (spec,), ("f-1",), stimulus_id="update-graph"))
    return state


def _join_and_assign(state, address):
    out = state.handle(ev.WorkerJoined(address, 1, stimulus_id="worker-joined"))
    assert [type(m) for m in out] == [scheduler_messages.ComputeTaskOnWorker], out
    return state.tasks["f-1"]


def test_death_of_a_worker_that_never_started_the_task_is_not_counted():
    state = _one_task_cluster()
    for i in range(10):
        ts = _join_and_assign(state, f"ws://w{i}:1")
        state.handle(ev.WorkerLeft(f"ws://w{i}:1", "worker-connection-closed", "signal SIGKILL"))
    assert ts.state == "no-worker" and ts.suspicious == 0, ts


def test_scatter_of_a_held_key_whose_own_holder_left_finishes_the_future():
    # found by the machine: the second client was never told the key was in
    # memory, so losing it later sent lost-data for a future never finished
    state = SchedulerState()
    for client in ("c0", "c1"):
        state.handle(ev.ClientConnected(client, "client-connected"))
    state.handle(ev.WorkerJoined("ws://a:1", 1, stimulus_id="worker-joined"))
    state.handle(ev.DataScattered("c0", {"x": 16}, {"x": ("ws://a:1",)}, {"x": "int"}, "scatter"))
    out = state.handle(ev.DataScattered("c1", {"x": 16}, {"x": ("ws://gone:1",)}, {"x": "int"},
                                        "scatter"))
    assert [(type(m), m.client, m.workers) for m in out] == [
        (scheduler_messages.KeyInMemory, "c1", ("ws://a:1",))], out
    state.validate()


def test_killed_worker_only_after_more_than_allowed_failures_with_each_death_named():
    state = _one_task_cluster(allowed_failures=3)
    causes = ["exit code 3", "signal SIGSEGV", "", "signal SIGKILL"]
    for i, cause in enumerate(causes):
        ts = _join_and_assign(state, f"ws://w{i}:1")
        state.handle(ev.TaskStarted(f"ws://w{i}:1", "f-1", "task-started"))
        out = state.handle(ev.WorkerLeft(f"ws://w{i}:1", "worker-connection-closed", cause))
        if i < 3:
            assert ts.state == "no-worker" and ts.suspicious == i + 1, ts
            assert not out, out
    assert ts.state == "erred" and ts.kind == "KilledWorker", ts
    [msg] = out
    assert (type(msg), msg.client, msg.kind) == (scheduler_messages.KeyErred, "c", "KilledWorker")
    for fragment in ("allowed_failures=3", "ws://w0:1 (exit code 3)",
                     "ws://w1:1 (signal SIGSEGV)", "ws://w2:1,", "ws://w3:1 (signal SIGKILL)"):
        assert fragment in msg.text, (fragment, msg.text)


def test_allowed_failures_must_be_a_non_negative_int():
    for bad in (-1, 2.5, "3", True):
        with pytest.raises(ValueError, match="allowed_failures"):
            SchedulerState(allowed_failures=bad)


class BigGraphSchedulerMachine(SchedulerMachine):
    """The same machine, also submitting graphs of hundreds of tasks per rule:
    deep release, cancel and retry paths must work as a worklist, never by
    recursion, and leave nothing behind."""

    def __init__(self):
        super().__init__()
        self.big_graphs: list[tuple] = []  # (client, wanted keys) of each big graph

    @precondition(lambda self: self.connected)
    @rule(data=st.data(), shape=st.sampled_from(["chain", "fan-in", "chains"]),
          size=st.sampled_from([150, 600, 1500]))
    def submit_big_graph(self, data, shape, size):
        """Hundreds of tasks at once: a deep chain, a wide fan-in, or chains
        of a few links hanging off one shared root."""
        client = data.draw(st.sampled_from(sorted(self.connected)), label="client")
        keys = [self._new_key("inc") for _ in range(size)]
        specs = []
        for i, key in enumerate(keys):
            if shape == "chain":
                deps = (keys[i - 1],) if i else ()
            elif shape == "chains":
                deps = (keys[0] if i % 4 == 1 else keys[i - 1],) if i else ()
            else:
                deps = ()
            specs.append(ev.TaskSpec(key, ("func", key), deps,
                                     retries=data.draw(st.integers(0, 1), label="retries")))
        if shape == "fan-in":
            total = self._new_key("sum")
            specs.append(ev.TaskSpec(total, ("func", total), tuple(keys)))
            wanted = [total]
        elif shape == "chains":
            wanted = [k for i, k in enumerate(keys) if i % 4 == 0 and i]
        else:
            wanted = [keys[-1]]
        for spec in specs:
            self.specs[spec.key] = spec
            self.known_keys.append(spec.key)
        self.handle(ev.GraphSubmitted(client, tuple(specs), tuple(wanted), 0.0, "update-graph"))
        self.big_graphs.append((client, tuple(wanted)))

    @precondition(lambda self: self.big_graphs)
    @rule(data=st.data(), how=st.sampled_from(["release", "cancel"]))
    def let_go_of_big_graph(self, data, how):
        """Release or cancel the wanted keys of a big graph at once, wherever
        its tasks are: the whole graph unwinds in one event."""
        client, keys = self.big_graphs.pop(data.draw(
            st.integers(0, len(self.big_graphs) - 1), label="graph"))
        keys = tuple(k for k in keys if k in self.wants[client])
        if not keys or client not in self.connected:
            return
        if how == "release":
            self.wants[client] -= set(keys)
            self.handle(ev.KeysReleased(client, keys, "client-releases-keys"))
        else:
            self.handle(ev.KeysCancelled(client, keys, False, "client-cancels-keys"))

    @precondition(lambda self: self._tasks_in("processing"))
    @rule(data=st.data(), rounds=st.integers(1, 50))
    def run_many(self, data, rounds):
        """Let the workers finish everything they run, ``rounds`` times over
        (a deep chain advances one link per round)."""
        self._finish_all_running(rounds)


BigGraphSchedulerMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestSchedulerStateBigGraphs = BigGraphSchedulerMachine.TestCase
